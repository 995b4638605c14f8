"""A redraw that takes the work with it: activation of a plan together with its business data.

:func:`grids.plans.activate` writes the boundaries and the staffing (one transaction, the
caller's). ``grids`` may not know about cases, call-ups or the address book, so this module (in
``layers``) orchestrates both in the same transaction:

- **open cases** (if asked: ``reroute_open_incidents``) are placed again under the new
  boundaries, each with an ``incident_event`` ``reroute`` (:mod:`layers.incidents.reroute`);
- **call-ups** still open follow their grids: ``grid_codes`` of a changed grid become the codes of
  the grids that now cover its old area; open **duty tasks** (``callup_task`` sent or
  acknowledged) on a grid that is re-coded or retired go to the grid that took most of its area;
  an event's **reinforcements** (temporary backup assignments) on a grid that is retired or
  re-coded continue on that grid until the end of their window instead of ending;
- the **address book**'s entries in force in the changed grids are placed again: the entry is
  ended and a new version with the new grid starts (history is kept).

With a scheduled ``effective_at`` the reinforcements are carried at activation (their
assignments change then), the rest when the time comes: :func:`run_due` (called by the plan
worker, ``app/plan_worker.py``) moves the work of every activated plan whose time has passed and
whose work has not moved yet (``plan.work_moved_at``), in its own transaction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids import plans
from grids.access import Principal
from grids.locate import locate_at
from grids.plans import review
from grids.plans import staffing as plan_staffing
from layers.incidents import reroute
from layers.incidents.workflow import OPEN_STATES

# Old grid code -> the live grids of the draft covering its old area, largest share first
# (1e-10 deg² is about 1 m²: a shared edge is not a share).
_SUCCESSORS = (
    # Materialised: the plan's own rows first (left to itself, the planner joined through the
    # geometry index of every plan's rows: 30-45 s for a 50-grid plan in the bench city).
    "WITH o AS MATERIALIZED (SELECT pr.origin_code AS old, b.geom FROM plan_region pr "
    " JOIN region_boundary b ON b.id = pr.source_boundary_id WHERE pr.plan_id = :id "
    " AND pr.level = 'grid' AND pr.change <> 'unchanged' AND pr.origin_code IS NOT NULL), "
    "n AS MATERIALIZED (SELECT code, geom FROM plan_region WHERE plan_id = :id "
    " AND level = 'grid' AND change <> 'retired'), "
    "x AS MATERIALIZED (SELECT o.old, n.code AS new, ST_Area(ST_Intersection(n.geom, o.geom)) AS a "
    " FROM o JOIN n ON n.geom && o.geom AND ST_Intersects(n.geom, o.geom)) "
    "SELECT old, new FROM x WHERE a > 1e-10 ORDER BY old, a DESC, new"
)
OPEN_TASK_STATES = ("sent", "acknowledged")


def successors(conn: Connection, plan_id: int) -> dict[str, list[str]]:
    """For each grid the plan changes or retires (by its code now): the draft's grids that cover
    its area, largest share first."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in conn.execute(text(_SUCCESSORS), {"id": plan_id}):
        out[r.old].append(r.new)
    return dict(out)


def _live_codes(conn: Connection, plan_id: int) -> set[str]:
    return set(conn.execute(text(
        "SELECT code FROM plan_region WHERE plan_id = :id AND level = 'grid' "
        "AND change <> 'retired'"), {"id": plan_id}).scalars())


def _task_target(old: str, succ: dict[str, list[str]], live: set[str]) -> str | None:
    """Where a duty task on ``old`` goes: the same code if the grid keeps it, else the grid that
    took most of its area (None: it does not move)."""
    if old in live or old not in succ:
        return None
    return succ[old][0]


def _callup_moves(conn: Connection, plan_id: int, region: str, succ: dict[str, list[str]],
                  live: set[str]) -> tuple[list[tuple[int, list[str], list[str]]],
                                           list[tuple[int, str, str]]]:
    """(open call-ups whose grids change: id, old codes, new codes), (open tasks: id, from, to)."""
    if not succ:
        return [], []
    olds = sorted(succ)
    callups = []
    for r in conn.execute(text(
            "SELECT id, grid_codes FROM callup WHERE closed_at IS NULL AND grid_codes && :olds "
            "ORDER BY id"), {"olds": olds}):
        codes: list[str] = []
        for c in r.grid_codes:
            for n in ([c] if c in live and c not in succ else succ.get(c, [c])):
                if n not in codes:
                    codes.append(n)
        if sorted(codes) != sorted(r.grid_codes):
            callups.append((r.id, list(r.grid_codes), sorted(codes)))
    tasks = []
    for t in conn.execute(text(
            "SELECT t.id, t.region_code FROM callup_task t JOIN callup c ON c.id = t.callup_id "
            "WHERE c.closed_at IS NULL AND t.state = ANY(:states) AND t.region_code = ANY(:olds) "
            "ORDER BY t.id"), {"states": list(OPEN_TASK_STATES), "olds": olds}):
        to = _task_target(t.region_code, succ, live)
        if to is not None:
            tasks.append((t.id, t.region_code, to))
    return callups, tasks


