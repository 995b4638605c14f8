"""Working time: the workday calendar, and time limits counted on it.

A day is a workday by the default rule (Monday to Friday) unless the calendar says otherwise:
``holiday`` rows (法定节假日, and the weekdays moved into a holiday) rest, ``workday`` rows
(调休上班, the weekend days worked to pay for them) work. Within a workday only the city's office
hours count (e.g. 08:30–12:00 and 13:30–17:30, local wall time in the city's zone).

A category's limits are in one of three units (``category.limit_unit``):

* ``hours``: calendar hours, the clock never stops (the default; what every limit meant before);
* ``work_hours``: hours of office time;
* ``work_days``: days of office time, one working day being one office day's length (7.5 h with
  the hours above), the way digital city-management systems run their timers in working minutes:
  a case received at 15:00 with one working day is due at 15:00 on the next workday.

Extensions (延时) are hours: calendar hours for an ``hours`` category, office hours otherwise.

The arithmetic is pure: a :class:`WorkCalendar` is passed in (:func:`load` reads it from the
database). :func:`add_work_seconds` walks day by day (one case at a time);
:func:`add_work_seconds_many` does the same for many cases at once with a table of office periods
and two binary searches (bulk intake, the bench). Both work in whole microseconds, so adding
``a`` then ``b`` equals adding ``a + b`` exactly.

In SQL, ``citygrid_work_seconds(a, b)`` (migration 0018) measures working time for the traffic
light (:func:`layers.incidents.workflow.light_sql`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.errors import GridError, ImportRejected

UNITS = ("hours", "work_hours", "work_days")
KINDS = ("holiday", "workday")
MAX_DAYS = 3660  # a deadline further than ten years away is a mistake, not a plan
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class CalendarError(GridError):
    code = "invalid_calendar"


@dataclass(frozen=True, eq=False)
class WorkCalendar:
    """Which days are workdays, and the office hours of a workday, in zone ``tz``.

    >>> cal = WorkCalendar(ZoneInfo("UTC"), ((time(9), time(12)), (time(13), time(17))),
    ...                    {date(2025, 10, 1): False, date(2025, 10, 11): True})
    >>> cal.is_workday(date(2025, 10, 1)), cal.is_workday(date(2025, 10, 11)), cal.day_seconds
    (False, True, 25200)
    """

    tz: ZoneInfo
    office: tuple[tuple[time, time], ...]
    overrides: Mapping[date, bool] = field(default_factory=dict)  # True: works, False: rests

    def is_workday(self, day: date) -> bool:
        return self.overrides.get(day, day.isoweekday() < 6)

    @property
    def day_seconds(self) -> int:
        return sum((e.hour * 3600 + e.minute * 60) - (s.hour * 3600 + s.minute * 60)
                   for s, e in self.office)

    def periods_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The office periods of ``day`` as aware datetimes (none on a rest day)."""
        if not self.is_workday(day):
            return []
        return [(datetime.combine(day, s, tzinfo=self.tz), datetime.combine(day, e, tzinfo=self.tz))
                for s, e in self.office]


# -- arithmetic ------------------------------------------------------------------------------------
def _us(seconds: float) -> int:
    return int(round(seconds * _US))


def add_work_seconds(cal: WorkCalendar, start: datetime, seconds: float) -> datetime:
    """The instant ``seconds`` of office time after ``start`` (day by day).

    Time outside office hours does not count; a deadline that uses up a period exactly is that
    period's end (12:00, not 13:30). Adding nothing (or less) returns ``start``.

    >>> cal = WorkCalendar(ZoneInfo("UTC"), ((time(8, 30), time(12)), (time(13, 30), time(17, 30))))
    >>> add_work_seconds(cal, datetime(2025, 9, 5, 11, tzinfo=UTC), 2 * 3600).isoformat()
    '2025-09-05T14:30:00+00:00'
    >>> add_work_seconds(cal, datetime(2025, 9, 5, 17, tzinfo=UTC), 3600).isoformat()  # Friday
    '2025-09-08T09:00:00+00:00'
    """
    remaining = _us(seconds)
    if remaining <= 0:
        return start
    day = start.astimezone(cal.tz).date()
    for _ in range(MAX_DAYS):
        for s, e in cal.periods_on(day):
            begin = max(s, start)
            if e > begin:
                avail = (e - begin) // timedelta(microseconds=1)
                if remaining <= avail:
                    return (begin + timedelta(microseconds=remaining)).astimezone(start.tzinfo)
                remaining -= avail
        day += timedelta(days=1)
    raise CalendarError("The deadline is more than ten years away: check the office hours and "
                        "the limit.", detail={"field": "limits"})


