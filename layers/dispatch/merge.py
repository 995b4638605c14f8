"""Merging duplicates into a lead case, and undoing it.

A merge closes each duplicate as ``merged`` (terminal, neither open nor closed: it is counted
neither as done nor as due), links it to the lead (``incident.merged_into``), and keeps the
state it had in ``incident_merge`` so that :func:`unmerge` can put it back exactly. Both cases get
a step in their history; ``incident`` and ``incident_merge`` are audited by trigger. Reporters of
a merged case follow the lead: Open311 answers the lead's status for it
(:mod:`layers.incidents.open311`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from grids.access import Forbidden, Permission
from grids.errors import Conflict, GridError
from layers.dispatch.roles import DESK_ROLES, DeskUser
from layers.incidents.handling import IncidentNotFound
from layers.incidents.workflow import OPEN_STATES


class MergeRefused(Conflict):
    code = "merge_refused"


def _check_desk(user: DeskUser, what: str) -> None:
    user.principal.require(Permission.INCIDENTS_HANDLE)
    if user.principal.role not in DESK_ROLES or user.is_liaison:
        raise Forbidden(f"Only the command centre's desk may {what} cases.",
                        detail={"field": "action", "role": user.principal.role})


def _lock(conn: Connection, ids: list[int], user: DeskUser) -> dict[int, dict[str, Any]]:
    rows = {r["id"]: dict(r) for r in conn.execute(text(
        "SELECT id, state, state_since, region_code, version, merged_into FROM incident "
        "WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"), {"ids": sorted(set(ids))}).mappings()}
    scope = user.principal.locate_scope()
    for i in ids:
        if i not in rows or not scope.covers(rows[i]["region_code"]):
            raise IncidentNotFound(f"No incident {i} in your jurisdiction.",
                                   detail={"field": "id", "value": i})
    return rows


def _event(conn: Connection, incident_id: int, actor: str, action: str, from_state: str,
           to_state: str, note: str) -> None:
    conn.execute(text(
        "INSERT INTO incident_event (incident_id, actor, action, from_state, to_state, note) "
        "VALUES (:id, :actor, :action, :f, :t, :note)"),
        {"id": incident_id, "actor": actor, "action": action, "f": from_state, "t": to_state,
         "note": note[:2000]})


def merge(conn: Connection, lead_id: int, duplicate_ids: list[int], *, user: DeskUser,
          note: str = "", expected_version: int | None = None,
          scores: dict[int, float] | None = None) -> list[int]:
    """Merge ``duplicate_ids`` into ``lead_id``; returns the ids of the merge records."""
    _check_desk(user, "merge")
    dups = sorted(set(duplicate_ids))
    if not dups or len(dups) > 50:
        raise GridError("Name between 1 and 50 duplicates to merge.",
                        detail={"field": "duplicates", "expected": "1..50 incident ids"},
                        code="invalid_merge")
    rows = _lock(conn, [lead_id, *dups], user)  # first: outside the jurisdiction is a 404
    if lead_id in dups:
        raise MergeRefused("A case cannot be merged into itself.",
                           detail={"field": "duplicates", "value": lead_id})
    lead = rows[lead_id]
    if lead["state"] not in OPEN_STATES:
        raise MergeRefused(f"The lead case is {lead['state']}; merge into an open case.",
                           detail={"field": "lead", "state": lead["state"]})
    if expected_version is not None and expected_version != lead["version"]:
        raise Conflict("The incident changed since you loaded it; reload and try again.",
                       detail={"field": "version", "current": lead["version"],
                               "sent": expected_version})
    leads_of_others = {i for (i,) in conn.execute(text(
        "SELECT DISTINCT lead_id FROM incident_merge WHERE lead_id = ANY(:ids) "
        "AND undone_at IS NULL"), {"ids": dups})}
    actor = user.principal.name
    out = []
    for d in dups:
        row = rows[d]
        if row["state"] not in OPEN_STATES:
            raise MergeRefused(f"Case {d} is {row['state']}; only open cases can be merged.",
                               detail={"field": "duplicates", "value": d,
                                       "state": row["state"]})
        if d in leads_of_others:
            raise MergeRefused(f"Case {d} is itself the lead of merged cases; undo those first "
                               "or choose it as the lead.",
                               detail={"field": "duplicates", "value": d})
        out.append(conn.execute(text(
            "INSERT INTO incident_merge (lead_id, duplicate_id, region_code, score, note, "
            "prior_state, prior_state_since, merged_by) VALUES (:lead, :dup, :region, :score, "
            ":note, :state, :since, :actor) RETURNING id"),
            {"lead": lead_id, "dup": d, "region": row["region_code"],
             "score": (scores or {}).get(d), "note": note[:2000], "state": row["state"],
             "since": row["state_since"], "actor": actor}).scalar_one())
        conn.execute(text(
            "UPDATE incident SET state = 'merged', state_since = now(), merged_into = :lead, "
            "version = version + 1 WHERE id = :id"), {"lead": lead_id, "id": d})
        _event(conn, d, actor, "merge", row["state"], "merged",
               f"合并至 #{lead_id} merged into #{lead_id}" + (f": {note}" if note else ""))
        _event(conn, lead_id, actor, "merge_in", lead["state"], lead["state"],
               f"#{d} 并入 merged in" + (f": {note}" if note else ""))
    conn.execute(text("UPDATE incident SET version = version + 1 WHERE id = :id"),
                 {"id": lead_id})
    return out


def unmerge(conn: Connection, duplicate_id: int, *, user: DeskUser, note: str = "") -> int:
    """Undo the merge of ``duplicate_id``: it gets back the state (and clock) it had; returns the
    lead's id."""
    _check_desk(user, "unmerge")
    rec = conn.execute(text(
        "SELECT id, lead_id, prior_state, prior_state_since FROM incident_merge "
        "WHERE duplicate_id = :d AND undone_at IS NULL FOR UPDATE"),
        {"d": duplicate_id}).mappings().first()
    rows = _lock(conn, [duplicate_id] + ([rec["lead_id"]] if rec else []), user)
    if rec is None or rows[duplicate_id]["state"] != "merged":
        raise MergeRefused(f"Case {duplicate_id} is not merged.",
                           detail={"field": "id", "value": duplicate_id,
                                   "state": rows[duplicate_id]["state"]})
    actor = user.principal.name
    conn.execute(text(
        "UPDATE incident SET state = :state, state_since = :since, merged_into = NULL, "
        "version = version + 1 WHERE id = :id"),
        {"state": rec["prior_state"], "since": rec["prior_state_since"], "id": duplicate_id})
    conn.execute(text("UPDATE incident_merge SET undone_by = :actor, undone_at = now() "
                      "WHERE id = :id"), {"actor": actor, "id": rec["id"]})
    lead = rows[rec["lead_id"]]
    _event(conn, duplicate_id, actor, "unmerge", "merged", rec["prior_state"],
           f"撤销合并 (#{rec['lead_id']}) merge undone" + (f": {note}" if note else ""))
    _event(conn, rec["lead_id"], actor, "unmerge_out", lead["state"], lead["state"],
           f"#{duplicate_id} 撤销合并 split off" + (f": {note}" if note else ""))
    conn.execute(text("UPDATE incident SET version = version + 1 WHERE id = :id"),
                 {"id": rec["lead_id"]})
    return int(rec["lead_id"])


def links(conn: Connection, incident_id: int) -> dict[str, Any]:
    """The merges a case takes part in: its lead (if merged) and the duplicates merged into it,
    with the undone ones."""
    rows = [dict(r) for r in conn.execute(text(
        "SELECT m.id, m.lead_id, m.duplicate_id, m.score, m.note, m.merged_by, m.merged_at, "
        "m.undone_by, m.undone_at, i.source AS duplicate_source, "
        "i.received_at AS duplicate_received_at FROM incident_merge m "
        "JOIN incident i ON i.id = m.duplicate_id "
        "WHERE m.lead_id = :id OR m.duplicate_id = :id ORDER BY m.id"),
        {"id": incident_id}).mappings()]
    lead = next((r["lead_id"] for r in rows
                 if r["duplicate_id"] == incident_id and r["undone_at"] is None), None)
    return {"lead": lead, "merged": [r for r in rows if r["lead_id"] == incident_id],
            "history": [r for r in rows if r["duplicate_id"] == incident_id]}
