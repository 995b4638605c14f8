"""Undo and redo of single edits in a plan's draft (migration 0023).

Before an edit is stored, the draft (its ``plan_region`` rows and problems) is copied as the
edit's ``before`` snapshot. Undo puts the newest edit in force back to its ``before`` snapshot,
after copying the draft as it is as the edit's ``after`` snapshot, and marks the edit ``undone``;
redo puts the most recently undone edit's ``after`` snapshot back. A new edit drops every undone
edit from the redo stack. The edit log (``plan_edit``) is append-only: an undone edit stays in it,
with its state beside it (``plan_edit_state``).

A restore puts back the very rows (same ids): rows that differ from the snapshot are deleted,
the snapshot's missing rows inserted, unchanged rows left alone.

Every function takes a connection inside the caller's transaction and never commits.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.access import Principal
from grids.errors import GridError
from grids.plans.store import check_draft, check_etag, get_plan, plan_row


class NothingToUndo(GridError):
    code = "nothing_to_undo"


class NothingToRedo(GridError):
    code = "nothing_to_redo"


_COLUMNS = ("code, level, name, parent_code, origin_code, source_boundary_id, geom, area_m2, "
            "change")


def next_seq(conn: Connection, plan_id: int) -> int:
    return int(conn.execute(text("SELECT coalesce(max(seq), 0) + 1 FROM plan_edit "
                                 "WHERE plan_id = :id"), {"id": plan_id}).scalar_one())


def snapshot(conn: Connection, plan_id: int, seq: int, side: str,
             problems: list[dict[str, Any]]) -> None:
    """Copy the plan's draft as the ``side`` snapshot of edit ``seq`` (replacing an older one)."""
    conn.execute(text("DELETE FROM plan_snapshot WHERE plan_id = :p AND seq = :s AND side = :side"),
                 {"p": plan_id, "s": seq, "side": side})
    sid = conn.execute(text(
        "INSERT INTO plan_snapshot (plan_id, seq, side, problems) "
        "VALUES (:p, :s, :side, CAST(:problems AS jsonb)) RETURNING id"),
        {"p": plan_id, "s": seq, "side": side,
         "problems": orjson.dumps(problems).decode()}).scalar_one()
    conn.execute(text(
        f"INSERT INTO plan_snapshot_region (snapshot_id, row_id, {_COLUMNS}) "
        f"SELECT :sid, id, {_COLUMNS} FROM plan_region WHERE plan_id = :p"),
        {"sid": sid, "p": plan_id})


def before_edit(conn: Connection, row: dict[str, Any], principal: Principal) -> None:
    """Called before an edit is stored: the redo stack is dropped and the draft kept."""
    conn.execute(text(
        "UPDATE plan_edit_state SET state = 'dropped', by = :by, at = now() "
        "WHERE plan_id = :p AND state = 'undone'"), {"p": row["id"], "by": principal.name})
    conn.execute(text(
        "DELETE FROM plan_snapshot s USING plan_edit_state e WHERE s.plan_id = :p "
        "AND e.plan_id = s.plan_id AND e.seq = s.seq AND e.state = 'dropped'"), {"p": row["id"]})
    snapshot(conn, row["id"], next_seq(conn, row["id"]), "before", row["problems"])


def _restore(conn: Connection, plan_id: int, snapshot_id: int) -> None:
    same = (
        "s.snapshot_id = :sid AND s.row_id = pr.id AND s.code = pr.code AND s.level = pr.level "
        "AND s.name = pr.name AND s.parent_code = pr.parent_code "
        "AND s.origin_code IS NOT DISTINCT FROM pr.origin_code "
        "AND s.source_boundary_id IS NOT DISTINCT FROM pr.source_boundary_id "
        "AND s.change = pr.change AND s.area_m2 IS NOT DISTINCT FROM pr.area_m2 "
        "AND ST_AsBinary(s.geom) IS NOT DISTINCT FROM ST_AsBinary(pr.geom)")
    conn.execute(text(
        f"DELETE FROM plan_region pr WHERE pr.plan_id = :p AND NOT EXISTS ("
        f"SELECT 1 FROM plan_snapshot_region s WHERE {same})"),
        {"p": plan_id, "sid": snapshot_id})
    conn.execute(text(
        f"INSERT INTO plan_region (id, plan_id, {_COLUMNS}) "
        f"SELECT s.row_id, :p, {', '.join('s.' + c.strip() for c in _COLUMNS.split(','))} "
        "FROM plan_snapshot_region s WHERE s.snapshot_id = :sid AND NOT EXISTS ("
        "SELECT 1 FROM plan_region pr WHERE pr.id = s.row_id) "
        "ORDER BY s.change <> 'retired'"),
        {"p": plan_id, "sid": snapshot_id})


