"""Redraw plans in the registry: open, edit, validate, preview, activate, discard.

A plan is a draft over one street or community. Opening it copies the boundaries in force under
that region into ``plan_region``; edits change only those rows (geometry work in
:mod:`grids.plan_geom`), so nobody else sees anything until activation. Activation writes a new
boundary version in the caller's transaction: the changed regions' boundaries in force are closed
at ``effective_at`` and the new ones start there (history is kept, so ``at=`` before it answers
with the old ones).

Concurrency
-----------
- Each plan has a ``revision``; its ETag is ``"<id>-<revision>"``. Every write names the ETag it
  read (``if_match``); a stale one raises :class:`PlanConflict` (409) naming the edit made since.
  The plan row is locked (``FOR UPDATE``) while it is checked and changed.
- A plan remembers the boundaries in force under its region when it was opened. Activation locks
  them and refuses (409) if any has been closed or a new one added since: another plan over the
  same grids was activated first.
- The database itself refuses overlapping siblings (migration 0007's deferred guard);
  activation asks for that check before it returns, so it surfaces as a 409 here.

Every function takes a connection inside the caller's transaction and never commits.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from grids import plan_geom as pg
from grids.access import Principal, prefix_of
from grids.codes import level_of, normalise
from grids.errors import Conflict, GridError, RegionNotFound
from grids.io import check_sibling_overlaps

STATUSES = ("draft", "activated", "discarded")


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


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row for an error's detail: times as ISO 8601 text."""
    if row is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def problems_json(problems: list[pg.Problem]) -> str:
    return orjson.dumps([p.as_dict() for p in problems]).decode()


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------

_PLAN_COLUMNS = (
    "p.id, p.name, p.region_code, p.region_id, p.note, p.status, p.revision, p.base_version, "
    "p.base_boundaries, p.restored_from, p.problems, p.created_by, p.created_at, p.updated_at, "
    "p.activated_version_id, p.activated_at, p.effective_at"
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


def _edits(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        text("SELECT seq, op, summary, by, at FROM plan_edit WHERE plan_id = :id ORDER BY seq"),
        {"id": plan_id}).mappings()]


