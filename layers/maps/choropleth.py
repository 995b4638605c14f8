"""Incidents per grid, community or street, for choropleths: exact, from the tallies plus the
raw rows at the window's ends."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, text

from grids.access import Principal, Scope
from grids.city import profile
from layers.maps import tally
from layers.maps.filters import (
    LEVEL_COLUMN,
    NO_FILTER,
    IncidentFilter,
    MapRequestError,
    custom_plans,
    map_scope,
    place_sql,
)


def counts(conn: Connection, *, principal: Principal, level: str,
           filters: IncidentFilter = NO_FILTER, geometry: bool = False) -> dict[str, Any]:
    """Incidents per grid, community or street in force now, with rates, for choropleths.

    Incidents are counted by the region they were assigned at intake (kept across redraws).
    Regions outside the caller's jurisdiction are left out; regions with no incident are listed
    with zero. Rates per 1,000 households are null: household counts are not held.
    """
    column = LEVEL_COLUMN.get(level)
    if column is None:
        raise MapRequestError("level is grid, community or street.",
                              detail={"field": "level", "expected": list(LEVEL_COLUMN)})
    scope = map_scope(principal)
    custom_plans(conn)
    sql, params = grid_counts(filters, scope, column, tz=profile(conn).tz)
    rscope, more = place_sql(scope, filters.region, column="r.code")
    params |= more
    geom = ", ST_AsGeoJSON(r.geom, 6) AS geom" if geometry else ""
    params["level"] = level
    rows = conn.execute(text(
        f"WITH n AS ({sql}) "
        "SELECT r.code, r.name, r.area_m2, coalesce(n.incidents, 0) AS incidents, "
        "coalesce(n.open, 0) AS open, coalesce(n.overdue, 0) AS overdue" + geom + " "
        f"FROM region_current r LEFT JOIN n ON n.code = r.code "
        f"WHERE r.level = :level AND {rscope} ORDER BY r.code"), params).mappings().all()
    items = []
    for r in rows:
        km2 = r["area_m2"] / 1e6
        item = {"code": r["code"], "name": r["name"], "area_km2": round(km2, 4),
                "incidents": r["incidents"], "open": r["open"], "overdue": r["overdue"],
                "per_km2": round(r["incidents"] / km2, 3) if km2 > 0 else None,
                "per_1000_households": None}
        if geometry:
            item["geometry"] = orjson.loads(r["geom"])
        items.append(item)
    return {"level": level, "items": items, "total": sum(i["incidents"] for i in items),
            "notes": {"per_1000_households": "null: household counts per region are not held "
                                             "in CityGrid yet",
                      "counted_by": "the region assigned at intake (kept across redraws)",
                      "overdue": "open and past due_at now"}}



def grid_counts(filters: IncidentFilter, scope: Scope, column: str, *, tz: ZoneInfo,
                 codes_sql: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(code, incidents, open, overdue)`` per ``column``: grid tally plus raw ends (exact)."""
    rest = IncidentFilter(categories=filters.categories, states=filters.states,
                          region=filters.region)
    where, params = rest.sql(scope)
    sql, more = tally.grid_counts_sql(
        since=filters.since, until=filters.until, categories=filters.categories,
        states=filters.states, scope=scope, region=filters.region, raw_where=where,
        column=column, codes_sql=codes_sql, tz=tz)
    return sql, params | more
