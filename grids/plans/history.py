"""Boundary history: the versions, and what changed between two of them (a diff map).

The state "at version v" is the boundaries in force at the moment v took effect
(``boundary_version.effective_at``, or ``activated_at`` for versions written before plans
existed). A past version is restored by opening a plan with ``restore_version``
(:func:`grids.plans.create_plan`), so the restoration is itself a new version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

import orjson
from sqlalchemy import Connection, text

from gis.geojson import Feature, FeatureCollection
from grids.access import Principal, prefix_of
from grids.codes import normalise
from grids.errors import RegionNotFound
from grids.plans.draft import NOISE_M2


def versions(conn: Connection, *, principal: Principal, limit: int = 200
             ) -> list[dict[str, Any]]:
    """Activated boundary versions, newest first. Versions written by a plan are listed only if
    the plan's region is in the principal's jurisdiction; city-wide imports are listed for all."""
    rows = conn.execute(text(
        "SELECT v.id AS version, v.label, v.activated_at, "
        "coalesce(v.effective_at, v.activated_at) AS effective_at, v.plan_id, v.note, "
        "p.region_code FROM boundary_version v LEFT JOIN plan p ON p.id = v.plan_id "
        "WHERE v.activated_at IS NOT NULL ORDER BY v.id DESC LIMIT :limit"),
        {"limit": limit}).mappings().all()
    return [dict(r) for r in rows
            if r["region_code"] is None or principal.scope.covers(r["region_code"])]


def _moment(conn: Connection, version: int | None) -> datetime | None:
    if version is None:
        return None
    at = conn.execute(text(
        "SELECT coalesce(effective_at, activated_at) FROM boundary_version WHERE id = :v "
        "AND activated_at IS NOT NULL"), {"v": version}).scalar()
    if at is None:
        raise RegionNotFound(f"No boundary version {version}.",
                             detail={"field": "version", "value": version})
    return at


class DiffProps(TypedDict):
    code: str
    name: str
    change: Literal["new", "retired", "changed"]
    side: Literal["from", "to"]
    version: int  # the version whose boundary the feature shows
    parent_code: str
    moved_m2: float | None


class Diff(FeatureCollection[Feature[DiffProps]]):
    """:func:`diff`: one feature per side of each change, and the two versions compared."""

    from_version: int
    to_version: int | None


def diff(conn: Connection, *, region: str, from_version: int, to_version: int | None = None,
         principal: Principal, level: str = "grid") -> Diff:
    """The grids under ``region`` that differ between two versions, as GeoJSON.

    One feature per side of each change: ``change`` is ``new`` (only in ``to``), ``retired``
    (only in ``from``) or ``changed`` (both, with another shape or parent; the feature with
    ``side`` 'from' is the old shape, 'to' the new one). ``version`` is the version whose
    boundary the feature shows; ``to_version`` None means the boundaries in force now.
    """
    code = normalise(region)
    if not principal.scope.covers(code):
        raise RegionNotFound(f"No region {code} in your jurisdiction.",
                             detail={"field": "region", "value": code})
    t0, t1 = _moment(conn, from_version), _moment(conn, to_version)
    rows = conn.execute(text(
        "WITH a AS (SELECT r.code, r.name, p.code AS parent_code, b.geom, b.version_id "
        " FROM region_boundary b JOIN region r ON r.id = b.region_id "
        " JOIN region p ON p.id = b.parent_id WHERE r.level = :level AND r.code LIKE :prefix "
        " AND b.valid_from <= :t0 AND (b.valid_to IS NULL OR b.valid_to > :t0)), "
        "z AS (SELECT r.code, r.name, p.code AS parent_code, b.geom, b.version_id "
        " FROM region_boundary b JOIN region r ON r.id = b.region_id "
        " JOIN region p ON p.id = b.parent_id WHERE r.level = :level AND r.code LIKE :prefix "
        " AND b.valid_from <= coalesce(CAST(:t1 AS timestamptz), now()) AND (b.valid_to IS NULL"
        " OR b.valid_to > coalesce(CAST(:t1 AS timestamptz), now()))) "
        "SELECT coalesce(a.code, z.code) AS code, coalesce(z.name, a.name) AS name, "
        "a.parent_code AS from_parent, z.parent_code AS to_parent, "
        "a.version_id AS from_version, z.version_id AS to_version, "
        "ST_AsGeoJSON(a.geom, 8) AS from_geom, ST_AsGeoJSON(z.geom, 8) AS to_geom, "
        "CASE WHEN a.code IS NOT NULL AND z.code IS NOT NULL THEN "
        " ST_Area(ST_Transform(ST_SymDifference(a.geom, z.geom), citygrid_metric_srid(a.code)))"
        " END AS moved_m2 "
        "FROM a FULL JOIN z ON a.code = z.code "
        "WHERE a.code IS NULL OR z.code IS NULL OR a.parent_code <> z.parent_code "
        "OR NOT ST_Equals(a.geom, z.geom) ORDER BY 1"),
        {"level": level, "prefix": prefix_of(code) + "%", "t0": t0, "t1": t1}).mappings().all()
    features: list[Feature[DiffProps]] = []
    change: Literal["new", "retired", "changed"]
    side: Literal["from", "to"]
    for r in rows:
        if r["from_geom"] and r["to_geom"]:
            if r["from_parent"] == r["to_parent"] and (r["moved_m2"] or 0.0) <= NOISE_M2:
                continue
            change = "changed"
        else:
            change = "new" if r["to_geom"] else "retired"
        for side in ("from", "to"):
            if r[f"{side}_geom"] is None:
                continue
            features.append({
                "type": "Feature", "id": f"{side}:{r['code']}",
                "geometry": orjson.loads(r[f"{side}_geom"]),
                "properties": {"code": r["code"], "name": r["name"], "change": change,
                               "side": side, "version": r[f"{side}_version"],
                               "parent_code": r[f"{side}_parent"],
                               "moved_m2": round(r["moved_m2"], 1) if r["moved_m2"] else None},
            })
    return {"type": "FeatureCollection", "features": features,
            "from_version": from_version, "to_version": to_version}
