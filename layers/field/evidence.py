"""Closure checked against evidence: was the worker there, after the dispatch?

At 反馈 (report) and at 核查 (verification) the phone sends photos and its own position. Each is
compared with the case's place and the time the step began (dispatch for a report, the report for
a verification), and so is the worker's patrol trace since then:

- ``photo_far``: a photo's EXIF position is more than :data:`FAR_M` from the case;
- ``photo_before_dispatch`` (``photo_before_report`` at 核查): a photo was taken before the step
  began (with :data:`CLOCK_SKEW` of tolerance for the phone's clock);
- ``sent_far``: the phone was farther than :data:`FAR_M` (plus its stated accuracy) when it sent;
- ``never_near``: neither the patrol trace since the step began nor the phone when it sent came
  within :data:`NEAR_M` of the case.

Any of these marks the check ``suspicious`` (疑似虚假回复), writes an ``evidence_flag`` event into
the case's history, and stays until a supervisor clears it with a reason (``evidence_clear``
event; the row change is audited by the database). Photos without position or time are noted,
not flagged: many phones strip EXIF when sharing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.access import Forbidden, Permission, Principal
from grids.errors import Conflict, GridError
from layers.field.photos import known
from layers.incidents import handling
from layers.patrols.intake import _own_staff_code

FAR_M = 300.0
NEAR_M = 150.0
CLOCK_SKEW = timedelta(minutes=10)
FLAGS = frozenset({"photo_far", "photo_before_dispatch", "photo_before_report", "sent_far",
                   "never_near"})
LABELS_ZH = {"photo_far": "照片拍摄地点远离案件位置", "photo_before_dispatch": "照片拍摄于派遣之前",
             "photo_before_report": "照片拍摄于反馈之前", "sent_far": "提交时手机远离案件位置",
             "never_near": "巡查轨迹与提交位置均未到达案件附近"}
CLEARERS = frozenset({"admin", "supervisor"})


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (WGS84/CGCS2000 lon/lat, haversine).

    >>> round(distance_m(120.0, 29.3, 120.0, 29.301))
    111
    """
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def check(conn: Connection, incident_id: int, event_id: int, *, stage: str,
          principal: Principal, shas: list[str], position: dict[str, Any] | None,
          now: datetime | None = None) -> dict[str, Any]:
    """Compare the evidence of one report or verification with the case; store the result."""
    now = now or datetime.now(UTC)
    case = conn.execute(text(
        "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, state, "
        "(SELECT max(at) FROM incident_event e WHERE e.incident_id = i.id "
        " AND e.action IN ('dispatch', 'rework') AND e.id < :ev) AS dispatched_at, "
        "(SELECT max(at) FROM incident_event e WHERE e.incident_id = i.id "
        " AND e.action = 'report' AND e.id < :ev) AS reported_at "
        "FROM incident i WHERE id = :i"), {"i": incident_id, "ev": event_id}).mappings().one()
    since = case["dispatched_at"] if stage == "report" else case["reported_at"]
    before = "photo_before_dispatch" if stage == "report" else "photo_before_report"
    findings: list[dict[str, Any]] = []
    if case["lon"] is None:
        findings.append({"kind": "case_without_location"})
    photos = known(conn, shas)
    for sha in shas:
        p = photos.get(sha)
        if p is None:
            continue
        if p["lon"] is None:
            findings.append({"kind": "photo_without_position", "photo": sha})
        elif case["lon"] is not None:
            d = distance_m(p["lon"], p["lat"], case["lon"], case["lat"])
            if d > FAR_M:
                findings.append({"kind": "photo_far", "photo": sha, "distance_m": round(d)})
        if p["taken_at"] is None:
            findings.append({"kind": "photo_without_time", "photo": sha})
        elif since is not None and p["taken_at"] < since - CLOCK_SKEW:
            findings.append({"kind": before, "photo": sha, "taken_at": p["taken_at"].isoformat(),
                             "since": since.isoformat()})
    near_sent = False
    if position and case["lon"] is not None:
        acc = min(float(position.get("accuracy_m") or 0.0), 500.0)
        d = distance_m(position["lon"], position["lat"], case["lon"], case["lat"])
        near_sent = d <= NEAR_M + acc
        if d > FAR_M + acc:
            findings.append({"kind": "sent_far", "distance_m": round(d), "accuracy_m": acc})
    nearest = None
    staff = _own_staff_code(conn, principal)
    if staff is not None and case["lon"] is not None:
        nearest = conn.execute(text(
            "SELECT min(ST_DistanceSphere(f.geom, ST_SetSRID(ST_MakePoint(:x, :y), 4490))) "
            "FROM patrol_fix f JOIN staff s ON s.id = f.staff_id WHERE s.code = :s "
            "AND f.at >= :since AND f.at <= :until"),
            {"x": case["lon"], "y": case["lat"], "s": staff,
             "since": (since or now - timedelta(days=1)) - CLOCK_SKEW,
             "until": now + CLOCK_SKEW}).scalar()
    if case["lon"] is not None and not near_sent and not (nearest is not None
                                                          and nearest <= NEAR_M):
        findings.append({"kind": "never_near", "nearest_fix_m": None if nearest is None
                         else round(float(nearest))})
    suspicious = any(f["kind"] in FLAGS for f in findings)
    row = conn.execute(text(
        "INSERT INTO evidence_check (incident_id, event_id, stage, actor, findings, suspicious) "
        "VALUES (:i, :e, :stage, :actor, CAST(:f AS jsonb), :s) RETURNING id, checked_at"),
        {"i": incident_id, "e": event_id, "stage": stage, "actor": principal.name,
         "f": orjson.dumps(findings).decode(), "s": suspicious}).one()
    if suspicious:
        reasons = "；".join(dict.fromkeys(LABELS_ZH[f["kind"]] for f in findings
                                         if f["kind"] in FLAGS))
        conn.execute(text(
            "INSERT INTO incident_event (incident_id, actor, action, from_state, to_state, note) "
            "VALUES (:i, 'system:evidence', 'evidence_flag', :st, :st, :note)"),
            {"i": incident_id, "st": case["state"], "note": f"疑似虚假回复：{reasons}"[:2000]})
    return {"id": row.id, "incident_id": incident_id, "event_id": event_id, "stage": stage,
            "actor": principal.name, "checked_at": row.checked_at, "findings": findings,
            "suspicious": suspicious, "cleared_at": None, "cleared_by": None,
            "clear_reason": None}


