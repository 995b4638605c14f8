"""Staff and assignments: reads and writes, each checked against the caller's jurisdiction.

A staff member belongs to the jurisdictions of the regions they are assigned to; a caller may read
or change them if any of those regions lies in the caller's scope. Anything outside is reported
as not found.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, mask_person
from grids.city import profile
from grids.codes import normalise
from grids.errors import Conflict, GridError, RegionNotFound

STATUSES = ("available", "seconded", "on_leave")
DUTIES = ("primary", "backup", "head")


class StaffNotFound(RegionNotFound):
    code = "staff_not_found"


class AssignmentNotFound(RegionNotFound):
    code = "assignment_not_found"


def _staff_row(conn: Connection, code: str, principal: Principal, *, lock: bool = False
               ) -> dict[str, Any]:
    if lock:
        conn.execute(text("SELECT id FROM staff WHERE code = :c FOR UPDATE"), {"c": code})
    row = conn.execute(text(
        "SELECT s.id, s.code, s.name, s.phone, s.role, s.status, s.updated_at, "
        "coalesce(array_agg(r.code ORDER BY r.code) FILTER (WHERE r.code IS NOT NULL), '{}') "
        "AS region_codes FROM staff s LEFT JOIN assignment a ON a.staff_id = s.id "
        "AND a.valid_from <= now() AND (a.valid_to IS NULL OR a.valid_to > now()) "
        "LEFT JOIN region r ON r.id = a.region_id WHERE s.code = :c GROUP BY s.id"),
        {"c": code}).mappings().first()
    if row is None or not any(principal.scope.covers(c) for c in row["region_codes"]) \
            and not principal.scope.covers(None):
        raise StaffNotFound(f"No staff member {code[:40]} in your jurisdiction.",
                            detail={"field": "code", "value": code[:40]})
    return dict(row)


def _public(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    regions = row["region_codes"]
    visible = any(principal.sees_personal_data(c) for c in regions) or \
        principal.sees_personal_data(None)
    out = {k: row[k] for k in ("code", "name", "phone", "role", "status", "region_codes")}
    return out if visible else mask_person(out, principal, "")


def get_staff(conn: Connection, code: str, *, principal: Principal) -> dict[str, Any]:
    """One staff member with the regions they are assigned to now."""
    principal.require(Permission.STAFF_READ)
    return _public(_staff_row(conn, code, principal), principal)


def update_staff(conn: Connection, code: str, changes: dict[str, Any], *,
                 principal: Principal) -> dict[str, Any]:
    """Change a staff member's status, phone or name (e.g. mark them on leave)."""
    principal.require(Permission.STAFF_WRITE)
    row = _staff_row(conn, code, principal, lock=True)
    allowed = {k: v for k, v in changes.items() if k in ("status", "phone", "name") and v is not None}
    if not allowed:
        raise GridError("Nothing to change.", detail={"field": "body",
                                                      "expected": "status, phone or name"},
                        code="nothing_to_change")
    pattern = profile(conn).phone_pattern
    if "phone" in allowed and not re.search(pattern, str(allowed["phone"])):
        raise GridError(f"The phone number does not match the city's pattern {pattern}.",
                        detail={"field": "phone", "expected": pattern}, code="invalid_phone")
    sets = ", ".join(f"{k} = :{k}" for k in allowed)  # keys from the fixed list above
    conn.execute(text(f"UPDATE staff SET {sets}, updated_at = now() WHERE id = :id"),
                 {**allowed, "id": row["id"]})
    return get_staff(conn, code, principal=principal)


def _staff_in_scope(conn: Connection, staff_id: int, principal: Principal) -> bool:
    """May ``principal`` assign this staff member? Where they belong must be in scope.

    They belong to the regions of their current assignments; with none current, to the region
    of their latest assignment (their home, e.g. back from leave); a staff member never assigned
    anywhere (a new hire) belongs to no one yet and may be assigned by any supervisor.
    """
    if principal.scope.covers(None):
        return True
    homes = conn.execute(text(
        "WITH mine AS (SELECT r.code, a.valid_from, a.valid_to, "
        "  (a.valid_from <= now() AND (a.valid_to IS NULL OR a.valid_to > now())) AS current "
        "  FROM assignment a JOIN region r ON r.id = a.region_id WHERE a.staff_id = :s) "
        "SELECT code FROM mine WHERE current "
        "UNION ALL (SELECT code FROM mine WHERE NOT EXISTS (SELECT 1 FROM mine WHERE current) "
        "  ORDER BY coalesce(valid_to, valid_from) DESC LIMIT 1)"),
        {"s": staff_id}).scalars().all()
    return not homes or any(principal.scope.covers(code) for code in homes)


