"""Patrol coverage of all grids of a street for one day, against two naive baselines.

Run after ``citygrid demo load`` and :func:`data.patrols.load_demo_patrols` (the demo covers
稠城街道 and 江东街道)::

    .venv/bin/python -m bench.patrol_coverage [--street CODE] [--day 2026-11-28]

- **ours**: :func:`layers.patrols.coverage.coverage` end to end (read the window's fixes, filter
  them into tracks, buffer the pieces of each shift's line near the street in the city's metric CRS, union
  them once, intersect each grid, last patrolled, totals).
- **naive shapely**: buffer every raw fix as a 50 m disc, union them all, intersect each grid.
- **naive PostGIS**: per grid, ``ST_Union`` of the 50 m buffers (the city's metric CRS) of the unfiltered
  per-worker lines (``ST_MakeLine`` over ordered fixes) that touch it, intersected with the grid.

Prints the best of 3 wall times, the ratio and the mean patrolled share of each, and writes
``bench/results/patrol_coverage.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime

import numpy as np
import shapely
from sqlalchemy import create_engine, text

from app.settings import get_settings
from bench.common import RESULTS
from gis.transform import transformer
from grids.access import Principal
from grids.city import profile
from layers.patrols.coverage import coverage, visible_grids


def best(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def naive_shapely(conn, street: str, since: datetime, until: datetime, buffer_m: float):
    grids = visible_grids(conn, street, principal=Principal.system())
    x0, y0, x1, y1 = grids.box
    pad = 0.02
    rows = conn.execute(text(
        "SELECT ST_X(geom), ST_Y(geom) FROM patrol_fix WHERE at >= :s AND at < :u "
        "AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)"),
        {"s": since, "u": until, "x0": x0 - pad, "y0": y0 - pad, "x1": x1 + pad,
         "y1": y1 + pad}).all()
    xy = np.array(rows, dtype=float).reshape(-1, 2)
    x, y = transformer("EPSG:4490", profile(conn).metric_crs).transform(xy[:, 0], xy[:, 1])
    cover = shapely.union_all(shapely.buffer(shapely.points(x, y), buffer_m))
    return shapely.area(shapely.intersection(grids.geom, cover)) / shapely.area(grids.geom)


NAIVE_SQL = """
WITH g AS (SELECT code, ST_Transform(geom, (SELECT citygrid_metric_srid())) AS geom
           FROM region_current WHERE level = 'grid' AND code LIKE :p),
t AS (SELECT staff_id, ST_Buffer(ST_Transform(ST_MakeLine(geom ORDER BY at),
                                              (SELECT citygrid_metric_srid())), :b) AS geom
      FROM patrol_fix WHERE at >= :s AND at < :u AND geom && (
          SELECT ST_Expand(ST_Extent(geom), 0.02) FROM region_current
          WHERE level = 'grid' AND code LIKE :p)
      GROUP BY staff_id)
SELECT g.code, coalesce(ST_Area(ST_Intersection(g.geom, ST_Union(t.geom))) / ST_Area(g.geom), 0)
FROM g LEFT JOIN t ON ST_Intersects(g.geom, t.geom) GROUP BY g.code, g.geom
"""


def naive_postgis(conn, street: str, since: datetime, until: datetime, buffer_m: float):
    rows = conn.execute(text(NAIVE_SQL), {"p": street[:9] + "%", "s": since, "u": until,
                                          "b": buffer_m}).all()
    return np.array([r[1] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--street", default=None, help="street code (default: the first street)")
    ap.add_argument("--day", type=date.fromisoformat,
                    default=None, help="a city day (default: yesterday)")
    ap.add_argument("--buffer", type=float, default=50.0)
    ap.add_argument("--skip-postgis", action="store_true")
    args = ap.parse_args()
    eng = create_engine(get_settings().db.owner_url)
    with eng.connect() as conn:
        tz = profile(conn).tz
        day = args.day or datetime.now(tz).date() - timedelta(days=1)
        since = datetime.combine(day, dtime(0), tz)
        until = since + timedelta(days=1)
        if args.street is None:
            args.street = conn.execute(text(
                "SELECT code FROM region_current WHERE level = 'street' ORDER BY code LIMIT 1"
            )).scalar_one()
        n = conn.execute(text("SELECT count(*) FROM patrol_fix WHERE at >= :s AND at < :u "
                              "AND staff_id IN (SELECT a.staff_id FROM assignment a JOIN region r "
                              "ON r.id = a.region_id WHERE r.code LIKE :p)"),
                         {"s": since, "u": until, "p": args.street[:9] + "%"}).scalar()
        ours_t, ours = best(lambda: coverage(conn, region=args.street, since=since, until=until,
                                             buffer_m=args.buffer, principal=Principal.system()))
        naive_t, naive = best(lambda: naive_shapely(conn, args.street, since, until, args.buffer))
        result = {"street": args.street, "day": day.isoformat(), "fixes": n,
                  "grids": len(ours["grids"]), "ours_s": round(ours_t, 3),
                  "ours_mean_share": round(float(np.mean([g["share"] for g in ours["grids"]])), 4),
                  "naive_shapely_s": round(naive_t, 3),
                  "naive_shapely_mean_share": round(float(np.mean(naive)), 4),
                  "ratio_naive_shapely": round(naive_t / ours_t, 1)}
        if not args.skip_postgis:
            pg_t, pg = best(lambda: naive_postgis(conn, args.street, since, until, args.buffer),
                            repeat=1)
            result.update(naive_postgis_s=round(pg_t, 3),
                          naive_postgis_mean_share=round(float(np.mean(pg)), 4),
                          ratio_naive_postgis=round(pg_t / ours_t, 1))
    print(json.dumps(result, indent=2))
    (RESULTS / "patrol_coverage.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