def work_seconds_between(cal: WorkCalendar, a: datetime, b: datetime) -> float:
    """Seconds of office time in ``[a, b)`` (0 if ``b <= a``), as ``citygrid_work_seconds``.

    >>> cal = WorkCalendar(ZoneInfo("UTC"), ((time(8, 30), time(12)), (time(13, 30), time(17, 30))))
    >>> work_seconds_between(cal, datetime(2025, 9, 5, 11, tzinfo=UTC),
    ...                      datetime(2025, 9, 8, 9, tzinfo=UTC)) / 3600  # 1 + 4 + 0.5
    5.5
    """
    if b <= a:
        return 0.0
    total = 0
    day, last = a.astimezone(cal.tz).date(), b.astimezone(cal.tz).date()
    while day <= last:
        for s, e in cal.periods_on(day):
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                total += (hi - lo) // timedelta(microseconds=1)
        day += timedelta(days=1)
    return total / _US


def limit_seconds(cal: WorkCalendar | None, amount: float, unit: str) -> float:
    """A limit as seconds: calendar seconds for ``hours``, office seconds otherwise.

    >>> cal = WorkCalendar(ZoneInfo("UTC"), ((time(8, 30), time(12)), (time(13, 30), time(17, 30))))
    >>> limit_seconds(cal, 2, "hours"), limit_seconds(cal, 2, "work_hours"), \
limit_seconds(cal, 2, "work_days")
    (7200.0, 7200.0, 54000.0)
    """
    if unit == "work_days":
        if cal is None:
            raise CalendarError("A limit in working days needs the calendar.")
        return float(amount) * cal.day_seconds
    if unit in ("hours", "work_hours"):
        return float(amount) * 3600.0
    raise CalendarError(f"Unknown limit unit {unit[:20]!r}.",
                        detail={"field": "limit_unit", "expected": list(UNITS)})


def deadline(cal: WorkCalendar | None, start: datetime, amount: float, unit: str,
             extension_hours: float = 0.0) -> datetime:
    """When a limit of ``amount`` ``unit`` (plus an extension in hours) started at ``start``
    runs out: the case's ``due_at`` when ``amount`` is its total limit.

    >>> t = datetime(2025, 9, 5, 11, tzinfo=UTC)
    >>> deadline(None, t, 72, "hours", 24).isoformat()
    '2025-09-09T11:00:00+00:00'
    """
    if unit == "hours":
        return start + timedelta(microseconds=_us((amount + extension_hours) * 3600))
    if cal is None:
        raise CalendarError("A limit in working time needs the calendar.")
    return add_work_seconds(cal, start, limit_seconds(cal, amount, unit) + extension_hours * 3600)


def extend(cal: WorkCalendar | None, due: datetime, hours: float, unit: str) -> datetime:
    """``due`` moved by an extension of ``hours`` (office hours unless the unit is ``hours``)."""
    return deadline(cal, due, 0.0, unit, hours)


def used_fraction(cal: WorkCalendar | None, since: datetime, now: datetime, limit: float,
                  unit: str, extension_hours: float = 0.0) -> float:
    """How much of a step's limit (plus extension) is used: the traffic light's measure, in
    working time for a category on working time (so its yellow comes at 80 % of office time).

    >>> t = datetime(2025, 9, 5, 8, 30, tzinfo=UTC)
    >>> used_fraction(None, t, t + timedelta(hours=9), 10, "hours")
    0.9
    """
    whole = limit_seconds(cal, limit, unit) + extension_hours * 3600
    if whole <= 0:
        return math.inf
    if unit == "hours":
        spent = (now - since).total_seconds()
    else:
        assert cal is not None  # limit_seconds refused work units without a calendar
        spent = work_seconds_between(cal, since, now)
    return spent / whole


