"""Staffing inside a plan: who takes, leaves or changes grids when the plan is activated.

The planner stores staffing changes with the plan (table ``plan_staff``, migration 0021):

- ``assign``: a staff member takes a duty (``primary`` / ``backup`` on a grid of the draft, also a
  new one; ``head`` on a community of the draft or the plan's region) from the activation on;
- ``end``: an assignment in force now ends at the activation;
- ``move`` (as asked for): an ``end`` of the assignment on one grid and an ``assign`` on another.

Activation (:mod:`grids.plans.activation`) applies them in its transaction: the planned ends
first (so an ended assignment does not follow its grid), then the assignments follow re-coded
grids and end on retired ones, then the planned assignments start at ``effective_at``. A restore
plan also brings back the assignments that ended with the boundaries it restores
(:func:`restorable`).

A grid the plan touches must be left with a responsible (primary) worker: :func:`unstaffed`
lists those that are not; submitting or activating needs either none or the planner's recorded
reason (``plan.unstaffed_reason``).

Every function takes a connection inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, prefix_of
from grids.codes import level_of
from grids.errors import Conflict, GridError
from grids.plans.store import check_draft, check_etag, get_plan, plan_row, staffing_of
from grids.staffing import DUTIES, StaffNotFound, _staff_in_scope

OPS = ("assign", "end", "move")


class InvalidStaffing(GridError):
    """A staffing change the plan cannot take (unknown grid, wrong duty, nothing to end)."""

    code = "invalid_staffing"


class GridsWithoutWorker(GridError):
    """Grids the plan touches would be left with no responsible worker, and no reason given."""

    code = "grids_without_worker"


def _targets(conn: Connection, row: dict[str, Any]) -> dict[str, str]:
    """The codes a staffing change may name after the plan: live grids and communities of the
    draft, and the plan's own region (code -> level)."""
    out = {r.code: r.level for r in conn.execute(text(
        "SELECT code, level FROM plan_region WHERE plan_id = :id AND change <> 'retired'"),
        {"id": row["id"]})}
    out[row["region_code"]] = level_of(row["region_code"])
    return out


def _origin(conn: Connection, plan_id: int, code: str) -> str:
    """The code in force now of the draft's grid or community ``code`` (itself if unchanged)."""
    origin = conn.execute(text(
        "SELECT origin_code FROM plan_region WHERE plan_id = :id AND code = :c "
        "AND change <> 'retired' AND origin_code IS NOT NULL"),
        {"id": plan_id, "c": code}).scalar()
    return origin or code


def _staff(conn: Connection, code: str, principal: Principal) -> Any:
    staff = conn.execute(text("SELECT id, code, name FROM staff WHERE code = :c"),
                         {"c": code}).first()
    if staff is None or not _staff_in_scope(conn, staff.id, principal):
        raise StaffNotFound(f"No staff member {code[:40]} in your jurisdiction.",
                            detail={"field": "staff_code", "value": code[:40]})
    return staff


def _check_duty(code: str, level: str | None, duty: str) -> None:
    if duty not in DUTIES:
        raise InvalidStaffing(f"Unknown duty {duty[:20]}.",
                              detail={"field": "duty", "value": duty[:20],
                                      "expected": ", ".join(DUTIES)})
    if level is None:
        raise InvalidStaffing(
            f"{code} is not a grid or community of this plan (after its edits).",
            detail={"field": "grid_code", "value": code})
    if (level == "grid") != (duty in ("primary", "backup")):
        raise InvalidStaffing(
            "Primary and backup duties are on grids; head is on a community or street.",
            detail={"field": "duty", "value": duty, "region_level": level})


def _in_force_assignment(conn: Connection, staff_id: int, code: str, duty: str) -> int | None:
    return conn.execute(text(
        "SELECT a.id FROM assignment a JOIN region r ON r.id = a.region_id "
        "WHERE a.staff_id = :s AND r.code = :c AND a.duty = :d AND a.valid_from <= now() "
        "AND (a.valid_to IS NULL OR a.valid_to > now()) ORDER BY a.id LIMIT 1"),
        {"s": staff_id, "c": code, "d": duty}).scalar()


