"""Outside rows in a batch: what the nearest grid and distance (and the CITYGRID_MAX_OUTSIDE_M
check) cost, in process on the demo city.

    python -m bench.batch_outside [--db-url URL] [--n 200000]

Two CSV bodies through :func:`grids.batch.locate_csv`: ``n`` uniform points in the city's
bounding box (about 40 % fall outside the city) and the subset that falls inside. Baseline in the
same run for the nearest-grid search itself: a whole-grid STRtree ``query_nearest`` (what the
single lookup used before) against :meth:`Snapshot.nearest_many` (outline edges) on the same
outside points. Best of three each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import shapely
from sqlalchemy import create_engine

from app.settings import get_settings
from grids.access import Principal
from grids.batch import locate_csv
from grids.locate import load_snapshot


def _csv(lon: np.ndarray, lat: np.ndarray) -> bytes:
    rows = "".join(f"{i},2024-03-01 08:05:{i % 60:02d},{x:.6f},{y:.6f}\n"
                   for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)))
    return ("id,reported_at,lon,lat\n" + rows).encode()


def _best(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db-url", default=None)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    engine = create_engine(args.db_url or get_settings().db.database_url)
    with engine.connect() as conn:
        snap = load_snapshot(conn)
    snap.build_rasters(1e-4, 4e-4)
    x0, y0, x1, y1 = shapely.total_bounds(snap.areas.polygons)
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(x0, x1, args.n), rng.uniform(y0, y1, args.n)
    _, status = snap.locate_many(lon, lat)
    out = status == 2
    principal = Principal.system("bench")
    snap.nearest_many(lon[:1], lat[:1])  # build the edge index outside the timings
    for name, body in (("bbox", _csv(lon, lat)), ("in-city", _csv(lon[~out], lat[~out]))):
        t = _best(lambda b=body: b"".join(locate_csv(snap, b, crs="EPSG:4326",
                                                     principal=principal).chunks))
        print(f"locate_csv {name}: {t:.3f} s")
    pts = shapely.points(lon[out], lat[out])
    t_full = _best(lambda: snap.grids.tree.query_nearest(pts, all_matches=False))
    t_edges = _best(lambda: snap.nearest_many(lon[out], lat[out]))
    print(f"{int(out.sum())} outside points: whole-grid query_nearest {t_full:.3f} s, "
          f"nearest_many (edges, with distances) {t_edges:.3f} s")


if __name__ == "__main__":
    main()