def assign(conn: Connection, *, staff_code: str, region_code: str, duty: str,
           valid_from: datetime | None, principal: Principal) -> dict[str, Any]:
    """Assign a staff member to a region in the caller's jurisdiction.

    Both ends must be the caller's: the region, and the staff member (see
    :func:`_staff_in_scope`), so a street cannot take another street's staff (and, with them,
    their full phone and the right to edit them).
    """
    principal.require(Permission.ASSIGNMENTS_WRITE)
    region_code = normalise(region_code)
    if not principal.scope.covers(region_code):
        raise RegionNotFound(f"No region {region_code} in your jurisdiction.",
                             detail={"field": "region_code", "value": region_code})
    region = conn.execute(text("SELECT id, level FROM region WHERE code = :c"),
                          {"c": region_code}).first()
    if region is None:
        raise RegionNotFound(f"No region {region_code}.",
                             detail={"field": "region_code", "value": region_code})
    if (region.level == "grid") != (duty in ("primary", "backup")):
        raise GridError("Primary and backup duties are on grids; head is on a community, street "
                        "or the city.", detail={"field": "duty", "value": duty},
                        code="invalid_duty")
    staff = conn.execute(text("SELECT id FROM staff WHERE code = :c FOR UPDATE"),
                         {"c": staff_code}).first()
    if staff is None or not _staff_in_scope(conn, staff.id, principal):
        raise StaffNotFound(f"No staff member {staff_code[:40]} in your jurisdiction.",
                            detail={"field": "staff_code", "value": staff_code[:40]})
    clash = conn.execute(text(
        "SELECT id FROM assignment WHERE staff_id = :s AND region_id = :r AND duty = :d "
        "AND (valid_to IS NULL OR valid_to > coalesce(CAST(:vf AS timestamptz), now()))"),
        {"s": staff.id, "r": region.id, "d": duty, "vf": valid_from}).first()
    if clash:
        raise Conflict("This staff member already has this duty on this region.",
                       detail={"field": "staff_code", "assignment_id": clash.id})
    row = conn.execute(text(
        "INSERT INTO assignment (staff_id, region_id, duty, valid_from) "
        "VALUES (:s, :r, :d, coalesce(CAST(:vf AS timestamptz), now())) "
        "RETURNING id, valid_from, valid_to"),
        {"s": staff.id, "r": region.id, "d": duty, "vf": valid_from}).mappings().one()
    return {"id": row["id"], "staff_code": staff_code, "region_code": region_code, "duty": duty,
            "valid_from": row["valid_from"], "valid_to": row["valid_to"]}


def end_assignment(conn: Connection, assignment_id: int, *, principal: Principal
                   ) -> dict[str, Any]:
    """End an assignment now (history is kept: the row gets a ``valid_to``)."""
    principal.require(Permission.ASSIGNMENTS_WRITE)
    row = conn.execute(text(
        "SELECT a.id, a.duty, a.valid_from, a.valid_to, s.code AS staff_code, r.code AS region_code "
        "FROM assignment a JOIN staff s ON s.id = a.staff_id JOIN region r ON r.id = a.region_id "
        "WHERE a.id = :id FOR UPDATE OF a"), {"id": assignment_id}).mappings().first()
    if row is None or not principal.scope.covers(row["region_code"]):
        raise AssignmentNotFound(f"No assignment {assignment_id} in your jurisdiction.",
                                 detail={"field": "id", "value": assignment_id})
    if row["valid_to"] is not None:
        raise Conflict("This assignment has already ended.",
                       detail={"field": "id", "valid_to": row["valid_to"].isoformat()})
    ended = conn.execute(text(
        "UPDATE assignment SET valid_to = greatest(now(), valid_from + interval '1 microsecond') "
        "WHERE id = :id RETURNING valid_to"), {"id": assignment_id}).scalar_one()
    return {**row, "valid_to": ended}