def change_staffing(conn: Connection, plan_id: int, change: dict[str, Any], *,
                    principal: Principal, if_match: str) -> dict[str, Any]:
    """Store one staffing change with the plan (``op`` assign, end or move); the new plan.

    ``assign``: ``staff_code``, ``grid_code`` (a grid or, for ``head``, a community of the draft),
    ``duty``. ``end``: ``staff_code``, ``grid_code`` (the grid in the draft or its code now),
    ``duty``: the assignment in force there ends at activation. ``move``: ``staff_code``,
    ``grid_code`` (from), ``to_code``, ``duty``.
    """
    principal.require(Permission.PLANS_WRITE)
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    check_etag(conn, row, if_match)
    op = change.get("op")
    if op not in OPS:
        raise InvalidStaffing(f"Unknown staffing change {str(op)[:20]}.",
                              detail={"field": "op", "expected": ", ".join(OPS)})
    staff = _staff(conn, str(change.get("staff_code", "")), principal)
    duty = str(change.get("duty", "primary"))
    code = str(change.get("grid_code", ""))
    note = str(change.get("note") or "")[:500]
    targets = _targets(conn, row)
    rows: list[dict[str, Any]] = []
    if op in ("end", "move"):
        origin = _origin(conn, plan_id, code)
        assignment = _in_force_assignment(conn, staff.id, origin, duty)
        if assignment is None or not principal.scope.covers(origin):
            raise InvalidStaffing(
                f"{staff.code} has no {duty} assignment on {code} in force to end or move.",
                detail={"field": "grid_code", "value": code, "staff_code": staff.code,
                        "duty": duty})
        if conn.execute(text("SELECT 1 FROM plan_staff WHERE plan_id = :p AND action = 'end' "
                             "AND assignment_id = :a"), {"p": plan_id, "a": assignment}).first():
            raise Conflict("This plan already ends that assignment.",
                           detail={"field": "grid_code", "assignment_id": assignment})
        rows.append({"action": "end", "code": code, "assignment": assignment})
    if op in ("assign", "move"):
        to = str(change.get("to_code", "")) if op == "move" else code
        _check_duty(to, targets.get(to), duty)
        if conn.execute(text(
                "SELECT 1 FROM plan_staff WHERE plan_id = :p AND action = 'assign' "
                "AND staff_id = :s AND region_code = :c AND duty = :d"),
                {"p": plan_id, "s": staff.id, "c": to, "d": duty}).first():
            raise Conflict("This plan already assigns that staff member there.",
                           detail={"field": "grid_code", "value": to})
        kept = _in_force_assignment(conn, staff.id, _origin(conn, plan_id, to), duty)
        if kept is not None and not any(r["assignment"] == kept for r in rows) and not \
                conn.execute(text("SELECT 1 FROM plan_staff WHERE plan_id = :p AND "
                                  "action = 'end' AND assignment_id = :a"),
                             {"p": plan_id, "a": kept}).first():
            raise Conflict(f"{staff.code} already has this duty on {to}.",
                           detail={"field": "staff_code", "assignment_id": kept})
        rows.append({"action": "assign", "code": to, "assignment": None})
    conn.execute(text(
        "INSERT INTO plan_staff (plan_id, action, staff_id, region_code, duty, assignment_id, "
        "note, by) VALUES (:p, :action, :s, :code, :d, :assignment, :note, :by)"),
        [{**r, "p": plan_id, "s": staff.id, "d": duty, "note": note, "by": principal.name}
         for r in rows])
    _bump(conn, plan_id)
    return get_plan(conn, plan_id, principal=principal)


def withdraw_staffing(conn: Connection, plan_id: int, change_id: int, *, principal: Principal,
                      if_match: str) -> dict[str, Any]:
    """Take one stored staffing change back out of the plan (audited); the new plan."""
    principal.require(Permission.PLANS_WRITE)
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    check_etag(conn, row, if_match)
    gone = conn.execute(text("DELETE FROM plan_staff WHERE plan_id = :p AND id = :id "
                             "RETURNING id"), {"p": plan_id, "id": change_id}).scalar()
    if gone is None:
        raise InvalidStaffing(f"Plan {plan_id} has no staffing change {change_id}.",
                              detail={"field": "change_id", "value": change_id})
    _bump(conn, plan_id)
    return get_plan(conn, plan_id, principal=principal)


def _bump(conn: Connection, plan_id: int) -> None:
    conn.execute(text("UPDATE plan SET revision = revision + 1, updated_at = now() "
                      "WHERE id = :id"), {"id": plan_id})


def _restored_at(conn: Connection, row: dict[str, Any]) -> datetime | None:
    if row.get("restored_from") is None:
        return None
    value: datetime | None = conn.execute(text(
        "SELECT coalesce(effective_at, activated_at) FROM boundary_version WHERE id = :v"),
        {"v": row["restored_from"]}).scalar()
    return value


