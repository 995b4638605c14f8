"""Working time: the calendar arithmetic (pure, with the real 2025/2026 schedule), the SQL
function beside it, and due dates, extensions, lights and 按期结案 of categories on working time,
on the demo city in the real PostGIS."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from grids.access import Principal
from grids.errors import ImportRejected
from grids.locate import load_snapshot
from layers.incidents import calendar, catalogue, handling, intake
from layers.incidents.calendar import (
    WorkCalendar,
    add_work_seconds,
    add_work_seconds_many,
    deadline,
    work_seconds_between,
)
from layers.incidents.workflow import light, light_sql

TZ = ZoneInfo("Asia/Shanghai")  # the demo city's zone (tests may name it)
HOLIDAYS = Path(__file__).resolve().parents[2] / "data" / "holidays"
OFFICE = ((time(8, 30), time(12)), (time(13, 30), time(17, 30)))
SYSTEM = Principal.system("test")


def _overrides() -> dict[date, bool]:
    out = {}
    for path in sorted(HOLIDAYS.glob("cn-*.csv")):
        with path.open(encoding="utf-8") as f:
            good, errors = calendar.check_days(csv.DictReader(f), first_row=2)
        assert not errors, (path, errors)
        out.update({r["date"]: r["kind"] == "workday" for r in good})
    return out


CAL = WorkCalendar(TZ, OFFICE, _overrides())
NO_MAKEUP = WorkCalendar(TZ, OFFICE, {d: w for d, w in CAL.overrides.items()
                                      if d != date(2025, 10, 11)})


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


# -- the data ----------------------------------------------------------------------------------------
def test_the_notices_give_248_workdays_a_year() -> None:
    for year in (2025, 2026):
        days = [date(year, 1, 1) + timedelta(days=i) for i in range(365)]
        assert sum(CAL.is_workday(d) for d in days) == 248
    assert not CAL.is_workday(date(2025, 10, 8)) and CAL.is_workday(date(2025, 10, 11))
    assert CAL.is_workday(date(2026, 2, 14)) and not CAL.is_workday(date(2026, 2, 23))


# -- the arithmetic ----------------------------------------------------------------------------------
def test_three_working_days_from_the_afternoon_before_national_day() -> None:
    received = local(2025, 9, 30, 15)  # Tuesday afternoon; Oct 1-8 off, Sat Oct 11 worked
    due = deadline(CAL, received, 3, "work_days")
    # 2.5 h on Sep 30, 7.5 h on Oct 9 and Oct 10, 5 h on the make-up Saturday Oct 11
    assert due == local(2025, 10, 11, 15)
    assert deadline(NO_MAKEUP, received, 3, "work_days") == local(2025, 10, 13, 15)
    assert deadline(CAL, received, 72, "hours") == local(2025, 10, 3, 15)


def test_a_case_spanning_a_weekend() -> None:
    friday = local(2025, 9, 5, 16)
    assert deadline(CAL, friday, 4, "work_hours") == local(2025, 9, 8, 11)  # 1.5 h + 2.5 h
    assert deadline(CAL, friday, 1, "work_days") == local(2025, 9, 8, 16)
    assert work_seconds_between(CAL, friday, local(2025, 9, 8, 11)) == 4 * 3600
    # received on Saturday: the clock starts on Monday morning
    assert deadline(CAL, local(2025, 9, 6, 10), 2, "work_hours") == local(2025, 9, 8, 10, 30)


def test_working_hours_skip_lunch() -> None:
    assert deadline(CAL, local(2025, 9, 3, 11), 2, "work_hours") == local(2025, 9, 3, 14, 30)
    # a limit that ends with the morning ends at noon, not at 13:30
    assert deadline(CAL, local(2025, 9, 3, 11), 1, "work_hours") == local(2025, 9, 3, 12)
    assert deadline(CAL, local(2025, 9, 3, 12, 30), 1, "work_hours") == local(2025, 9, 3, 14, 30)
    assert work_seconds_between(CAL, local(2025, 9, 3, 11), local(2025, 9, 3, 14)) == 5400


def test_extensions_are_office_hours() -> None:
    due = deadline(CAL, local(2025, 9, 30, 15), 3, "work_days")
    assert calendar.extend(CAL, due, 4, "work_days") == local(2025, 10, 13, 10)
    assert deadline(CAL, local(2025, 9, 30, 15), 3, "work_days", 4) == local(2025, 10, 13, 10)


def test_the_light_turns_yellow_at_80_percent_of_office_time() -> None:
    since = local(2025, 9, 5, 8, 30)  # Friday; the step has 10 working hours
    at = {h: light("handling", since, {"handle": 10}, 0, now, unit="work_hours", calendar=CAL)
          for h, now in {7.5: local(2025, 9, 5, 17, 30), 8.5: local(2025, 9, 8, 9, 30),
                         10.5: local(2025, 9, 8, 11, 30)}.items()}
    assert at == {7.5: "green", 8.5: "yellow", 10.5: "red"}
    # the weekend does not count: Sunday evening is still green
    assert light("handling", since, {"handle": 10}, 0, local(2025, 9, 7, 20),
                 unit="work_hours", calendar=CAL) == "green"


START = st.datetimes(min_value=datetime(2024, 12, 1), max_value=datetime(2026, 12, 31),
                     timezones=st.just(TZ))
MINUTES = st.integers(min_value=0, max_value=60 * 24 * 40)


@settings(max_examples=200, deadline=None)
@given(START, MINUTES, MINUTES)
def test_adding_a_then_b_is_adding_a_plus_b(t: datetime, a: int, b: int) -> None:
    one = add_work_seconds(CAL, add_work_seconds(CAL, t, a * 60), b * 60)
    assert one == add_work_seconds(CAL, t, (a + b) * 60)


@settings(max_examples=200, deadline=None)
@given(START, MINUTES, MINUTES)
def test_later_limits_end_no_earlier(t: datetime, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert add_work_seconds(CAL, t, lo * 60) <= add_work_seconds(CAL, t, hi * 60)
    assert add_work_seconds(CAL, t, lo * 60) >= t
    if a:  # the office time between the start and the deadline is the limit
        assert work_seconds_between(CAL, t, add_work_seconds(CAL, t, a * 60)) == a * 60


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(START, st.floats(min_value=0, max_value=3600 * 24 * 60)),
                min_size=1, max_size=50))
def test_the_vectorised_form_agrees_with_the_day_by_day_walk(cases: list) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    us = np.array([(t - epoch) // timedelta(microseconds=1) for t, _ in cases])
    out = add_work_seconds_many(CAL, us, np.array([s for _, s in cases]))
    walked = [(add_work_seconds(CAL, t, s) - epoch) // timedelta(microseconds=1)
              for t, s in cases]
    assert out.tolist() == walked


# -- the database --------------------------------------------------------------------------------------
def test_the_migration_loads_the_notices(conn: Connection) -> None:
    cal = calendar.load(conn)
    assert cal.overrides == CAL.overrides and cal.office == OFFICE
    assert cal.tz.key == "Asia/Shanghai"


def test_the_sql_function_agrees_with_python(conn: Connection) -> None:
    rng = np.random.default_rng(16)
    base = local(2025, 9, 20).timestamp()
    spans = []
    for _ in range(300):
        a = datetime.fromtimestamp(base + rng.uniform(0, 400 * 86400), TZ)
        spans.append((a, a + timedelta(seconds=float(rng.uniform(-3600, 90 * 86400)))))
    spans.append((local(2025, 9, 30, 15), local(2025, 10, 11, 15)))
    got = conn.execute(text(
        "SELECT citygrid_work_seconds(a, b) FROM unnest(CAST(:a AS timestamptz[]), "
        "CAST(:b AS timestamptz[])) AS s(a, b)"),
        {"a": [a for a, _ in spans], "b": [b for _, b in spans]}).scalars().all()
    assert got == pytest.approx([work_seconds_between(CAL, a, b) for a, b in spans], abs=1e-6)
    assert got[-1] == 3 * 7.5 * 3600


def test_import_lists_bad_rows_and_writes_nothing(conn: Connection) -> None:
    before = calendar.read_year(conn, 2026, principal=SYSTEM)
    bad = ("date,kind,name\n2026-10-01,holiday,国庆节\n2026-13-01,holiday,x\n"
           "2026-10-02,vacation,国庆节\n2026-10-01,holiday,again\n2027-01-01,holiday,元旦\n")
    with pytest.raises(ImportRejected) as err:
        calendar.import_csv(conn, bad.encode(), principal=SYSTEM)
    problems = [(e["row"], e["field"]) for e in err.value.detail["errors"]]
    assert problems == [(3, "date"), (4, "kind"), (5, "date")]
    assert calendar.read_year(conn, 2026, principal=SYSTEM) == before

    good = "\ufeffdate,kind,name\n2026-10-01,holiday,国庆节\n2026-10-10,workday,调休\n"
    assert calendar.import_csv(conn, good.encode(), principal=SYSTEM) == {
        "years": [2026], "rows": 2}
    after = calendar.read_year(conn, 2026, principal=SYSTEM)
    assert [d["date"] for d in after["days"]] == [date(2026, 10, 1), date(2026, 10, 10)]
    assert after["workdays"] == 261 - 1 + 1
    assert calendar.read_year(conn, 2025, principal=SYSTEM)["workdays"] == 248  # untouched


def _work_category(conn: Connection, unit: str, limits: dict[str, float]) -> None:
    cat = catalogue.get_category(conn, "E0101")
    catalogue.save_category(conn, code="E0101", parent_code=cat["parent_code"],
                            name=cat["name"], name_en=cat["name_en"], family=cat["family"],
                            department=cat["department"], routing=cat["routing"], limits=limits,
                            limit_unit=unit, principal=SYSTEM)


THREE_DAYS = {"register": 0.25, "dispatch": 0.25, "accept": 0.5, "handle": 1.5, "verify": 0.25,
              "close": 0.25}


def _spot(conn: Connection) -> tuple[float, float]:
    return tuple(conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE level = 'grid' ORDER BY code LIMIT 1")).one())


def test_intake_extension_and_close_on_working_days(conn: Connection) -> None:
    _work_category(conn, "work_days", THREE_DAYS)
    lon, lat = _spot(conn)
    snap = load_snapshot(conn)
    received = local(2025, 9, 30, 15)
    made, _ = intake.create(conn, snap, {
        "source": "hotline_12345", "external_id": "cal-guoqing", "category": "E0101",
        "lon": lon, "lat": lat, "received_at": received}, principal=SYSTEM)
    due = conn.execute(text("SELECT due_at FROM incident WHERE id = :i"),
                       {"i": made["id"]}).scalar_one()
    assert due == local(2025, 10, 11, 15)
    for action in ("register", "dispatch"):
        handling.act(conn, made["id"], action, principal=SYSTEM)
    out = handling.act(conn, made["id"], "extend", hours=4, principal=SYSTEM)
    assert out["due_at"] == local(2025, 10, 13, 10) and out["extension_hours"] == 4
    for action in ("accept", "report", "verify", "close"):
        out = handling.act(conn, made["id"], action, principal=SYSTEM)
    assert out["closed_on_time"] is False  # closed today, long after Oct 13 2025


def test_closed_on_time_follows_due_at(conn: Connection) -> None:
    _work_category(conn, "work_hours", {**THREE_DAYS, "handle": 20})
    lon, lat = _spot(conn)
    made, _ = intake.create(conn, load_snapshot(conn), {
        "source": "hotline_12345", "external_id": "cal-ontime", "category": "E0101",
        "lon": lon, "lat": lat}, principal=SYSTEM)
    row = conn.execute(text("SELECT received_at, due_at FROM incident WHERE id = :i"),
                       {"i": made["id"]}).one()
    assert row.due_at == deadline(CAL, row.received_at, 21.5, "work_hours")
    for action in ("register", "dispatch", "accept", "report", "verify", "close"):
        out = handling.act(conn, made["id"], action, principal=SYSTEM)
    assert out["closed_on_time"] is True


def test_the_sql_light_matches_python_on_working_time(conn: Connection) -> None:
    _work_category(conn, "work_hours", {**THREE_DAYS, "handle": 6})
    lon, lat = _spot(conn)
    made, _ = intake.create(conn, load_snapshot(conn), {
        "source": "hotline_12345", "external_id": "cal-light", "category": "E0101",
        "lon": lon, "lat": lat}, principal=SYSTEM)
    for action in ("register", "dispatch", "accept"):
        handling.act(conn, made["id"], action, principal=SYSTEM)
    now = conn.execute(text("SELECT now()")).scalar_one()
    seen = set()
    for hours_ago in (1, 5, 8, 20, 30, 50, 70, 100, 150, 200, 300):
        since = now - timedelta(hours=hours_ago)
        conn.execute(text("UPDATE incident SET state_since = :s WHERE id = :i"),
                     {"s": since, "i": made["id"]})
        sql = conn.execute(text(f"SELECT {light_sql('i', 'c')} FROM incident i JOIN category c "
                                "ON c.id = i.category_id WHERE i.id = :i"),
                           {"i": made["id"]}).scalar_one()
        py = light("handling", since, {"handle": 6}, 0, now, unit="work_hours", calendar=CAL)
        assert sql == py, hours_ago
        seen.add(sql)
    assert seen == {"green", "red"} or "yellow" in seen


def test_bulk_intake_puts_due_dates_on_working_time(conn: Connection) -> None:
    import pandas as pd

    _work_category(conn, "work_days", THREE_DAYS)
    lon, lat = _spot(conn)
    times = [local(2025, 9, 30, 15), local(2025, 10, 3, 9), local(2026, 2, 13, 17),
             local(2026, 9, 30, 23, 59)]
    frame = pd.DataFrame([{"source": "hotline_12345", "external_id": f"cal-bulk-{n * 2 + k}",
                           "category": cat, "lon": repr(lon), "lat": repr(lat),
                           "received_at": t.isoformat()}
                          for n, t in enumerate(times) for k, cat in enumerate(("E0101", "E0502"))],
                         dtype=str)
    frame = intake.read_bulk(frame.to_csv(index=False).encode())
    out = intake.bulk(conn, load_snapshot(conn), frame, principal=SYSTEM)
    assert out["imported"] == len(times) * 2
    got = dict(conn.execute(text(
        "SELECT external_id, due_at FROM incident WHERE external_id LIKE 'cal-bulk-%'")).all())
    for n, t in enumerate(times):
        assert got[f"cal-bulk-{n * 2}"] == deadline(CAL, t, 3, "work_days")  # E0101, working days
        assert got[f"cal-bulk-{n * 2 + 1}"] == t + timedelta(hours=52)  # E0502: FAST, calendar hours
