"""A plan opened (also as a restored version), edited (ETag, dry run), validated, discarded.

Every function takes a connection inside the caller's transaction and never commits.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import shapely
from sqlalchemy import Connection, text

from grids.access import Principal, prefix_of
from grids.codes import level_of, normalise
from grids.errors import GridError, RegionNotFound
from grids.plans import edits, undo
from grids.plans.checks import validate
from grids.plans.draft import SLIVER_M2, Draft, EditRejected, Item
from grids.plans.store import (
    InvalidEdit,
    check_draft,
    check_etag,
    get_plan,
    load_draft,
    log_edit,
    plan_row,
    problems_json,
    public,
    store_draft,
)


def create_plan(conn: Connection, *, name: str, region_code: str, principal: Principal,
                note: str = "", restore_version: int | None = None) -> dict[str, Any]:
    """Open a plan over a street or community in the principal's jurisdiction.

    With ``restore_version``, the draft is the region as it was when that boundary version took
    effect: activating it restores those boundaries (as a new version; history is kept).
    """
    code = normalise(region_code)
    if not principal.scope.covers(code):
        raise RegionNotFound(f"No region {code} in your jurisdiction.",
                             detail={"field": "region_code", "value": code})
    level = level_of(code)
    if level not in ("street", "community"):
        raise GridError("A plan covers one street or one community.",
                        detail={"field": "region_code", "value": code,
                                "expected": "a 9-digit street or 12-digit community code"},
                        code="invalid_plan_region")
    region = conn.execute(
        text("SELECT id, boundary_id FROM region_current WHERE code = :c"), {"c": code}
    ).mappings().first()
    if region is None:
        raise RegionNotFound(f"No region {code} is in force.",
                             detail={"field": "region_code", "value": code})
    restored_at = None
    if restore_version is not None:
        restored_at = conn.execute(
            text("SELECT coalesce(effective_at, activated_at) FROM boundary_version "
                 "WHERE id = :v AND activated_at IS NOT NULL"), {"v": restore_version}).scalar()
        if restored_at is None:
            raise RegionNotFound(f"No boundary version {restore_version}.",
                                 detail={"field": "restore_version", "value": restore_version})
    base = conn.execute(
        text(
            "SELECT b.id AS boundary_id, r.code, r.level, r.name, p.code AS parent_code "
            "FROM region_boundary b JOIN region r ON r.id = b.region_id "
            "JOIN region p ON p.id = b.parent_id "
            "WHERE b.valid_from <= now() AND (b.valid_to IS NULL OR b.valid_to > now()) AND ("
            " (r.level = 'grid' AND p.code LIKE :prefix) OR"
            " (r.level = 'community' AND :level = 'street' AND p.code = :code))"
            " ORDER BY r.level, r.code"),
        {"prefix": prefix_of(code) + "%", "code": code, "level": level},
    ).mappings().all()
    base_ids = [region["boundary_id"], *(r["boundary_id"] for r in base)]
    plan_id = conn.execute(
        text("INSERT INTO plan (name, region_id, region_code, note, base_version, "
             "base_boundaries, restored_from, created_by) VALUES (:name, :rid, :code, :note, "
             "(SELECT coalesce(max(id), 0) FROM boundary_version), :base, :restored, :by) "
             "RETURNING id"),
        {"name": name, "rid": region["id"], "code": code, "note": note, "base": base_ids,
         "restored": restore_version, "by": principal.name},
    ).scalar_one()
    conn.execute(
        text("INSERT INTO plan_region (plan_id, code, level, name, parent_code, origin_code, "
             "source_boundary_id, geom, area_m2, change) "
             "SELECT :plan, r.code, r.level, r.name, p.code, r.code, b.id, b.geom, b.area_m2, "
             "'unchanged' FROM region_boundary b JOIN region r ON r.id = b.region_id "
             "JOIN region p ON p.id = b.parent_id WHERE b.id = ANY(:ids)"),
        {"plan": plan_id, "ids": [r["boundary_id"] for r in base]},
    )
    row = plan_row(conn, plan_id, principal)
    draft = load_draft(conn, row)
    if restored_at is not None:
        restored = _restore(conn, draft, code, restored_at)
        # undone, the plan is the region as it is now, with its problems then
        undo.before_edit(conn, {**row, "problems": [p.as_dict() for p in validate(draft)]},
                         principal)
        store_draft(conn, plan_id, draft, restored)
        log_edit(conn, row, "restore", {"op": "restore", "version": restore_version,
                                        "facts": {"op": "restore", "version": restore_version}},
                 f"restored the boundaries of version {restore_version}", principal)
        draft = restored
    problems = validate(draft)
    conn.execute(text("UPDATE plan SET problems = CAST(:p AS jsonb) WHERE id = :id"),
                 {"p": problems_json(problems), "id": plan_id})
    return get_plan(conn, plan_id, principal=principal)


def _restore(conn: Connection, draft: Draft, code: str, at: datetime) -> Draft:
    """``draft`` turned into the region's communities and grids as they were at ``at``."""
    level = level_of(code)
    then = {
        (r.level, r.code): r for r in conn.execute(
            text(
                "SELECT r.code, r.level, r.name, p.code AS parent_code, "
                "ST_AsBinary(b.geom) AS wkb FROM region_boundary b "
                "JOIN region r ON r.id = b.region_id JOIN region p ON p.id = b.parent_id "
                "WHERE b.valid_from <= :at AND (b.valid_to IS NULL OR b.valid_to > :at) AND ("
                " (r.level = 'grid' AND p.code LIKE :prefix) OR"
                " (r.level = 'community' AND :level = 'street' AND p.code = :code))"),
            {"at": at, "prefix": prefix_of(code) + "%", "code": code, "level": level})
    }
    items: list[Item] = []
    for it in draft.items:
        old = then.pop((it.level, it.code), None)
        if old is None:
            items.append(replace(it, geom=None, touched=True))
            continue
        geom = shapely.from_wkb(bytes(old.wkb))
        assert it.geom is not None
        same = it.parent == old.parent_code and shapely.equals_exact(it.geom, geom, 0.0)
        items.append(it if same else replace(it, geom=geom, parent=old.parent_code,
                                             name=old.name, touched=True))
    for (lv, c), old in sorted(then.items()):
        items.append(Item(code=c, level=lv, name=old.name, parent=old.parent_code,
                             geom=shapely.from_wkb(bytes(old.wkb)), touched=True))
    return draft.with_items(items)




