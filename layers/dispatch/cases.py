"""One case as the desk shows it, the actions this user may take on it, and reveals of phones.

The case view is :func:`layers.incidents.handling.get` (the same jurisdiction rule and history)
plus what a dispatcher needs on one screen: the responsible worker by name, the department, the
time limits and how much of the current step is used, the merge links and the duplicate
candidates. Phones are always masked here; a role that may see one asks for it with a reason
(:func:`reveal`), which writes a ``personal_data_reveal`` row and, by its trigger, an audit row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Forbidden, Permission, mask_phone
from grids.errors import GridError
from layers.dispatch import duplicates, merge
from layers.dispatch.roles import DESK_ROLES, LIAISON_ACTIONS, REVEAL_ROLES, DeskUser
from layers.incidents import calendar, handling
from layers.incidents.workflow import (
    OPEN_STATES,
    allowed_actions,
    step_limit_hours,
    total_limit_hours,
)

REVEALABLE = ("reporter_phone", "responsible_phone")


def desk_actions(case: dict[str, Any], user: DeskUser) -> list[str]:
    """What this user may do to this case, in workflow order, plus the desk's own ``merge``
    (open cases) and ``unmerge`` (merged ones)."""
    role = user.principal.role
    if user.is_liaison:
        if case.get("department") != user.department:
            return []
        return [a for a in allowed_actions(case["state"], role) if a in LIAISON_ACTIONS]
    out = allowed_actions(case["state"], role)
    if role in DESK_ROLES:
        if case["state"] in OPEN_STATES:
            out.append("merge")
        elif case["state"] == "merged":
            out.append("unmerge")
    return out


def may_reveal(case: dict[str, Any], user: DeskUser) -> bool:
    role = user.principal.role
    if user.is_liaison or role not in REVEAL_ROLES:
        return False
    if role == "supervisor":
        return user.principal.scope.covers(case.get("region_code"))
    return True


def _raw(conn: Connection, incident_id: int) -> dict[str, Any]:
    return dict(conn.execute(text(
        "SELECT i.reporter_phone, i.reporter_name, i.responsible_code, c.limits, c.limit_unit, "
        "d.name AS department_name, c.name_en AS category_name_en, p.code AS category_group, "
        "s.name AS responsible_name, s.phone AS responsible_phone, s.role AS responsible_role, "
        "s.status AS responsible_status, g.name AS grid_name, i.merged_into "
        "FROM incident i JOIN category c ON c.id = i.category_id "
        "LEFT JOIN category p ON p.id = c.parent_id "
        "LEFT JOIN department d ON d.id = i.department_id "
        "LEFT JOIN staff s ON s.code = i.responsible_code "
        "LEFT JOIN region g ON g.code = i.grid_code WHERE i.id = :id"),
        {"id": incident_id}).mappings().one())


def case_view(conn: Connection, incident_id: int, *, user: DeskUser,
              now: datetime | None = None) -> dict[str, Any]:
    """The case with history, people, limits, merge links, candidates and allowed actions."""
    case = handling.get(conn, incident_id, principal=user.principal)
    if user.is_liaison and case.get("department") != user.department:
        raise handling.IncidentNotFound(
            f"No incident {incident_id} for your department.",
            detail={"field": "id", "value": incident_id})
    raw = _raw(conn, incident_id)
    now = now or datetime.now(UTC)
    limits = raw["limits"] or {}
    step_h = step_limit_hours(limits, case["state"])
    unit = raw["limit_unit"]
    used = None
    if step_h is not None:  # on working time for a category on working time (as the light)
        cal = calendar.load(conn) if unit != "hours" else None
        used = round(calendar.used_fraction(cal, case["state_since"], now, step_h, unit,
                                            case["extension_hours"]), 3)
    case["reporter_phone"] = mask_phone(raw["reporter_phone"])
    case["category_name_en"] = raw["category_name_en"]
    case["category_group"] = raw["category_group"]
    case["department_name"] = raw["department_name"]
    case["grid_name"] = raw["grid_name"]
    case["merged_into"] = raw["merged_into"]
    case["responsible"] = None if raw["responsible_code"] is None else {
        "code": raw["responsible_code"], "name": raw["responsible_name"],
        "phone": mask_phone(raw["responsible_phone"]), "role": raw["responsible_role"],
        "status": raw["responsible_status"]}
    case["limits"] = {"step_hours": step_h, "total_hours": total_limit_hours(limits),
                      "extension_hours": case["extension_hours"], "step_used": used,
                      "unit": unit}  # step_hours/total_hours are in this unit
    case["allowed_actions"] = desk_actions(case, user)
    case["may_reveal"] = may_reveal(case, user) and bool(
        raw["reporter_phone"] or raw["responsible_phone"])
    case["links"] = merge.links(conn, incident_id)
    case["candidates"] = (duplicates.candidates(conn, incident_id, user=user)
                          if case["state"] in OPEN_STATES and case["lon"] is not None else [])
    return case


def act(conn: Connection, incident_id: int, action: str, *, user: DeskUser,
        **kwargs: Any) -> dict[str, Any]:
    """Take a step of the closed loop from the desk: the desk's rules (a liaison acts on its
    department's cases and steps only), then :func:`layers.incidents.handling.act`."""
    if user.is_liaison:
        case = handling.get(conn, incident_id, principal=user.principal)
        if case.get("department") != user.department:
            raise handling.IncidentNotFound(
                f"No incident {incident_id} for your department.",
                detail={"field": "id", "value": incident_id})
        if action not in LIAISON_ACTIONS:
            raise Forbidden(f"A department's liaison may not {action[:20]} cases.",
                            detail={"field": "action", "allowed": list(LIAISON_ACTIONS)})
    handling.act(conn, incident_id, action, principal=user.principal, **kwargs)
    return case_view(conn, incident_id, user=user)


def reveal(conn: Connection, incident_id: int, *, field: str, reason: str,
           user: DeskUser) -> dict[str, Any]:
    """A phone in full, once, for a stated reason; recorded in ``personal_data_reveal`` (and so
    in the audit log). Returns the value and a ``tel:`` link."""
    user.principal.require(Permission.INCIDENTS_READ)
    if field not in REVEALABLE:
        raise GridError("Only the reporter's or the responsible worker's phone can be shown.",
                        detail={"field": "field", "expected": list(REVEALABLE)},
                        code="invalid_reveal")
    reason = (reason or "").strip()
    if len(reason) < 2:
        raise GridError("Say why you need the number (at least 2 characters).",
                        detail={"field": "reason", "expected": "2..500 characters"},
                        code="reason_required")
    case = handling.get(conn, incident_id, principal=user.principal)  # 404 outside
    if not may_reveal(case, user):
        raise Forbidden(f"The {user.principal.role} role may not see phones in full here.",
                        detail={"field": "field", "role": user.principal.role})
    raw = _raw(conn, incident_id)
    value = raw[field]
    if not value:
        raise GridError("There is no such number on this case.",
                        detail={"field": "field", "value": field}, code="no_phone")
    conn.execute(text(
        "INSERT INTO personal_data_reveal (actor, incident_id, region_code, field, reason) "
        "VALUES (:actor, :id, :region, :field, :reason)"),
        {"actor": user.principal.name, "id": incident_id, "region": case["region_code"],
         "field": field, "reason": reason[:500]})
    tel = "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return {"field": field, "value": value, "tel": f"tel:{tel}"}
