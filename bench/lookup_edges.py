"""What stating a lookup's uncertainty costs, in process: the plain answer (the cached bytes
``/locate`` sends) beside the same answer plus ``detail=edges`` (metres to the grid's edge, the
runner-up grid, the WGS84/GCJ-02 reading), for random points inside grids of the demo city.

    python -m bench.lookup_edges [--db citygrid_test] [--n 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import shapely
from sqlalchemy import create_engine

from app import devdb
from bench.common import percentile
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="citygrid_test")
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    run(a.db, a.n)


if __name__ == "__main__":
    main()
