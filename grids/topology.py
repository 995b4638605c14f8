"""Topology of the region tree: every place in exactly one grid, every grid inside its community.

``check`` looks at the boundaries in force at a time (``at``, None = now) and reports, as
:class:`Violation` values:

- ``invalid_geometry``: a boundary that is not a valid polygon (``ST_IsValid`` false), with the
  place ``ST_IsValidDetail`` names. The schema's CHECK constraint normally keeps these out; the
  check is there for data that bypassed it (restored dumps, a dropped constraint). The other
  checks go on with ``ST_MakeValid`` of such a boundary so that one bad ring cannot abort them.
- ``outside_parent``: the part of a child that lies outside its parent (``ST_Difference``).
- ``overlap``: the part two siblings (same parent) share (``ST_Intersection``).
- ``gap``: each piece of a parent not covered by the union of its children (``ST_Difference``
  then ``ST_Dump``); a parent (city, street, community) with no children at all is one gap over
  its whole area, whatever that area.
- ``missing_parent``: a street, community or grid whose parent has no boundary in force (or that
  has no parent at all).
- ``level_mismatch``: a region hanging under a parent of the wrong level (a grid directly under a
  street, a city under anything but a province, a province under anything, ...).

Tolerance
---------
Areas are measured in m² in the city's metric CRS (``grids.city``: by default the CGCS2000
3-degree Gauss-Krüger zone of the city; in a province, each city's own zone), as
``ST_Area(ST_Transform(geom, citygrid_metric_srid(code)))``. An overlap, a part outside the parent
or a gap piece is reported only when its area is **strictly greater than** ``tolerance_m2``
(default 1 m²). That absorbs the floating-point slivers left where neighbours share an edge
that was computed twice, and is far below anything a planner draws on purpose (a grid is ~10⁴–10⁶ m²). Invalid
geometries, missing parents and level mismatches are reported whatever their area.

Scope
-----
``root_code`` restricts the check to that region and everything below it: gaps and validity are
checked for the root and its descendants, while the relations of a child to its parent and
siblings (outside_parent, overlap, missing_parent, level_mismatch) are checked for the
descendants only; the root's own place under its parent is its parent's business.

All geometry work runs in PostGIS with bound parameters; sibling pairs are found through the
GiST index on ``region_boundary.geom`` (``a.geom && b.geom AND a.id < b.id``). On the demo city
(3,381 regions, 2,822 grids) a full check takes about 4-6 s; one street about 0.5 s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.codes import PARENT_LEVEL, normalise
from grids.errors import RegionNotFound

KINDS = ("invalid_geometry", "outside_parent", "overlap", "gap", "missing_parent",
         "level_mismatch")


@dataclass(frozen=True, slots=True)
class Violation:
    """One topology problem.

    Attributes
    ----------
    kind
        One of ``KINDS``.
    code, other_code
        The region at fault; for an overlap the two siblings (``code`` < ``other_code``), for a
        gap the parent that is not covered.
    parent_code
        The parent whose tiling is broken: the child's parent, or for a gap the region itself.
    area_m2
        Area of the problem in the city's metric CRS (for missing_parent and level_mismatch the region's
        area; 0 for an invalid geometry, whose problem is a point).
    location
        (lon, lat) in EPSG:4490 of a point inside the problem area (``ST_PointOnSurface``), or
        where GEOS found the geometry invalid.
    geometry
        The problem area as a GeoJSON dict in EPSG:4490; None for an invalid geometry and a
        level mismatch.
    message
        One English sentence for people.
    """

    kind: str
    code: str
    other_code: str | None
    parent_code: str | None
    area_m2: float
    location: tuple[float, float] | None
    geometry: dict[str, Any] | None
    message: str


def _in_force(alias: str) -> str:
    """Boundaries of ``alias`` in force at :at (NULL = now); the idiom of ``registry._IN_FORCE``."""
    return (
        f"{alias}.valid_from <= coalesce(CAST(:at AS timestamptz), now()) AND "
        f"({alias}.valid_to IS NULL OR "
        f"{alias}.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
    )


def _safe(alias: str) -> str:
    """The boundary's geometry, repaired only when it was found invalid (ids in :invalid)."""
    return (f"CASE WHEN {alias}.id = ANY(CAST(:invalid AS bigint[])) "
            f"THEN ST_MakeValid({alias}.geom) ELSE {alias}.geom END")