_ADDRESSES = (
    "SELECT a.id, a.grid_code AS from_grid, d.code AS to_grid FROM address a "
    "JOIN plan_region w ON w.plan_id = :id AND w.level = 'grid' AND w.change IN ('changed', 'new') "
    " AND w.geom && a.geom AND ST_Covers(w.geom, a.geom) "
    "JOIN LATERAL (SELECT pr.code FROM plan_region pr WHERE pr.plan_id = :id "
    " AND pr.level = 'grid' AND pr.geom IS NOT NULL AND pr.geom && a.geom "
    " AND ST_Covers(pr.geom, a.geom) ORDER BY pr.code LIMIT 1) d ON true "
    "WHERE a.valid_to IS NULL AND a.grid_code IS DISTINCT FROM d.code "
    "UNION "
    "SELECT a.id, a.grid_code, d.code FROM address a "
    "JOIN plan_region o ON o.plan_id = :id AND o.level = 'grid' AND o.change <> 'unchanged' "
    " AND o.origin_code = a.grid_code "
    "LEFT JOIN LATERAL (SELECT pr.code FROM plan_region pr WHERE pr.plan_id = :id "
    " AND pr.level = 'grid' AND pr.geom IS NOT NULL AND pr.geom && a.geom "
    " AND ST_Covers(pr.geom, a.geom) ORDER BY pr.code LIMIT 1) d ON true "
    "WHERE a.valid_to IS NULL AND d.code IS NOT NULL AND a.grid_code IS DISTINCT FROM d.code "
    "ORDER BY 1"
)


