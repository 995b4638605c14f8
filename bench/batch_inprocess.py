"""Batch location in process: 1,000,000 random points in the city's bounding box.

    python -m bench.batch_inprocess [--repeat 3]

Measured, each best of ``repeat`` runs, end to end from raw x/y float arrays:

- baseline ``geopandas.sjoin`` (``points_from_xy`` + ``sjoin(predicate='within')`` + lowest grid
  index per point); ``predicate='covered_by'`` (the locator's own semantics) once, for reference;
- ``PolygonIndex.query_exact`` on the grids (STRtree + ``covered_by``);
- ``PolygonIndex.query`` on the grids with the raster built (grid-only, same job as sjoin);
- ``Snapshot.locate_many`` on a snapshot as a worker holds it, with the rasters
  :class:`app.locator_service.LocatorService` builds (the product path: grid, else the gap
  fallback to community/street/city, else outside).

Correctness: raster vs exact (must agree on every point); vs sjoin (may differ only on
boundaries); and the grid code of every point vs a brute-force PostGIS ``ST_Covers`` join.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import psycopg
import shapely
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench import city
from bench.common import N_POINTS, best_of, random_points, ratio, save
from grids.locate import Snapshot, load_snapshot

INT_MAX = np.iinfo(np.int32).max


def service_snapshot() -> tuple[Snapshot, float]:
    """A snapshot as a worker holds it: loaded by :class:`app.locator_service.LocatorService`,
    with whatever rasters the service builds for it; and how long building them took."""
    from app.locator_service import LocatorService

    engine = create_engine(city.url())
    service = LocatorService(engine)
    snap = service.reload()
    t0 = time.perf_counter()
    service.wait_raster(timeout=120)
    built = time.perf_counter() - t0
    engine.dispose()
    return snap, built


def load() -> tuple[Snapshot, float]:
    engine = create_engine(city.url())
    t0 = time.perf_counter()
    with engine.connect() as conn:
        snap = load_snapshot(conn)
    dt = time.perf_counter() - t0
    engine.dispose()
    return snap, dt


def lowest_per_point(n: int, pts: np.ndarray, geoms: np.ndarray) -> np.ndarray:
    out = np.full(n, INT_MAX, dtype=np.int64)
    np.minimum.at(out, pts, geoms)
    out[out == INT_MAX] = -1
    return out


def sjoin_runner(snap: Snapshot, lon: np.ndarray, lat: np.ndarray, predicate: str):
    import geopandas as gpd

    # Independent, unprepared copies of the grid polygons: geopandas does its own preparing.
    polys = shapely.from_wkb(shapely.to_wkb(snap.grids.polygons))
    grids = gpd.GeoDataFrame({"gid": np.arange(len(polys))}, geometry=polys, crs="EPSG:4490")

    def run() -> np.ndarray:
        pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4490")
        j = gpd.sjoin(pts, grids, how="inner", predicate=predicate)
        return lowest_per_point(lon.size, j.index.to_numpy(), j["gid"].to_numpy())

    return run


def _pgcopy_binary(lon: np.ndarray, lat: np.ndarray) -> bytes:
    """Rows (id int4, x float8, y float8) in PostgreSQL's binary COPY format, built by numpy."""
    row = np.dtype([("nf", ">i2"), ("l0", ">i4"), ("id", ">i4"), ("l1", ">i4"), ("x", ">f8"),
                    ("l2", ">i4"), ("y", ">f8")])
    rows = np.empty(lon.size, dtype=row)
    rows["nf"], rows["l0"], rows["l1"], rows["l2"] = 3, 4, 8, 8
    rows["id"], rows["x"], rows["y"] = np.arange(lon.size), lon, lat
    return b"PGCOPY\n\xff\r\n\0" + bytes(8) + rows.tobytes() + b"\xff\xff"