# Columns describing a problem geometry ``g`` (already polygonal) of a subquery.
_PROBLEM = (
    "ST_Area(ST_Transform(g, citygrid_metric_srid(code))) AS area_m2, "
    "ST_X(ST_PointOnSurface(g)) AS lon, "
    "ST_Y(ST_PointOnSurface(g)) AS lat, ST_AsGeoJSON(g) AS geometry"
)

_SCOPE_ALL = f"SELECT b.id, 1 AS depth FROM region_boundary b WHERE {_in_force('b')}"

_SCOPE_ROOT = (
    "WITH RECURSIVE s AS ("
    f" SELECT b.id, b.region_id, 0 AS depth FROM region_boundary b JOIN region r"
    f"  ON r.id = b.region_id WHERE r.code = :root AND {_in_force('b')}"
    " UNION ALL"
    f" SELECT b.id, b.region_id, s.depth + 1 FROM region_boundary b JOIN s"
    f"  ON b.parent_id = s.region_id WHERE {_in_force('b')} AND s.depth < 8"
    ") SELECT id, depth FROM s"
)

_INVALID = (
    "SELECT b.id, r.code, r.level, p.code AS parent_code, d.reason, "
    "ST_X(coalesce(d.location, ST_Centroid(ST_Envelope(b.geom)))) AS lon, "
    "ST_Y(coalesce(d.location, ST_Centroid(ST_Envelope(b.geom)))) AS lat "
    "FROM region_boundary b JOIN region r ON r.id = b.region_id "
    "LEFT JOIN region p ON p.id = b.parent_id "
    "CROSS JOIN LATERAL ST_IsValidDetail(b.geom) d "
    "WHERE b.id = ANY(CAST(:scope AS bigint[])) AND NOT d.valid ORDER BY r.code"
)

_PARENTS = (
    "SELECT r.code, r.level, p.code AS parent_code, p.level AS parent_level, "
    "pb.id IS NOT NULL AS parent_in_force, b.area_m2, "
    f"ST_X(ST_PointOnSurface({_safe('b')})) AS lon, ST_Y(ST_PointOnSurface({_safe('b')})) AS lat, "
    f"ST_AsGeoJSON({_safe('b')}) AS geometry "
    "FROM region_boundary b JOIN region r ON r.id = b.region_id "
    "LEFT JOIN region p ON p.id = b.parent_id "
    f"LEFT JOIN region_boundary pb ON pb.region_id = b.parent_id AND {_in_force('pb')} "
    "WHERE b.id = ANY(CAST(:children AS bigint[])) AND ("
    " (r.level = 'province' AND b.parent_id IS NOT NULL)"
    " OR (r.level NOT IN ('province', 'city') AND (b.parent_id IS NULL OR pb.id IS NULL))"
    " OR (r.level = 'city' AND b.parent_id IS NOT NULL AND pb.id IS NULL)"
    " OR (p.level IS NOT NULL AND (r.level, p.level) NOT IN"
    "  (('city', 'province'), ('street', 'city'), ('community', 'street'),"
    "   ('grid', 'community')))"
    ") ORDER BY r.code"
)

_OUTSIDE = (
    f"SELECT code, level, parent_code, {_PROBLEM} FROM ("
    " SELECT rc.code, rc.level, rp.code AS parent_code, "
    f"  ST_CollectionExtract(ST_Difference({_safe('c')}, {_safe('p')}), 3) AS g"
    " FROM region_boundary c JOIN region rc ON rc.id = c.region_id"
    f" JOIN region_boundary p ON p.region_id = c.parent_id AND {_in_force('p')}"
    " JOIN region rp ON rp.id = p.region_id"
    " WHERE c.id = ANY(CAST(:children AS bigint[]))"
    f"  AND NOT ST_CoveredBy({_safe('c')}, {_safe('p')})"
    ") q WHERE ST_Area(ST_Transform(g, citygrid_metric_srid(code))) > :tol ORDER BY code"
)