def apply_edit(conn: Connection, plan_id: int, edit: dict[str, Any], *, principal: Principal,
               if_match: str, dry_run: bool = False,
               sliver_m2: float = SLIVER_M2) -> dict[str, Any]:
    """Apply one edit to the draft (or only check it, ``dry_run``).

    Raises :class:`InvalidEdit` (422) with ``detail['problems']`` if the edit cannot be applied
    or would add a problem; :class:`PlanConflict` (409) if ``if_match`` is stale. A dry run
    returns the plan as it would be (same ETag) and writes nothing.
    """
    row = plan_row(conn, plan_id, principal, lock=not dry_run)
    check_draft(row)
    check_etag(conn, row, if_match)
    draft = load_draft(conn, row)
    try:
        applied = edits.apply(draft, edit, sliver_m2=sliver_m2)
    except EditRejected as exc:
        raise InvalidEdit(
            f"The edit was refused: {exc.problems[0].message}",
            detail={"problems": [p.as_dict() for p in exc.problems]}) from exc
    if dry_run:
        out = public(conn, row)
        out["problems"] = [p.as_dict() for p in applied.problems]
        out["summary"] = applied.summary
        out["facts"] = applied.facts
        return out
    undo.before_edit(conn, row, principal)  # drops the redo stack, keeps the draft for undo
    store_draft(conn, plan_id, draft, applied.draft)
    log_edit(conn, row, str(edit["op"]), {**edit, "facts": applied.facts}, applied.summary,
             principal)
    # The plan's problems: those of the tilings the edit touched, checked again in full; the
    # others' are as they were.
    touched = set(applied.parents)
    kept = [p for p in row["problems"] if p.get("parent") and p["parent"] not in touched]
    fresh = [p.as_dict() for p in validate(applied.draft, parents=touched,
                                              sliver_m2=sliver_m2)]
    conn.execute(text("UPDATE plan SET revision = revision + 1, updated_at = now(), "
                      "problems = CAST(:p AS jsonb) WHERE id = :id"),
                 {"p": orjson.dumps(kept + fresh).decode(), "id": plan_id})
    return get_plan(conn, plan_id, principal=principal)


def validate_plan(conn: Connection, plan_id: int, *, principal: Principal,
                  sliver_m2: float = SLIVER_M2) -> dict[str, Any]:
    """The whole plan checked now: ``{ok, problems}``."""
    row = plan_row(conn, plan_id, principal)
    problems = validate(load_draft(conn, row), sliver_m2=sliver_m2)
    return {"ok": not problems, "problems": [p.as_dict() for p in problems]}


def discard(conn: Connection, plan_id: int, *, principal: Principal,
            if_match: str | None = None) -> None:
    """Discard a draft (kept, with status 'discarded')."""
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    if if_match is not None:
        check_etag(conn, row, if_match)
    conn.execute(text("UPDATE plan SET status = 'discarded', revision = revision + 1, "
                      "updated_at = now() WHERE id = :id"), {"id": plan_id})
