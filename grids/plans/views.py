"""What a plan shows before activation: its grids as GeoJSON and its impact on grids and people."""

from __future__ import annotations

from typing import Any, TypedDict

import orjson
from sqlalchemy import Connection, text

from gis.geojson import Feature, FeatureCollection
from grids.access import Principal, prefix_of
from grids.plans.store import plan_row


class PlanGridProps(TypedDict):
    code: str
    name: str
    parent_code: str | None
    change: str  # the plan's change of the grid, or 'context' for a grid just outside
    area_m2: float


PlanFeatures = FeatureCollection[Feature[PlanGridProps]]


def features(conn: Connection, plan_id: int, *, principal: Principal, digits: int = 8
             ) -> PlanFeatures:
    """The plan's grids (draft state; retired ones with their old shape) and, as context, the
    grids just outside its region, as a GeoJSON FeatureCollection (``digits`` decimals: 8 is
    about 1 mm; 15 keeps the stored coordinates, for files)."""
    row = plan_row(conn, plan_id, principal)
    rows = conn.execute(text(
        "SELECT pr.code, pr.name, pr.parent_code, pr.change, "
        "coalesce(pr.area_m2, b.area_m2) AS area_m2, "
        "ST_AsGeoJSON(coalesce(pr.geom, b.geom), :digits) AS geometry FROM plan_region pr "
        "LEFT JOIN region_boundary b ON b.id = pr.source_boundary_id "
        "WHERE pr.plan_id = :id AND pr.level = 'grid' ORDER BY pr.change = 'retired', pr.code"),
        {"id": plan_id, "digits": digits}).mappings().all()
    context = conn.execute(text(
        "SELECT c.code, c.name, c.parent_code, 'context' AS change, c.area_m2, "
        "ST_AsGeoJSON(c.geom, :digits) AS geometry FROM region_current c, region_current o "
        "WHERE o.code = :code AND c.level = 'grid' AND c.code NOT LIKE :prefix "
        "AND c.geom && o.geom AND ST_Intersects(c.geom, o.geom) ORDER BY c.code"),
        {"code": row["region_code"], "prefix": prefix_of(row["region_code"]) + "%",
         "digits": digits}).mappings().all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f"{r['change']}:{r['code']}",
         "geometry": orjson.loads(r["geometry"]),
         "properties": {"code": r["code"], "name": r["name"], "parent_code": r["parent_code"],
                        "change": r["change"], "area_m2": round(r["area_m2"] or 0.0, 1)}}
        for r in [*rows, *context]]}


def impact(conn: Connection, plan_id: int, *, principal: Principal) -> dict[str, Any]:
    """What activation would change for grids and people (incidents: see layers.incidents.reroute).

    ``grids``: every changed, new or retired grid with its area before and after;
    ``workers.moving``: assignments on grids whose code changes (they follow a re-coded or
    moved grid) or that are retired (they end there); a grid that only changes shape or name
    keeps its team, so it is not listed; ``workers.without_grid``: staff whose every grid
    assignment ends; ``grids_without_worker``: grids of the draft with no primary worker after
    activation. The registry holds no addresses or households, so ``households`` says so.
    """
    row = plan_row(conn, plan_id, principal)
    grids = [
        {"code": r.code, "level": r.level, "change": r.change, "origin_code": r.origin_code,
         "old_area_m2": round(r.old or 0.0, 1), "new_area_m2": round(r.new or 0.0, 1),
         "delta_m2": round((r.new or 0.0) - (r.old or 0.0), 1),
         "delta_pct": round(100.0 * ((r.new or 0.0) - r.old) / r.old, 2) if r.old else None}
        for r in conn.execute(text(
            "SELECT pr.code, pr.level, pr.change, pr.origin_code, b.area_m2 AS old, "
            "pr.area_m2 AS new FROM plan_region pr "
            "LEFT JOIN region_boundary b ON b.id = pr.source_boundary_id "
            "WHERE pr.plan_id = :id AND pr.change <> 'unchanged' "
            "ORDER BY pr.level DESC, pr.code"), {"id": plan_id})
    ]
    moving = [dict(r) for r in conn.execute(text(
        "SELECT s.code AS staff_code, s.name, a.duty, pr.origin_code AS from_grid, "
        "CASE WHEN pr.change = 'retired' THEN NULL ELSE pr.code END AS to_grid, pr.change "
        "FROM plan_region pr JOIN region r ON r.code = pr.origin_code "
        "JOIN assignment a ON a.region_id = r.id AND a.valid_from <= now() "
        " AND (a.valid_to IS NULL OR a.valid_to > now()) JOIN staff s ON s.id = a.staff_id "
        "WHERE pr.plan_id = :id AND pr.level = 'grid' AND pr.change IN ('changed', 'retired') "
        # A grid that keeps its code (reshaped, renamed) keeps its team: no one moves.
        "AND (pr.change = 'retired' OR pr.code IS DISTINCT FROM pr.origin_code) "
        "ORDER BY s.code, pr.origin_code"), {"id": plan_id}).mappings()]
    without = [dict(r) for r in conn.execute(text(
        "WITH ending AS (SELECT r.id FROM plan_region pr JOIN region r ON r.code = pr.origin_code "
        " WHERE pr.plan_id = :id AND pr.level = 'grid' AND pr.change = 'retired') "
        "SELECT DISTINCT s.code AS staff_code, s.name FROM assignment a "
        "JOIN staff s ON s.id = a.staff_id JOIN region r ON r.id = a.region_id "
        "WHERE a.region_id IN (SELECT id FROM ending) AND a.valid_from <= now() "
        "AND (a.valid_to IS NULL OR a.valid_to > now()) AND NOT EXISTS ("
        " SELECT 1 FROM assignment a2 JOIN region r2 ON r2.id = a2.region_id "
        " WHERE a2.staff_id = a.staff_id AND r2.level = 'grid' "
        " AND r2.id NOT IN (SELECT id FROM ending) AND a2.valid_from <= now() "
        " AND (a2.valid_to IS NULL OR a2.valid_to > now())) ORDER BY s.code"),
        {"id": plan_id}).mappings()]
    unstaffed = list(conn.execute(text(
        "SELECT pr.code FROM plan_region pr WHERE pr.plan_id = :id AND pr.level = 'grid' "
        "AND pr.change <> 'retired' AND NOT EXISTS ("
        " SELECT 1 FROM assignment a JOIN region r ON r.id = a.region_id "
        " WHERE r.code = pr.origin_code AND a.duty = 'primary' AND a.valid_from <= now() "
        " AND (a.valid_to IS NULL OR a.valid_to > now())) ORDER BY pr.code"),
        {"id": plan_id}).scalars())
    return {
        "plan_id": row["id"], "grids": grids,
        "workers": {"moving": moving, "without_grid": without},
        "grids_without_worker": unstaffed,
        "households": {"available": False,
                       "note": "The registry holds no addresses or households; none to count."},
    }