_OVERLAP = (
    f"SELECT code, level, other_code, parent_code, {_PROBLEM} FROM ("
    " SELECT ra.code, ra.level, rb.code AS other_code, rp.code AS parent_code, "
    f"  ST_CollectionExtract(ST_Intersection({_safe('a')}, {_safe('b')}), 3) AS g"
    " FROM region_boundary a"
    " JOIN region_boundary b ON a.geom && b.geom AND a.id < b.id AND a.parent_id = b.parent_id"
    " JOIN region ra ON ra.id = a.region_id JOIN region rb ON rb.id = b.region_id"
    " JOIN region rp ON rp.id = a.parent_id"
    " WHERE a.id = ANY(CAST(:children AS bigint[])) AND b.id = ANY(CAST(:children AS bigint[]))"
    f"  AND ST_Intersects({_safe('a')}, {_safe('b')})"
    ") q WHERE ST_Area(ST_Transform(g, citygrid_metric_srid(code))) > :tol ORDER BY code, other_code"
)

# One row per uncovered piece of a parent; a parent without children is one row (n = 0) whose
# piece is the whole parent.
_GAP = (
    f"SELECT code, level, n, {_PROBLEM} FROM ("
    " SELECT u.code, u.level, u.n, x.g FROM ("
    "  SELECT rp.code, rp.level, count(c.id) AS n, "
    f"   {_safe('p')} AS pg, "
    f"   ST_CollectionExtract(ST_Difference({_safe('p')}, ST_Union({_safe('c')})), 3) AS d"
    "  FROM region_boundary p JOIN region rp ON rp.id = p.region_id"
    "  LEFT JOIN region_boundary c ON c.parent_id = p.region_id"
    "   AND c.id = ANY(CAST(:scope AS bigint[]))"
    "  WHERE p.id = ANY(CAST(:scope AS bigint[])) AND rp.level <> 'grid'"
    "  GROUP BY p.id, rp.code, rp.level"
    " ) u CROSS JOIN LATERAL ("
    "  SELECT u.pg AS g WHERE u.n = 0"
    "  UNION ALL SELECT dp.geom FROM ST_Dump(u.d) dp WHERE u.n > 0"
    " ) x"
    ") q WHERE n = 0 OR ST_Area(ST_Transform(g, citygrid_metric_srid(code))) > :tol ORDER BY code"
)

_CHILD_NOUN = {"province": "cities", "city": "streets", "street": "communities",
               "community": "grids"}


