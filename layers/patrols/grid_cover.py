"""Daily patrol coverage per grid, kept in ``patrol_grid_cover`` (migration 0010) for the map.

A grid tile carries each grid's patrol coverage beside its incident counts; computing coverage
for the thousands of grids of a low-zoom tile on each request would take seconds, so it is kept:

- **Day rows** (span ``'d'``): for a city day (its zone: ``grids.city``) and a grid, the share
  of the grid within :data:`BUFFER_M` of that day's filtered tracks and the time of the latest good fix in it:
  exactly what :func:`layers.patrols.coverage.coverage` gives for that day's window (a test holds
  them equal). Only grids that were patrolled get rows.
- **Month rows** (span ``'m'``): per grid, the sum of its daily shares over the month and its
  latest fix, rebuilt from the day rows whenever one of them changes.
- **When:** a trigger on ``patrol_fix`` notes each writing statement's days and lon/lat boxes in
  ``patrol_cover_stale`` (migration 0012), whoever wrote the fixes; :func:`refresh_stale` takes
  the notes and recomputes those days around those boxes (grown by
  :data:`~layers.patrols.coverage.MARGIN_M` and the buffer: a late fix can change the filtering
  of its neighbours and the segments next to it). The API's background worker
  (``app.coverage_worker``) calls it every ``CITYGRID_COVERAGE_REFRESH_S`` seconds; the demo
  loader calls it once. Recomputing inside the intake transaction made a phone's 20-fix batch
  take 330 ms instead of 2 ms.
- **Reading:** :func:`window_sql` sums whole months from month rows and the days around them
  from day rows; the figure is the **mean daily patrolled share** over the window's days
  (日均巡查覆盖率), since shares of unions over different days do not add up to a window's share.

Coverage is computed with the grids in force when it is computed; after a boundary change,
``citygrid coverage-refresh`` recomputes a range of days.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, text

from grids.city import profile
from layers.patrols import coverage as cov

BUFFER_M = 50.0
LonLatBox = tuple[float, float, float, float]


def city_day(t: datetime, tz: tzinfo) -> date:
    return t.astimezone(tz).date()


def _grids(conn: Connection, box: LonLatBox | None) -> cov.Grids | None:
    """The grids in force (all of them: this is the system's record, not a caller's view) whose
    box meets ``box`` grown by the buffer and the margin."""
    where, params = "TRUE", {}
    if box is not None:
        pad = (BUFFER_M + cov.MARGIN_M) * cov.DEG_PER_M
        where = "geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)"
        params = {"x0": box[0] - pad, "y0": box[1] - pad, "x1": box[2] + pad, "y1": box[3] + pad}
    rows = conn.execute(text(
        f"SELECT {cov.GRID_COLUMNS} FROM region_current WHERE level = 'grid' AND {where} "
        "ORDER BY code"), params).all()
    return cov.grids_of(rows) if rows else None


def day_rows(conn: Connection, day: date, box: LonLatBox | None, tz: tzinfo
             ) -> tuple[list[str], list[tuple[str, float, datetime | None]]] | None:
    """The day rows of ``day`` around ``box`` (None: every grid), computed but not written: the
    grids considered and ``(grid_code, share, last_fix_at)`` for those that were patrolled.
    None: no grid there. (:func:`refresh` writes them; ``layers.bulk`` runs days apart.)"""
    grids = _grids(conn, box)
    if grids is None:
        return None
    since = datetime.combine(day, time(0), tz)
    fx = cov.window_fixes(conn, grids, since, since + timedelta(days=1), BUFFER_M)
    parts = cov.covered_parts(grids.geom, fx, BUFFER_M)
    area = shapely.area(grids.geom)
    done = np.array([0.0 if p is None else shapely.area(p) for p in parts])
    last = cov.last_patrolled(grids.geom, fx)
    keep = [i for i in range(len(grids.code)) if done[i] > 0 or not np.isnan(last[i])]
    return grids.code, [
        (grids.code[i], min(1.0, float(done[i] / area[i])) if area[i] else 0.0,
         None if np.isnan(last[i]) else datetime.fromtimestamp(float(last[i]), UTC))
        for i in keep]


def write_day(conn: Connection, day: date, codes: list[str],
              rows: list[tuple[str, float, datetime | None]]) -> None:
    """Replace the day rows of ``day`` for ``codes`` by ``rows`` (see :func:`day_rows`)."""
    conn.execute(text("DELETE FROM patrol_grid_cover WHERE span = 'd' AND t0 = :d "
                      "AND grid_code = ANY(:codes)"), {"d": day, "codes": codes})
    if rows:
        conn.execute(text(
            "INSERT INTO patrol_grid_cover (span, t0, grid_code, share, last_fix_at) "
            "SELECT 'd', :d, c, s, l FROM unnest(CAST(:c AS text[]), CAST(:s AS real[]), "
            "CAST(:l AS timestamptz[])) AS u(c, s, l)"),
            {"d": day, "c": [r[0] for r in rows], "s": [r[1] for r in rows],
             "l": [r[2] for r in rows]})


def rebuild_months(conn: Connection, touched: Mapping[date, set[str]]) -> None:
    """Rebuild the month rows of ``touched`` (first of month → grid codes) from the day rows.

    The days are summed in date order: ``share`` is a ``real`` and a float sum depends on its
    order, which would otherwise be the rows' order on disk (days rewritten in another order,
    e.g. by ``layers.bulk``, gave sums differing in the last bit)."""
    for month, codes in touched.items():
        params = {"m": month, "codes": sorted(codes)}
        conn.execute(text("DELETE FROM patrol_grid_cover WHERE span = 'm' AND t0 = :m "
                          "AND grid_code = ANY(:codes)"), params)
        conn.execute(text(
            "INSERT INTO patrol_grid_cover (span, t0, grid_code, share, last_fix_at) "
            "SELECT 'm', :m, grid_code, sum(share ORDER BY t0), max(last_fix_at) "
            "FROM patrol_grid_cover "
            "WHERE span = 'd' AND t0 >= :m AND t0 < CAST(:m AS date) + interval '1 month' "
            "AND grid_code = ANY(:codes) GROUP BY grid_code"), params)


def refresh(conn: Connection, days: Mapping[date, LonLatBox | None]) -> dict[str, Any]:
    """Recompute the day rows of ``days`` (each with the box its new fixes fall in, or None for
    every grid) and the month rows over them. Returns ``{days, grids, rows}``."""
    touched: dict[date, set[str]] = {}
    tz = profile(conn).tz
    written = grids_done = 0
    for day, box in sorted(days.items()):
        got = day_rows(conn, day, box, tz)
        if got is None:
            continue
        codes, rows = got
        write_day(conn, day, codes, rows)
        written += len(rows)
        grids_done += len(codes)
        touched.setdefault(day.replace(day=1), set()).update(codes)
    rebuild_months(conn, touched)
    return {"days": len(days), "grids": grids_done, "rows": written}


# pg_try_advisory_xact_lock key: one refresher at a time across processes (two recomputing the
# same grid-days would collide on the primary key)
LOCK_KEY = 730_782_0012


def refresh_stale(conn: Connection, *, limit: int = 100_000) -> dict[str, Any] | None:
    """Recompute what the oldest ``limit`` notes of ``patrol_cover_stale`` ask for (their boxes
    merged per day) and delete them, in the caller's transaction. None: another refresher holds
    the lock; ``notes`` 0: nothing to do."""
    if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar():
        return None
    notes = conn.execute(text(
        "DELETE FROM patrol_cover_stale WHERE id IN (SELECT id FROM patrol_cover_stale "
        "ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING day, x0, y0, x1, y1"),
        {"n": limit}).all()
    boxes: dict[date, list[float]] = {}
    for n in notes:
        b = boxes.setdefault(n.day, [n.x0, n.y0, n.x1, n.y1])
        b[0], b[1], b[2], b[3] = min(b[0], n.x0), min(b[1], n.y0), max(b[2], n.x1), max(b[3], n.y1)
    done = refresh(conn, {d: (b[0], b[1], b[2], b[3]) for d, b in boxes.items()})
    return done | {"notes": len(notes)}


def refresh_range(conn: Connection, first: date, last: date) -> dict[str, Any]:
    """Recompute every grid for the days ``first`` to ``last`` (inclusive)."""
    n = (last - first).days + 1
    return refresh(conn, {first + timedelta(days=i): None for i in range(max(0, n))})


def window_days(since: datetime | None, until: datetime | None, *, tz: tzinfo,
                today: date | None = None) -> tuple[date, date]:
    """The city days (in ``tz``) a map window covers (first, last inclusive); no window: this
    month so far."""
    today = today or datetime.now(tz).date()
    if since is None and until is None:
        return today.replace(day=1), today
    last = city_day(until - timedelta(microseconds=1), tz) if until is not None else today
    first = city_day(since, tz) if since is not None else last.replace(day=1)
    return first, max(first, last)


def window_sql(first: date, last: date, params: dict[str, Any], *,
               alias: str = "c") -> tuple[str, int]:
    """A condition picking the rows of ``alias`` whose daily shares add up over the days
    ``first``..``last`` (whole months from month rows, the days around them from day rows),
    and the number of days to divide by."""
    months: list[date] = []
    m = first.replace(day=1)
    while m <= last:
        nxt = _next_month(m)
        if m >= first and nxt - timedelta(days=1) <= last:
            months.append(m)
        m = nxt
    ranges = [(first, last)]
    cond = []
    if months:
        params["cov_m"] = months
        cond.append(f"({alias}.span = 'm' AND {alias}.t0 = ANY(CAST(:cov_m AS date[])))")
        ranges = [(first, months[0] - timedelta(days=1)), (_next_month(months[-1]), last)]
    for n, (a, b) in enumerate(ranges):
        if a <= b:
            params |= {f"cov_a{n}": a, f"cov_b{n}": b}
            cond.append(f"({alias}.span = 'd' AND {alias}.t0 BETWEEN :cov_a{n} AND :cov_b{n})")
    return "(" + " OR ".join(cond) + ")", (last - first).days + 1


def _next_month(m: date) -> date:
    return (m.replace(day=1) + timedelta(days=32)).replace(day=1)