def _public(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "region_code": row["region_code"],
        "note": row["note"], "status": row["status"],
        "etag": etag_of(row["id"], row["revision"]), "base_version": row["base_version"],
        "restored_from": row["restored_from"], "created_by": row["created_by"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "activated_version": row["activated_version_id"], "activated_at": row["activated_at"],
        "effective_at": row["effective_at"],
        "edits": _edits(conn, row["id"]), "problems": row["problems"],
        # A draft whose boundaries someone else has changed since it was opened cannot be
        # activated (409); the editor can say so before the planner goes on.
        "stale": row["status"] == "draft"
        and set(_current_ids(conn, row["region_code"])) != set(row["base_boundaries"]),
    }


def get_plan(conn: Connection, plan_id: int, *, principal: Principal) -> dict[str, Any]:
    """A plan (PlanPublic) if it lies in the principal's jurisdiction."""
    return _public(conn, plan_row(conn, plan_id, principal))


def list_plans(conn: Connection, *, principal: Principal, status: str | None = None
               ) -> list[dict[str, Any]]:
    """Plans in the principal's jurisdiction, newest first (``status`` 'active' = activated)."""
    if status == "active":
        status = "activated"
    rows = conn.execute(
        text(f"SELECT {_PLAN_COLUMNS} FROM plan p WHERE p.region_code LIKE ANY(:scope) "
             "AND (CAST(:status AS text) IS NULL OR p.status = :status) ORDER BY p.id DESC"),
        {"scope": principal.scope.like_patterns(), "status": status},
    ).mappings().all()
    return [_public(conn, dict(r)) for r in rows]


def load_draft(conn: Connection, row: dict[str, Any]) -> pg.Draft:
    """The plan's working set as a :class:`plan_geom.Draft`."""
    outer = conn.execute(
        text("SELECT name, level, ST_AsBinary(geom) AS wkb FROM region_current WHERE code = :c"),
        {"c": row["region_code"]}).mappings().first()
    if outer is None:
        raise PlanConflict(f"Region {row['region_code']} is no longer in force.",
                           detail={"region_code": row["region_code"]})
    items = tuple(
        pg.Item(code=r.code, level=r.level, name=r.name, parent=r.parent_code,
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
    return pg.Draft(region_code=row["region_code"], region_level=outer["level"],
                    region_name=outer["name"], outer=shapely.from_wkb(bytes(outer["wkb"])),
                    items=items, taken=frozenset(taken), known=frozenset(known))


# ------------------------------------------------------------------------------------------
# opening
# ------------------------------------------------------------------------------------------


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
        store_draft(conn, plan_id, draft, restored)
        log_edit(conn, row, "restore", {"op": "restore", "version": restore_version},
                  f"restored the boundaries of version {restore_version}", principal)
        draft = restored
    problems = pg.validate(draft)
    conn.execute(text("UPDATE plan SET problems = CAST(:p AS jsonb) WHERE id = :id"),
                 {"p": problems_json(problems), "id": plan_id})
    return get_plan(conn, plan_id, principal=principal)


def _restore(conn: Connection, draft: pg.Draft, code: str, at: datetime) -> pg.Draft:
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
    items: list[pg.Item] = []
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
        items.append(pg.Item(code=c, level=lv, name=old.name, parent=old.parent_code,
                             geom=shapely.from_wkb(bytes(old.wkb)), touched=True))
    return draft.with_items(items)


# ------------------------------------------------------------------------------------------
# editing
# ------------------------------------------------------------------------------------------


def _check_etag(conn: Connection, row: dict[str, Any], if_match: str) -> None:
    want = if_match.strip().removeprefix("W/").strip('"')
    current = etag_of(row["id"], row["revision"])
    if want != current:
        edits = _edits(conn, row["id"])
        raise PlanConflict(
            f"Plan {row['id']} was changed since you read it (now {current}); reload it and "
            "apply your change again.",
            detail={"current_etag": current, "your_etag": want,
                    "last_edit": _jsonable(edits[-1]) if edits else None})


def _check_draft(row: dict[str, Any]) -> None:
    if row["status"] != "draft":
        raise PlanNotDraft(f"Plan {row['id']} is {row['status']}; only a draft can change.",
                           detail={"status": row["status"]})


def _wkb(geom: BaseGeometry | None) -> str | None:
    if geom is None:
        return None
    if geom.geom_type == "Polygon":
        geom = shapely.MultiPolygon([geom])
    return shapely.to_wkb(geom, hex=True)


def store_draft(conn: Connection, plan_id: int, old: pg.Draft, new: pg.Draft) -> None:
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
                "area": pg.area_m2(it.geom) if it.geom is not None else None,
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


def apply_edit(conn: Connection, plan_id: int, edit: dict[str, Any], *, principal: Principal,
               if_match: str, dry_run: bool = False,
               sliver_m2: float = pg.SLIVER_M2) -> dict[str, Any]:
    """Apply one edit to the draft (or only check it, ``dry_run``).

    Raises :class:`InvalidEdit` (422) with ``detail['problems']`` if the edit cannot be applied
    or would add a problem; :class:`PlanConflict` (409) if ``if_match`` is stale. A dry run
    returns the plan as it would be (same ETag) and writes nothing.
    """
    row = plan_row(conn, plan_id, principal, lock=not dry_run)
    _check_draft(row)
    _check_etag(conn, row, if_match)
    draft = load_draft(conn, row)
    try:
        applied = pg.apply(draft, edit, sliver_m2=sliver_m2)
    except pg.EditRejected as exc:
        raise InvalidEdit(
            f"The edit was refused: {exc.problems[0].message}",
            detail={"problems": [p.as_dict() for p in exc.problems]}) from exc
    if dry_run:
        out = _public(conn, row)
        out["problems"] = [p.as_dict() for p in applied.problems]
        out["summary"] = applied.summary
        return out
    store_draft(conn, plan_id, draft, applied.draft)
    log_edit(conn, row, str(edit["op"]), edit, applied.summary, principal)
    # The plan's problems: those of the tilings the edit touched, checked again in full; the
    # others' are as they were.
    touched = set(applied.parents)
    kept = [p for p in row["problems"] if p.get("parent") and p["parent"] not in touched]
    fresh = [p.as_dict() for p in pg.validate(applied.draft, parents=touched,
                                              sliver_m2=sliver_m2)]
    conn.execute(text("UPDATE plan SET revision = revision + 1, updated_at = now(), "
                      "problems = CAST(:p AS jsonb) WHERE id = :id"),
                 {"p": orjson.dumps(kept + fresh).decode(), "id": plan_id})
    return get_plan(conn, plan_id, principal=principal)


def validate_plan(conn: Connection, plan_id: int, *, principal: Principal,
                  sliver_m2: float = pg.SLIVER_M2) -> dict[str, Any]:
    """The whole plan checked now: ``{ok, problems}``."""
    row = plan_row(conn, plan_id, principal)
    problems = pg.validate(load_draft(conn, row), sliver_m2=sliver_m2)
    return {"ok": not problems, "problems": [p.as_dict() for p in problems]}


def discard(conn: Connection, plan_id: int, *, principal: Principal,
            if_match: str | None = None) -> None:
    """Discard a draft (kept, with status 'discarded')."""
    row = plan_row(conn, plan_id, principal, lock=True)
    _check_draft(row)
    if if_match is not None:
        _check_etag(conn, row, if_match)
    conn.execute(text("UPDATE plan SET status = 'discarded', revision = revision + 1, "
                      "updated_at = now() WHERE id = :id"), {"id": plan_id})


# ------------------------------------------------------------------------------------------
# showing
# ------------------------------------------------------------------------------------------


def features(conn: Connection, plan_id: int, *, principal: Principal, digits: int = 8
             ) -> dict[str, Any]:
    """The plan's grids (draft state; retired ones with their old shape) and, as context, the
    grids just outside its region, as a GeoJSON FeatureCollection (``digits`` decimals: 8 is
    about 1 mm; 15 keeps the stored coordinates, for files)."""
    row = plan_row(conn, plan_id, principal)
    rows = conn.execute(text(
        "SELECT pr.code, pr.name, pr.parent_code, pr.change, "
        "coalesce(pr.area_m2, b.area_m2) AS area_m2, "
        "ST_AsGeoJSON(coalesce(pr.geom, b.geom), :digits) AS geometry FROM plan_region pr "
        "LEFT JOIN region_boundary b ON b.id = pr.source_boundary_id "
        "WHERE pr.plan_id = :id AND pr.level = 'grid' ORDER BY pr.change = 'retired', pr.code"),
        {"id": plan_id, "digits": digits}).mappings().all()
    context = conn.execute(text(
        "SELECT c.code, c.name, c.parent_code, 'context' AS change, c.area_m2, "
        "ST_AsGeoJSON(c.geom, :digits) AS geometry FROM region_current c, region_current o "
        "WHERE o.code = :code AND c.level = 'grid' AND c.code NOT LIKE :prefix "
        "AND c.geom && o.geom AND ST_Intersects(c.geom, o.geom) ORDER BY c.code"),
        {"code": row["region_code"], "prefix": prefix_of(row["region_code"]) + "%",
         "digits": digits}).mappings().all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": f"{r['change']}:{r['code']}",
         "geometry": orjson.loads(r["geometry"]),
         "properties": {"code": r["code"], "name": r["name"], "parent_code": r["parent_code"],
                        "change": r["change"], "area_m2": round(r["area_m2"] or 0.0, 1)}}
        for r in [*rows, *context]]}


