"""Plans meet incidents: which open cases a redraw would move, and moving them when asked.

An incident keeps the grid, worker and boundary version it was placed in at intake
(:mod:`layers.incidents.intake`); a redraw never moves it silently. When the planner activates a
plan with ``reroute_open_incidents``, each *open* incident (a state in
:data:`~layers.incidents.workflow.OPEN_STATES`) whose place now falls in another grid is placed
again under the new boundaries, and an ``incident_event`` with action ``reroute`` records from
which grid to which, by which plan and boundary version. Closed, evaluated and voided incidents
are never touched.

This lives in ``layers`` because ``grids`` may not know about incidents; the plan itself is
activated by :func:`grids.plans.activate` inside the same transaction, orchestrated with the
rest of the open work by :mod:`layers.redraw` (also when a scheduled activation comes due).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids import plans
from grids.access import Principal, prefix_of
from grids.locate import locate_at
from layers.incidents.workflow import OPEN_STATES

# The open incidents in a plan's region with the grid of the draft covering them (lowest code on
# a shared edge, as the locator decides), or NULL in a gap of the draft.
_MOVING = (
    "SELECT i.id, i.grid_code AS from_grid, d.code AS to_grid FROM incident i "
    "LEFT JOIN LATERAL (SELECT pr.code FROM plan_region pr WHERE pr.plan_id = :plan "
    " AND pr.level = 'grid' AND pr.geom IS NOT NULL AND pr.geom && i.geom "
    " AND ST_Covers(pr.geom, i.geom) ORDER BY pr.code LIMIT 1) d ON true "
    "WHERE i.region_code LIKE :prefix AND i.state = ANY(:open) AND i.geom IS NOT NULL "
    "AND i.grid_code IS DISTINCT FROM d.code ORDER BY i.id"
)


def moving_incidents(conn: Connection, plan_id: int, *, region_code: str) -> list[dict[str, Any]]:
    """Open incidents whose grid under the plan's draft differs from the one they hold."""
    return [dict(r) for r in conn.execute(text(_MOVING), {
        "plan": plan_id, "prefix": prefix_of(region_code) + "%", "open": sorted(OPEN_STATES)
    }).mappings()]


def plan_impact(conn: Connection, plan_id: int, *, principal: Principal) -> dict[str, Any]:
    """:func:`grids.plans.impact` plus the open incidents that would change grid."""
    out = plans.impact(conn, plan_id, principal=principal)
    region = plans.get_plan(conn, plan_id, principal=principal)["region_code"]
    items = moving_incidents(conn, plan_id, region_code=region)
    out["incidents"] = {"open_moving": len(items), "items": items,
                        "note": "Closed incidents keep their grid whatever the plan does."}
    return out


def activate_plan(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
                  effective_at: datetime | None = None, reroute_open_incidents: bool = False
                  ) -> dict[str, Any]:
    """Activate a plan with its staffing and open work: :func:`layers.redraw.activate_plan`
    (kept here for callers of the first version). Re-routing also works with a scheduled
    ``effective_at``: the cases move when it comes."""
    from layers import redraw  # redraw builds on this module

    return redraw.activate_plan(conn, plan_id, principal=principal, if_match=if_match,
                                effective_at=effective_at,
                                reroute_open_incidents=reroute_open_incidents)


def reroute(conn: Connection, incident_id: int, *, plan_id: int, version: int, at: datetime,
            actor: str) -> int:
    """Place one open incident again under the boundaries in force at ``at``; 1 if it moved."""
    inc = conn.execute(text(
        "SELECT id, state, grid_code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incident "
        "WHERE id = :id AND state = ANY(:open) FOR UPDATE"),
        {"id": incident_id, "open": sorted(OPEN_STATES)}).mappings().first()
    if inc is None:
        return 0
    answer = locate_at(conn, inc["lon"], inc["lat"], at=at)
    by_level = {c["level"]: c["code"] for c in answer["chain"]}
    grid = answer["grid"]["code"] if answer["grid"] else None
    if grid == inc["grid_code"]:
        return 0
    conn.execute(text(
        "UPDATE incident SET grid_code = :grid, region_code = :region, "
        "community_code = :community, street_code = :street, boundary_version_id = :version, "
        "responsible_code = :responsible, fallback = :fallback, version = version + 1 "
        "WHERE id = :id"),
        {"id": incident_id, "grid": grid,
         "region": answer["region"]["code"] if answer["region"] else None,
         "community": by_level.get("community"), "street": by_level.get("street"),
         "version": version, "responsible": (answer["responsible"] or {}).get("code"),
         "fallback": answer["fallback"]})
    conn.execute(text(
        "INSERT INTO incident_event (incident_id, at, actor, action, from_state, to_state, note) "
        "VALUES (:id, :at, :actor, 'reroute', :state, :state, :note)"),
        {"id": incident_id, "at": at, "actor": actor, "state": inc["state"],
         "note": f"Re-routed from grid {inc['grid_code'] or '(none)'} to {grid or '(none)'} by "
                 f"plan {plan_id} (boundary version {version})."})
    return 1
