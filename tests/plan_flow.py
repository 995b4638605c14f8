"""Test helpers for the plan approval flow (issue 19): submit and approve a plan before activating.

Activation needs an approved plan (409 ``plan_not_approved``), and every grid the plan touches
needs a responsible worker unless the planner gives a reason. Tests about something else go
through the flow with these helpers; ``reason`` is the recorded override (None: the plan must be
fully staffed).

- :func:`approve` works on a connection (service API), returns the approved plan;
- :func:`approve_http` works through the API with a test client, returns the new ETag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Connection

from grids.access import Principal, Scope
from grids.plans import review

ADMIN = Principal.make("user:approver", "admin", Scope.everything())
REASON = "test: staffing is not what this test is about"


def submit(conn: Connection, plan: dict[str, Any], principal: Principal, *,
           reason: str | None = REASON, effective_at: datetime | None = None,
           reroute: bool = False) -> dict[str, Any]:
    return review.submit(conn, plan["id"], principal=principal, if_match=plan["etag"],
                         unstaffed_reason=reason, effective_at=effective_at,
                         reroute_open_incidents=reroute)


def approve(conn: Connection, plan: dict[str, Any], principal: Principal, *,
            approver: Principal = ADMIN, reason: str | None = REASON) -> dict[str, Any]:
    """Submit ``plan`` as ``principal`` and approve it as ``approver``: the approved plan (its
    ``etag`` is the one activation needs)."""
    submitted = submit(conn, plan, principal, reason=reason)
    return review.approve(conn, plan["id"], principal=approver, if_match=submitted["etag"])


def approve_http(client: TestClient, plan_id: int, etag: str, headers: dict[str, str], *,
                 approver_headers: dict[str, str] | None = None, reason: str | None = REASON,
                 submit_body: dict[str, Any] | None = None) -> str:
    """Submit (with ``headers``) and approve (with ``approver_headers``, default the same) plan
    ``plan_id`` through the API; the approved plan's ETag."""
    body = {"unstaffed_reason": reason} if reason else {}
    body |= submit_body or {}
    res = client.post(f"/plans/{plan_id}/submit", json=body,
                      headers={**headers, "If-Match": f'"{etag}"'})
    assert res.status_code == 200, res.text
    res = client.post(f"/plans/{plan_id}/approve", json={},
                      headers={**(approver_headers or headers),
                               "If-Match": f'"{res.json()["etag"]}"'})
    assert res.status_code == 200, res.text
    assert res.json()["plan"]["status"] in ("approved", "activated"), res.text
    return str(res.json()["plan"]["etag"])