def _period_table(cal: WorkCalendar, first: date, last: date
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Office periods of ``first``..``last`` as µs since the epoch: starts, ends, and the office
    time before each period (cumulative)."""
    starts, ends = [], []
    day = first
    while day <= last:
        for s, e in cal.periods_on(day):
            starts.append((s - _EPOCH) // timedelta(microseconds=1))
            ends.append((e - _EPOCH) // timedelta(microseconds=1))
        day += timedelta(days=1)
    s_arr, e_arr = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    cum = np.zeros(len(s_arr), dtype=np.int64)
    if len(s_arr) > 1:
        cum[1:] = np.cumsum(e_arr - s_arr)[:-1]
    return s_arr, e_arr, cum


def add_work_seconds_many(cal: WorkCalendar, starts_us: np.ndarray, seconds: np.ndarray
                          ) -> np.ndarray:
    """:func:`add_work_seconds` for many starts at once (µs since the epoch, UTC, int64).

    The office periods over the span involved go into one table with their cumulative office
    time; a start maps to its office-time coordinate and back with two ``searchsorted``.

    >>> cal = WorkCalendar(ZoneInfo("UTC"), ((time(8, 30), time(12)), (time(13, 30), time(17, 30))))
    >>> t = (datetime(2025, 9, 5, 11, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
    >>> out = add_work_seconds_many(cal, np.array([t, t]), np.array([7200.0, 0.0]))
    >>> [datetime.fromtimestamp(v / 1e6, UTC).isoformat() for v in out]
    ['2025-09-05T14:30:00+00:00', '2025-09-05T11:00:00+00:00']
    """
    starts_us = np.asarray(starts_us, dtype=np.int64)
    dur = np.rint(np.asarray(seconds, dtype=float) * _US).astype(np.int64)
    out = starts_us.copy()
    pos = dur > 0
    if not pos.any():
        return out
    if cal.day_seconds <= 0:
        raise CalendarError("The office hours are empty.", detail={"field": "office_hours"})
    t = starts_us[pos]
    d = dur[pos]
    first = datetime.fromtimestamp(int(t.min()) / _US, cal.tz).date() - timedelta(days=1)
    span = int(math.ceil(int(d.max()) / (cal.day_seconds * _US) * 7 / 5)) + 40
    last_start = datetime.fromtimestamp(int(t.max()) / _US, cal.tz).date()
    while True:
        s_k, e_k, cum = _period_table(cal, first, last_start + timedelta(days=span))
        k = np.searchsorted(e_k, t, side="right")  # the first period ending after the start
        if len(e_k) and k.max() < len(e_k):
            w = cum[k] + np.maximum(t - s_k[k], 0)
            target = w + d
            j = np.searchsorted(cum + (e_k - s_k), target, side="left")
            if j.max() < len(e_k):
                out[pos] = s_k[j] + (target - cum[j])
                return out
        if span > MAX_DAYS:
            raise CalendarError("The deadline is more than ten years away: check the office "
                                "hours and the limit.", detail={"field": "limits"})
        span *= 2


# -- storage ---------------------------------------------------------------------------------------
def load(conn: Connection) -> WorkCalendar:
    """The calendar the database holds: every override row, the office hours and the city's zone."""
    from grids.city import profile

    hours = conn.execute(text("SELECT office_hours FROM work_calendar_setting")).scalar()
    overrides = {r.day: r.kind == "workday" for r in conn.execute(text(
        "SELECT day, kind FROM work_calendar_day"))}
    return WorkCalendar(profile(conn).tz, _periods(hours or []), overrides)


def _periods(hours: Iterable[Iterable[str]]) -> tuple[tuple[time, time], ...]:
    return tuple((time.fromisoformat(s), time.fromisoformat(e)) for s, e in hours)


def check_office_hours(hours: Any) -> list[list[str]]:
    """Office hours as ``[["08:30", "12:00"], ...]``: 1–6 periods in order, none overlapping.

    >>> check_office_hours([["08:30", "12:00"], ["13:30", "17:30"]])
    [['08:30', '12:00'], ['13:30', '17:30']]
    """
    ok = (isinstance(hours, list) and 1 <= len(hours) <= 6 and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(
            isinstance(v, str) and _HHMM.match(v) for v in p) for p in hours))
    if ok:
        flat = [v for p in hours for v in p]
        ok = all(a < b for a, b in zip(flat, flat[1:], strict=False))
    if not ok:
        raise CalendarError("Office hours are 1 to 6 periods HH:MM–HH:MM, in order, not "
                            "overlapping, within one day.",
                            detail={"field": "office_hours",
                                    "expected": [["08:30", "12:00"], ["13:30", "17:30"]]})
    return [[str(s), str(e)] for s, e in hours]


def set_office_hours(conn: Connection, hours: Any, *, principal: Principal) -> list[list[str]]:
    principal.require(Permission.CATALOGUE_WRITE)
    clean = check_office_hours(hours)
    conn.execute(text(
        "INSERT INTO work_calendar_setting (id, office_hours) VALUES (true, CAST(:h AS jsonb)) "
        "ON CONFLICT (id) DO UPDATE SET office_hours = EXCLUDED.office_hours, updated_at = now()"),
        {"h": json.dumps(clean)})
    return clean


def check_days(rows: Iterable[Mapping[str, Any]], *, year: int | None = None,
               first_row: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate calendar rows (``date``, ``kind``, ``name``); returns (good rows, problems).

    Every problem names its row (``first_row`` for the first), field and reason; a date outside
    ``year`` (when given) or given twice is a problem.
    """
    good: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[date] = set()
    for n, row in enumerate(rows, start=first_row):
        def bad(fld: str, reason: str, n: int = n) -> None:
            errors.append({"row": n, "field": fld, "reason": reason})

        raw = row.get("date")
        day: date | None = None
        if isinstance(raw, date):
            day = raw
        else:
            try:
                day = date.fromisoformat(str(raw or "").strip())
            except ValueError:
                bad("date", f"expected a date YYYY-MM-DD, got {str(raw)[:20]!r}")
        kind = str(row.get("kind") or "").strip()
        name = str(row.get("name") or "").strip()
        if kind not in KINDS:
            bad("kind", f"expected holiday or workday, got {kind[:20]!r}")
        if len(name) > 100:
            bad("name", "expected at most 100 characters")
        if day is not None:
            if year is not None and day.year != year:
                bad("date", f"{day.isoformat()} is not in {year}")
            elif day in seen:
                bad("date", f"{day.isoformat()} appears twice")
            seen.add(day)
        if not errors or errors[-1]["row"] != n:
            good.append({"date": day, "kind": kind, "name": name})
    return good, errors


def _check_year(year: int) -> None:
    if not 2000 <= year <= 2100:
        raise CalendarError("The year must be between 2000 and 2100.",
                            detail={"field": "year", "value": year})


def replace_year(conn: Connection, year: int, days: Iterable[Mapping[str, Any]], *,
                 principal: Principal, office_hours: Any = None) -> dict[str, Any]:
    """Replace the calendar rows of ``year`` (all or nothing: a bad row writes nothing)."""
    principal.require(Permission.CATALOGUE_WRITE)
    _check_year(year)
    good, errors = check_days(days, year=year)
    if errors:
        raise ImportRejected(f"{len(errors)} calendar rows are invalid; nothing was changed.",
                             detail={"field": errors[0]["field"], "errors": errors[:1000],
                                     "total": len(errors)})
    if office_hours is not None:
        set_office_hours(conn, office_hours, principal=principal)
    conn.execute(text("DELETE FROM work_calendar_day WHERE day >= make_date(:y, 1, 1) "
                      "AND day < make_date(:y + 1, 1, 1)"), {"y": year})
    if good:
        conn.execute(text("INSERT INTO work_calendar_day (day, kind, name) VALUES (:d, :k, :n)"),
                     [{"d": r["date"], "k": r["kind"], "n": r["name"]} for r in good])
    return read_year(conn, year, principal=principal)


def import_csv(conn: Connection, data: bytes | str, *, principal: Principal) -> dict[str, Any]:
    """Import a CSV of ``date,kind,name`` (the header row first): the years it names are replaced,
    all or nothing. Rows are numbered as a spreadsheet shows them (the header is row 1)."""
    principal.require(Permission.CATALOGUE_WRITE)
    body = data.decode("utf-8-sig") if isinstance(data, bytes) else data.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(body))
    missing = [c for c in ("date", "kind") if c not in (reader.fieldnames or [])]
    if missing:
        raise ImportRejected(f"The file has no column {', '.join(missing)}.",
                             detail={"field": missing[0], "expected": ["date", "kind", "name"],
                                     "columns": list(reader.fieldnames or [])[:20]})
    good, errors = check_days(list(reader), first_row=2)
    if errors:
        raise ImportRejected(f"{len(errors)} calendar rows are invalid; nothing was imported.",
                             detail={"field": errors[0]["field"], "errors": errors[:1000],
                                     "total": len(errors)})
    if not good:
        raise ImportRejected("The file has no rows.", detail={"field": "file"})
    years = sorted({r["date"].year for r in good})
    for y in years:
        _check_year(y)
    for y in years:
        replace_year(conn, y, [r for r in good if r["date"].year == y], principal=principal)
    return {"years": years, "rows": len(good)}


def read_year(conn: Connection, year: int, *, principal: Principal) -> dict[str, Any]:
    """The calendar of ``year``: its override rows, its office hours, and its count of workdays."""
    principal.require(Permission.INCIDENTS_READ)
    _check_year(year)
    days = [dict(r) for r in conn.execute(text(
        "SELECT day AS date, kind, name FROM work_calendar_day WHERE day >= make_date(:y, 1, 1) "
        "AND day < make_date(:y + 1, 1, 1) ORDER BY day"), {"y": year}).mappings()]
    hours = conn.execute(text("SELECT office_hours FROM work_calendar_setting")).scalar() or []
    kinds = {d["date"]: d["kind"] == "workday" for d in days}
    one = date(year, 1, 1)
    count = sum(kinds.get(one + timedelta(days=i), (one + timedelta(days=i)).isoweekday() < 6)
                for i in range((date(year + 1, 1, 1) - one).days))
    return {"year": year, "office_hours": hours, "workdays": count, "days": days}


__all__ = ["UNITS", "CalendarError", "WorkCalendar", "add_work_seconds", "add_work_seconds_many",
           "deadline", "extend", "import_csv", "limit_seconds", "load", "read_year",
           "replace_year", "set_office_hours", "used_fraction", "work_seconds_between"]
