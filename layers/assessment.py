"""Monthly assessment (考核): per grid, community, street, city, worker and department.

The ``city`` level (a province deployment, migration 0030) groups by the first 6 digits of the
incident's ``region_code``: from the street tallies of migration 0028 (their ``rkey``), so the
province's view is one row per city at the cost of the street view.

Months are calendar months in the city's time zone (``grids.city``). Incidents count for the
unit they were assigned at intake (grid, community, street, responsible worker, department), so a
later redraw does not move old cases between units.

Definitions (also written into every result and workbook, see :data:`FORMULAS`):

* **received 受理数**: received in the month.
* **registered 立案数**: received in the month and past intake: neither still ``received`` nor
  voided (作废 cases are not cases).
* **closed 结案数**: closed in the month (``closed_at`` in the month), whatever their age.
* **closed on time 按期结案数**: closed in the month and ``closed_on_time``.
* **due to close 应结案数**: not voided, and their deadline ``due_at`` (intake + the category's
  time limits + extensions) falls in the month. Chosen over "received in the month" so a case
  received on the 30th with a 10-day limit counts in the month it is due, not against the month
  it arrived in.
* **结案率** = due and closed (by ``as_of``, default now) / due to close.
* **按期结案率** = due and closed on time / due to close.
* **返工率** = closed in the month with at least one rework / closed in the month.
* **handling time**: received → closed, in hours, over the cases closed in the month (mean, p90).
* **patrol coverage 巡查覆盖率** (日均): the mean daily patrolled share of the unit's grid area: per
  grid, the share within 50 m of that day's filtered tracks (:mod:`layers.patrols.grid_cover`,
  equal to :mod:`layers.patrols.coverage` for the day), averaged over the month's days *with
  patrol data* (``coverage_days``: days on which any grid has a coverage row), then
  area-weighted over the unit's grids. Grids are those in force now; a worker's grids are those
  they were the primary of at any time in the month. Null for departments (they do not patrol)
  and when the month has no fixes. ``patrolled_grids`` counts the unit's grids patrolled on at
  least one day.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, prefix_of
from grids.city import profile
from grids.errors import GridError
from grids.sql import in_scope
from layers.maps.tally import scope_sql, street_wide

LEVELS = {
    "grid": ("i.grid_code", "SELECT code, name FROM region WHERE code = ANY(:codes)"),
    "community": ("i.community_code", "SELECT code, name FROM region WHERE code = ANY(:codes)"),
    "street": ("i.street_code", "SELECT code, name FROM region WHERE code = ANY(:codes)"),
    "city": ("left(i.region_code, 6) || '000000'",
             "SELECT code, name FROM region WHERE code = ANY(:codes)"),
    "worker": ("i.responsible_code", "SELECT code, name FROM staff WHERE code = ANY(:codes)"),
    "department": ("d.code", "SELECT code, name FROM department WHERE code = ANY(:codes)"),
}
COLUMNS = ("code", "name", "received", "registered", "closed", "closed_on_time", "reworked",
           "due", "due_closed", "due_closed_on_time", "closure_rate", "on_time_rate",
           "rework_rate", "mean_handling_h", "p90_handling_h", "grids", "patrolled_grids",
           "patrol_coverage")
FORMULAS: dict[str, str] = {
    "received": "受理数: incidents received in the month",
    "registered": "立案数: received in the month, state neither 'received' nor 'voided'",
    "closed": "结案数: incidents whose closed_at falls in the month",
    "closed_on_time": "按期结案数: closed in the month with closed_on_time = true",
    "reworked": "返工数: closed in the month with rework_count > 0",
    "due": "应结案数: not voided, due_at (intake + time limits + extensions) in the month",
    "due_closed": "of `due`, closed by as_of (late closes included)",
    "due_closed_on_time": "of `due`, closed on time",
    "closure_rate": "结案率 = due_closed / due (null if due = 0)",
    "on_time_rate": "按期结案率 = due_closed_on_time / due (null if due = 0)",
    "rework_rate": "返工率 = reworked / closed (null if closed = 0)",
    "mean_handling_h": "mean hours received_at → closed_at over cases closed in the month",
    "p90_handling_h": "90th percentile (continuous) of the same hours",
    "grids": "网格数: the unit's grids (in force now; worker: primary in the month)",
    "patrolled_grids": "已巡查网格数: of `grids`, those with area within 50 m of a track on at "
                       "least one day of the month",
    "patrol_coverage": "巡查覆盖率(日均) = Σ over the unit's grids of grid area × mean over the "
                       "month's days with patrol data (coverage_days) of the day's share within "
                       "50 m of a filtered patrol track / Σ grid area (null: department, or no "
                       "fixes in the month)",
}
LABELS_ZH = {"code": "编码", "name": "名称", "received": "受理数", "registered": "立案数",
             "closed": "结案数", "closed_on_time": "按期结案数", "reworked": "返工数",
             "due": "应结案数", "due_closed": "应结已结数", "due_closed_on_time": "应结按期数",
             "closure_rate": "结案率", "on_time_rate": "按期结案率", "rework_rate": "返工率",
             "mean_handling_h": "平均处置时长(h)", "p90_handling_h": "P90处置时长(h)",
             "grids": "网格数", "patrolled_grids": "已巡查网格数", "patrol_coverage": "巡查覆盖率"}


# The month's conditions over ``incident i`` (bound :s, :e, :as_of): the figures above count rows
# meeting them, and layers.analysis.month lists the same rows behind a figure.
RECEIVED_SQL = "i.received_at >= :s AND i.received_at < :e"
CLOSED_SQL = "i.closed_at >= :s AND i.closed_at < :e"
DUE_SQL = "i.due_at >= :s AND i.due_at < :e AND i.state NOT IN ('voided', 'merged')"
FIGURE_SQL: dict[str, str] = {
    "received": RECEIVED_SQL,
    "registered": f"{RECEIVED_SQL} AND i.state NOT IN ('received', 'voided', 'merged')",
    "closed": CLOSED_SQL,
    "closed_on_time": f"{CLOSED_SQL} AND i.closed_on_time",
    "reworked": f"{CLOSED_SQL} AND i.rework_count > 0",
    "due": DUE_SQL,
    "due_closed": f"{DUE_SQL} AND i.closed_at <= :as_of",
    "due_closed_on_time": f"{DUE_SQL} AND i.closed_at <= :as_of AND i.closed_on_time",
    # not figures of their own: the cases a rate misses
    "due_open": f"{DUE_SQL} AND (i.closed_at IS NULL OR i.closed_at > :as_of)",
    "due_late": f"{DUE_SQL} AND NOT (i.closed_at IS NOT NULL AND i.closed_at <= :as_of "
                "AND i.closed_on_time)",
}


class AssessmentError(GridError):
    code = "invalid_assessment_request"


def month_window(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """Start and end (exclusive) of ``YYYY-MM`` in the city's time zone ``tz``.

    >>> from zoneinfo import ZoneInfo
    >>> [t.isoformat() for t in month_window("2026-12", ZoneInfo("Asia/Urumqi"))]
    ['2026-12-01T00:00:00+06:00', '2027-01-01T00:00:00+06:00']
    """
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    except ValueError:
        raise AssessmentError("month is YYYY-MM.", detail={"field": "month",
                                                           "value": month[:20]}) from None
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def monthly(conn: Connection, *, principal: Principal, month: str, level: str = "street",
            region: str | None = None, as_of: datetime | None = None) -> dict[str, Any]:
    """The month's figures per unit of ``level`` in the caller's jurisdiction (see module doc)."""
    principal.require(Permission.ASSESSMENT_READ)
    if level not in LEVELS:
        raise AssessmentError("level is grid, community, street, city, worker or department.",
                              detail={"field": "level", "expected": list(LEVELS)})
    tz = profile(conn).tz
    start, end = month_window(month, tz)
    scope = principal.locate_scope()
    where = ["TRUE"]
    params: dict[str, Any] = {"s": start, "e": end, "as_of": as_of or datetime.now(tz)}
    cond, scoped = in_scope(scope, "i.region_code")
    where.append(cond)
    params |= scoped
    if region:
        where.append("i.region_code LIKE :region")
        params["region"] = prefix_of(region) + "%"
    got = figures(conn, where=" AND ".join(where), params=params, windows=[(start, end)],
                  levels=[level], region=region, scope=scope, total=False, tally=True)[0]
    return _monthly_result(conn, got, month=month, level=level, region=region,
                           window=(start, end), as_of=params["as_of"])


def _monthly_result(conn: Connection, got: dict[str, Any], *, month: str, level: str,
                    region: str | None, window: tuple[datetime, datetime],
                    as_of: datetime) -> dict[str, Any]:
    """:func:`monthly`'s answer from one month of :func:`figures`."""
    tz = profile(conn).tz
    start, end = window
    out_rows = got["levels"][level]
    notes = [f"Month {month} in {tz.key}: [{start.isoformat()}, {end.isoformat()}).",
             "Incidents count for the unit assigned at intake; code null: none was assigned "
             "(fallback to a higher level)."]
    if level == "department":
        notes.append("patrol_coverage is null for departments: they handle cases, grid workers "
                     "patrol.")
    elif got["coverage_days"] is None:
        notes.append("patrol_coverage is null: no patrol fixes in the month.")
    else:
        n_days = got["coverage_days"]
        notes.append(f"patrol_coverage: mean daily share over the {n_days} day(s) of the month "
                     f"with patrol data; each day's tracks filtered as in layers.patrols.tracks, "
                     f"buffered {PATROL_BUFFER_M:g} m in "
                     f"EPSG:{profile(conn).metric_srid}.")
        pending = conn.execute(text(
            "SELECT count(DISTINCT day) FROM patrol_cover_stale WHERE day >= :a AND day < :b"),
            {"a": start.astimezone(tz).date(), "b": end.astimezone(tz).date()}).scalar()
        if pending:
            notes.append(f"patrol_coverage: new fixes on {pending} day(s) of the month are "
                         "still being taken into account (recomputed in the background).")
    return {"month": month, "level": level, "region": region, "timezone": tz.key,
            "as_of": as_of.isoformat(), "rows": out_rows, "formulas": FORMULAS,
            "notes": notes, "coverage_days": got["coverage_days"]}