def impact(conn: Connection, plan_id: int, *, principal: Principal) -> dict[str, Any]:
    """What activation would change for grids and people (incidents: see layers.incidents.reroute).

    ``grids``: every changed, new or retired grid with its area before and after;
    ``workers.moving``: assignments on grids whose shape or code changes (they follow a
    re-coded grid; on a retired grid they end); ``workers.without_grid``: staff whose every grid
    assignment ends; ``grids_without_worker``: grids of the draft with no primary worker after
    activation. The registry holds no addresses or households, so ``households`` says so.
    """
    row = plan_row(conn, plan_id, principal)
    grids = [
        {"code": r.code, "level": r.level, "change": r.change, "origin_code": r.origin_code,
         "old_area_m2": round(r.old or 0.0, 1), "new_area_m2": round(r.new or 0.0, 1),
         "delta_m2": round((r.new or 0.0) - (r.old or 0.0), 1),
         "delta_pct": round(100.0 * ((r.new or 0.0) - r.old) / r.old, 2) if r.old else None}
        for r in conn.execute(text(
            "SELECT pr.code, pr.level, pr.change, pr.origin_code, b.area_m2 AS old, "
            "pr.area_m2 AS new FROM plan_region pr "
            "LEFT JOIN region_boundary b ON b.id = pr.source_boundary_id "
            "WHERE pr.plan_id = :id AND pr.change <> 'unchanged' "
            "ORDER BY pr.level DESC, pr.code"), {"id": plan_id})
    ]
    moving = [dict(r) for r in conn.execute(text(
        "SELECT s.code AS staff_code, s.name, a.duty, pr.origin_code AS from_grid, "
        "CASE WHEN pr.change = 'retired' THEN NULL ELSE pr.code END AS to_grid, pr.change "
        "FROM plan_region pr JOIN region r ON r.code = pr.origin_code "
        "JOIN assignment a ON a.region_id = r.id AND a.valid_from <= now() "
        " AND (a.valid_to IS NULL OR a.valid_to > now()) JOIN staff s ON s.id = a.staff_id "
        "WHERE pr.plan_id = :id AND pr.level = 'grid' AND pr.change IN ('changed', 'retired') "
        "ORDER BY s.code, pr.origin_code"), {"id": plan_id}).mappings()]
    without = [dict(r) for r in conn.execute(text(
        "WITH ending AS (SELECT r.id FROM plan_region pr JOIN region r ON r.code = pr.origin_code "
        " WHERE pr.plan_id = :id AND pr.level = 'grid' AND pr.change = 'retired') "
        "SELECT DISTINCT s.code AS staff_code, s.name FROM assignment a "
        "JOIN staff s ON s.id = a.staff_id JOIN region r ON r.id = a.region_id "
        "WHERE a.region_id IN (SELECT id FROM ending) AND a.valid_from <= now() "
        "AND (a.valid_to IS NULL OR a.valid_to > now()) AND NOT EXISTS ("
        " SELECT 1 FROM assignment a2 JOIN region r2 ON r2.id = a2.region_id "
        " WHERE a2.staff_id = a.staff_id AND r2.level = 'grid' "
        " AND r2.id NOT IN (SELECT id FROM ending) AND a2.valid_from <= now() "
        " AND (a2.valid_to IS NULL OR a2.valid_to > now())) ORDER BY s.code"),
        {"id": plan_id}).mappings()]
    unstaffed = list(conn.execute(text(
        "SELECT pr.code FROM plan_region pr WHERE pr.plan_id = :id AND pr.level = 'grid' "
        "AND pr.change <> 'retired' AND NOT EXISTS ("
        " SELECT 1 FROM assignment a JOIN region r ON r.id = a.region_id "
        " WHERE r.code = pr.origin_code AND a.duty = 'primary' AND a.valid_from <= now() "
        " AND (a.valid_to IS NULL OR a.valid_to > now())) ORDER BY pr.code"),
        {"id": plan_id}).scalars())
    return {
        "plan_id": row["id"], "grids": grids,
        "workers": {"moving": moving, "without_grid": without},
        "grids_without_worker": unstaffed,
        "households": {"available": False,
                       "note": "The registry holds no addresses or households; none to count."},
    }


