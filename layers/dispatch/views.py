"""Saved queue views, per user ("my street's red cases")."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.errors import Conflict, GridError, RegionNotFound
from layers.dispatch.queue import FILTER_KEYS
from layers.dispatch.roles import DeskUser

MAX_VIEWS = 50


class ViewNotFound(RegionNotFound):
    code = "view_not_found"


def _owner(user: DeskUser) -> str:
    if user.username is None:
        raise GridError("Saved views belong to user accounts.", detail={"field": "user"},
                        code="views_need_user")
    return user.username


def list_views(conn: Connection, *, user: DeskUser) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(text(
        "SELECT id, name, filters, created_at FROM desk_view WHERE username = :u ORDER BY name"),
        {"u": _owner(user)}).mappings()]


def save_view(conn: Connection, *, user: DeskUser, name: str,
              filters: dict[str, Any]) -> dict[str, Any]:
    """Save (or replace, by name) a view; only the queue's own filter keys are kept."""
    owner = _owner(user)
    name = name.strip()
    if not 1 <= len(name) <= 60:
        raise GridError("A view's name has 1 to 60 characters.",
                        detail={"field": "name", "expected": "1..60 characters"},
                        code="invalid_view")
    kept = {k: v for k, v in filters.items() if k in FILTER_KEYS and v not in (None, "", [])}
    count = conn.execute(text("SELECT count(*) FROM desk_view WHERE username = :u"),
                         {"u": owner}).scalar_one()
    exists = conn.execute(text("SELECT 1 FROM desk_view WHERE username = :u AND name = :n"),
                          {"u": owner, "n": name}).first()
    if count >= MAX_VIEWS and not exists:
        raise Conflict(f"At most {MAX_VIEWS} saved views; delete one first.",
                       detail={"field": "name", "max": MAX_VIEWS})
    row = conn.execute(text(
        "INSERT INTO desk_view (username, name, filters) VALUES (:u, :n, CAST(:f AS jsonb)) "
        "ON CONFLICT (username, name) DO UPDATE SET filters = EXCLUDED.filters "
        "RETURNING id, name, filters, created_at"),
        {"u": owner, "n": name, "f": orjson.dumps(kept).decode()}).mappings().one()
    return dict(row)


def delete_view(conn: Connection, view_id: int, *, user: DeskUser) -> None:
    gone = conn.execute(text("DELETE FROM desk_view WHERE id = :id AND username = :u"),
                        {"id": view_id, "u": _owner(user)}).rowcount
    if not gone:
        raise ViewNotFound(f"No saved view {view_id} of yours.",
                           detail={"field": "id", "value": view_id})
