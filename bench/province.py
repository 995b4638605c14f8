"""The province bench: CityGrid at the scale of a province, section by section.

    python -m bench.province setup [--section NAME]     # build what the sections need
    python -m bench.province measure [--section NAME]   # print every figure beside its baseline

Each section is a pair of functions registered in :data:`SECTIONS` (``setup`` then ``measure``);
``--section`` runs one, the default runs them all in order. Other sections (partitions, replicas,
Dask) and the growth curve over three sizes are in :mod:`bench.province_sections`.
Results go to ``bench/results/province.json``.

Section ``locator`` (no database: the polygons come from :mod:`data.province` directly):

- ``setup``: generates the province (12 cities, 102,000 grids, two 3° zones) and keeps the
  regions as WKB in ``bench/results/province/regions.npz``.
- ``measure``: for **one city** of that province (the baseline) and for **the province**, each in
  a fresh process so that memory is that process's own: the build of the locator from the
  polygons (indexes + the adaptive rasters) and the snapshot file written; then, in another
  fresh process, the cold start from that file; the resident memory each process gained (RSS
  after minus RSS before, imports already loaded) and its peak; single lookups (``locate`` with
  the full answer, and the bare grid lookup) and batch ``locate_many`` on 1M points drawn over the
  cities' bounding boxes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import province_sections as sections
from bench.common import PYTHON, RESULTS, machine, percentile, save

DATA = RESULTS / "province"
REGIONS = DATA / "regions.npz"
N_BATCH = 1_000_000
N_SINGLE = 20_000
N_OUTSIDE = 100_000  # outside points for the nearest-grid batch
SEED = 2612


# -- the locator ---------------------------------------------------------------------------------
def locator_setup() -> dict[str, Any]:
    from data.province import build_province

    t0 = time.perf_counter()
    p = build_province()
    took = time.perf_counter() - t0
    import shapely

    DATA.mkdir(parents=True, exist_ok=True)
    wkb = shapely.to_wkb(p.geoms)
    np.savez(REGIONS, codes=np.array(p.codes), names=np.array(p.names),
             levels=np.array(p.levels),
             parents=np.array([q or "" for q in p.parents]),
             wkb=np.frombuffer(b"".join(wkb), dtype=np.uint8),
             sizes=np.array([len(b) for b in wkb], dtype=np.int64),
             srids=np.array(p.city_srids), cities=np.array(p.city_codes))
    grids = int(p.level_mask("grid").sum())
    out = {"generated_s": round(took, 1), "cities": len(p.city_codes), "grids": grids,
           "regions": len(p), "zones_epsg": sorted(set(p.city_srids)),
           "extent": [round(v, 3) for v in shapely.total_bounds(p.geoms).tolist()]}
    print(f"province: {out}", flush=True)
    return out


def _regions(city: str | None) -> tuple[list[str], list[str], list[str], list[str], np.ndarray]:
    """The stored regions, all or one city's (code prefix)."""
    import shapely

    with np.load(REGIONS) as z:  # each z[...] reads the member again: once each
        codes = z["codes"].tolist()
        names, levels, parents = z["names"].tolist(), z["levels"].tolist(), z["parents"].tolist()
        sizes, blob = z["sizes"], z["wkb"].tobytes()
    keep = np.array([city is None or c.startswith(city) for c in codes])
    ends = np.cumsum(sizes)
    starts = ends - sizes
    wkb = [blob[s:e] for s, e, k in zip(starts.tolist(), ends.tolist(), keep, strict=True) if k]
    pick = np.flatnonzero(keep).tolist()
    return ([codes[i] for i in pick], [names[i] for i in pick],
            [levels[i] for i in pick], [parents[i] for i in pick],
            shapely.from_wkb(wkb))