def moving_addresses(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    """Address book entries in force whose grid under the plan's draft differs from theirs."""
    return [dict(r) for r in conn.execute(text(_ADDRESSES), {"id": plan_id}).mappings()]


def plan_impact(conn: Connection, plan_id: int, *, principal: Principal) -> dict[str, Any]:
    """The impact preview (:func:`layers.incidents.reroute.plan_impact`) with the plan's staffing
    and the other open work that would move."""
    out = reroute.plan_impact(conn, plan_id, principal=principal)
    row = plans.plan_row(conn, plan_id, principal)
    out["staffing"] = plan_staffing.summary(conn, row)
    out["staffing"]["may_approve"] = review.may_approve(conn, principal)
    out["grids_without_worker"] = plan_staffing.unstaffed(conn, row, touched_only=False)
    succ = successors(conn, plan_id)
    callups, tasks = _callup_moves(conn, plan_id, row["region_code"], succ,
                                   _live_codes(conn, plan_id))
    out["work"] = {
        "callups": [{"id": i, "from": a, "to": b} for i, a, b in callups],
        "tasks": [{"id": i, "from_grid": a, "to_grid": b} for i, a, b in tasks],
        "addresses": len(moving_addresses(conn, plan_id)),
        "scheduled_note": "With a scheduled activation the open work moves when it takes effect.",
    }
    return out


def _reinforcements(conn: Connection, plan_id: int, succ: dict[str, list[str]],
                    live: set[str], at: datetime) -> list[dict[str, Any]]:
    """Reinforcement assignments in force at ``at`` on grids the plan re-codes or retires."""
    gone = [c for c in succ if c not in live]
    if not gone:
        return []
    return [dict(r) | {"to": succ[r["old"]][0]} for r in conn.execute(text(
        "SELECT cr.callup_id, cr.task_id, a.id AS assignment_id, a.staff_id, a.duty, a.valid_to, "
        "r.code AS old FROM callup_reinforcement cr JOIN assignment a ON a.id = cr.assignment_id "
        "JOIN region r ON r.id = a.region_id WHERE r.code = ANY(:gone) AND a.valid_from < :at "
        "AND a.valid_to > :at"), {"gone": gone, "at": at}).mappings()]


def _carry_reinforcements(conn: Connection, found: list[dict[str, Any]], at: datetime) -> int:
    moved = 0
    for f in found:
        new = conn.execute(text(
            "INSERT INTO assignment (staff_id, region_id, duty, valid_from, valid_to) "
            "SELECT :s, r.id, :d, :at, :until FROM region r WHERE r.code = :to "
            "AND :until > :at RETURNING id"),
            {"s": f["staff_id"], "d": f["duty"], "at": at, "until": f["valid_to"],
             "to": f["to"]}).scalar()
        if new is not None:
            conn.execute(text(
                "INSERT INTO callup_reinforcement (callup_id, assignment_id, task_id) "
                "VALUES (:c, :a, :t) ON CONFLICT DO NOTHING"),
                {"c": f["callup_id"], "a": new, "t": f["task_id"]})
            moved += 1
    return moved


def activate_plan(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
                  effective_at: datetime | None = None,
                  reroute_open_incidents: bool | None = None) -> dict[str, Any]:
    """Activate an approved plan with its staffing and move its open work, in the caller's
    transaction. ``reroute_open_incidents`` None: as proposed on submit. With a scheduled
    ``effective_at`` the open work moves when it takes effect (:func:`run_due`)."""
    row = plans.plan_row(conn, plan_id, principal)
    reroute_cases = row["reroute_open_incidents"] if reroute_open_incidents is None \
        else reroute_open_incidents
    now = conn.execute(text("SELECT now()")).scalar_one()
    at = effective_at or now
    succ = successors(conn, plan_id)
    live = _live_codes(conn, plan_id)
    found = _reinforcements(conn, plan_id, succ, live, at)
    result = plans.activate(conn, plan_id, principal=principal, if_match=if_match,
                            effective_at=effective_at)
    carried = _carry_reinforcements(conn, found, result["effective_at"])
    conn.execute(text("UPDATE plan SET reroute_open_incidents = :r WHERE id = :id"),
                 {"r": reroute_cases, "id": plan_id})
    work: dict[str, Any] = {"pending": True, "due_at": result["effective_at"]}
    if result["effective_at"] <= now:
        work = move_work(conn, plan_id, actor=principal.name)
    work["reinforcements"] = carried
    result["work"] = work
    result["rerouted"] = work.get("cases", 0)
    result["plan"] = plans.get_plan(conn, plan_id, principal=principal)
    return result


def approve_plan(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
                 comment: str = "") -> dict[str, Any]:
    """Approve a submitted plan; one proposed for a later time is activated now as scheduled
    (the scheduled activation waited for this approval). ``{plan, activation}``."""
    plan = review.approve(conn, plan_id, principal=principal, if_match=if_match,
                          comment=comment)
    activation = None
    proposed = plan["proposed_effective_at"]
    now = conn.execute(text("SELECT now()")).scalar_one()
    if proposed is not None and proposed > now:
        activation = activate_plan(conn, plan_id, principal=principal, if_match=plan["etag"],
                                   effective_at=proposed)
        plan = activation["plan"]
    return {"plan": plan, "activation": activation}


def move_work(conn: Connection, plan_id: int, *, actor: str) -> dict[str, Any]:
    """Move the open work of an activated plan whose boundaries are in force now (cases if the
    plan asks for it, call-ups, duty tasks, address book entries), and note it on the plan."""
    row = conn.execute(text(
        "SELECT id, region_code, activated_version_id, effective_at, reroute_open_incidents "
        "FROM plan WHERE id = :id FOR UPDATE"), {"id": plan_id}).mappings().one()
    at = row["effective_at"]
    succ = successors(conn, plan_id)
    live = _live_codes(conn, plan_id)
    cases = 0
    if row["reroute_open_incidents"]:
        cases = _reroute_cases(conn, plan_id, row["region_code"], row["activated_version_id"],
                               at, actor)
    callups, tasks = _callup_moves(conn, plan_id, row["region_code"], succ, live)
    if callups:
        conn.execute(text("UPDATE callup SET grid_codes = :codes WHERE id = :id"),
                     [{"id": i, "codes": new} for i, _, new in callups])
    if tasks:
        conn.execute(text("UPDATE callup_task SET region_code = :to WHERE id = :id"),
                     [{"id": i, "to": to} for i, _, to in tasks])
    addresses = _replace_addresses(conn, plan_id, at)
    done = {"cases": cases, "callups": len(callups), "tasks": len(tasks),
            "addresses": addresses, "at": at.isoformat()}
    conn.execute(text("UPDATE plan SET work_moved_at = now(), work_moved = CAST(:w AS jsonb) "
                      "WHERE id = :id"), {"w": orjson.dumps(done).decode(), "id": plan_id})
    return done


def _reroute_cases(conn: Connection, plan_id: int, region: str, version: int, at: datetime,
                   actor: str) -> int:
    """Open cases whose grid the plan changes placed again, set-based: the locator's answer is
    the same for every point of one grid (its chain and staff), so it is asked once per new grid
    (at the first case's point) and all that grid's cases are moved by one UPDATE and one INSERT
    of ``reroute`` events; a grid where the answer disagrees with the draft goes case by case
    (:func:`layers.incidents.reroute.reroute`)."""
    groups: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for inc in reroute.moving_incidents(conn, plan_id, region_code=region):
        groups[inc["to_grid"]].append(inc)
    moved = 0
    for to_grid, items in groups.items():
        first = conn.execute(text(
            "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incident WHERE id = :id"),
            {"id": items[0]["id"]}).mappings().one()
        answer = locate_at(conn, first["lon"], first["lat"], at=at)
        grid = answer["grid"]["code"] if answer["grid"] else None
        if to_grid is None or grid != to_grid:
            moved += sum(reroute.reroute(conn, i["id"], plan_id=plan_id, version=version, at=at,
                                         actor=actor) for i in items)
            continue
        by_level = {c["level"]: c["code"] for c in answer["chain"]}
        ids = [i["id"] for i in items]
        rows = conn.execute(text(
            "WITH moved AS (SELECT id, state, grid_code AS old FROM incident "
            " WHERE id = ANY(:ids) AND state = ANY(:open) AND grid_code IS DISTINCT FROM :grid "
            " FOR UPDATE) "
            "UPDATE incident i SET grid_code = :grid, region_code = :region, "
            "community_code = :community, street_code = :street, boundary_version_id = :version, "
            "responsible_code = :responsible, fallback = :fallback, version = i.version + 1 "
            "FROM moved WHERE i.id = moved.id RETURNING i.id, moved.state, moved.old"),
            {"ids": ids, "open": sorted(OPEN_STATES), "grid": grid,
             "region": answer["region"]["code"] if answer["region"] else None,
             "community": by_level.get("community"), "street": by_level.get("street"),
             "version": version, "responsible": (answer["responsible"] or {}).get("code"),
             "fallback": answer["fallback"]}).all()
        if rows:
            conn.execute(text(
                "INSERT INTO incident_event (incident_id, at, actor, action, from_state, "
                "to_state, note) SELECT id, :at, :actor, 'reroute', st, st, "
                "'Re-routed from grid ' || coalesce(old, '(none)') || ' to ' || :grid "
                "|| ' by plan ' || :plan || ' (boundary version ' || :version || ').' "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]), "
                "CAST(:olds AS text[])) AS u(id, st, old)"),
                {"at": at, "actor": actor, "grid": grid, "plan": str(plan_id),
                 "version": str(version), "ids": [r.id for r in rows],
                 "states": [r.state for r in rows], "olds": [r.old for r in rows]})
        moved += len(rows)
    return moved