def for_incident(conn: Connection, incident_id: int, *, principal: Principal
                 ) -> list[dict[str, Any]]:
    """The evidence checks of a case the caller may see (404 otherwise)."""
    handling.get(conn, incident_id, principal=principal)  # jurisdiction
    return [dict(r) for r in conn.execute(text(
        "SELECT id, incident_id, event_id, stage, actor, checked_at, findings, suspicious, "
        "cleared_at, cleared_by, clear_reason FROM evidence_check WHERE incident_id = :i "
        "ORDER BY id"), {"i": incident_id}).mappings()]


def flagged(conn: Connection, incident_ids: list[int]) -> set[int]:
    """Which of these cases carry a suspicious check not yet cleared."""
    return set(conn.execute(text(
        "SELECT DISTINCT incident_id FROM evidence_check WHERE incident_id = ANY(:i) "
        "AND suspicious AND cleared_at IS NULL"), {"i": incident_ids}).scalars())


def clear(conn: Connection, incident_id: int, check_id: int, *, principal: Principal,
          reason: str) -> dict[str, Any]:
    """A supervisor clears a flag with a reason; the change is audited and shown in the case."""
    principal.require(Permission.INCIDENTS_HANDLE)
    if principal.role not in CLEARERS:
        raise Forbidden("Only a supervisor may clear a possible false reply.",
                        detail={"field": "role", "allowed": sorted(CLEARERS)})
    reason = (reason or "").strip()
    if not reason:
        raise GridError("Say why the flag is cleared.", detail={"field": "reason"},
                        code="reason_required")
    inc = handling.get(conn, incident_id, principal=principal)
    row = conn.execute(text(
        "UPDATE evidence_check SET cleared_at = now(), cleared_by = :by, clear_reason = :r "
        "WHERE id = :c AND incident_id = :i AND suspicious AND cleared_at IS NULL "
        "RETURNING id"), {"by": principal.name, "r": reason[:500], "c": check_id,
                          "i": incident_id}).scalar()
    if row is None:
        raise Conflict("No open flag with that id on this case.",
                       detail={"field": "check_id", "value": check_id})
    conn.execute(text(
        "INSERT INTO incident_event (incident_id, actor, action, from_state, to_state, note) "
        "VALUES (:i, :actor, 'evidence_clear', :st, :st, :note)"),
        {"i": incident_id, "actor": principal.name, "st": inc["state"],
         "note": f"解除疑似虚假回复标记：{reason}"[:2000]})
    return next(c for c in for_incident(conn, incident_id, principal=principal)
                if c["id"] == check_id)
