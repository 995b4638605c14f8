"""Plans in the registry: the plan row and its draft read and written, the edit log, ETags.

Every function takes a connection inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from grids.access import Principal, prefix_of
from grids.errors import Conflict, GridError, RegionNotFound
from grids.plans.draft import Draft, Item, Problem, area_m2
from grids.sql import in_scope

STATUSES = ("draft", "submitted", "returned", "approved", "activated", "discarded")
#: The statuses in which a plan's grids and staffing may still change (a returned plan is a
#: draft again, with the approver's comments).
EDITABLE = ("draft", "returned")


class PlanNotFound(RegionNotFound):
    code = "plan_not_found"


class PlanConflict(Conflict):
    """The plan changed since the caller read it, or its boundaries changed since it was opened."""

    code = "conflict"


class InvalidEdit(GridError):
    """An edit (or an activation) that would leave the grids invalid; nothing was written."""

    code = "invalid_edit"


class PlanNotDraft(Conflict):
    code = "plan_not_draft"


def etag_of(plan_id: int, revision: int) -> str:
    return f"{plan_id}-{revision}"


def jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row for an error's detail: times as ISO 8601 text."""
    if row is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def problems_json(problems: list[Problem]) -> str:
    return orjson.dumps([p.as_dict() for p in problems]).decode()



_PLAN_COLUMNS = (
    "p.id, p.name, p.region_code, p.region_id, p.note, p.status, p.revision, p.base_version, "
    "p.base_boundaries, p.restored_from, p.problems, p.created_by, p.created_at, p.updated_at, "
    "p.activated_version_id, p.activated_at, p.effective_at, p.submitted_at, p.submitted_by, "
    "p.approved_at, p.approved_by, p.proposed_effective_at, p.reroute_open_incidents, "
    "p.unstaffed_reason, p.unstaffed_grids, p.work_moved_at, p.work_moved"
)


def plan_row(conn: Connection, plan_id: int, principal: Principal, *, lock: bool = False
         ) -> dict[str, Any]:
    row = conn.execute(
        text(f"SELECT {_PLAN_COLUMNS} FROM plan p WHERE p.id = :id"
             + (" FOR UPDATE" if lock else "")),
        {"id": plan_id},
    ).mappings().first()
    if row is None or not principal.scope.covers(row["region_code"]):
        raise PlanNotFound(f"No plan {plan_id} in your jurisdiction.",
                           detail={"field": "id", "value": plan_id})
    return dict(row)