def check(
    conn: Connection, *, at: datetime | None = None, root_code: str | None = None,
    tolerance_m2: float = 1.0,
) -> list[Violation]:
    """All topology violations among the boundaries in force at ``at`` (None = now).

    Parameters
    ----------
    conn
        A connection; nothing is written.
    at
        The time whose boundaries are checked.
    root_code
        Check only this region and what lies below it (raises ``RegionNotFound`` if it is not
        in force at ``at``).
    tolerance_m2
        Overlaps, parts outside the parent and gap pieces up to this area are ignored.

    Returns
    -------
    list of Violation
        Ordered by kind (as in ``KINDS``), then code.
    """
    params: dict[str, Any] = {"at": at, "tol": float(tolerance_m2)}
    if root_code is None:
        scope_rows = conn.execute(text(_SCOPE_ALL), params).all()
    else:
        params["root"] = normalise(root_code)
        scope_rows = conn.execute(text(_SCOPE_ROOT), params).all()
        if not scope_rows:
            raise RegionNotFound(
                f"No region {params['root']} is in force"
                f"{' at ' + at.isoformat() if at else ''}.",
                detail={"field": "root_code", "value": params["root"]},
            )
    params["scope"] = [r.id for r in scope_rows]
    params["children"] = [r.id for r in scope_rows if r.depth > 0]
    params["invalid"] = []

    out: list[Violation] = []
    invalid = conn.execute(text(_INVALID), params).mappings().all()
    params["invalid"] = [r["id"] for r in invalid]
    for r in invalid:
        out.append(Violation(
            kind="invalid_geometry", code=r["code"], other_code=None,
            parent_code=r["parent_code"], area_m2=0.0, location=(r["lon"], r["lat"]),
            geometry=None,
            message=f"{_title(r['level'])} {r['code']} has an invalid boundary: {r['reason']}.",
        ))

    for r in conn.execute(text(_OUTSIDE), params).mappings():
        out.append(Violation(
            kind="outside_parent", code=r["code"], other_code=None, parent_code=r["parent_code"],
            area_m2=r["area_m2"], location=(r["lon"], r["lat"]),
            geometry=orjson.loads(r["geometry"]),
            message=(f"{_title(r['level'])} {r['code']} extends {r['area_m2']:.1f} m² outside "
                     f"its parent {r['parent_code']} near {_where(r)}."),
        ))

    for r in conn.execute(text(_OVERLAP), params).mappings():
        out.append(Violation(
            kind="overlap", code=r["code"], other_code=r["other_code"],
            parent_code=r["parent_code"], area_m2=r["area_m2"], location=(r["lon"], r["lat"]),
            geometry=orjson.loads(r["geometry"]),
            message=(f"{_title(r['level'])} {r['code']} and its sibling {r['other_code']} "
                     f"overlap by {r['area_m2']:.1f} m² near {_where(r)}."),
        ))

    for r in conn.execute(text(_GAP), params).mappings():
        if r["n"] == 0:
            message = (f"{_title(r['level'])} {r['code']} has no {_CHILD_NOUN[r['level']]}, so "
                       f"all of its {r['area_m2']:.1f} m² is a gap.")
        else:
            message = (f"{r['area_m2']:.1f} m² of {r['level']} {r['code']} near {_where(r)} "
                       f"is covered by none of its {_CHILD_NOUN[r['level']]}.")
        out.append(Violation(
            kind="gap", code=r["code"], other_code=None, parent_code=r["code"],
            area_m2=r["area_m2"], location=(r["lon"], r["lat"]),
            geometry=orjson.loads(r["geometry"]), message=message,
        ))

    for r in conn.execute(text(_PARENTS), params).mappings():
        out.append(_parent_violation(r))

    order = {k: i for i, k in enumerate(KINDS)}
    out.sort(key=lambda v: (order[v.kind], v.code, v.other_code or ""))
    return out


def _parent_violation(r: Any) -> Violation:
    level, code, parent = r["level"], r["code"], r["parent_code"]
    expected = PARENT_LEVEL.get(level)
    common = {"code": code, "other_code": None, "parent_code": parent, "area_m2": r["area_m2"],
              "location": (r["lon"], r["lat"])}
    if level == "province" and parent is not None:
        return Violation(kind="level_mismatch", geometry=None,
                         message=f"Province {code} hangs under {parent}, but a province has no "
                                 "parent.", **common)
    if parent is None:
        return Violation(kind="missing_parent", geometry=orjson.loads(r["geometry"]),
                         message=f"{_title(level)} {code} has no parent {expected}.", **common)
    if r["parent_level"] != expected:
        return Violation(
            kind="level_mismatch", geometry=None,
            message=(f"{_title(level)} {code} hangs under {r['parent_level']} {parent}, but a "
                     f"{level} belongs to a {expected}."),
            **common,
        )
    return Violation(kind="missing_parent", geometry=orjson.loads(r["geometry"]),
                     message=(f"{_title(level)} {code} hangs under {parent}, which has no "
                              "boundary in force."),
                     **common)


def _title(level: str) -> str:
    return level.capitalize()


def _where(r: Any) -> str:
    return f"({r['lon']:.6f}, {r['lat']:.6f})"


def summary(violations: Iterable[Violation]) -> dict[str, int]:
    """Count violations by kind; every kind is present, zero when clean.

    >>> summary([])["gap"]
    0
    """
    counts = Counter(v.kind for v in violations)
    return {kind: counts.get(kind, 0) for kind in KINDS}
