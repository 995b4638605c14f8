"""Reading the registry: regions by level, one region with its chain, children, staff.

Every read takes ``at`` (None = now) and answers from the boundaries in force at that time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.access import Principal, Scope, mask_person
from grids.codes import normalise
from grids.errors import RegionNotFound
from grids.sql import in_scope

# Boundaries in force at :at (NULL = now). Kept as one fragment so every read agrees.
_IN_FORCE = (
    "b.valid_from <= coalesce(CAST(:at AS timestamptz), now()) AND "
    "(b.valid_to IS NULL OR b.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
)

_REGION_COLUMNS = (
    "r.code, r.level, r.name, p.code AS parent_code, b.area_m2, b.version_id, b.valid_from"
)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


def list_regions(
    conn: Connection, *, scope: Scope, level: str | None = None, parent: str | None = None,
    q: str | None = None, limit: int = 100, offset: int = 0, at: datetime | None = None,
) -> Page:
    """Regions in ``scope``, filtered by level, parent code and a name/code prefix, by code."""
    params: dict[str, Any] = {"at": at, "limit": limit, "offset": offset}
    where = [_IN_FORCE]
    cond, scoped = in_scope(scope, "r.code")
    where.append(cond)
    params |= scoped
    if level:
        where.append("r.level = :level")
        params["level"] = level
    if parent:
        where.append("p.code = :parent")
        params["parent"] = normalise(parent)
    if q:
        where.append("(r.name LIKE :q_any ESCAPE '\\' OR r.code LIKE :q_prefix ESCAPE '\\')")
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["q_any"] = f"%{escaped}%"
        params["q_prefix"] = f"{escaped}%"
    sql = (
        f"SELECT {_REGION_COLUMNS}, count(*) OVER () AS total "
        "FROM region r JOIN region_boundary b ON b.region_id = r.id "
        "LEFT JOIN region p ON p.id = b.parent_id "
        f"WHERE {' AND '.join(where)} ORDER BY r.code LIMIT :limit OFFSET :offset"
    )
    rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
    total = rows[0].pop("total") if rows else _count(conn, where, params)
    for r in rows[1:]:
        r.pop("total")
    return Page(items=rows, total=total, limit=limit, offset=offset)


def _count(conn: Connection, where: list[str], params: dict[str, Any]) -> int:
    sql = (
        "SELECT count(*) FROM region r JOIN region_boundary b ON b.region_id = r.id "
        f"LEFT JOIN region p ON p.id = b.parent_id WHERE {' AND '.join(where)}"
    )
    return conn.execute(text(sql), params).scalar_one()


def get_region(
    conn: Connection, code: str, *, scope: Scope, at: datetime | None = None,
    geometry: bool = True,
) -> dict[str, Any]:
    """One region with its geometry (GeoJSON, 7 decimals ≈ 1 cm) and its chain of parents.

    A region outside ``scope`` is reported exactly like one that does not exist.
    """
    code = normalise(code)
    geom_sql = ", ST_AsGeoJSON(b.geom, 7) AS geometry" if geometry else ""
    row = conn.execute(
        text(
            f"SELECT {_REGION_COLUMNS}{geom_sql} FROM region r "
            "JOIN region_boundary b ON b.region_id = r.id "
            f"LEFT JOIN region p ON p.id = b.parent_id WHERE r.code = :code AND {_IN_FORCE}"
        ),
        {"code": code, "at": at},
    ).mappings().first()
    if row is None or not scope.covers(code):
        raise RegionNotFound(
            f"No region {code} is in force{' at ' + at.isoformat() if at else ''}.",
            detail={"field": "code", "value": code},
        )
    region = dict(row)
    if geometry:
        region["geometry"] = orjson.loads(region["geometry"])
    region["chain"] = chain(conn, code, at=at)
    return region


def chain(conn: Connection, code: str, *, at: datetime | None = None) -> list[dict[str, Any]]:
    """The parents of a region, nearest first, up to the city."""
    rows = conn.execute(
        text(
            "WITH RECURSIVE up AS ("
            f" SELECT b.parent_id, 0 AS depth FROM region r JOIN region_boundary b "
            f"  ON b.region_id = r.id WHERE r.code = :code AND {_IN_FORCE}"
            " UNION ALL"
            f" SELECT b.parent_id, up.depth + 1 FROM up JOIN region_boundary b "
            f"  ON b.region_id = up.parent_id WHERE {_IN_FORCE} AND up.depth < 8"
            ") SELECT r.code, r.level, r.name FROM up JOIN region r ON r.id = up.parent_id "
            "ORDER BY up.depth"
        ),
        {"code": normalise(code), "at": at},
    ).mappings()
    return [dict(r) for r in rows]


def children(conn: Connection, code: str, *, scope: Scope, at: datetime | None = None,
             limit: int = 1000, offset: int = 0) -> Page:
    """The regions directly under ``code``; not found if ``code`` is not in force or in scope."""
    get_region(conn, code, scope=scope, at=at, geometry=False)
    return list_regions(conn, scope=scope, parent=code, at=at, limit=limit, offset=offset)


def region_staff(conn: Connection, code: str, *, principal: Principal,
                 at: datetime | None = None) -> list[dict[str, Any]]:
    """Staff assigned to a region at ``at``, phones masked unless the principal may see them."""
    code = normalise(code)
    get_region(conn, code, scope=principal.scope, at=at, geometry=False)
    rows = conn.execute(
        text(
            "SELECT s.code, s.name, s.phone, s.role, s.status, a.duty, a.valid_from, a.valid_to "
            "FROM assignment a JOIN staff s ON s.id = a.staff_id JOIN region r ON r.id = a.region_id "
            "WHERE r.code = :code AND a.valid_from <= coalesce(CAST(:at AS timestamptz), now()) "
            "AND (a.valid_to IS NULL OR a.valid_to > coalesce(CAST(:at AS timestamptz), now())) "
            "ORDER BY CASE a.duty WHEN 'primary' THEN 0 WHEN 'backup' THEN 1 ELSE 2 END, s.code"
        ),
        {"code": code, "at": at},
    ).mappings()
    return [mask_person(dict(r), principal, code) for r in rows]
