"""The supervisor's month view: the assessment figures compared and ranked, the cases behind a
figure, and a grid's summary.

* :func:`compare`: :func:`layers.assessment.monthly` for the month, the month before and the same
  month last year, each unit ranked on the five key figures (结案率, 按期结案率, 返工率, average
  handling time, 巡查覆盖率), plus the jurisdiction's total.
* :func:`cases`: the incident rows behind a count, chosen by the very condition the count uses
  (:data:`layers.assessment.FIGURE_SQL`), so a figure and its list can not disagree.
* :func:`grid_summary`: a grid's open cases with their lights, its figures for the month, its
  patrol coverage and last patrol, its worker and backup.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any, TypedDict

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, prefix_of
from grids.city import profile
from grids.errors import RegionNotFound
from grids.sql import in_scope
from layers import assessment
from layers.incidents.workflow import OPEN_SQL, light_sql

KEY_FIGURES = ("closure_rate", "on_time_rate", "rework_rate", "mean_handling_h",
               "patrol_coverage")
LOWER_IS_BETTER = frozenset({"rework_rate", "mean_handling_h"})
# The set of cases behind each figure a user can click, and the cases that count against it.
DRILL: dict[str, tuple[str, str | None]] = {
    "closure_rate": ("due", "due_open"),
    "on_time_rate": ("due", "due_late"),
    "rework_rate": ("closed", "reworked"),
    "mean_handling_h": ("closed", None),
    "received": ("received", None), "registered": ("registered", None),
    "closed": ("closed", None), "closed_on_time": ("closed_on_time", None),
    "reworked": ("reworked", None), "due": ("due", None), "due_closed": ("due_closed", None),
    "due_closed_on_time": ("due_closed_on_time", None),
}
CASE_LIMIT = 2000


def shift_month(month: str, k: int) -> str:
    """``YYYY-MM`` moved by ``k`` months.

    >>> shift_month("2026-01", -1), shift_month("2026-11", -12), shift_month("2026-12", 1)
    ('2025-12', '2025-11', '2027-01')
    """
    assessment.month_window(month, UTC)  # validates
    y, m = int(month[:4]), int(month[5:7])
    n = y * 12 + (m - 1) + k
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def last_full_month(tz: tzinfo, now: datetime | None = None) -> str:
    """The last calendar month that has ended in the city's zone ``tz``: the one a monthly
    meeting reviews."""
    now = (now or datetime.now(tz)).astimezone(tz)
    return shift_month(now.strftime("%Y-%m"), -1)


def _ranks(rows: list[dict[str, Any]], figure: str) -> dict[str, int]:
    """Competition ranking (1, 2, 2, 4) of the units with a value; best first."""
    vals = [(r["code"], r[figure]) for r in rows if r["code"] is not None
            and r.get(figure) is not None]
    sign = 1 if figure in LOWER_IS_BETTER else -1
    vals.sort(key=lambda cv: (sign * cv[1], cv[0]))
    out: dict[str, int] = {}
    prev: Any = object()
    rank = 0
    for i, (code, v) in enumerate(vals, start=1):
        if v != prev:
            rank, prev = i, v
        out[code] = rank
    return out


def area(principal: Principal, region: str | None) -> str | None:
    """``region`` if it overlaps the caller's jurisdiction (inside it, or one of its parents);
    a region elsewhere is not found, as everywhere else in the API."""
    if region is None:
        return None
    scope = principal.locate_scope()
    prefix = prefix_of(region)
    if scope.covers(region) or any(p.startswith(prefix) for p in scope.prefixes):
        return region
    raise RegionNotFound(f"No region {region} in your jurisdiction.",
                         detail={"field": "region", "value": region})


def _scope_where(principal: Principal, region: str | None, params: dict[str, Any]) -> str:
    where = ["TRUE"]
    scope = principal.locate_scope()
    cond, scoped = in_scope(scope, "i.region_code")
    where.append(cond)
    params |= scoped
    if region:
        where.append("i.region_code LIKE :region")
        params["region"] = prefix_of(region) + "%"
    return " AND ".join(where)


def total(conn: Connection, *, principal: Principal, month: str, region: str | None = None,
          as_of: datetime | None = None) -> dict[str, Any]:
    """The jurisdiction's (or ``region``'s) figures for the month as one row."""
    tz = profile(conn).tz
    principal.require(Permission.ASSESSMENT_READ)
    window = assessment.month_window(month, tz)
    params: dict[str, Any] = {"as_of": as_of or datetime.now(tz)}
    where = _scope_where(principal, region, params)
    got = assessment.figures(conn, where=where, params=params, windows=[window], levels=[],
                             region=region, scope=principal.locate_scope(), tally=True)[0]
    return {**got["total"], "coverage_days": got["coverage_days"]}


def compare(conn: Connection, *, principal: Principal, month: str, level: str = "street",
            region: str | None = None, as_of: datetime | None = None,
            p90_all: bool = False, boundaries: str = "then", tally: bool = True,
            p90: bool = False) -> dict[str, Any]:
    """The month's figures per unit, ranked, beside the month before and the same month last
    year (see the module doc).

    ``boundaries="today"``: the month's units and figures by today's grids, through the
    crosswalk (:func:`layers.analysis.crosswalk.monthly`); the month before and last year stay
    by their own boundaries (a unit new since then has none).

    One statement for the three months, the units and the totals
    (:func:`layers.assessment.figures`); the month before and last year give the key figures
    (and the totals) only.

    The 90th percentile of handling time (``p90_handling_h``) is read only when asked: it cannot
    come from the tallies (a percentile is no sum), and reading it is a sort of the month's
    closed cases per level (1.5 s of the city's view at 5M, where the rest takes 0.14 s).
    ``p90``: the month's, for every unit and the total, by either boundaries; ``p90_all``: also
    the month before and last year's (the meeting pack). Otherwise null everywhere, by either
    boundaries, and the notes say so (it used to be null by the month's boundaries only: today's
    took the rows of :func:`layers.assessment.monthly`, which always reads it).
    """
    principal.require(Permission.ASSESSMENT_READ)
    if level not in assessment.LEVELS:
        raise assessment.AssessmentError(
            "level is grid, community, street, worker or department.",
            detail={"field": "level", "expected": list(assessment.LEVELS)})
    tz = profile(conn).tz
    prev_m, year_m = shift_month(month, -1), shift_month(month, -12)
    names = (month, prev_m, year_m)
    windows = [assessment.month_window(m, tz) for m in names]
    params: dict[str, Any] = {"as_of": as_of or datetime.now(tz)}
    where = _scope_where(principal, region, params)
    got = assessment.figures(conn, where=where, params=params, windows=windows, levels=[level],
                             region=region, scope=principal.locate_scope(),
                             p90=None if p90_all else [0] if p90 else [], tally=tally)
    cur = assessment._monthly_result(conn, got[0], month=month, level=level, region=region,
                                     window=windows[0], as_of=params["as_of"])
    cur["boundaries"] = boundaries
    if boundaries == "today":
        from layers.analysis import crosswalk  # it imports this module (through trends)

        today = crosswalk.monthly(conn, principal=principal, month=month, level=level,
                                  region=region, as_of=params["as_of"], boundaries="today")
        cur = {**cur, "rows": today["rows"], "notes": today["notes"]}
    if not (p90 or p90_all):
        cur["rows"] = [{**r, "p90_handling_h": None} for r in cur["rows"]]
        cur["notes"] = [*cur["notes"], "p90_handling_h is null: ask with p90=true (read from "
                        "the month's closed cases, not from the tallies)."]
    before = {r["code"]: r for r in got[1]["levels"][level]}
    year = {r["code"]: r for r in got[2]["levels"][level]}
    ranks = {f: _ranks(cur["rows"], f) for f in KEY_FIGURES}
    rows = []
    for r in cur["rows"]:
        p, y = before.get(r["code"], {}), year.get(r["code"], {})
        rows.append({**r, "prev": {f: p.get(f) for f in KEY_FIGURES},
                     "last_year": {f: y.get(f) for f in KEY_FIGURES},
                     "rank": {f: ranks[f].get(r["code"]) for f in KEY_FIGURES}})
    totals = {k: {**g["total"], "coverage_days": g["coverage_days"]}
              for k, g in zip(("current", "prev", "last_year"), got, strict=True)}
    return {**cur, "rows": rows, "prev_month": prev_m, "last_year_month": year_m,
            "figures": list(KEY_FIGURES), "lower_is_better": sorted(LOWER_IS_BETTER),
            "ranked": {f: len(ranks[f]) for f in KEY_FIGURES}, "total": totals,
            "p90": bool(p90 or p90_all),
            "drill": {k: {"set": v[0], "against": v[1]} for k, v in DRILL.items()}}


CASE_COLUMNS = ("id", "external_id", "category", "category_name", "state", "light",
                "received_at", "due_at", "closed_at", "closed_on_time", "rework_count",
                "grid_code", "street_code", "responsible_code", "department", "card")


class MonthCases(TypedDict):
    """What :func:`cases` returns (``GET /analysis/cases``)."""

    month: str
    level: str
    code: str | None
    figure: str
    set: str
    total: int
    hits: int | None
    rows: list[dict[str, Any]]  # CASE_COLUMNS with hit and handling_h
    truncated: bool
    rule: str


class GridSummary(TypedDict):
    """What :func:`grid_summary` returns (``GET /analysis/grids/{code}``)."""

    code: str
    name: str
    community: str | None
    street: str | None
    area_m2: float
    month: str
    open: dict[str, Any]  # total, lights, rows
    figures: dict[str, Any] | None  # the grid's row of layers.assessment.monthly
    coverage_days: int | None
    patrolled_days: int
    last_patrol: str | None
    primary: dict[str, Any] | None
    backup: dict[str, Any] | None
    formulas: dict[str, str]


def cases(conn: Connection, *, principal: Principal, month: str, level: str, code: str | None,
          figure: str, region: str | None = None, as_of: datetime | None = None,
          limit: int = CASE_LIMIT) -> MonthCases:
    """The cases behind ``figure`` for unit ``code`` of ``level`` (None or "": the cases with no
    unit, or with ``level='all'`` every case of the jurisdiction), in the month.

    A rate's figure lists its denominator; each row says whether it counts for the numerator
    (``hit``). ``total`` is the full count; at most ``limit`` rows are returned.
    """
    tz = profile(conn).tz
    principal.require(Permission.ASSESSMENT_READ)
    if figure not in DRILL and figure not in assessment.FIGURE_SQL:
        raise assessment.AssessmentError(
            "figure is a count or a rate of the assessment.",
            detail={"field": "figure", "expected": sorted(set(DRILL) | set(assessment.FIGURE_SQL))})
    if level != "all" and level not in assessment.LEVELS:
        raise assessment.AssessmentError(
            "level is all, grid, community, street, worker or department.",
            detail={"field": "level", "expected": ["all", *assessment.LEVELS]})
    base, against = DRILL.get(figure, (figure, None))
    s, e = assessment.month_window(month, tz)
    params: dict[str, Any] = {"s": s, "e": e, "as_of": as_of or datetime.now(tz),
                              "limit": limit}
    where = [assessment.FIGURE_SQL[base], _scope_where(principal, region, params)]
    if level != "all":
        key = assessment.LEVELS[level][0]
        if code:
            where.append(f"{key} = :code")
            params["code"] = code
        else:
            where.append(f"{key} IS NULL")
    hit = {"closure_rate": assessment.FIGURE_SQL["due_closed"],
           "on_time_rate": assessment.FIGURE_SQL["due_closed_on_time"],
           "rework_rate": "i.rework_count > 0"}.get(figure, "TRUE")
    sql = (
        "SELECT i.id, i.external_id, c.code AS category, c.name AS category_name, i.state, "
        f"{light_sql('i', 'c')} AS light, i.received_at, i.due_at, i.closed_at, "
        "i.closed_on_time, i.rework_count, i.grid_code, i.street_code, i.responsible_code, "
        f"d.code AS department, i.card, coalesce(({hit}), false) AS hit, "
        "round((extract(epoch FROM i.closed_at - i.received_at) / 3600.0)::numeric, 2) "
        "AS handling_h, count(*) OVER () AS n_total "
        "FROM incident i JOIN category c ON c.id = i.category_id "
        "LEFT JOIN department d ON d.id = i.department_id "
        f"WHERE {' AND '.join(where)} ORDER BY i.due_at NULLS LAST, i.id LIMIT :limit")
    rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
    n = int(rows[0]["n_total"]) if rows else 0
    hits = None
    if against is not None or figure in ("closure_rate", "on_time_rate", "rework_rate"):
        hits = conn.execute(text(
            f"SELECT count(*) FILTER (WHERE {hit}) FROM incident i "
            "LEFT JOIN department d ON d.id = i.department_id "
            f"WHERE {' AND '.join(where)}"), params).scalar_one()
    for r in rows:
        r.pop("n_total")
        for k in ("received_at", "due_at", "closed_at"):
            if r[k] is not None:
                r[k] = r[k].astimezone(tz).isoformat()
        r["handling_h"] = None if r["handling_h"] is None else float(r["handling_h"])
    return {"month": month, "level": level, "code": code, "figure": figure, "set": base,
            "total": n, "hits": hits, "rows": rows, "truncated": n > len(rows),
            "rule": assessment.FIGURE_SQL[base]}


def grid_summary(conn: Connection, *, principal: Principal, code: str,
                 month: str | None = None) -> GridSummary:
    """A grid's open cases (with lights), its month's figures, coverage, last patrol, and its
    worker and backup."""
    tz = profile(conn).tz
    principal.require(Permission.ASSESSMENT_READ)
    scope = principal.locate_scope()
    grid = conn.execute(text(
        "SELECT r.code, r.name, r.area_m2, p.name AS community, s.name AS street "
        "FROM region_current r LEFT JOIN region p ON p.code = left(r.code, 12) "
        "LEFT JOIN region s ON s.code = left(r.code, 9) || '000' "
        "WHERE r.code = :c AND r.level = 'grid'"), {"c": code}).mappings().first()
    if grid is None or not scope.covers(code):
        raise RegionNotFound("No such grid in your jurisdiction.", detail={"code": code[:20]})
    month = month or datetime.now(tz).strftime("%Y-%m")
    s, e = assessment.month_window(month, tz)
    light = light_sql("i", "c")
    open_rows = [dict(r) for r in conn.execute(text(
        f"SELECT i.id, i.external_id, c.name AS category_name, i.state, {light} AS light, "
        "i.received_at, i.due_at, i.card FROM incident i JOIN category c ON c.id = i.category_id "
        f"WHERE i.grid_code = :c AND i.state IN {OPEN_SQL} ORDER BY CASE "
        f"{light} WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 ELSE 2 END, i.received_at"),
        {"c": code}).mappings()]
    lights = {k: sum(r["light"] == k for r in open_rows) for k in ("red", "yellow", "green")}
    for r in open_rows:
        for k in ("received_at", "due_at"):
            if r[k] is not None:
                r[k] = r[k].astimezone(tz).isoformat()
    figures = assessment.monthly(conn, principal=principal, month=month, level="grid",
                                 region=code)
    row = next((r for r in figures["rows"] if r["code"] == code), None)
    cover = conn.execute(text(
        "SELECT max(last_fix_at) AS last_fix, count(*) FILTER (WHERE span = 'd' AND t0 >= :a "
        "AND t0 < :b) AS days FROM patrol_grid_cover WHERE grid_code = :c"),
        {"c": code, "a": s.astimezone(tz).date(), "b": e.astimezone(tz).date()}
    ).mappings().one()
    staff = [dict(r) for r in conn.execute(text(
        "SELECT a.duty, st.code, st.name, st.phone, st.role, st.status FROM assignment a "
        "JOIN region r ON r.id = a.region_id JOIN staff st ON st.id = a.staff_id "
        "WHERE r.code = :c AND a.duty IN ('primary', 'backup') AND a.valid_from <= now() "
        "AND (a.valid_to IS NULL OR a.valid_to > now()) ORDER BY a.duty DESC, st.code"),
        {"c": code}).mappings()]
    if not principal.sees_personal_data(code):
        from grids.access import mask_phone
        for p in staff:
            p["phone"] = mask_phone(p["phone"])
    last_fix: datetime | None = cover["last_fix"]
    return {
        "code": grid["code"], "name": grid["name"], "community": grid["community"],
        "street": grid["street"], "area_m2": grid["area_m2"], "month": month,
        "open": {"total": len(open_rows), "lights": lights, "rows": open_rows[:50]},
        "figures": row, "coverage_days": figures.get("coverage_days"),
        "patrolled_days": int(cover["days"]),
        "last_patrol": None if last_fix is None else last_fix.astimezone(tz).isoformat(),
        "primary": next((p for p in staff if p["duty"] == "primary"), None),
        "backup": next((p for p in staff if p["duty"] == "backup"), None),
        "formulas": {k: assessment.FORMULAS[k] for k in KEY_FIGURES if k in assessment.FORMULAS},
    }

