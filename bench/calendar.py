"""Due times on working time for 100k cases: the vectorised form beside the day-by-day walk.

    .venv/bin/python -m bench.calendar [--cases 100000] [--repeat 3] [--db citygrid_test]

The cases are received at random instants of 2025–2026 (uniform, nights and holidays included),
with limits of 2–240 working hours (the catalogue's steps: FAST to SLOW totals) or 1–10 working
days, on the real 2025/2026 calendar (data/holidays) and office hours 08:30–12:00, 13:30–17:30.
Both sides compute the same deadlines; the answers are compared. The calendar-hours line (what
due_at cost before: received + limit) is the floor. No database: the arithmetic only (bulk
intake calls :func:`add_work_seconds_many` once per file).

With ``--db``, also the traffic light (``workflow.light_sql``) of every open incident of that
database, counted per colour, with every category on calendar hours and then on working hours
(``citygrid_work_seconds`` per row), inside one transaction that is rolled back (a database
without incidents gets the demo's generator's 20,000 first, rolled back too).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from bench.common import best_of
from layers.incidents.calendar import (
    WorkCalendar,
    add_work_seconds,
    add_work_seconds_many,
    check_days,
)

HOLIDAYS = Path(__file__).resolve().parent.parent / "data" / "holidays"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def demo_calendar() -> WorkCalendar:
    overrides = {}
    for path in sorted(HOLIDAYS.glob("cn-*.csv")):
        with path.open(encoding="utf-8") as f:
            good, _ = check_days(csv.DictReader(f), first_row=2)
        overrides.update({r["date"]: r["kind"] == "workday" for r in good})
    return WorkCalendar(ZoneInfo("Asia/Shanghai"), ((time(8, 30), time(12)),
                                                    (time(13, 30), time(17, 30))), overrides)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    if args.db:
        lights(args.db, args.repeat)
    cal = demo_calendar()
    rng = np.random.default_rng(16)
    lo = (datetime(2025, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
    hi = (datetime(2026, 12, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
    starts = rng.integers(lo, hi, args.cases, dtype=np.int64)
    days = rng.random(args.cases) < 0.5
    seconds = np.where(days, rng.integers(1, 11, args.cases) * cal.day_seconds,
                       rng.uniform(2, 240, args.cases) * 3600.0)

    def vectorised() -> np.ndarray:
        return add_work_seconds_many(cal, starts, seconds)

    def walk() -> np.ndarray:
        out = np.empty(args.cases, dtype=np.int64)
        for i, (s, d) in enumerate(zip(starts.tolist(), seconds.tolist(), strict=True)):
            t = EPOCH + timedelta(microseconds=s)
            out[i] = (add_work_seconds(cal, t, d) - EPOCH) // timedelta(microseconds=1)
        return out

    def calendar_hours() -> np.ndarray:
        return starts + np.rint(seconds * 1e6).astype(np.int64)

    def best(fn: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
        t, _, out = best_of(fn, repeat)  # bench.common's one timing helper
        return t, out

    t_vec, a = best(vectorised, args.repeat)
    t_walk, b = best(walk, 1)
    t_hours, _ = best(calendar_hours, args.repeat)
    print(json.dumps({"cases": args.cases, "vectorised_s": round(t_vec, 4),
                      "day_by_day_s": round(t_walk, 3), "calendar_hours_s": round(t_hours, 5),
                      "speedup": round(t_walk / t_vec, 1), "answers_equal": bool((a == b).all())}))


def lights(db: str, repeat: int) -> None:
    from sqlalchemy import create_engine, text

    from app import devdb
    from layers.incidents.workflow import OPEN_STATES, light_sql

    sql = text(f"SELECT {light_sql('i', 'c')} AS light, count(*) FROM incident i "
               "JOIN category c ON c.id = i.category_id WHERE i.state = ANY(:open) GROUP BY 1 "
               "ORDER BY 1")
    out: dict[str, object] = {"db": db}
    with create_engine(devdb.url(db)).connect() as conn:
        tx = conn.begin()
        if not conn.execute(text("SELECT EXISTS (SELECT FROM incident)")).scalar():
            from app.seed_incidents import load_demo_incidents

            load_demo_incidents(conn, n=20_000)  # rolled back with the rest
            conn.execute(text("ANALYZE incident"))
        out["open"] = conn.execute(text("SELECT count(*) FROM incident WHERE state = ANY(:o)"),
                                   {"o": sorted(OPEN_STATES)}).scalar()
        for unit in ("hours", "work_hours"):
            conn.execute(text("UPDATE category SET limit_unit = :u"), {"u": unit})
            t, _, rows = best_of(
                lambda: conn.execute(sql, {"open": sorted(OPEN_STATES)}).all(), repeat)
            out[f"{unit}_s"] = round(t, 4)
            out[f"{unit}_lights"] = {str(r[0]): r[1] for r in rows}
        tx.rollback()
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