def restorable(conn: Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    """For a restore plan: the assignments that were in force on the restored grids then and
    ended with those grids' boundaries (same moment), and are not in force now."""
    then = _restored_at(conn, row)
    if then is None:
        return []
    return [dict(r) for r in conn.execute(text(
        "SELECT DISTINCT a.staff_id, s.code AS staff_code, s.name, pr.code AS region_code, "
        "a.duty FROM plan_region pr JOIN region r ON r.code = pr.code "
        "JOIN region_boundary b ON b.region_id = r.id AND b.valid_from <= :then "
        " AND b.valid_to IS NOT NULL AND b.valid_to > :then "
        "JOIN assignment a ON a.region_id = r.id AND a.valid_from <= :then "
        " AND a.valid_to = b.valid_to AND a.valid_to <= now() "
        "JOIN staff s ON s.id = a.staff_id "
        "WHERE pr.plan_id = :id AND pr.change IN ('new', 'changed') AND NOT EXISTS ("
        " SELECT 1 FROM assignment x WHERE x.staff_id = a.staff_id AND x.region_id = r.id "
        " AND x.duty = a.duty AND (x.valid_to IS NULL OR x.valid_to > now())) "
        "ORDER BY pr.code, s.code"), {"then": then, "id": row["id"]}).mappings()]


def unstaffed(conn: Connection, row: dict[str, Any], *, touched_only: bool = True
              ) -> list[str]:
    """Grids of the draft left with no primary worker after the plan's staffing.

    ``touched_only``: only the grids the plan changes or creates, and those whose primary the
    plan ends (the ones activation insists on); else every live grid of the draft.
    """
    restored = {(r["region_code"], r["duty"]) for r in restorable(conn, row)}
    rows = conn.execute(text(
        "WITH ended AS (SELECT assignment_id FROM plan_staff WHERE plan_id = :id "
        "  AND action = 'end') "
        "SELECT pr.code, (pr.change IN ('changed', 'new') OR EXISTS ("
        "  SELECT 1 FROM plan_staff e JOIN assignment a ON a.id = e.assignment_id "
        "  JOIN region r ON r.id = a.region_id WHERE e.plan_id = :id AND e.action = 'end' "
        "  AND a.duty = 'primary' AND r.code = pr.origin_code)) AS touched, ("
        " EXISTS (SELECT 1 FROM assignment a JOIN region r ON r.id = a.region_id "
        "  WHERE r.code = pr.origin_code AND a.duty = 'primary' AND a.valid_from <= now() "
        "  AND (a.valid_to IS NULL OR a.valid_to > now()) "
        "  AND a.id NOT IN (SELECT assignment_id FROM ended)) "
        " OR EXISTS (SELECT 1 FROM plan_staff p WHERE p.plan_id = :id AND p.action = 'assign' "
        "  AND p.duty = 'primary' AND p.region_code = pr.code)) AS staffed "
        "FROM plan_region pr WHERE pr.plan_id = :id AND pr.level = 'grid' "
        "AND pr.change <> 'retired' ORDER BY pr.code"), {"id": row["id"]}).all()
    return [r.code for r in rows if not r.staffed and (r.code, "primary") not in restored
            and (r.touched or not touched_only)]


def check_staffed(conn: Connection, row: dict[str, Any], reason: str | None) -> list[str]:
    """The grids left without a worker; refused (422) unless ``reason`` overrides."""
    missing = unstaffed(conn, row)
    if missing and not (reason or "").strip():
        raise GridsWithoutWorker(
            f"{len(missing)} grid(s) would have no responsible worker: {', '.join(missing[:5])}"
            + (" …" if len(missing) > 5 else "") + ". Assign a worker, or give a reason to go "
            "ahead without one.",
            detail={"grids": missing, "field": "unstaffed_reason"})
    return missing


def check_targets(conn: Connection, row: dict[str, Any]) -> None:
    """Every planned assignment still names a live grid or community of the draft (an edit
    after it may have retired or re-coded it)."""
    targets = _targets(conn, row)
    for change in conn.execute(text(
            "SELECT ps.id, ps.region_code, ps.duty, s.code AS staff_code FROM plan_staff ps "
            "JOIN staff s ON s.id = ps.staff_id WHERE ps.plan_id = :id AND ps.action = 'assign' "
            "ORDER BY ps.id"), {"id": row["id"]}):
        if change.region_code not in targets:
            raise InvalidStaffing(
                f"The plan assigns {change.staff_code} to {change.region_code}, which the plan "
                "no longer has; take that staffing change back and assign again.",
                detail={"change_id": change.id, "grid_code": change.region_code})


def end_planned(conn: Connection, plan_id: int, at: datetime) -> int:
    """The plan's ``end`` changes applied: those assignments end at ``at`` (before the carry)."""
    return conn.execute(text(
        "UPDATE assignment a SET valid_to = :at FROM plan_staff ps "
        "WHERE ps.plan_id = :id AND ps.action = 'end' AND a.id = ps.assignment_id "
        "AND a.valid_from < :at AND (a.valid_to IS NULL OR a.valid_to > :at)"),
        {"at": at, "id": plan_id}).rowcount or 0


def assign_planned(conn: Connection, row: dict[str, Any], at: datetime,
                   restored: list[dict[str, Any]]) -> dict[str, int]:
    """The plan's ``assign`` changes and, for a restore plan, the ``restored`` assignments
    (:func:`restorable`, read before the boundaries changed) start at ``at`` (after the carry;
    one already in force there is not doubled)."""
    wanted = [dict(r) for r in conn.execute(text(
        "SELECT staff_id, region_code, duty FROM plan_staff WHERE plan_id = :id "
        "AND action = 'assign' ORDER BY id"), {"id": row["id"]}).mappings()]
    counts = {"assigned": 0, "restored": 0}
    for key, items in (("assigned", wanted), ("restored", restored)):
        for w in items:
            counts[key] += conn.execute(text(
                "INSERT INTO assignment (staff_id, region_id, duty, valid_from) "
                "SELECT :s, r.id, :d, :at FROM region r WHERE r.code = :c AND NOT EXISTS ("
                " SELECT 1 FROM assignment x WHERE x.staff_id = :s AND x.region_id = r.id "
                " AND x.duty = :d AND (x.valid_to IS NULL OR x.valid_to > :at))"),
                {"s": w["staff_id"], "d": w["duty"], "c": w["region_code"], "at": at}
            ).rowcount or 0
    return counts


def roster(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    """Who is on each live grid (and community) of the draft after the plan: the assignments in
    force on its code now (``ending``: the plan ends them) and the plan's assignments."""
    rows = conn.execute(text(
        "SELECT pr.code, pr.name, pr.level, pr.change, s.code AS staff_code, s.name AS staff_name, "
        "s.status, a.duty, NULL::bigint AS change_id, e.id AS end_id FROM plan_region pr "
        "JOIN region r ON r.code = pr.origin_code JOIN assignment a ON a.region_id = r.id "
        " AND a.valid_from <= now() AND (a.valid_to IS NULL OR a.valid_to > now()) "
        "JOIN staff s ON s.id = a.staff_id LEFT JOIN plan_staff e ON e.plan_id = pr.plan_id "
        " AND e.action = 'end' AND e.assignment_id = a.id "
        "WHERE pr.plan_id = :id AND pr.change <> 'retired' "
        "UNION ALL SELECT pr.code, pr.name, pr.level, pr.change, s.code, s.name, s.status, ps.duty, "
        "ps.id, NULL FROM plan_staff ps JOIN plan_region pr ON pr.plan_id = ps.plan_id "
        " AND pr.code = ps.region_code AND pr.change <> 'retired' "
        "JOIN staff s ON s.id = ps.staff_id WHERE ps.plan_id = :id AND ps.action = 'assign' "
        "ORDER BY 1, 8, 5"), {"id": plan_id}).mappings().all()
    grids = {r.code: {"code": r.code, "name": r.name, "level": r.level, "change": r.change,
                      "people": []} for r in conn.execute(text(
        "SELECT code, name, level, change FROM plan_region WHERE plan_id = :id "
        "AND change <> 'retired' ORDER BY level DESC, code"), {"id": plan_id})}
    for r in rows:
        grids[r["code"]]["people"].append({
            "staff_code": r["staff_code"], "name": r["staff_name"], "status": r["status"],
            "duty": r["duty"], "planned": r["change_id"] is not None,
            "change_id": r["change_id"] or r["end_id"], "ending": r["end_id"] is not None})
    return list(grids.values())


def candidates(conn: Connection, region_code: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """Staff assigned somewhere in the plan's region now: whom the planner may pick."""
    return [dict(r) for r in conn.execute(text(
        "SELECT DISTINCT s.code AS staff_code, s.name, s.status FROM staff s "
        "JOIN assignment a ON a.staff_id = s.id JOIN region r ON r.id = a.region_id "
        "WHERE r.code LIKE :p AND a.valid_from <= now() AND (a.valid_to IS NULL OR "
        "a.valid_to > now()) ORDER BY s.code LIMIT :n"),
        {"p": prefix_of(region_code) + "%", "n": limit}).mappings()]


def summary(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The plan's staffing for the impact preview."""
    return {
        "roster": roster(conn, row["id"]),
        "candidates": candidates(conn, row["region_code"]),
        "changes": staffing_of(conn, row["id"]),
        "without_worker": unstaffed(conn, row),
        "override_reason": row.get("unstaffed_reason"),
        "restored": [{k: r[k] for k in ("staff_code", "name", "region_code", "duty")}
                     for r in restorable(conn, row)],
    }