# The unit of each level as a column of the incident row (department: through its id).
UNIT_SQL = {level: key for level, (key, _) in LEVELS.items()}
_COUNTS = COLUMNS[2:10]
_HOURS = "extract(epoch FROM i.closed_at - i.received_at) / 3600.0"


def _in_window(sql: str, k: int) -> str:
    """A FIGURE_SQL condition with its window bound to month ``k`` (``:s`` → ``:s_k``)."""
    return re.sub(r":e\b", f":e_{k}", re.sub(r":s\b", f":s_{k}", sql))


def figures(conn: Connection, *, where: str, params: dict[str, Any],
            windows: Sequence[tuple[datetime, datetime]], levels: Sequence[str],
            region: str | None, scope: Any, total: bool = True,
            p90: Sequence[int] | None = None, tally: bool = False) -> list[dict[str, Any]]:
    """The figures of every unit of every level in ``levels`` (and, with ``total``, of the whole
    area) for each month window, in **one statement** for the counts and the mean: the
    incidents of each month (one indexed branch per month, its rows flagged with the month's
    conditions of :data:`FIGURE_SQL`) are grouped once by ``GROUPING SETS`` (month × each
    level, and month alone for the total), hashed in one pass. A second statement takes the
    90th percentile of handling time over the closed cases of the months in ``p90`` (indexes
    into ``windows``; default all; the month view asks it for the shown month only, the other
    months' ``p90_handling_h`` are then null).

    ``tally``: the counts and the mean from the monthly tallies of migration 0028
    (:func:`_tally_rows`) instead of the incidents, when they can answer: the caller's ``where``
    must then be the jurisdiction ``scope`` and ``region`` only (as :func:`monthly` builds it),
    and both must cut no finer than a street (the tally keeps the street part of
    ``region_code``); otherwise the raw statement answers. Equal either way
    (``tests/layers/test_assessment_tally.py``); the 90th percentile is always read from the
    raw rows, when asked.

    ``where`` and ``params`` hold the caller's area (over ``incident i``; ``params`` also
    ``as_of``). Patrol coverage is read once per month for all levels.

    Returns, per window: ``{"levels": {level: rows}, "total": row or None, "coverage_days"}``,
    the rows as :func:`monthly` gives them (sorted by code, nulls last).
    """
    p90_months = sorted(set(range(len(windows)) if p90 is None else p90))
    units = list(levels)
    cols = [f"{UNIT_SQL[lv]} AS u_{lv}" for lv in units]
    dept = " LEFT JOIN department d ON d.id = i.department_id" if "department" in units else ""
    branches, hours = [], []
    params = dict(params)
    for k, (s, e) in enumerate(windows):
        params[f"s_{k}"], params[f"e_{k}"] = s, e
        flags = [f"({_in_window(FIGURE_SQL[c], k)}) AS f_{c}" for c in _COUNTS]
        rec, clo, due = (_in_window(x, k) for x in (RECEIVED_SQL, CLOSED_SQL, DUE_SQL))
        branches.append(
            f"SELECT {k} AS k, {', '.join([*cols, *flags])}, "
            f"CASE WHEN {clo} THEN {_HOURS} END AS h FROM incident i{dept} "
            f"WHERE ({rec} OR {clo} OR ({due})) AND {where}")
        if k in p90_months:
            hours.append(f"SELECT {', '.join([f'{k} AS k', *cols])}, {_HOURS} AS h "
                         f"FROM incident i{dept} WHERE {clo} AND {where}")
    sets = ", ".join([f"(k, u_{lv})" for lv in units] + (["(k)"] if total else []))
    grouping = f"GROUPING({', '.join(f'u_{lv}' for lv in units)})" if units else "0"
    head = f"SELECT k, {grouping} AS g" + "".join(f", u_{lv}" for lv in units)
    # The counts and the mean: plain aggregates, so PostgreSQL hashes the grouping sets in one
    # pass over the three months' rows. The 90th percentile is an ordered-set aggregate, which
    # would make it sort every row of every month for every set: it is taken apart, over the
    # closed cases of the months asked for only.
    counts_sql = (head + "".join(f", count(*) FILTER (WHERE f_{c}) AS {c}" for c in _COUNTS)
                  + f", avg(h) AS mean_h FROM ({' UNION ALL '.join(branches)}) c "
                  f"GROUP BY GROUPING SETS ({sets})")
    n = len(units)
    everything = (1 << n) - 1  # every unit column aggregated away: the total

    def level_of(g: int) -> str | None:
        if total and g == everything:
            return None
        # exactly one unit column is grouped: its bit is 0 (the first column is the high bit)
        return next(units[j] for j in range(n) if not g >> (n - 1 - j) & 1)

    got: list[dict[str, list[Any]]] = [{lv: [] for lv in units} for _ in windows]
    totals: list[Any] = [None] * len(windows)
    # No JIT (local to the caller's transaction): the statements' cost at 5 M incidents makes
    # PostgreSQL compile them, which took 4.9 s of a 5 s statement (bench.month).
    conn.execute(text("SELECT set_config('jit', 'off', true)"))
    p90s: dict[tuple[int, str | None, Any], float | None] = {}
    if hours:
        for r in conn.execute(text(
                f"{head}, percentile_cont(0.9) WITHIN GROUP (ORDER BY h) AS p90_h "
                f"FROM ({' UNION ALL '.join(hours)}) c GROUP BY GROUPING SETS ({sets})"),
                params).mappings():
            lv = level_of(int(r["g"]))
            p90s[(r["k"], lv, None if lv is None else r[f"u_{lv}"])] = r["p90_h"]
    if tally and street_wide(scope, region):
        counted = _tally_rows(conn, windows=windows, units=units, total=total, scope=scope,
                              region=region)
        # "due and closed by as_of": the tally counts every due case closed; take off those
        # closed after as_of (none when as_of is now), from the raw rows (closed_at index)
        late = [f"SELECT {k} AS k, {', '.join([*cols, 'i.closed_on_time AS ot'])} "
                f"FROM incident i{dept} WHERE {_in_window(DUE_SQL, k)} "
                f"AND i.closed_at > :as_of AND {where}" for k in range(len(windows))]
        for r in conn.execute(text(
                f"{head}, count(*) AS n, count(*) FILTER (WHERE ot) AS n_ot FROM "
                f"({' UNION ALL '.join(late)}) c GROUP BY GROUPING SETS ({sets})"),
                params).mappings():
            lv = level_of(int(r["g"]))
            hit = counted.get((r["k"], lv, None if lv is None else r[f"u_{lv}"]))
            if hit is not None:
                hit["due_closed"] -= int(r["n"])
                hit["due_closed_on_time"] -= int(r["n_ot"])
        rows: Any = counted.values()
    else:
        rows = conn.execute(text(counts_sql), params).mappings()
    for r in rows:
        row = dict(r)
        lv = row["level"] if "level" in row else level_of(int(row["g"]))
        row["p90_h"] = p90s.get((row["k"], lv, None if lv is None else row[f"u_{lv}"]))
        if lv is None:
            totals[row["k"]] = row
        else:
            got[row["k"]][lv].append(row)
    patrolled = [lv for lv in units if lv != "department"]
    patrols = [_patrol_levels(conn, levels=patrolled, start=s, end=e, scope=scope, region=region)
               if patrolled or total else None for s, e in windows]
    names: dict[str, dict[str, str]] = {}
    for lv in units:  # one name look-up per level for every month's units
        wanted = {r[f"u_{lv}"] for k in range(len(windows)) for r in got[k][lv]}
        wanted |= {c for p in patrols if p is not None and lv in p for c in p[lv]}
        wanted.discard(None)
        names[lv] = (dict(conn.execute(text(LEVELS[lv][1]), {"codes": sorted(wanted)}).all())
                     if wanted else {})
    out = []
    for k, (s, e) in enumerate(windows):
        patrol = patrols[k]
        days = None if patrol is None else data_days(conn, s, e)
        per_level = {}
        for lv in units:
            lp = None if patrol is None or lv == "department" else patrol[lv]
            per_level[lv] = _unit_rows(lv, got[k][lv], lp, names[lv])
        tot = None
        if total:
            tot = {"code": region or "", "name": "", **_count_figures(totals[k]),
                   **_sum_patrol(None if patrol is None else patrol["_all"])}
        out.append({"levels": per_level, "total": tot, "coverage_days": days})
    return out