def postgis_codes(snap: Snapshot, lon: np.ndarray, lat: np.ndarray) -> dict[str, Any]:
    """The covering grid code (lowest on ties) of every point, by brute force in PostGIS."""
    dsn = make_url(city.url()).set(drivername="postgresql").render_as_string(hide_password=False)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("CREATE TEMP TABLE bench_xy (id integer, x float8, y float8)")
        with conn.cursor().copy("COPY bench_xy (id, x, y) FROM STDIN (FORMAT binary)") as cp:
            cp.write(_pgcopy_binary(lon, lat))
        conn.execute("CREATE TEMP TABLE bench_pts AS SELECT id, "
                     "ST_SetSRID(ST_MakePoint(x, y), 4490) AS geom FROM bench_xy")
        conn.execute("CREATE INDEX ON bench_pts USING gist (geom)")
        conn.execute("CLUSTER bench_pts USING bench_pts_geom_idx")
        conn.execute("ANALYZE bench_pts")
        timing["load_index_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = conn.execute(
            "SELECT p.id, g.code FROM ("
            " SELECT r.code, b.geom FROM region r JOIN region_boundary b ON b.region_id = r.id"
            " WHERE r.level = 'grid' AND b.valid_from <= now()"
            " AND (b.valid_to IS NULL OR b.valid_to > now())) g "
            "CROSS JOIN LATERAL (SELECT id FROM bench_pts p WHERE ST_Covers(g.geom, p.geom)) p"
        ).fetchall()
        timing["join_s"] = time.perf_counter() - t1
        conn.rollback()
    timing["total_s"] = time.perf_counter() - t0
    codes = np.full(lon.size, "", dtype=object)
    for pid, code in sorted(rows, key=lambda r: r[1], reverse=True):  # lowest code written last
        codes[pid] = code
    return {"codes": codes, "pairs": len(rows), **{k: round(v, 3) for k, v in timing.items()}}


