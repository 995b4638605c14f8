"""Approval of redraw plans: draft → submitted → approved (or returned with comments) → activated.

- A planner **submits** a draft (or a returned plan): its tilings must be clean, and every grid it
  touches must keep a responsible worker unless the planner gives a reason (recorded with the
  grids it covers). The planner may propose a scheduled ``effective_at`` (and re-routing of open
  cases); a scheduled activation waits for the approval.
- The **approver** (the city profile's ``plan_approver_role``, default ``admin``; an admin always
  may) approves it or **returns** it with a comment; a returned plan is editable again.
- Only an approved plan is activated (:func:`grids.plans.activate`: 409 ``plan_not_approved``).

Every step bumps the plan's revision (its ETag: the approver approves what they read) and writes a
``plan_review`` row; both tables are audited (``audit_row``). Every function takes a connection
inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Forbidden, Permission, Principal
from grids.city import profile
from grids.errors import Conflict, GridError
from grids.plans import staffing
from grids.plans.store import EDITABLE, check_draft, check_etag, get_plan, plan_row


class PlanNotApproved(Conflict):
    code = "plan_not_approved"


class PlanNotSubmitted(Conflict):
    code = "plan_not_submitted"


def record(conn: Connection, plan_id: int, action: str, comment: str, by: str) -> None:
    conn.execute(text(
        "INSERT INTO plan_review (plan_id, action, comment, revision, by) "
        "SELECT :id, :action, :comment, revision, :by FROM plan WHERE id = :id"),
        {"id": plan_id, "action": action, "comment": comment[:2000], "by": by})


def submit(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
           comment: str = "", effective_at: datetime | None = None,
           reroute_open_incidents: bool = False,
           unstaffed_reason: str | None = None) -> dict[str, Any]:
    """The planner proposes the plan for approval (from a draft or a returned plan)."""
    from grids.plans.activation import check_clean  # activation imports this module

    principal.require(Permission.PLANS_WRITE)
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    check_etag(conn, row, if_match)
    now = conn.execute(text("SELECT now()")).scalar_one()
    if effective_at is not None and effective_at < now:
        raise GridError("effective_at is in the past; boundaries cannot change retroactively.",
                        detail={"field": "effective_at", "value": effective_at.isoformat(),
                                "expected": f"now ({now.isoformat()}) or later"},
                        code="invalid_effective_at")
    check_clean(conn, row)
    staffing.check_targets(conn, row)
    reason = (unstaffed_reason or "").strip() or None
    missing = staffing.check_staffed(conn, row, reason)
    conn.execute(text(
        "UPDATE plan SET status = 'submitted', revision = revision + 1, updated_at = now(), "
        "submitted_at = now(), submitted_by = :by, approved_at = NULL, approved_by = NULL, "
        "proposed_effective_at = :at, reroute_open_incidents = :reroute, "
        "unstaffed_reason = :reason, unstaffed_grids = :grids WHERE id = :id"),
        {"by": principal.name, "at": effective_at, "reroute": reroute_open_incidents,
         "reason": reason[:1000] if reason and missing else None,
         "grids": missing if reason else [], "id": plan_id})
    note = comment
    if reason and missing:
        note = (comment + "\n" if comment else "") + \
            f"Without a worker ({', '.join(missing)}): {reason}"
    record(conn, plan_id, "submit", note, principal.name)
    return get_plan(conn, plan_id, principal=principal)


def may_approve(conn: Connection, principal: Principal) -> bool:
    return principal.role in ("admin", profile(conn).plan_approver_role)


def _approver(conn: Connection, principal: Principal) -> None:
    role = profile(conn).plan_approver_role
    if not may_approve(conn, principal):
        raise Forbidden(f"Plans are approved by the {role} role (city profile); the "
                        f"{principal.role} role may not.",
                        detail={"role": principal.role, "approver_role": role})


def _submitted(row: dict[str, Any], *also: str) -> None:
    if row["status"] not in ("submitted", *also):
        raise PlanNotSubmitted(f"Plan {row['id']} is {row['status']}; only a submitted plan can "
                               "be approved or returned.", detail={"status": row["status"]})


def approve(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
            comment: str = "") -> dict[str, Any]:
    """The approver approves the submitted plan as read (``if_match``)."""
    _approver(conn, principal)
    row = plan_row(conn, plan_id, principal, lock=True)
    _submitted(row)
    check_etag(conn, row, if_match)
    conn.execute(text(
        "UPDATE plan SET status = 'approved', revision = revision + 1, updated_at = now(), "
        "approved_at = now(), approved_by = :by WHERE id = :id"),
        {"by": principal.name, "id": plan_id})
    record(conn, plan_id, "approve", comment, principal.name)
    return get_plan(conn, plan_id, principal=principal)


def return_plan(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
                comment: str) -> dict[str, Any]:
    """The approver sends the plan back with comments; it is editable again."""
    _approver(conn, principal)
    if not comment.strip():
        raise GridError("Say what should change: a returned plan needs a comment.",
                        detail={"field": "comment"}, code="comment_required")
    row = plan_row(conn, plan_id, principal, lock=True)
    _submitted(row, "approved")
    check_etag(conn, row, if_match)
    conn.execute(text(
        "UPDATE plan SET status = 'returned', revision = revision + 1, updated_at = now(), "
        "approved_at = NULL, approved_by = NULL WHERE id = :id"), {"id": plan_id})
    record(conn, plan_id, "return", comment.strip(), principal.name)
    return get_plan(conn, plan_id, principal=principal)


def check_approved(row: dict[str, Any]) -> None:
    if row["status"] != "approved":
        raise PlanNotApproved(
            f"Plan {row['id']} is {row['status']}; only an approved plan can be activated "
            "(submit it, and have it approved).", detail={"status": row["status"]})


def discard(conn: Connection, plan_id: int, *, principal: Principal,
            if_match: str | None = None) -> None:
    """Discard a plan not yet activated (draft, returned, submitted or approved)."""
    principal.require(Permission.PLANS_WRITE)
    row = plan_row(conn, plan_id, principal, lock=True)
    if row["status"] not in (*EDITABLE, "submitted", "approved"):
        check_draft(row)  # raises plan_not_draft with the status
    if if_match is not None:
        check_etag(conn, row, if_match)
    conn.execute(text("UPDATE plan SET status = 'discarded', revision = revision + 1, "
                      "updated_at = now() WHERE id = :id"), {"id": plan_id})