# the tally's level codes (migration 0028); a city is read from the street rows
TALLY_LEVEL = {"grid": "g", "community": "c", "street": "s", "city": "s", "worker": "w",
               "department": "d"}
_TALLY_NAME = {"g": "grid", "c": "community", "s": "street", "w": "worker", "d": "department"}


def _tally_rows(conn: Connection, *, windows: Sequence[tuple[datetime, datetime]],
                units: Sequence[str], total: bool, scope: Any, region: str | None
                ) -> dict[tuple[int, str | None, Any], dict[str, Any]]:
    """The counts and the mean of :func:`figures` per (month index, level or None for the
    total, unit) from ``assessment_tally``: one indexed read of the months' rows of the levels
    asked (the total: the sum of the street rows, every incident having one street unit, null
    included; a city: the street rows whose ``rkey`` starts with its 6 digits, as the raw
    statement's ``left(region_code, 6)``). Units whose received, closed and due all net to 0
    are left out, as the raw statement never sees them. ``due_closed`` counts every due case
    closed (the caller takes off those closed after ``as_of``)."""
    tz = profile(conn).tz
    index = {s.astimezone(tz).date(): k for k, (s, _) in enumerate(windows)}
    wanted = {TALLY_LEVEL[lv] for lv in units} | ({"s"} if total else set())
    params: dict[str, Any] = {"t0s": sorted(index), "lvls": sorted(wanted)}
    place = scope_sql(scope, region, params, column="t.rkey")
    sums = ", ".join(f"sum(t.{c})::int AS {c}" for c in _COUNTS)
    sums_by: dict[tuple[int, str | None, Any], dict[str, Any]] = {}
    n = len(_COUNTS)

    def add(key: tuple[int, str | None, Any], vals: Sequence[Any]) -> None:
        acc = sums_by.setdefault(key, {c: 0 for c in _COUNTS} | {"hs": 0})
        for c, v in zip(_COUNTS, vals[:n], strict=True):
            acc[c] += v
        acc["hs"] += vals[n]

    # the city of a street row: its rkey's 6 digits (other levels: not asked, '' )
    city_sql = ("CASE WHEN t.level = 's' AND t.rkey <> '' THEN left(t.rkey, 6) || '000000' END"
                if "city" in units else "NULL::text")
    for t0, lv, unit, city, *vals in conn.execute(text(
            "SELECT t.t0, t.level, CASE WHEN t.level = 'd' THEN d.code "
            f"ELSE nullif(t.unit, '') END AS unit, {city_sql} AS city, {sums}, "
            "sum(t.handling_s) AS hs "
            "FROM assessment_tally t LEFT JOIN department d ON t.level = 'd' "
            "AND d.id::text = t.unit "
            f"WHERE t.t0 = ANY(:t0s) AND t.level = ANY(:lvls) AND {place} GROUP BY 1, 2, 3, 4"),
            params).all():
        k, code = index[t0], _TALLY_NAME[lv]
        if total and code == "street":
            add((k, None, None), vals)
        if code in units:
            add((k, code, unit), vals)
        if code == "street" and "city" in units:
            add((k, "city", city), vals)
    out: dict[tuple[int, str | None, Any], dict[str, Any]] = {}
    for (k, lvl, unit), counts in sums_by.items():
        if counts["received"] or counts["closed"] or counts["due"]:
            out[(k, lvl, unit)] = {"k": k, "level": lvl, **counts}
            if lvl is not None:
                out[(k, lvl, unit)][f"u_{lvl}"] = unit
    for row in out.values():
        hs = row.pop("hs")
        row["mean_h"] = Decimal(hs) / row["closed"] / 3600 if row["closed"] else None
    return out