def edge_points(snap: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """The first vertex of every grid: exactly on a boundary, mostly shared by several grids."""
    rings = shapely.get_exterior_ring(shapely.get_geometry(snap.grids.polygons, 0))
    xy = shapely.get_coordinates(shapely.get_point(rings, 0))
    return xy[:, 0].copy(), xy[:, 1].copy()


def exact_prepared(index, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PROPOSAL for ``PolygonIndex.query_exact``: bounding-box candidates from the STRtree, then
    ``shapely.covers`` on the already prepared polygons (the STRtree predicate path tests each pair
    against the unprepared polygon instead). Same covers semantics, same lowest-index tie-break."""
    pts = shapely.points(x, y)
    p, g = index.tree.query(pts)
    ok = shapely.covers(index.polygons[g], pts[p])
    return lowest_per_point(x.size, p[ok], g[ok])


def bench(repeat: int = 3, n: int = N_POINTS, postgis: bool = True) -> dict[str, Any]:
    snap, load_s = load()  # no raster: the exact paths and the baselines
    lon, lat = random_points(n)
    out: dict[str, Any] = {"points": n, "repeat": repeat, "snapshot_load_s": round(load_s, 3),
                           "grids": len(snap.grids), "areas": len(snap.areas)}

    # Baselines: geopandas.sjoin, from raw x/y.
    t_sj, ts_sj, g_sj = best_of(sjoin_runner(snap, lon, lat, "within"), repeat)
    t_sjc, _, g_sjc = best_of(sjoin_runner(snap, lon, lat, "covered_by"), 1)

    # Exact paths, and the exact reference for the whole product path (grid, else the smallest
    # area covering the point).
    t_ex, ts_ex, g_ex = best_of(lambda: snap.grids.query_exact(lon, lat), repeat)
    ex_lon, ex_lat = edge_points(snap)
    e_ex = snap.grids.query_exact(ex_lon, ex_lat)
    ref = np.where(g_ex >= 0, snap.grid_ids[np.maximum(g_ex, 0)], -1)
    miss = np.flatnonzero(g_ex < 0)
    t0 = time.perf_counter()
    a = snap.areas.query_exact(lon[miss], lat[miss])
    t_area_exact = time.perf_counter() - t0
    ref[miss[a >= 0]] = snap.area_ids[a[a >= 0]]

    # Proposal P1, measured without touching the product code (see docs/benchmarks.md).
    t_p1g, _, p1g = best_of(lambda: exact_prepared(snap.grids, lon, lat), 1)
    t_p1a, _, p1a = best_of(lambda: exact_prepared(snap.areas, lon[miss], lat[miss]), 1)

    # The product path: the snapshot with the rasters the LocatorService builds for it.
    live, raster_s = service_snapshot()
    stats = live.grids.raster_stats()
    area_stats = live.areas.raster_stats()
    t_ra, ts_ra, g_ra = best_of(lambda: live.grids.query(lon, lat), repeat)
    t_lm, ts_lm, (region, status) = best_of(lambda: live.locate_many(lon, lat), repeat)
    e_ra = live.grids.query(ex_lon, ex_lat)
    e_region, _ = live.locate_many(ex_lon, ex_lat)

    # Proposal P2: the areas' raster at a coarser cell (areas are large; the table is 16x smaller).
    p2: dict[str, Any] = {}
    if live.areas.raster is not None:
        fine_cell = live.areas.raster.cell
        t0 = time.perf_counter()
        live.areas.build_raster(fine_cell * 4)
        p2_build = time.perf_counter() - t0
        p2_stats = live.areas.raster_stats()
        t_p2, _, (p2_region, _) = best_of(lambda: live.locate_many(lon, lat), repeat)
        p2 = {"P2_areas_cell": p2_stats["cell_size"], "P2_areas_raster_build_s": round(p2_build, 3),
              "P2_areas_raster_mb": round(p2_stats["bytes"] / 1e6, 1),
              "P2_areas_border_share": round(p2_stats["border_share"], 4),
              "P2_locate_many_s": round(t_p2, 3),
              "P2_agree_with_reference": float((p2_region == ref).mean())}
        live.areas.build_raster(fine_cell)  # back to what the service builds

    in_grid = float((g_ex >= 0).mean())
    border_pts = float("nan")
    table = live.grids.raster
    if table is not None:  # share of points in border cells (they take the exact test)
        fy = ((lat - table.y0) / table.cell).astype(np.int64)
        fx = ((lon - table.x0) / table.cell).astype(np.int64)
        ny, nx = table.shape
        on = (fx >= 0) & (fx < nx) & (fy >= 0) & (fy < ny)
        border_pts = float((table.labels(fy[on], fx[on]) == -2).sum() / len(lat))

    diff_sj = np.flatnonzero(g_sj != g_ex)
    bnd = shapely.boundary(snap.grids.polygons)
    on_edge = sum(float(shapely.distance(shapely.Point(lon[j], lat[j]),
                                         bnd[max(g_ex[j], g_sj[j])])) < 1e-9 for j in diff_sj)
    e_sj = sjoin_runner(snap, ex_lon, ex_lat, "within")()

    out.update({
        "inside_grid_share": round(in_grid, 4),
        "status_counts": {k: int((status == i).sum())
                          for i, k in enumerate(("inside", "gap", "outside"))},
        "raster": {"build_s": round(raster_s, 3), "grids": stats, "areas": area_stats,
                   "mb": round((stats.get("bytes", 0) + area_stats.get("bytes", 0)) / 1e6, 1),
                   "points_in_grid_border_cells_share": round(border_pts, 4)},
        "times_s": {
            "sjoin_within": round(t_sj, 3), "sjoin_within_runs": [round(x, 3) for x in ts_sj],
            "sjoin_covered_by_once": round(t_sjc, 3),
            "query_exact_grids": round(t_ex, 3), "query_exact_runs": [round(x, 3) for x in ts_ex],
            "query_raster_grids": round(t_ra, 3), "query_raster_runs": [round(x, 3) for x in ts_ra],
            "locate_many": round(t_lm, 3), "locate_many_runs": [round(x, 3) for x in ts_lm],
            "area_fallback_points": int(miss.size),
            "area_fallback_query_exact": round(t_area_exact, 3),
        },
        "points_per_s": {
            "sjoin_within": round(n / t_sj), "query_exact_grids": round(n / t_ex),
            "query_raster_grids": round(n / t_ra), "locate_many": round(n / t_lm),
        },
        "ratios_vs_sjoin": {  # > 1: faster than sjoin
            "query_exact_grids": ratio(t_sj, t_ex), "query_raster_grids": ratio(t_sj, t_ra),
            "locate_many": ratio(t_sj, t_lm),
        },
        "agreement": {
            "raster_vs_exact_grids": float((g_ra == g_ex).mean()),
            "locate_many_vs_exact_reference": float((region == ref).mean()),
            "exact_vs_sjoin_within": float((g_sj == g_ex).mean()),
            "exact_vs_sjoin_within_diffs": int(diff_sj.size),
            "diffs_on_a_boundary": int(on_edge),
            "exact_vs_sjoin_covered_by": float((g_sjc == g_ex).mean()),
        },
        "edge_points": {  # grid vertices: the tie-break on shared boundaries
            "points": int(ex_lon.size),
            "raster_vs_exact": float((e_ra == e_ex).mean()),
            "locate_many_is_grid": float(np.isin(e_region, snap.grid_ids).mean()),
            "sjoin_within_finds_a_grid": float((e_sj >= 0).mean()),
        },
        "proposals": {
            "P1_exact_prepared_grids_s": round(t_p1g, 3),
            "P1_exact_prepared_grids_vs_query_exact": ratio(t_ex, t_p1g),
            "P1_exact_prepared_grids_agree": float((p1g == g_ex).mean()),
            "P1_exact_prepared_area_fallback_s": round(t_p1a, 3),
            "P1_exact_prepared_area_fallback_vs_query_exact": ratio(t_area_exact, t_p1a),
            "P1_exact_prepared_area_agree": float((p1a == a).mean()),
            **p2,
        },
    })
    out["targets"] = {
        "locate_many >= 2 x sjoin": out["ratios_vs_sjoin"]["locate_many"] >= 2.0,
        "locate_many >= 1M points/s": out["points_per_s"]["locate_many"] >= 1_000_000,
        "raster == exact on every point": out["agreement"]["raster_vs_exact_grids"] == 1.0
        and out["edge_points"]["raster_vs_exact"] == 1.0,
    }

    if postgis:
        code_of = np.array([snap.regions[i].code for i in snap.grid_ids] + [""], dtype=object)
        all_lon, all_lat = np.concatenate([lon, ex_lon]), np.concatenate([lat, ex_lat])
        pg = postgis_codes(snap, all_lon, all_lat)
        codes = pg.pop("codes")
        agree = code_of[g_ra] == codes[:n]  # -1 -> ""
        agree_edge = code_of[e_ra] == codes[n:]
        out["postgis_st_covers"] = {**pg, "agreement": float(agree.mean()),
                                    "disagreements": int((~agree).sum()),
                                    "edge_points_agreement": float(agree_edge.mean()),
                                    "edge_points_disagreements": int((~agree_edge).sum()),
                                    "ratio_join_vs_locate_many": ratio(pg["join_s"], t_lm)}
        out["targets"]["agrees with PostGIS ST_Covers on every point"] = bool(
            agree.all() and agree_edge.all())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--points", type=int, default=N_POINTS)
    ap.add_argument("--no-postgis", action="store_true")
    args = ap.parse_args()
    city.ensure()
    t0 = time.perf_counter()
    res = bench(args.repeat, args.points, postgis=not args.no_postgis)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    save("batch_inprocess", res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
