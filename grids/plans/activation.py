"""A plan made the boundaries in force, atomically, in the caller's transaction.

The changed regions' boundaries in force are closed at ``effective_at`` and the new ones start
there, as one new boundary version (history is kept, so ``at=`` before it answers with the old
ones). The boundaries the plan was opened on must be unchanged (else 409: another plan over the
same grids was activated first); the database refuses overlapping siblings (migration 0007's
deferred guard), asked before this returns so it surfaces as a 409 here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Principal
from grids.errors import GridError
from grids.io import check_sibling_overlaps
from grids.plans import crosswalk, review, staffing
from grids.plans.checks import validate
from grids.plans.draft import SLIVER_M2, Draft, Item
from grids.plans.store import (
    InvalidEdit,
    PlanConflict,
    check_etag,
    current_ids,
    get_plan,
    jsonable,
    load_draft,
    plan_row,
)


def activate(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
             effective_at: datetime | None = None,
             sliver_m2: float = SLIVER_M2) -> dict[str, Any]:
    """Make the plan the boundaries in force from ``effective_at`` (None = now), atomically.

    The plan must be approved (else 409 ``plan_not_approved``, :mod:`grids.plans.review`).
    Every community (and, for a moved grid, the street) whose tiling the plan changes must be
    clean (else :class:`InvalidEdit`, 422); every grid it touches must keep a primary worker
    unless the planner recorded a reason on submit (else 422 ``grids_without_worker``); the
    planned staffing (:mod:`grids.plans.staffing`) is applied in the same transaction: its ends
    before the assignments follow their grids, its assignments after. The boundaries it was opened
    on must be unchanged (else :class:`PlanConflict`, 409). Changed regions' boundaries close at
    ``effective_at`` and new ones start there, as one new boundary version; assignments follow a
    re-coded grid and end on a retired one. Returns ``{plan, boundary_version, effective_at,
    changed, staffing}``.
    """
    row = plan_row(conn, plan_id, principal, lock=True)
    review.check_approved(row)
    check_etag(conn, row, if_match)
    now = conn.execute(text("SELECT now()")).scalar_one()
    at = effective_at or now
    if at < now:
        raise GridError("effective_at is in the past; boundaries cannot change retroactively.",
                        detail={"field": "effective_at", "value": at.isoformat(),
                                "expected": f"now ({now.isoformat()}) or later"},
                        code="invalid_effective_at")
    _check_base(conn, row)
    draft, changed = check_clean(conn, row, sliver_m2=sliver_m2)
    # Staffing stored with the plan: its targets still in the draft, every touched grid with a
    # responsible worker (or the planner's recorded reason).
    staffing.check_targets(conn, row)
    staffing.check_staffed(conn, row, row["unstaffed_reason"])
    restored = staffing.restorable(conn, row)  # read before the boundaries below change
    version = conn.execute(text(
        "INSERT INTO boundary_version (label, note, source, activated_at, effective_at, plan_id) "
        "VALUES (:label, :note, 'plan', now(), :at, :plan) RETURNING id"),
        {"label": f"plan {plan_id}: {row['name']}"[:200], "note": row["note"], "at": at,
         "plan": plan_id}).scalar_one()
    closing = [it.source_id for it in changed if it.source_id is not None]
    if closing:
        conn.execute(text("UPDATE region_boundary SET valid_to = :at WHERE id = ANY(:ids)"),
                     {"at": at, "ids": closing})
    opening = [it for it in changed if it.live]
    if opening:
        conn.execute(text(
            "INSERT INTO region (code, level, name) VALUES (:code, :level, :name) "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name"),
            [{"code": it.code, "level": it.level, "name": it.name} for it in opening])
        # Communities first: a grid's new parent may be a community opened here.
        opening.sort(key=lambda it: it.level != "community")
        conn.execute(text(
            "INSERT INTO region_boundary (region_id, parent_id, version_id, geom, area_m2, "
            "valid_from) SELECT r.id, p.id, :v, pr.geom, 0, :at FROM plan_region pr "
            "JOIN region r ON r.code = pr.code JOIN region p ON p.code = pr.parent_code "
            "WHERE pr.id = :rid"),
            [{"v": version, "at": at, "rid": it.rid} for it in opening])
    crosswalk.record(conn, version=version, plan_id=plan_id, at=at, closed=closing)
    ended = staffing.end_planned(conn, plan_id, at)
    _carry_assignments(conn, draft, at)
    staffed = staffing.assign_planned(conn, row, at, restored)
    refused = check_sibling_overlaps(conn)
    if refused:
        raise PlanConflict(f"The database refused the new boundaries: {refused[0]}.",
                           detail={"constraint": "region_boundary_no_overlapping_siblings",
                                   "reasons": refused})
    conn.execute(text(
        "UPDATE plan SET status = 'activated', revision = revision + 1, updated_at = now(), "
        "activated_version_id = :v, activated_at = now(), effective_at = :at, "
        "problems = '[]'::jsonb WHERE id = :id"), {"v": version, "at": at, "id": plan_id})
    review.record(conn, plan_id, "activate", f"effective {at.isoformat()}", principal.name)
    return {"plan": get_plan(conn, plan_id, principal=principal), "boundary_version": version,
            "effective_at": at, "changed": len(changed),
            "staffing": {"ended": ended, **staffed}}


def check_clean(conn: Connection, row: dict[str, Any], *, sliver_m2: float = SLIVER_M2
                ) -> tuple[Draft, list[Item]]:
    """The plan's draft and its changed items; refused if it changes nothing (422
    ``empty_plan``) or leaves a tiling it touches unclean (422 ``invalid_edit``)."""
    draft = load_draft(conn, row)
    changed = [it for it in draft.items if it.change != "unchanged"]
    if not changed:
        raise GridError(f"Plan {row['id']} changes nothing; there is nothing to activate.",
                        detail={"edits": 0}, code="empty_plan")
    # Every tiling the plan touches must be clean; one it leaves alone is not its business.
    touched = {it.parent for it in changed} | {it.code for it in changed
                                               if it.level == "community"}
    problems = validate(draft, parents=touched, sliver_m2=sliver_m2)
    if problems:
        raise InvalidEdit(
            f"The plan cannot be activated: {problems[0].message}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            detail={"problems": [p.as_dict() for p in problems]})
    return draft, changed



def _check_base(conn: Connection, row: dict[str, Any]) -> None:
    """409 unless the boundaries the plan was opened on are exactly those in force (locked)."""
    code = row["region_code"]
    # Lock first (a concurrent activation of the same boundaries makes us wait for its end),
    # then look again in a new statement, whose snapshot sees what it committed.
    conn.execute(text("SELECT id FROM region_boundary WHERE id = ANY(:ids) ORDER BY id "
                      "FOR UPDATE"), {"ids": list(row["base_boundaries"])})
    current = current_ids(conn, code)
    base = set(row["base_boundaries"])
    if set(current) == base:
        return
    others = [dict(r) for r in conn.execute(text(
        "SELECT DISTINCT v.id AS boundary_version, v.plan_id, v.label, v.activated_at, "
        "coalesce(v.effective_at, v.activated_at) AS effective_at FROM region_boundary b "
        "JOIN boundary_version v ON v.id = b.version_id "
        "WHERE b.id = ANY(:new) ORDER BY v.id"),
        {"new": sorted(set(current) - base)}).mappings()]
    closed = conn.execute(text(
        "SELECT DISTINCT v.id AS boundary_version, v.plan_id, v.label, v.activated_at, "
        "coalesce(v.effective_at, v.activated_at) AS effective_at FROM region_boundary b "
        "JOIN region_boundary nb ON nb.region_id = b.region_id AND nb.valid_from = b.valid_to "
        "JOIN boundary_version v ON v.id = nb.version_id WHERE b.id = ANY(:gone) ORDER BY v.id"),
        {"gone": sorted(base - set(current))}).mappings().all()
    seen = {o["boundary_version"] for o in others}
    others += [dict(c) for c in closed if c["boundary_version"] not in seen]
    who = ", ".join(f"version {o['boundary_version']} ({o['label']})" for o in others) \
        or "a direct edit"
    raise PlanConflict(
        f"The boundaries of {code} changed since plan {row['id']} was opened: {who}. Open a new "
        "plan on the current boundaries.",
        detail={"other_changes": [jsonable(o) for o in others],
                "changed_boundaries": sorted(base ^ set(current))})


def _carry_assignments(conn: Connection, draft: Draft, at: datetime) -> None:
    """Assignments follow a re-coded or moved grid; on a retired grid they end at ``at``."""
    recoded = [(it.origin, it.code) for it in draft.items
               if it.live and it.level == "grid" and it.origin and it.origin != it.code]
    retired = [it.origin for it in draft.items if not it.live and it.origin]
    ending = [o for o, _ in recoded] + retired
    if not ending:
        return
    moves = [dict(r) for o, n in recoded for r in conn.execute(text(
        "SELECT a.staff_id, a.duty, CAST(:new AS text) AS new FROM assignment a "
        "JOIN region o ON o.id = a.region_id WHERE o.code = :old AND a.valid_from <= :at "
        "AND (a.valid_to IS NULL OR a.valid_to > :at)"),
        {"at": at, "old": o, "new": n}).mappings()]
    # End first: a swap of two codes moves each team onto the other's old region.
    conn.execute(text(
        "UPDATE assignment a SET valid_to = :at FROM region o WHERE o.id = a.region_id "
        "AND o.code = ANY(:codes) AND a.valid_from < :at AND (a.valid_to IS NULL OR "
        "a.valid_to > :at)"), {"at": at, "codes": ending})
    if moves:
        conn.execute(text(
            "INSERT INTO assignment (staff_id, region_id, duty, valid_from) "
            "SELECT :staff_id, r.id, :duty, :at FROM region r WHERE r.code = :new"),
            [{**m, "at": at} for m in moves])
