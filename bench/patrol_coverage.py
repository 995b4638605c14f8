"""Patrol coverage of all grids of a street for one day, beside two baselines doing the same work.

Run after ``citygrid demo load`` (the demo's patrols cover 稠城街道 and 江东街道)::

    .venv/bin/python -m bench.patrol_coverage [--street 330782002000] [--day 2026-11-28]

Every side does the same work on the same input and its answer is compared with ours:

1. read the window's fixes around the street's grids (:func:`~layers.patrols.coverage.window_fixes`:
   the same envelope, the same filtering into tracks: drift, jumps and jitter dropped);
2. the area of each grid within ``buffer_m`` of the kept tracks (buffers with 8 segments a
   quarter circle), in the city's metric CRS;
3. the share of each grid.

- **ours**: :func:`layers.patrols.coverage.coverage` end to end (step 2 cuts tracks into pieces,
  buffers only the pieces near the grids, unions once, intersects each grid), with its pool of
  2 threads, and again with 1 thread (the baselines are single-threaded).
- **plain shapely**: step 1 as ours, then each whole track buffered, all buffers unioned,
  intersected with each grid.
- **PostGIS**: step 1 as ours, the tracks sent as WKB, then in SQL per grid
  ``ST_Intersection(grid, ST_Union(ST_Buffer(track)))`` over the tracks that come near it.

Prints the best of ``--repeat`` (3) wall times (PostGIS: 1 run, bounded by ``--postgis-timeout``,
600 s by default: past it the line says so), each ratio to ours, and the largest per-grid
difference in share from ours; writes ``bench/results/patrol_coverage.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, create_engine, text

from app.settings import get_settings
from bench.common import RESULTS, best_of
from grids.access import Principal
from grids.city import profile
from layers.patrols import coverage as cov
from layers.patrols.tracks import KEPT, lines


def best(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    t, _, out = best_of(fn, repeat)
    return t, out


def kept_tracks(conn: Connection, street: str, since: datetime, until: datetime,
                buffer_m: float) -> tuple[cov.Grids, np.ndarray]:
    """Step 1, as ours does it: the street's grids and the whole kept tracks (metric CRS)."""
    grids = cov.visible_grids(conn, street, principal=Principal.system())
    fx = cov.window_fixes(conn, grids, since, until, buffer_m)
    kept = fx.status == KEPT
    _, tracks = lines(fx.track_keys()[kept], fx.x[kept], fx.y[kept])
    return grids, tracks


def plain_shapely(conn: Connection, street: str, since: datetime, until: datetime,
                  buffer_m: float) -> np.ndarray:
    grids, tracks = kept_tracks(conn, street, since, until, buffer_m)
    if tracks.size == 0:
        return np.zeros(len(grids.geom))
    cover = shapely.union_all(shapely.buffer(tracks, buffer_m, quad_segs=8))
    return shapely.area(shapely.intersection(grids.geom, cover)) / shapely.area(grids.geom)


POSTGIS_SQL = """
WITH t AS (SELECT ST_Buffer(ST_GeomFromWKB(w), :b, 'quad_segs=8') AS geom
           FROM unnest(CAST(:tracks AS bytea[])) w),
g AS (SELECT k, ST_GeomFromWKB(w) AS geom FROM unnest(CAST(:grids AS bytea[])) WITH ORDINALITY u(w, k))
SELECT g.k, coalesce(ST_Area(ST_Intersection(g.geom, ST_Union(t.geom))) / ST_Area(g.geom), 0)
FROM g LEFT JOIN t ON ST_Intersects(g.geom, t.geom) GROUP BY g.k, g.geom ORDER BY g.k
"""


