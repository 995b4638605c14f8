"""Two benches about grid edges.

What stating a lookup's uncertainty costs, in process: the plain answer (the cached bytes
``/locate`` sends) beside the same answer plus ``detail=edges`` (metres to the grid's edge, the
runner-up grid, the WGS84/GCJ-02 reading), for random points inside grids of the demo city::

    python -m bench.lookup_edges [--db citygrid_test] [--n 2000]

The nearest grid to points outside every grid (``outside``): the outline-edge index as plain
arrays (:mod:`gis.edges`, what the locator uses) beside the baseline it replaced, an ``STRtree``
of ``shapely`` LineStrings of the same edges (``query_nearest``, then ``shortest_line``), each in
a fresh process so that its memory is its own: build time, resident memory gained by the build
and the process's peak, a batch of outside points (best of three) and single lookups. Both
answer the same points; the bench checks that they name the same nearest point everywhere and
the same grid everywhere but at ties (the baseline picks either tied grid; the index the lowest
code)::

    python -m bench.lookup_edges outside [--db citygrid_test] [--n 200000]
    python -m bench.lookup_edges outside --province [--n 200000]   # bench.province setup first
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import create_engine

from app import devdb
from bench.common import PYTHON, machine, percentile, save
from grids.access import Principal, Scope
from grids.locate import load_snapshot
from grids.uncertainty import datum_doubt, uncertainty


def run(db: str, n: int) -> None:
    with create_engine(devdb.url(db)).connect() as conn:
        snap = load_snapshot(conn)
    who = Principal.make("bench:dispatcher", "dispatcher", Scope.of(snap.regions[0].code[:6]))
    rng = np.random.default_rng(7)
    polys = snap.grids.polygons[rng.integers(0, len(snap.grids), n)]
    pts = shapely.get_coordinates(shapely.point_on_surface(polys))
    # move each point off its grid's inner point, towards anywhere within ~150 m
    pts = pts + rng.normal(0, 0.0007, pts.shape)

    def plain(x: float, y: float) -> object:
        return snap.locate_json(x, y, principal=who)

    def edges(x: float, y: float) -> object:
        body = snap.locate_json(x, y, principal=who)
        g = snap.grids.query_one(x, y)
        code = snap.regions[int(snap.grid_ids[g])].code if g >= 0 else None
        return body, uncertainty(snap, x, y), datum_doubt(snap, x, y, "EPSG:4326", code,
                                                          principal=who)

    for fn in (plain, edges):  # warm
        for x, y in pts[:50]:
            fn(x, y)
    out = {}
    for name, fn in (("plain", plain), ("edges", edges)):
        times = []
        for x, y in pts:
            t0 = time.perf_counter()
            fn(float(x), float(y))
            times.append((time.perf_counter() - t0) * 1e6)
        out[name] = (percentile(times, 50), percentile(times, 95))
    runner = sum(uncertainty(snap, float(x), float(y))["runner_up"] is not None for x, y in pts)
    doubt = 0
    for x, y in pts:
        g = snap.grids.query_one(float(x), float(y))
        code = snap.regions[int(snap.grid_ids[g])].code if g >= 0 else None
        doubt += datum_doubt(snap, float(x), float(y), "EPSG:4326", code, principal=who) is not None
    print(f"{len(snap.grids):,} grids, {n:,} points: plain answer p50 {out['plain'][0]:.1f} µs, "
          f"p95 {out['plain'][1]:.1f} µs; with detail=edges p50 {out['edges'][0]:.1f} µs, "
          f"p95 {out['edges'][1]:.1f} µs; runner-up within 30 m for {runner / n:.0%}, "
          f"WGS84/GCJ-02 in different grids for {doubt / n:.0%}")


# -- outside: the edge index against the STRtree baseline ---------------------------------------
def _grid_polygons(db: str, province: bool) -> np.ndarray:
    if province:
        from bench.province import _regions

        _, _, levels, _, geoms = _regions(None)  # in code order
        return geoms[np.array(levels) == "grid"]
    with create_engine(devdb.url(db)).connect() as conn:
        return load_snapshot(conn).grids.polygons


def _outside_points(polys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points outside every grid: uniform over the grids' box grown by a third on each
    side (gaps, the rim, open country between cities, up to tens of km out)."""
    x0, y0, x1, y1 = shapely.total_bounds(polys)
    gx, gy = (x1 - x0) / 3, (y1 - y0) / 3
    rng = np.random.default_rng(20)
    tree = shapely.STRtree(polys)
    xs, ys = [], []
    while sum(len(v) for v in xs) < n:
        x, y = rng.uniform(x0 - gx, x1 + gx, n), rng.uniform(y0 - gy, y1 + gy, n)
        hit = np.zeros(n, dtype=bool)
        hit[tree.query(shapely.points(x, y), predicate="covered_by")[0]] = True
        xs.append(x[~hit])
        ys.append(y[~hit])
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _old_outline(polys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline's build, as grids.locate had it: every edge keyed, np.unique over rows."""
    parts, part_poly = shapely.get_parts(polys, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_poly = part_poly[ring_part]
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[:-1] == ring[1:]
    a, b = xy[:-1][same], xy[1:][same]
    poly = ring_poly[ring[:-1][same]]
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    key = np.where(swap[:, None], np.hstack([b, a]), np.hstack([a, b]))
    _, inverse, count = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    keep = count[inverse.ravel()] == 1
    if not keep.any():
        keep[:] = True
    lines = shapely.linestrings(np.stack([a[keep], b[keep]], axis=1))
    return lines, poly[keep], np.hstack([a[keep], b[keep]])


def _outside_child(variant: str, db: str, province: bool, n: int) -> dict:
    import resource

    from bench.province import _rss_mb
    from gis.edges import EdgeIndex
    from grids.locate import _GEOD

    polys = _grid_polygons(db, province)
    x, y = _outside_points(polys, n)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    if variant == "strtree":
        lines, owner, _ = _old_outline(polys)
        tree = shapely.STRtree(lines)
        tree.query_nearest(shapely.points(x[:1], y[:1]))  # the tree is built lazily

        def nearest(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            pts = shapely.points(px, py)
            pos, near = tree.query_nearest(pts, all_matches=False)
            near = near[np.argsort(pos, kind="stable")]
            ends = shapely.get_coordinates(shapely.shortest_line(lines[near], pts))[0::2]
            return owner[near], ends
        n_edges = len(lines)
        nbytes = None
    else:
        index = EdgeIndex.from_polygons(polys)

        def nearest(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            poly, cx, cy, _ = index.nearest(px, py)
            return poly, np.c_[cx, cy]
        n_edges = len(index)
        nbytes = index.nbytes
    build_s = time.perf_counter() - t0
    rss_build = _rss_mb() - rss0
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        owner_out, ends = nearest(x, y)
        _GEOD.inv(x, y, ends[:, 0], ends[:, 1])  # the metres, as the locator computes them
        runs.append(time.perf_counter() - t0)
    single = []
    for i in range(2000):
        t0 = time.perf_counter()
        o, e = nearest(x[i:i + 1], y[i:i + 1])
        _GEOD.inv(x[i:i + 1], y[i:i + 1], e[:, 0], e[:, 1])
        single.append((time.perf_counter() - t0) * 1e6)
    np.savez(RESULT_TMP.with_suffix(f".{variant}.npz"), owner=owner_out, ends=ends)
    return {"edges": n_edges, "build_s": round(build_s, 2), "rss_build_mb": round(rss_build, 1),
            "index_mb": round(nbytes / 2**20, 1) if nbytes is not None else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "batch_s": round(min(runs), 3), "batch_points_per_s": round(n / min(runs)),
            "single_us": {"p50": round(percentile(single, 50), 1),
                          "p95": round(percentile(single, 95), 1)}}


RESULT_TMP = Path(tempfile.gettempdir()) / f"citygrid-lookup-edges-{os.getpid()}"


def run_outside(db: str, province: bool, n: int) -> dict:
    out = {}
    for variant in ("strtree", "arrays"):
        args = [PYTHON, "-m", "bench.lookup_edges", "_outside", variant, "--db", db, "--n",
                str(n), "--tmp", str(RESULT_TMP)] + (["--province"] if province else [])
        done = subprocess.run(args, check=True, capture_output=True, text=True)
        out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    old = np.load(RESULT_TMP.with_suffix(".strtree.npz"))
    new = np.load(RESULT_TMP.with_suffix(".arrays.npz"))
    same_point = bool(np.array_equal(old["ends"], new["ends"]))
    other = int((old["owner"] != new["owner"]).sum())
    for variant in ("strtree", "arrays"):
        RESULT_TMP.with_suffix(f".{variant}.npz").unlink()
    scale = "province" if province else db
    o, a = out["strtree"], out["arrays"]
    print(f"{scale}: {a['edges']:,} outline edges, {n:,} points outside every grid")
    for name, r in (("STRtree of LineStrings (baseline)", o), ("edge arrays (gis.edges)", a)):
        print(f"  {name}: build {r['build_s']} s, +{r['rss_build_mb']} MB resident "
              f"(arrays {r['index_mb']} MB), process peak {r['peak_rss_mb']} MB; batch "
              f"{r['batch_points_per_s']:,} points/s; single p50 {r['single_us']['p50']} µs "
              f"p95 {r['single_us']['p95']} µs")
    print(f"  same nearest point for every point: {same_point}; another (tied) grid named for "
          f"{other:,} points ({other / n:.2%})")
    if not same_point:
        raise SystemExit("the edge index and the baseline disagree")
    return out | {"points": n, "same_nearest_point": same_point, "tie_differs": other}


def main() -> None:
    import sys

    argv = sys.argv[1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", choices=("uncertainty", "outside", "_outside"),
                    default="uncertainty")
    ap.add_argument("variant", nargs="?", default=None)
    ap.add_argument("--db", default="citygrid_test")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--province", action="store_true")
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args(argv)
    if a.what == "_outside":
        global RESULT_TMP
        RESULT_TMP = Path(a.tmp)
        print(json.dumps(_outside_child(a.variant, a.db, a.province, a.n)))
    elif a.what == "outside":
        result = run_outside(a.db, a.province, a.n or 200_000)
        save("lookup_edges_outside" + ("_province" if a.province else ""),
             {"machine": machine(), **result})
    else:
        run(a.db, a.n or 2000)


if __name__ == "__main__":
    main()