def edits_of(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    """The edit log: ``facts`` (what the edit did, as data) and ``state`` (``done``, ``undone``:
    on the redo stack, ``dropped``: undone and then replaced by a later edit; migration 0023)."""
    return [dict(r) for r in conn.execute(
        text("SELECT e.seq, e.op, e.summary, e.by, e.at, e.payload -> 'facts' AS facts, "
             "coalesce(s.state, 'done') AS state FROM plan_edit e "
             "LEFT JOIN plan_edit_state s ON s.plan_id = e.plan_id AND s.seq = e.seq "
             "WHERE e.plan_id = :id ORDER BY e.seq"),
        {"id": plan_id}).mappings()]


def public(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "region_code": row["region_code"],
        "note": row["note"], "status": row["status"],
        "etag": etag_of(row["id"], row["revision"]), "base_version": row["base_version"],
        "restored_from": row["restored_from"], "created_by": row["created_by"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "activated_version": row["activated_version_id"], "activated_at": row["activated_at"],
        "effective_at": row["effective_at"],
        "edits": edits_of(conn, row["id"]), "problems": row["problems"],
        # A draft whose boundaries someone else has changed since it was opened cannot be
        # activated (409); the editor can say so before the planner goes on.
        "stale": row["status"] in ("draft", "returned", "submitted", "approved")
        and set(current_ids(conn, row["region_code"])) != set(row["base_boundaries"]),
        "submitted_at": row["submitted_at"], "submitted_by": row["submitted_by"],
        "approved_at": row["approved_at"], "approved_by": row["approved_by"],
        "proposed_effective_at": row["proposed_effective_at"],
        "reroute_open_incidents": row["reroute_open_incidents"],
        "unstaffed_reason": row["unstaffed_reason"],
        "unstaffed_grids": list(row["unstaffed_grids"] or []),
        "work_moved_at": row["work_moved_at"], "work_moved": row["work_moved"],
        "staffing": staffing_of(conn, row["id"]), "reviews": reviews_of(conn, row["id"]),
    }


def staffing_of(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    """The staffing changes stored with the plan (grids/plans/staffing.py), in order."""
    return [dict(r) for r in conn.execute(text(
        "SELECT ps.id, ps.action, s.code AS staff_code, s.name AS staff_name, ps.region_code, "
        "ps.duty, ps.assignment_id, ps.note, ps.by, ps.at FROM plan_staff ps "
        "JOIN staff s ON s.id = ps.staff_id WHERE ps.plan_id = :id ORDER BY ps.id"),
        {"id": plan_id}).mappings()]


def reviews_of(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    """Submissions, approvals, returns (with comments) and the activation, in order."""
    return [dict(r) for r in conn.execute(text(
        "SELECT action, comment, revision, by, at FROM plan_review WHERE plan_id = :id "
        "ORDER BY id"), {"id": plan_id}).mappings()]


def get_plan(conn: Connection, plan_id: int, *, principal: Principal) -> dict[str, Any]:
    """A plan (PlanPublic) if it lies in the principal's jurisdiction."""
    return public(conn, plan_row(conn, plan_id, principal))


def list_plans(conn: Connection, *, principal: Principal, status: str | None = None
               ) -> list[dict[str, Any]]:
    """Plans in the principal's jurisdiction, newest first (``status`` 'active' = activated)."""
    if status == "active":
        status = "activated"
    scope, params = in_scope(principal, "p.region_code")
    rows = conn.execute(
        text(f"SELECT {_PLAN_COLUMNS} FROM plan p WHERE {scope} "
             "AND (CAST(:status AS text) IS NULL OR p.status = :status) ORDER BY p.id DESC"),
        params | {"status": status},
    ).mappings().all()
    return [public(conn, dict(r)) for r in rows]


def load_draft(conn: Connection, row: dict[str, Any]) -> Draft:
    """The plan's working set as a :class:`plan_geom.Draft`."""
    outer = conn.execute(
        text("SELECT name, level, ST_AsBinary(geom) AS wkb FROM region_current WHERE code = :c"),
        {"c": row["region_code"]}).mappings().first()
    if outer is None:
        raise PlanConflict(f"Region {row['region_code']} is no longer in force.",
                           detail={"region_code": row["region_code"]})
    items = tuple(
        Item(code=r.code, level=r.level, name=r.name, parent=r.parent_code,
                geom=shapely.from_wkb(bytes(r.wkb)) if r.wkb is not None else None,
                origin=r.origin_code, source_id=r.source_boundary_id, rid=r.id,
                touched=r.change != "unchanged")
        for r in conn.execute(
            text("SELECT id, code, level, name, parent_code, origin_code, source_boundary_id, "
                 "change, ST_AsBinary(geom) AS wkb FROM plan_region WHERE plan_id = :id "
                 "ORDER BY level, code"), {"id": row["id"]})
    )
    prefix = prefix_of(row["region_code"])
    origins = {it.origin for it in items if it.origin}
    taken = {c for c in conn.execute(
        text("SELECT r.code FROM region r JOIN region_boundary b ON b.region_id = r.id "
             "WHERE r.level = 'grid' AND r.code LIKE :p AND (b.valid_to IS NULL OR "
             "b.valid_to > now())"), {"p": prefix + "%"}).scalars()} - origins
    known = set(conn.execute(text("SELECT code FROM region WHERE level = 'grid' AND code LIKE :p"),
                             {"p": prefix + "%"}).scalars())
    return Draft(region_code=row["region_code"], region_level=outer["level"],
                    region_name=outer["name"], outer=shapely.from_wkb(bytes(outer["wkb"])),
                    items=items, taken=frozenset(taken), known=frozenset(known))




def check_etag(conn: Connection, row: dict[str, Any], if_match: str) -> None:
    want = if_match.strip().removeprefix("W/").strip('"')
    current = etag_of(row["id"], row["revision"])
    if want != current:
        edits = edits_of(conn, row["id"])
        raise PlanConflict(
            f"Plan {row['id']} was changed since you read it (now {current}); reload it and "
            "apply your change again.",
            detail={"current_etag": current, "your_etag": want,
                    "last_edit": jsonable(edits[-1]) if edits else None})


def check_draft(row: dict[str, Any]) -> None:
    """Only a draft (or a plan returned with comments) can change."""
    if row["status"] not in EDITABLE:
        raise PlanNotDraft(f"Plan {row['id']} is {row['status']}; only a draft (or a returned "
                           "plan) can change.", detail={"status": row["status"]})


def _wkb(geom: BaseGeometry | None) -> str | None:
    if geom is None:
        return None
    if geom.geom_type == "Polygon":
        geom = shapely.MultiPolygon([geom])
    return shapely.to_wkb(geom, hex=True)


def store_draft(conn: Connection, plan_id: int, old: Draft, new: Draft) -> None:
    """Write the rows of ``new`` that differ from ``old`` (by identity)."""
    before = {id(it) for it in old.items}
    kept_rids = {it.rid for it in new.items if it.rid is not None}
    gone = [it.rid for it in old.items if it.rid is not None and it.rid not in kept_rids]
    if gone:
        conn.execute(text("DELETE FROM plan_region WHERE id = ANY(:ids)"), {"ids": gone})
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for it in new.items:
        if id(it) in before:
            continue
        vals = {"code": it.code, "level": it.level, "name": it.name, "parent": it.parent,
                "origin": it.origin, "source": it.source_id, "wkb": _wkb(it.geom),
                "area": area_m2(it.geom) if it.geom is not None else None,
                "change": it.change, "plan": plan_id, "rid": it.rid}
        (inserts if it.rid is None else updates).append(vals)
    # Retirements first, so that a code freed by one row can be taken by another.
    updates.sort(key=lambda v: v["change"] != "retired")
    for v in updates:
        conn.execute(text(
            "UPDATE plan_region SET code = :code, name = :name, parent_code = :parent, "
            "geom = ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4490)), area_m2 = :area, "
            "change = :change WHERE id = :rid"), v)
    if inserts:
        conn.execute(text(
            "INSERT INTO plan_region (plan_id, code, level, name, parent_code, origin_code, "
            "source_boundary_id, geom, area_m2, change) VALUES (:plan, :code, :level, :name, "
            ":parent, :origin, :source, ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4490)), "
            ":area, :change)"), inserts)


def log_edit(conn: Connection, row: dict[str, Any], op: str, payload: dict[str, Any],
              summary: str, principal: Principal) -> None:
    conn.execute(text(
        "INSERT INTO plan_edit (plan_id, region_code, seq, op, payload, summary, by) VALUES "
        "(:id, :code, (SELECT coalesce(max(seq), 0) + 1 FROM plan_edit WHERE plan_id = :id), "
        ":op, CAST(:payload AS jsonb), :summary, :by)"),
        {"id": row["id"], "code": row["region_code"], "op": op,
         "payload": orjson.dumps(payload).decode(), "summary": summary[:500],
         "by": principal.name})



def current_ids(conn: Connection, code: str) -> list[int]:
    """The boundaries not yet ended of the region ``code``, its communities and grids."""
    return list(conn.execute(text(
        "SELECT b.id FROM region_boundary b JOIN region r ON r.id = b.region_id "
        "LEFT JOIN region p ON p.id = b.parent_id "
        "WHERE (b.valid_to IS NULL OR b.valid_to > now()) AND ("
        " r.code = :code OR (r.level = 'grid' AND p.code LIKE :prefix) OR"
        " (r.level = 'community' AND p.code = :code)) ORDER BY b.id"),
        {"code": code, "prefix": prefix_of(code) + "%"}).scalars())