def postgis(conn: Connection, street: str, since: datetime, until: datetime,
            buffer_m: float, timeout_s: float = 0) -> np.ndarray | None:
    """The PostGIS answer, or None if the statement ran past ``timeout_s`` (0: no bound)."""
    from sqlalchemy.exc import OperationalError

    grids, tracks = kept_tracks(conn, street, since, until, buffer_m)
    try:
        with conn.begin_nested() if conn.in_transaction() else conn.begin():
            if timeout_s:  # undone with the savepoint
                conn.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}"))
            rows = conn.execute(text(POSTGIS_SQL), {
                "b": buffer_m, "tracks": [bytes(w) for w in shapely.to_wkb(tracks)],
                "grids": [bytes(w) for w in shapely.to_wkb(grids.geom)]}).all()
    except OperationalError as exc:  # QueryCanceled: the bound was reached
        # PostGIS interrupts GEOS on the timeout, and the server may then report the cancel as
        # "due to user request" rather than "due to statement timeout": either is the bound.
        if not (timeout_s and "canceling statement" in str(exc)):
            raise
        return None
    return np.array([r[1] for r in rows], dtype=float)


def ours(conn: Connection, street: str, since: datetime, until: datetime,
         buffer_m: float) -> np.ndarray:
    out = cov.coverage(conn, region=street, since=since, until=until, buffer_m=buffer_m,
                       principal=Principal.system())
    return np.array([g["patrolled_m2"] / g["area_m2"] for g in out["grids"]])


def single_threaded(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with the coverage module's pool cut to one thread."""
    def run() -> Any:
        threads, pool = cov.THREADS, cov._POOL
        cov.THREADS, cov._POOL = 1, ThreadPoolExecutor(1)
        try:
            return fn()
        finally:
            cov._POOL.shutdown()
            cov.THREADS, cov._POOL = threads, pool
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--street", default="330782001000")
    ap.add_argument("--day", type=date.fromisoformat, default=None,
                    help="a day in the city's time zone (default: yesterday there)")
    ap.add_argument("--buffer", type=float, default=50.0)
    ap.add_argument("--skip-postgis", action="store_true", help="leave out the PostGIS baseline")
    ap.add_argument("--postgis-timeout", type=float, default=600.0,
                    help="seconds the PostGIS statement may run (0: no bound); past it the "
                         "line says so instead of a time")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours and plain shapely")
    args = ap.parse_args()
    street, b = args.street, args.buffer
    eng = create_engine(get_settings().db.owner_url)
    with eng.connect() as conn:
        tz = profile(conn).tz  # the city's zone: a day starts at its midnight
        day = args.day or datetime.now(tz).date() - timedelta(days=1)
        since = datetime.combine(day, dtime(0), tz)
        until = since + timedelta(days=1)
        grids, tracks = kept_tracks(conn, street, since, until, b)
        ours_t, mine = best(lambda: ours(conn, street, since, until, b), args.repeat)
        one_t, _ = best(single_threaded(lambda: ours(conn, street, since, until, b)),
                        args.repeat)
        plain_t, plain = best(lambda: plain_shapely(conn, street, since, until, b), args.repeat)
        result: dict[str, Any] = {
            "street": street, "day": day.isoformat(), "grids": len(grids.geom),
            "kept_tracks": int(tracks.size), "buffer_m": b,
            "ours_s": round(ours_t, 3), "ours_1_thread_s": round(one_t, 3),
            "ours_mean_share": round(float(mine.mean()), 4),
            "plain_shapely_s": round(plain_t, 3),
            "plain_shapely_vs_ours": round(plain_t / ours_t, 2),
            "plain_shapely_vs_ours_1_thread": round(plain_t / one_t, 2),
            "plain_shapely_max_share_diff": round(float(np.abs(plain - mine).max()), 6)}
        print(json.dumps(result), flush=True)  # a bounded PostGIS line may take long
        if not args.skip_postgis:
            conn.commit()
            pg_t, pg = best(lambda: postgis(conn, street, since, until, b,
                                            args.postgis_timeout), 1)
            if pg is None:
                result.update(postgis_s=None, postgis_note=(
                    f"did not finish within --postgis-timeout {args.postgis_timeout:g} s "
                    f"(> {args.postgis_timeout / ours_t:.0f}x ours)"))
            else:
                result.update(postgis_s=round(pg_t, 3), postgis_vs_ours=round(pg_t / ours_t, 2),
                              postgis_vs_ours_1_thread=round(pg_t / one_t, 2),
                              postgis_max_share_diff=round(float(np.abs(pg - mine).max()), 6))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "patrol_coverage.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