def _count_figures(r: Any) -> dict[str, Any]:
    if r is None:
        return {**{c: 0 for c in _COUNTS}, **{c: None for c in COLUMNS[10:15]}}
    c = {k: int(r[k]) for k in _COUNTS}
    return {**c, "closure_rate": _rate(c["due_closed"], c["due"]),
            "on_time_rate": _rate(c["due_closed_on_time"], c["due"]),
            "rework_rate": _rate(c["reworked"], c["closed"]),
            "mean_handling_h": None if r["mean_h"] is None else round(float(r["mean_h"]), 2),
            "p90_handling_h": None if r["p90_h"] is None else round(float(r["p90_h"]), 2)}


def _sum_patrol(patrol: dict[str, list[float]] | None) -> dict[str, Any]:
    if patrol is None:
        return {"grids": None, "patrolled_grids": None, "patrol_coverage": None}
    area = sum(v[0] for v in patrol.values())
    done = sum(v[1] for v in patrol.values())
    return {"grids": int(sum(v[2] for v in patrol.values())),
            "patrolled_grids": int(sum(v[3] for v in patrol.values())),
            "patrol_coverage": round(done / area, 4) if area else None}


def _unit_rows(level: str, rows: list[Any], patrol: dict[str, list[float]] | None,
               names: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of one level: the counted units, then the units patrolled (or with grids) without a
    case in the month, each named; sorted by code, nulls last."""
    codes = {r[f"u_{level}"] for r in rows}
    extra = sorted(c for c in (patrol or {}) if c not in codes)
    out = [{"code": r[f"u_{level}"], "name": names.get(r[f"u_{level}"], "(none)"),
            **_count_figures(r), **_patrol_figures(patrol, r[f"u_{level}"])} for r in rows]
    out += [{"code": code, "name": names.get(code, "(none)"), **_count_figures(None),
             **_patrol_figures(patrol, code)} for code in extra]
    out.sort(key=lambda r: (r["code"] is None, r["code"] or ""))
    return out



PATROL_BUFFER_M = 50.0


def _patrol_figures(patrol: dict[str, list[float]] | None, code: str | None) -> dict[str, Any]:
    if patrol is None or code not in patrol:
        return {"grids": None, "patrolled_grids": None, "patrol_coverage": None}
    area, done, n, hit = patrol[code]
    return {"grids": int(n), "patrolled_grids": int(hit),
            "patrol_coverage": round(done / area, 4) if area else None}


def _patrol_coverage(conn: Connection, *, level: str, start: datetime, end: datetime,
                     scope: Any, region: str | None) -> dict[str, list[float]] | None:
    """Per unit of ``level``: [grid m², mean daily patrolled m², grids, patrolled grids];
    None: no fixes in the month (see :func:`_patrol_levels`)."""
    got = _patrol_levels(conn, levels=[level], start=start, end=end, scope=scope, region=region)
    return None if got is None else got[level]


def _patrol_levels(conn: Connection, *, levels: Sequence[str], start: datetime, end: datetime,
                   scope: Any, region: str | None) -> dict[str, dict[str, list[float]]] | None:
    """Per level, per unit: [grid m², mean daily patrolled m², grids, patrolled grids], and
    under ``"_all"`` (key ``""``) the whole area; None: no fixes in the month.

    From the daily coverage the fix intake keeps (``patrol_grid_cover``, one month row per
    patrolled grid): a street's month is one indexed read, where computing the month's union
    from the fixes took 24 s for 459 grids. One read serves every level.
    """
    if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM patrol_fix WHERE at >= :s AND "
                             "at < :e)"), {"s": start, "e": end}).scalar():
        return None
    month0 = start.date()  # start is the month's first midnight in the city's zone
    days = data_days(conn, start, end)
    prefix = prefix_of(region) if region else ""
    out: dict[str, dict[str, list[float]]] = {lv: {} for lv in (*levels, "_all")}
    rows = conn.execute(text(
        "SELECT r.code, r.area_m2, coalesce(c.share, 0) AS share FROM region_current r "
        "LEFT JOIN patrol_grid_cover c ON c.span = 'm' AND c.t0 = :m AND c.grid_code = r.code "
        "WHERE r.level = 'grid' AND r.code LIKE :p AND r.code LIKE ANY(:patterns) "
        "ORDER BY r.code"),
        {"m": month0, "p": prefix + "%", "patterns": scope.like_patterns()}).all()
    if not rows:
        return out
    owners: dict[str, list[str]] = {}
    if "worker" in levels:
        for grid, staff in conn.execute(text(
                "SELECT r.code, s.code FROM assignment a JOIN region r ON r.id = a.region_id "
                "JOIN staff s ON s.id = a.staff_id WHERE a.duty = 'primary' AND r.code = ANY(:g) "
                "AND a.valid_from < :e AND (a.valid_to IS NULL OR a.valid_to > :s)"),
                {"g": [r.code for r in rows], "s": start, "e": end}):
            owners.setdefault(grid, []).append(staff)
    for r in rows:
        a = float(r.area_m2 or 0.0)
        d = a * float(r.share) / days  # the grid's mean daily patrolled area
        for level, unit in out.items():
            if level == "grid":
                keys = [r.code]
            elif level == "community":
                keys = [r.code[:12]]
            elif level == "street":
                keys = [r.code[:9] + "000"]
            elif level == "city":
                keys = [r.code[:6] + "000000"]
            elif level == "worker":
                keys = sorted(set(owners.get(r.code, [])))
            else:
                keys = [""]
            for key in keys:
                s = unit.setdefault(key, [0.0, 0.0, 0, 0])
                s[0] += a
                s[1] += d
                s[2] += 1
                s[3] += r.share > 0
    return out


def data_days(conn: Connection, start: datetime, end: datetime) -> int:
    """The city days of [start, end) with patrol data (any grid's day row), at least 1: coverage
    is a mean over these days, not over the calendar, so a month whose fixes began on the 25th
    is not painted red for the 24 days nobody recorded."""
    tz = profile(conn).tz
    n = conn.execute(text(
        "SELECT count(DISTINCT t0) FROM patrol_grid_cover WHERE span = 'd' AND t0 >= :a "
        "AND t0 < :b"), {"a": start.astimezone(tz).date(),
                         "b": end.astimezone(tz).date()}).scalar_one()
    return max(1, int(n))


def to_xlsx(figures: dict[str, Any]) -> bytes:
    """The figures as a workbook: sheet 考核 (one row per unit) and sheet 口径 (the formulas)."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "考核"
    ws.append([f"{figures['month']} 月度考核 · level {figures['level']}"
               + (f" · region {figures['region']}" if figures["region"] else "")
               + " · 口径 (formulas) on sheet 口径"])
    ws.append([LABELS_ZH[c] for c in COLUMNS])
    ws.append(list(COLUMNS))
    for col, name in enumerate(COLUMNS, start=1):
        ws.cell(row=2, column=col).font = Font(bold=True)
        if name in FORMULAS:
            ws.cell(row=2, column=col).comment = Comment(FORMULAS[name], "CityGrid")
    for row in figures["rows"]:
        ws.append([row[c] for c in COLUMNS])
    ws.freeze_panes = "C4"
    notes = wb.create_sheet("口径")
    notes.append(["column", "列", "formula / definition"])
    for c in COLUMNS:
        notes.append([c, LABELS_ZH[c], FORMULAS.get(c, "")])
    notes.append([])
    for n in figures["notes"]:
        notes.append(["note", "", n])
    notes.append(["as_of", "", figures.get("as_of", "")])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
