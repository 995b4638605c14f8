"""Recompute a range of days (a year) of daily patrol coverage per grid.

The single-process path is :func:`layers.patrols.grid_cover.refresh_range`: every day in turn,
then the month rows, in one transaction. Here the days are the partitions: each computes its day
rows with :func:`~layers.patrols.grid_cover.day_rows` (the same code) and writes them in its own
transaction (:func:`~layers.patrols.grid_cover.write_day`: the day's rows replaced at once, so a
day is either recomputed or as it was). The month rows are rebuilt from the day rows at the end
in one transaction (:func:`~layers.patrols.grid_cover.rebuild_months`); if a day failed, the
month rows are not rebuilt and the job is run again (it is idempotent).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import text

from grids.city import profile
from layers.bulk.runner import Db, Runner, as_db
from layers.patrols import grid_cover


def days_between(first: date, last: date) -> list[date]:
    """The days of ``first``..``last``, all of them (a day without fixes still has its old rows
    cleared, as :func:`~layers.patrols.grid_cover.refresh_range` does)."""
    return [first + timedelta(days=i) for i in range(max(0, (last - first).days + 1))]


def partition(db: Db, write: bool, day: date) -> dict[str, Any]:
    """One day: its rows computed (and, if ``write``, written in one transaction)."""
    with db.begin(read_only=not write) as conn:
        got = grid_cover.day_rows(conn, day, None, profile(conn).tz)
        if got is None:
            return {"day": day.isoformat(), "grids": [], "rows": []}
        codes, rows = got
        if write:
            grid_cover.write_day(conn, day, codes, rows)
    return {"day": day.isoformat(), "grids": codes, "rows": rows}


def recompute(db: Db | str, runner: Runner, first: date, last: date, *,
              write: bool = True) -> dict[str, Any]:
    """Recompute the days ``first``..``last`` on ``runner``; the month rows at the end.

    Returns ``{days, grids, rows, cover}`` where ``cover`` maps ``(day, grid)`` to
    ``(share, last_fix_at)``: the figures themselves, to compare paths.
    """
    db = as_db(db)
    days = days_between(first, last)
    got = runner.map(partition, [(d,) for d in days], db, write)
    touched: dict[date, set[str]] = {}
    cover: dict[tuple[str, str], tuple[float, Any]] = {}
    for day, part in zip(days, got, strict=True):
        if part["grids"]:
            touched.setdefault(day.replace(day=1), set()).update(part["grids"])
        for code, share, last_at in part["rows"]:
            cover[(part["day"], code)] = (share, last_at)
    if write:
        with db.begin() as conn:
            grid_cover.rebuild_months(conn, touched)
    return {"days": len(days), "grids": sum(len(p["grids"]) for p in got), "rows": len(cover),
            "cover": cover}


def stored(db: Db | str, first: date, last: date) -> dict[tuple[str, str, str], tuple[float, Any]]:
    """The rows of ``patrol_grid_cover`` over the range (day and month rows): to compare."""
    with as_db(db).begin(read_only=True) as conn:
        return {(r.span, r.t0.isoformat(), r.grid_code): (r.share, r.last_fix_at)
                for r in conn.execute(text(
                    "SELECT span, t0, grid_code, share, last_fix_at FROM patrol_grid_cover "
                    "WHERE t0 >= date_trunc('month', CAST(:a AS date)) AND t0 <= :b"),
                    {"a": first, "b": last})}
