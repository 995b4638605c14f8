"""A month's figures by today's boundaries (``boundaries=today``), through the crosswalk.

By default (``then``) an incident counts for the grid it was given at intake, so a redraw never
moves old cases (:mod:`layers.assessment`). ``today`` re-aggregates the month onto the grids in
force now, so a figure stays comparable across a redraw:

* Only incidents whose intake grid was changed by a redraw that took effect after they were
  received (``boundary_crosswalk.old_code`` = their grid, ``effective_at`` > ``received_at``,
  up to now) move; every other incident keeps its units, so with no redraw since, ``today``
  equals ``then`` exactly.
* Such an incident **with a point** is placed again in today's grids: the grid in force now
  that covers its point, among those its old grid's area went to (the crosswalk composed; on a
  shared edge the smallest code). Points are tested in Python against the few target shapes,
  prepared once (shapely), not by a spatial query per case. This is exact: the crosswalk's
  area shares would spread a case over both halves of a split, but a case happened at one place,
  and we have the place.
* One **without a point** (or whose point lies in none of those grids) is carried by the crosswalk:
  it counts for each grid its old grid's area went to, weighted by the composed area share
  (:class:`grids.plans.crosswalk.Crosswalk`), so counts can be fractional (rounded to 3
  decimals). Area that went to no grid (the crosswalk's remainder) counts under code null.
* Communities and streets of a moved incident are those of its grid today (a grid moved to
  another community takes its cases there). Workers and departments are not boundaries: for
  those levels ``today`` is ``then``.
* Rates and the mean handling time are computed from the weighted counts; the p90 handling time
  is over the cases with any share in the unit (unweighted). Patrol coverage is already read
  over the grids in force now and is the same either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import shapely
from sqlalchemy import Connection, text

from grids.access import Permission, Principal, prefix_of
from grids.city import profile
from grids.plans.crosswalk import load
from layers import assessment
from layers.analysis import trends

Boundaries = Literal["then", "today"]
COUNTS = assessment.COLUMNS[2:10]
_WINDOW = (f"({assessment.RECEIVED_SQL} OR {assessment.CLOSED_SQL} OR "
           f"({assessment.DUE_SQL}))")
_KEYS = {
    "grid": "i.tg",
    "community": "CASE WHEN i.moved THEN left(i.tg, 12) ELSE i.community_code END",
    "street": "CASE WHEN i.moved THEN left(i.tg, 9) || '000' ELSE i.street_code END",
    "worker": "i.responsible_code",
    "department": "d.code",
    "total": "''",
}


def moved(conn: Connection, *, start: datetime, end: datetime, as_of: datetime
          ) -> list[tuple[int, str | None, float]]:
    """(incident id, grid today, weight) for the window's incidents whose intake grid a later
    redraw changed (see the module doc)."""
    cw = load(conn)
    olds = sorted({old for _, _, moves in cw.steps for old in moves})
    if not olds:
        return []
    rows = [r for r in conn.execute(text(
        "SELECT i.id, i.grid_code, i.received_at, ST_X(i.geom) AS x, ST_Y(i.geom) AS y "
        f"FROM incident i WHERE {_WINDOW} AND i.grid_code = ANY(:olds)"),
        {"s": start, "e": end, "as_of": as_of, "olds": olds}).all()
        if cw.changed_since(r.grid_code, r.received_at)]
    shares = {(r.grid_code, r.received_at): cw.compose(r.grid_code, r.received_at)
              for r in rows}
    targets = sorted({c for sh in shares.values() for c in sh if c is not None})
    shapes = {c: shapely.from_wkb(bytes(w)) for c, w in conn.execute(text(
        "SELECT code, ST_AsBinary(geom) FROM region_current WHERE level = 'grid' "
        "AND code = ANY(:c)"), {"c": targets}).all()}
    shapely.prepare(list(shapes.values()))
    out: list[tuple[int, str | None, float]] = []
    for r in rows:
        sh = shares[(r.grid_code, r.received_at)]
        placed = None
        if r.x is not None:  # the grids its old grid's area went to, smallest code first
            placed = next((c for c in sorted(k for k in sh if k is not None)
                           if c in shapes and shapely.intersects_xy(shapes[c], r.x, r.y)), None)
        if placed is not None:
            out.append((r.id, placed, 1.0))
        else:
            out.extend((r.id, code, share) for code, share in sh.items())
    return out


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _num(v: Any) -> int | float:
    f = float(v or 0)
    return int(round(f)) if abs(f - round(f)) < 1e-9 else round(f, 3)


def figures(conn: Connection, *, principal: Principal, start: datetime, end: datetime,
            as_of: datetime, level: str, region: str | None) -> list[dict[str, Any]]:
    """The assessment's counts per unit of ``level`` (or ``total``) by today's grids."""
    mv = moved(conn, start=start, end=end, as_of=as_of)
    params: dict[str, Any] = {"s": start, "e": end, "as_of": as_of,
                              "ids": [m[0] for m in mv], "codes": [m[1] for m in mv],
                              "ws": [m[2] for m in mv]}
    where = ["TRUE"]
    place = "CASE WHEN i.moved THEN coalesce(i.tg, i.region_code) ELSE i.region_code END"
    scope = principal.locate_scope()
    if not scope.covers(None):
        where.append(f"{place} LIKE ANY(:scope)")
        params["scope"] = scope.like_patterns()
    if region:
        where.append(f"{place} LIKE :region")
        params["region"] = prefix_of(region) + "%"
    f = assessment.FIGURE_SQL
    hours = "extract(epoch FROM i.closed_at - i.received_at) / 3600.0"
    counts = ", ".join(f"sum(i.w) FILTER (WHERE {f[k]}) AS {k}" for k in COUNTS)
    cols = ("id, received_at, closed_at, due_at, state, closed_on_time, rework_count, "
            "department_id, responsible_code, region_code, community_code, street_code")
    rows = conn.execute(text(
        "WITH x AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:codes AS text[]), "
        " CAST(:ws AS float8[])) AS x(id, tg, w)), "
        f"y AS (SELECT {', '.join('i.' + c for c in cols.split(', '))}, "
        " CASE WHEN x.id IS NULL THEN i.grid_code ELSE x.tg END AS tg, "
        " coalesce(x.w, 1.0) AS w, x.id IS NOT NULL AS moved "
        f" FROM incident i LEFT JOIN x ON x.id = i.id WHERE {_WINDOW}) "
        f"SELECT {_KEYS[level]} AS code, {counts}, "
        f"sum(i.w * {hours}) FILTER (WHERE {f['closed']}) AS sum_h, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {hours}) FILTER (WHERE {f['closed']}) "
        "AS p90_h FROM y i LEFT JOIN department d ON d.id = i.department_id "
        f"WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1 NULLS LAST"), params).mappings().all()
    out = []
    rate = _rate
    for r in rows:
        c = {k: _num(r[k]) for k in COUNTS}
        out.append({
            "code": r["code"], **c,
            "closure_rate": rate(c["due_closed"], c["due"]),
            "on_time_rate": rate(c["due_closed_on_time"], c["due"]),
            "rework_rate": rate(c["reworked"], c["closed"]),
            "mean_handling_h": (round(float(r["sum_h"]) / float(c["closed"]), 2)
                                if r["sum_h"] is not None and c["closed"] else None),
            "p90_handling_h": None if r["p90_h"] is None else round(float(r["p90_h"]), 2)})
    return out


def monthly(conn: Connection, *, principal: Principal, month: str, level: str = "street",
            region: str | None = None, as_of: datetime | None = None,
            boundaries: Boundaries = "then") -> dict[str, Any]:
    """:func:`layers.assessment.monthly`, by the month's boundaries (``then``) or today's."""
    res = assessment.monthly(conn, principal=principal, month=month, level=level, region=region,
                             as_of=as_of)
    res["boundaries"] = boundaries
    if boundaries != "today" or level in ("worker", "department", "city"):
        if boundaries == "today":
            res["notes"].append("boundaries=today: workers, departments and cities are not "
                                "redrawn; the figures are those of the month.")
        return res
    tz = profile(conn).tz
    start, end = assessment.month_window(month, tz)
    at = datetime.fromisoformat(res["as_of"])
    rows = figures(conn, principal=principal, start=start, end=end, as_of=at, level=level,
                   region=region)
    old = {r["code"]: r for r in res["rows"]}
    codes = [r["code"] for r in rows if r["code"] is not None and r["code"] not in old]
    names: dict[str, str] = (dict(conn.execute(text(
        "SELECT code, name FROM region WHERE code = ANY(:c)"), {"c": codes}).all())
        if codes else {})
    out = []
    for r in rows:
        prev = old.pop(r["code"], None)
        patrol = {k: (prev or {}).get(k) for k in ("grids", "patrolled_grids", "patrol_coverage")}
        out.append({"code": r["code"], "name": (prev or {}).get("name")
                    or names.get(r["code"] or "", "(none)"), **r, **patrol})
    for prev in old.values():  # units with patrol data or grids but no case today
        if prev.get("grids") is not None:
            out.append({**prev, **{c: 0 for c in COUNTS},
                        **{c: None for c in assessment.COLUMNS[10:15]}})
    out.sort(key=lambda r: (r["code"] is None, r["code"] or ""))
    res["rows"] = out
    res["notes"].append(
        "boundaries=today: incidents whose grid a later redraw changed are placed again in "
        "today's grids by their point, or carried by the crosswalk's area shares when they have "
        "none (fractional counts); see layers/analysis/crosswalk.py.")
    return res


def series(conn: Connection, *, principal: Principal, month: str, months: int = 12,
           region: str | None = None, as_of: datetime | None = None,
           boundaries: Boundaries = "then") -> dict[str, Any]:
    """:func:`layers.analysis.trends.series`, by each month's boundaries or by today's."""
    res = trends.series(conn, principal=principal, month=month, months=months, region=region,
                        as_of=as_of)
    res["boundaries"] = boundaries
    if boundaries != "today":
        return res
    principal.require(Permission.ASSESSMENT_READ)
    tz = profile(conn).tz
    at = as_of or datetime.now(tz)
    rate = _rate
    for row in res["rows"]:
        s, e = assessment.month_window(row["month"], tz)
        got = figures(conn, principal=principal, start=s, end=e, as_of=at, level="total",
                      region=region)
        c = {k: got[0][k] if got else 0 for k in COUNTS}
        row.update(c)
        row.update({"closure_rate": rate(c["due_closed"], c["due"]),
                    "on_time_rate": rate(c["due_closed_on_time"], c["due"]),
                    "rework_rate": rate(c["reworked"], c["closed"]),
                    "mean_handling_h": got[0]["mean_handling_h"] if got else None})
    return res