# ------------------------------------------------------------------------------------------
# activation
# ------------------------------------------------------------------------------------------


def activate(conn: Connection, plan_id: int, *, principal: Principal, if_match: str,
             effective_at: datetime | None = None,
             sliver_m2: float = pg.SLIVER_M2) -> dict[str, Any]:
    """Make the plan the boundaries in force from ``effective_at`` (None = now), atomically.

    Every community (and, for a moved grid, the street) whose tiling the plan changes must be
    clean (else :class:`InvalidEdit`, 422); the boundaries it was opened
    on must be unchanged (else :class:`PlanConflict`, 409). Changed regions' boundaries close at
    ``effective_at`` and new ones start there, as one new boundary version; assignments follow a
    re-coded grid and end on a retired one. Returns ``{plan, boundary_version, effective_at,
    changed}``.
    """
    row = plan_row(conn, plan_id, principal, lock=True)
    _check_draft(row)
    _check_etag(conn, row, if_match)
    now = conn.execute(text("SELECT now()")).scalar_one()
    at = effective_at or now
    if at < now:
        raise GridError("effective_at is in the past; boundaries cannot change retroactively.",
                        detail={"field": "effective_at", "value": at.isoformat(),
                                "expected": f"now ({now.isoformat()}) or later"},
                        code="invalid_effective_at")
    _check_base(conn, row)
    draft = load_draft(conn, row)
    changed = [it for it in draft.items if it.change != "unchanged"]
    if not changed:
        raise GridError(f"Plan {plan_id} changes nothing; there is nothing to activate.",
                        detail={"edits": 0}, code="empty_plan")
    # Every tiling the plan touches must be clean; one it leaves alone is not its business.
    touched = {it.parent for it in changed} | {it.code for it in changed
                                               if it.level == "community"}
    problems = pg.validate(draft, parents=touched, sliver_m2=sliver_m2)
    if problems:
        raise InvalidEdit(
            f"The plan cannot be activated: {problems[0].message}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            detail={"problems": [p.as_dict() for p in problems]})
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
    _carry_assignments(conn, draft, at)
    refused = check_sibling_overlaps(conn)
    if refused:
        raise PlanConflict(f"The database refused the new boundaries: {refused[0]}.",
                           detail={"constraint": "region_boundary_no_overlapping_siblings",
                                   "reasons": refused})
    conn.execute(text(
        "UPDATE plan SET status = 'activated', revision = revision + 1, updated_at = now(), "
        "activated_version_id = :v, activated_at = now(), effective_at = :at, "
        "problems = '[]'::jsonb WHERE id = :id"), {"v": version, "at": at, "id": plan_id})
    return {"plan": get_plan(conn, plan_id, principal=principal), "boundary_version": version,
            "effective_at": at, "changed": len(changed)}


def _current_ids(conn: Connection, code: str) -> list[int]:
    """The boundaries not yet ended of the region ``code``, its communities and grids."""
    return list(conn.execute(text(
        "SELECT b.id FROM region_boundary b JOIN region r ON r.id = b.region_id "
        "LEFT JOIN region p ON p.id = b.parent_id "
        "WHERE (b.valid_to IS NULL OR b.valid_to > now()) AND ("
        " r.code = :code OR (r.level = 'grid' AND p.code LIKE :prefix) OR"
        " (r.level = 'community' AND p.code = :code)) ORDER BY b.id"),
        {"code": code, "prefix": prefix_of(code) + "%"}).scalars())


def _check_base(conn: Connection, row: dict[str, Any]) -> None:
    """409 unless the boundaries the plan was opened on are exactly those in force (locked)."""
    code = row["region_code"]
    # Lock first (a concurrent activation of the same boundaries makes us wait for its end),
    # then look again in a new statement, whose snapshot sees what it committed.
    conn.execute(text("SELECT id FROM region_boundary WHERE id = ANY(:ids) ORDER BY id "
                      "FOR UPDATE"), {"ids": list(row["base_boundaries"])})
    current = _current_ids(conn, code)
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
        detail={"other_changes": [_jsonable(o) for o in others],
                "changed_boundaries": sorted(base ^ set(current))})


def _carry_assignments(conn: Connection, draft: pg.Draft, at: datetime) -> None:
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