def _snapshot_of(conn: Connection, plan_id: int, seq: int, side: str) -> Any:
    return conn.execute(text("SELECT id, problems FROM plan_snapshot WHERE plan_id = :p "
                             "AND seq = :s AND side = :side"),
                        {"p": plan_id, "s": seq, "side": side}).first()


def _bump(conn: Connection, plan_id: int, problems: Any) -> None:
    conn.execute(text("UPDATE plan SET revision = revision + 1, updated_at = now(), "
                      "problems = CAST(:p AS jsonb) WHERE id = :id"),
                 {"p": orjson.dumps(problems).decode(), "id": plan_id})


def undo(conn: Connection, plan_id: int, *, principal: Principal, if_match: str
         ) -> dict[str, Any]:
    """Undo the newest edit in force; returns the plan (new ETag).

    Raises :class:`NothingToUndo` (422) when no edit is in force or the newest one has no
    snapshot (an edit stored before undo existed)."""
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    check_etag(conn, row, if_match)
    seq = conn.execute(text(
        "SELECT max(e.seq) FROM plan_edit e WHERE e.plan_id = :p AND NOT EXISTS ("
        "SELECT 1 FROM plan_edit_state s WHERE s.plan_id = e.plan_id AND s.seq = e.seq)"),
        {"p": plan_id}).scalar()
    if seq is None:
        raise NothingToUndo(f"Plan {plan_id} has no edit to undo.", detail={"plan_id": plan_id})
    before = _snapshot_of(conn, plan_id, seq, "before")
    if before is None:
        raise NothingToUndo(f"Edit {seq} of plan {plan_id} was stored without a snapshot and "
                            "cannot be undone.", detail={"plan_id": plan_id, "seq": seq})
    snapshot(conn, plan_id, seq, "after", row["problems"])
    _restore(conn, plan_id, before.id)
    conn.execute(text("INSERT INTO plan_edit_state (plan_id, seq, state, by) "
                      "VALUES (:p, :s, 'undone', :by)"),
                 {"p": plan_id, "s": seq, "by": principal.name})
    _bump(conn, plan_id, before.problems)
    return get_plan(conn, plan_id, principal=principal)


def redo(conn: Connection, plan_id: int, *, principal: Principal, if_match: str
         ) -> dict[str, Any]:
    """Redo the most recently undone edit; returns the plan (new ETag).

    Raises :class:`NothingToRedo` (422) when the redo stack is empty (nothing undone, or a later
    edit dropped it)."""
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    check_etag(conn, row, if_match)
    seq = conn.execute(text("SELECT min(seq) FROM plan_edit_state WHERE plan_id = :p "
                            "AND state = 'undone'"), {"p": plan_id}).scalar()
    after = _snapshot_of(conn, plan_id, seq, "after") if seq is not None else None
    if after is None:
        raise NothingToRedo(f"Plan {plan_id} has no undone edit to redo.",
                            detail={"plan_id": plan_id})
    _restore(conn, plan_id, after.id)
    conn.execute(text("DELETE FROM plan_edit_state WHERE plan_id = :p AND seq = :s"),
                 {"p": plan_id, "s": seq})
    _bump(conn, plan_id, after.problems)
    return get_plan(conn, plan_id, principal=principal)