def _replace_addresses(conn: Connection, plan_id: int, at: datetime) -> int:
    """End the moving entries at ``at`` and insert each again with its new grid."""
    moving = moving_addresses(conn, plan_id)
    if not moving:
        return 0
    conn.execute(text(
        "WITH ended AS (UPDATE address a SET valid_to = greatest(:at, a.valid_from "
        " + interval '1 microsecond') FROM unnest(CAST(:ids AS bigint[]), CAST(:grids AS text[])) "
        " AS m(id, grid) WHERE a.id = m.id AND a.valid_to IS NULL "
        " RETURNING a.*, m.grid AS new_grid) "
        "INSERT INTO address (key, code, text, norm, parts, geom, grid_code, source, valid_from) "
        "SELECT key, code, text, norm, parts, geom, new_grid, source, valid_to FROM ended"),
        {"at": at, "ids": [m["id"] for m in moving], "grids": [m["to_grid"] for m in moving]})
    return len(moving)


def run_due(conn: Connection, *, limit: int = 20) -> list[dict[str, Any]]:
    """Move the work of activated plans whose scheduled time has come (one transaction, the
    caller's; plans another process is moving are skipped)."""
    due = conn.execute(text(
        "SELECT id FROM plan WHERE status = 'activated' AND work_moved_at IS NULL "
        "AND effective_at <= now() ORDER BY effective_at, id LIMIT :n "
        "FOR UPDATE SKIP LOCKED"), {"n": limit}).scalars().all()
    return [{"plan_id": p, **move_work(conn, p, actor="system:plan-worker")} for p in due]