def snapshot_from_polygons(codes: list[str], names: list[str], levels: list[str],
                           parents: list[str], geoms: np.ndarray) -> Any:
    """A locator :class:`~grids.locate.Snapshot` as ``load_snapshot`` builds it, from polygons
    (no staff: the figures here are about places)."""
    from gis.index import PolygonIndex
    from grids.locate import LEVEL_RANK, Region, Snapshot

    order = np.argsort(np.array(codes), kind="stable")
    pos = {codes[i]: k for k, i in enumerate(order)}
    regions = [Region(code=codes[i], level=levels[i], name=names[i],
                      parent=pos.get(parents[i], -1), version_id=1) for i in order]
    geoms = geoms[order]
    lv = np.array([r.level for r in regions], dtype=object)
    grid_ids = np.flatnonzero(lv == "grid")
    rank = np.array([LEVEL_RANK[x] for x in lv], dtype=int)
    area_ids = np.flatnonzero(lv != "grid")
    area_ids = area_ids[np.argsort(rank[area_ids], kind="stable")]
    return Snapshot(regions=regions, grid_ids=grid_ids, grids=PolygonIndex(geoms[grid_ids]),
                    area_ids=area_ids, areas=PolygonIndex(geoms[area_ids]), version_id=1,
                    loaded_at=datetime.now(UTC), as_of=None,
                    region_ids={i + 1: i for i in range(len(regions))})


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _points(snap: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points: a city picked at random, then uniform in its bounding box."""
    import shapely

    cities = snap.areas.polygons[[snap.regions[i].level == "city" for i in snap.area_ids]]
    bounds = shapely.bounds(cities)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(bounds), n)
    b = bounds[which]
    return rng.uniform(b[:, 0], b[:, 2]), rng.uniform(b[:, 1], b[:, 3])


def _lookups(snap: Any) -> dict[str, Any]:
    lon, lat = _points(snap, N_SINGLE, SEED)
    times = []
    for x, y in zip(lon.tolist(), lat.tolist(), strict=True):
        t0 = time.perf_counter()
        snap.locate(x, y)
        times.append(time.perf_counter() - t0)
    grid_times = []
    for x, y in zip(lon.tolist(), lat.tolist(), strict=True):
        t0 = time.perf_counter()
        snap.grids.query_one(x, y)
        grid_times.append(time.perf_counter() - t0)
    blon, blat = _points(snap, N_BATCH, SEED + 1)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        region, status = snap.locate_many(blon, blat)
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    # outside every region (the boxes' corners): the nearest grid from the outline-edge index
    olon, olat = blon[status == 2][:N_OUTSIDE], blat[status == 2][:N_OUTSIDE]
    edges_ready = snap.edges is not None  # from the file, or built with the rasters
    t0 = time.perf_counter()
    near, metres = snap.nearest_many(olon, olat)
    outside_s = time.perf_counter() - t0
    otimes = []
    for x, y in zip(olon[:2000].tolist(), olat[:2000].tolist(), strict=True):
        t0 = time.perf_counter()
        snap.locate(x, y)
        otimes.append(time.perf_counter() - t0)
    return {
        "outside": {"points": len(olon), "edges_ready": edges_ready,
                    "edges": len(snap.outline_edges()),
                    "edges_mb": round(snap.outline_edges().nbytes / 2**20, 1),
                    "batch_s": round(outside_s, 3),
                    "points_per_s": round(len(olon) / outside_s),
                    "single_locate_us": {"p50": round(percentile(otimes, 50) * 1e6, 1),
                                         "p95": round(percentile(otimes, 95) * 1e6, 1)},
                    "digest": float(np.nansum(metres)) + int(near.sum())},
        "single_locate_us": {"p50": round(percentile(times, 50) * 1e6, 1),
                             "p95": round(percentile(times, 95) * 1e6, 1),
                             "mean": round(float(np.mean(times)) * 1e6, 1)},
        "single_grid_query_one_us": {"p50": round(percentile(grid_times, 50) * 1e6, 2),
                                     "p95": round(percentile(grid_times, 95) * 1e6, 2)},
        "batch_s": round(best, 3), "batch_runs_s": [round(r, 3) for r in runs],
        "batch_points_per_s": round(N_BATCH / best),
        "batch_share": {k: round(float((status == i).mean()), 3)
                        for i, k in enumerate(("inside", "gap", "outside"))},
        # the answers, to compare the cold process with the building one
        "batch_digest": int(np.sum(region.astype(np.int64) * (np.arange(N_BATCH) % 7919 + 1))),
    }


def _child(mode: str, city: str | None, path: Path) -> dict[str, Any]:
    """One fresh process: ``build`` (from polygons, then write the file) or ``cold``."""
    from app.locator_service import AREAS_RASTER_CELL_DEG, RASTER_CELL_DEG
    from grids.locate_cache import read_snapshot, write_snapshot

    out: dict[str, Any] = {}
    if mode == "build":
        regions = _regions(city)
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        snap = snapshot_from_polygons(*regions)
        out["index_s"] = round(time.perf_counter() - t0, 2)
        t1 = time.perf_counter()
        snap.outline_edges()  # build_rasters builds it too; timed on its own here
        out["edges_s"] = round(time.perf_counter() - t1, 2)
        t1 = time.perf_counter()
        snap.build_rasters(RASTER_CELL_DEG, AREAS_RASTER_CELL_DEG)
        out["rasters_s"] = round(time.perf_counter() - t1, 2)
        out["build_s"] = round(time.perf_counter() - t0, 2)
        out["rss_delta_mb"] = round(_rss_mb() - rss0, 1)
        t2 = time.perf_counter()
        out["file_mb"] = round(write_snapshot(snap, path, "bench") / 1e6, 1)
        out["write_s"] = round(time.perf_counter() - t2, 2)
        out["raster"] = {"grids": snap.grids.raster_stats(), "areas": snap.areas.raster_stats()}
        out["grids"] = len(snap.grids)
        out["regions"] = len(snap.regions)
    else:
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        snap = read_snapshot(path, "bench")
        if snap is None:
            raise SystemExit(f"{path} did not load")
        out["cold_start_s"] = round(time.perf_counter() - t0, 2)
        out["rss_delta_mb"] = round(_rss_mb() - rss0, 1)
    out |= _lookups(snap)
    out["rss_mb"] = round(_rss_mb(), 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _run_child(mode: str, city: str | None, path: Path) -> dict[str, Any]:
    args = [PYTHON, "-m", "bench.province", "_child", mode, city or "-", str(path)]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def locator_measure() -> dict[str, Any]:
    from app.locator_service import RASTER_CELL_DEG

    if not REGIONS.exists():
        raise SystemExit("run `python -m bench.province setup --section locator` first")
    first_city = str(np.load(REGIONS)["cities"][0])
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="citygrid-province-") as tmp:
        for label, city in (("one_city", first_city), ("province", None)):
            path = Path(tmp) / f"{label}.npz"
            built = _run_child("build", city, path)
            cold = _run_child("cold", city, path)
            if built["batch_digest"] != cold["batch_digest"] or \
                    built["outside"]["digest"] != cold["outside"]["digest"]:
                raise SystemExit(f"{label}: the cold start answered differently")
            out[label] = {"build": built, "cold": cold}
            print(f"{label}: {built['grids']} grids — build from polygons {built['build_s']} s "
                  f"(+{built['rss_delta_mb']} MB, peak {built['peak_rss_mb']} MB), "
                  f"file {built['file_mb']} MB; cold start {cold['cold_start_s']} s "
                  f"(+{cold['rss_delta_mb']} MB); locate p50 {cold['single_locate_us']['p50']} µs; "
                  f"batch {cold['batch_points_per_s']:,} points/s "
                  f"(building process {built['batch_points_per_s']:,})", flush=True)
            o, co = built["outside"], cold["outside"]
            print(f"{label}: outline-edge index {o['edges']:,} edges, {o['edges_mb']} MB, built "
                  f"in {built['edges_s']} s (cold start: in the file, ready "
                  f"{co['edges_ready']}); {co['points']:,} points outside every region "
                  f"{co['points_per_s']:,} points/s (building process {o['points_per_s']:,}); "
                  f"outside locate p50 {co['single_locate_us']['p50']} µs; process RSS "
                  f"{cold['rss_mb']} MB, peak {cold['peak_rss_mb']} MB (building process "
                  f"{built['rss_mb']} MB, peak {built['peak_rss_mb']} MB)", flush=True)
    for label in ("one_city", "province"):
        r = out[label]["build"]["raster"]
        # the previous table: int32 for every cell of the extent (what the top grid spans)
        dense = (r["grids"]["cells"] + r["areas"]["cells"]) * 4 / 2**20
        ours = (r["grids"]["bytes"] + r["areas"]["bytes"]) / 2**20
        out[label]["tables_mb"] = {"adaptive": round(ours, 1), "one_dense_table": round(dense, 1)}
        print(f"{label}: lookup tables {ours:.1f} MB; one dense table over the extent would be "
              f"{dense:.1f} MB", flush=True)
    return out | {"cell_deg": RASTER_CELL_DEG}


# -- the registry ---------------------------------------------------------------------------------
SECTIONS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[], dict[str, Any]]]] = {
    "locator": (locator_setup, locator_measure),
    # bench/province_sections.py: the growth curve and the other parts' benches
    "growth": (sections.growth_setup, sections.growth_measure),
    "partitions": (sections.nothing, sections.partitions_measure),
    "replicas": (sections.nothing, sections.replicas_measure),
    "dask": (sections.dask_setup, sections.dask_measure),
    "database": (sections.database_setup, sections.database_measure),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        _, mode, city, path = argv
        print(json.dumps(_child(mode, None if city == "-" else city, Path(path))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("setup", "measure"))
    ap.add_argument("--section", choices=sorted(SECTIONS), action="append")
    ap.add_argument("--cities", type=int, default=sections.DATABASE_OPTIONS["cities"],
                    help="database section: cities of the generated province")
    ap.add_argument("--grids-per-city", type=int,
                    default=sections.DATABASE_OPTIONS["grids_per_city"],
                    help="database section: grids per city")
    ap.add_argument("--incidents", type=int, default=sections.DATABASE_OPTIONS["incidents"],
                    help="database section: incidents drawn over the whole province")
    ap.add_argument("--db", default=sections.PROVINCE_DB,
                    help="database section: the database (in the private cluster)")
    args = ap.parse_args(argv)
    sections.PROVINCE_DB = args.db
    sections.DATABASE_OPTIONS.update(cities=args.cities, grids_per_city=args.grids_per_city,
                                     incidents=args.incidents)
    names = args.section or list(SECTIONS)
    results: dict[str, Any] = {"machine": machine(), "started": datetime.now(UTC).isoformat()}
    for name in names:
        setup, measure = SECTIONS[name]
        print(f"== {name}: {args.step}", flush=True)
        results[name] = (setup if args.step == "setup" else measure)()
    if args.step == "measure":
        prev = RESULTS / "province.json"
        merged = json.loads(prev.read_text()) if prev.exists() else {}
        save("province", merged | results)


if __name__ == "__main__":
    main()
