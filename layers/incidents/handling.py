"""Moving an incident through the closed loop, and reading incidents back.

Every transition: the caller's role must be allowed the action, the incident must lie in the
caller's jurisdiction (else: not found), the action must be legal from its state (else 409 naming
the allowed ones), and an optional ``expected_version`` guards against two people acting at once.
Each step is recorded in ``incident_event`` with actor, time, note and photos.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Connection, text

from grids.access import Forbidden, Permission, Principal, Scope, mask_name, mask_phone
from grids.errors import Conflict, GridError, RegionNotFound
from grids.sql import in_scope
from layers.incidents import calendar
from layers.incidents.workflow import (
    ACTIONS,
    OPEN_STATES,
    IllegalTransition,
    allowed_actions,
    light_sql,
    next_state,
    total_limit_hours,
)


class IncidentNotFound(RegionNotFound):
    code = "incident_not_found"


def _scope_of(principal: Principal) -> Scope:
    """Where a principal may see incidents: dispatchers city-wide, others their jurisdiction."""
    return principal.locate_scope()


def _locked(conn: Connection, incident_id: int, principal: Principal) -> dict[str, Any]:
    row = conn.execute(text(
        "SELECT i.id, i.state, i.region_code, i.version, i.received_at, i.extension_hours, "
        "i.rework_count, i.due_at, c.limits, c.limit_unit FROM incident i "
        "JOIN category c ON c.id = i.category_id WHERE i.id = :id FOR UPDATE OF i"),
        {"id": incident_id}).mappings().first()
    if row is None or not _scope_of(principal).covers(row["region_code"]):
        raise IncidentNotFound(f"No incident {incident_id} in your jurisdiction.",
                               detail={"field": "id", "value": incident_id})
    return dict(row)


def act(conn: Connection, incident_id: int, action: str, *, principal: Principal,
        note: str = "", photos: list[str] | None = None, hours: float | None = None,
        card: str | None = None, score: int | None = None,
        expected_version: int | None = None) -> dict[str, Any]:
    """Take one action on an incident; returns the incident as now seen by the caller."""
    principal.require(Permission.INCIDENTS_HANDLE)
    inc = _locked(conn, incident_id, principal)
    spec = ACTIONS.get(action)
    if spec is None:
        raise GridError(f"Unknown action {action[:30]!r}.",
                        detail={"field": "action", "expected": list(ACTIONS)},
                        code="unknown_action")
    if principal.role not in spec.roles:
        raise Forbidden(f"The {principal.role} role may not {action} incidents.",
                        detail={"field": "action", "allowed": allowed_actions(
                            inc["state"], principal.role)})
    if expected_version is not None and expected_version != inc["version"]:
        raise Conflict("The incident changed since you loaded it; reload and try again.",
                       detail={"field": "version", "current": inc["version"],
                               "sent": expected_version})
    target = next_state(action, inc["state"])  # raises IllegalTransition (409)
    sets = ["state = :target", "version = version + 1"]
    params: dict[str, Any] = {"id": incident_id, "target": target}
    if target != inc["state"]:
        sets.append("state_since = now()")
    if action == "extend":
        if hours is None or not 0 < hours <= 24 * 30:
            raise GridError("An extension needs hours between 0 and 720.",
                            detail={"field": "hours", "expected": "0 < hours <= 720"},
                            code="invalid_extension")
        sets.append("extension_hours = extension_hours + :hours")
        params["hours"] = hours
        if inc["limit_unit"] == "hours" or inc["due_at"] is None:
            sets.append("due_at = due_at + make_interval(secs => :hours * 3600)")
        else:  # office hours on the calendar: moved in Python (layers.incidents.calendar)
            sets.append("due_at = :due")
            params["due"] = calendar.extend(calendar.load(conn), inc["due_at"], hours,
                                            inc["limit_unit"])
    elif action == "card":
        if card not in ("yellow", "red"):
            raise GridError("A supervision card is yellow or red.",
                            detail={"field": "card", "expected": ["yellow", "red"]},
                            code="invalid_card")
        sets.append("card = :card")
        params["card"] = card
    elif action == "rework":
        sets.append("rework_count = rework_count + 1")
    elif action == "close":
        # On time: by due_at (intake + limits + extensions, on working time for a category on
        # working time), the same instant the lights, 应结案数 and 按期结案率 read. Rows without
        # a due_at fall back to the calendar hours of the limits.
        total = total_limit_hours(inc["limits"]) + inc["extension_hours"]
        sets += ["closed_at = now()",
                 "closed_on_time = now() <= coalesce(due_at, received_at + "
                 "make_interval(secs => :total * 3600))"]
        params["total"] = total
    elif action == "evaluate":
        if score is None or not 1 <= score <= 5:
            raise GridError("An evaluation needs a score from 1 to 5.",
                            detail={"field": "score", "expected": "1..5"}, code="invalid_score")
        sets.append("score = :score")
        params["score"] = score
    conn.execute(text(f"UPDATE incident SET {', '.join(sets)} WHERE id = :id"), params)
    conn.execute(text(
        "INSERT INTO incident_event (incident_id, actor, action, from_state, to_state, note, "
        "photos) VALUES (:id, :actor, :action, :from, :to, :note, CAST(:photos AS jsonb))"),
        {"id": incident_id, "actor": principal.name, "action": action, "from": inc["state"],
         "to": target, "note": (note or "")[:2000], "photos": _json(photos or [])})
    return get(conn, incident_id, principal=principal)


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


_SELECT = (
    "SELECT i.id, i.source, i.external_id, c.code AS category, c.name AS category_name, "
    "i.description, i.address, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.crs_in, "
    "i.reporter_name, i.reporter_phone, i.attachments, i.state, i.region_code, i.grid_code, "
    "i.community_code, i.street_code, i.boundary_version_id, i.responsible_code, i.fallback, "
    "d.code AS department, i.card, i.extension_hours, i.rework_count, i.score, i.received_at, "
    "i.state_since, i.due_at, i.closed_at, i.closed_on_time, i.version, "
    f"{light_sql('i', 'c')} AS light "
    "FROM incident i JOIN category c ON c.id = i.category_id "
    "LEFT JOIN department d ON d.id = i.department_id"
)


def _public(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    out = dict(row)
    if not principal.sees_personal_data(out["region_code"]):
        out["reporter_name"] = mask_name(out["reporter_name"])
        out["reporter_phone"] = mask_phone(out["reporter_phone"])
    out["allowed_actions"] = allowed_actions(out["state"], principal.role)
    return out


def get(conn: Connection, incident_id: int, *, principal: Principal) -> dict[str, Any]:
    """One incident with its full history."""
    principal.require(Permission.INCIDENTS_READ)
    row = conn.execute(text(f"{_SELECT} WHERE i.id = :id"), {"id": incident_id}).mappings().first()
    if row is None or not _scope_of(principal).covers(row["region_code"]):
        raise IncidentNotFound(f"No incident {incident_id} in your jurisdiction.",
                               detail={"field": "id", "value": incident_id})
    out = _public(dict(row), principal)
    out["history"] = [dict(e) for e in conn.execute(text(
        "SELECT at, actor, action, from_state, to_state, note, photos FROM incident_event "
        "WHERE incident_id = :id ORDER BY id"), {"id": incident_id}).mappings()]
    return out


SORTS = {"received_at": "i.received_at", "-received_at": "i.received_at DESC",
         "due_at": "i.due_at", "-due_at": "i.due_at DESC", "id": "i.id", "-id": "i.id DESC"}


class IncidentPage(TypedDict):
    """A page of :func:`search` (``GET /incidents``)."""

    items: list[dict[str, Any]]  # the public form of each incident (see ``_public``)
    total: int  # matching incidents in the caller's jurisdiction, all pages
    limit: int
    offset: int


def search(conn: Connection, *, principal: Principal, states: list[str] | None = None,
           categories: list[str] | None = None, sources: list[str] | None = None,
           since: datetime | None = None, until: datetime | None = None,
           region: str | None = None, lights: list[str] | None = None,
           assignee: str | None = None, open_only: bool = False, sort: str = "-received_at",
           limit: int = 100, offset: int = 0) -> IncidentPage:
    """Incidents in the caller's jurisdiction, filtered, sorted and paged."""
    principal.require(Permission.INCIDENTS_READ)
    scope = _scope_of(principal)
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    cond, scoped = in_scope(scope, "i.region_code")
    where.append(cond)
    params |= scoped
    if states:
        where.append("i.state = ANY(:states)")
        params["states"] = states
    if open_only:
        where.append("i.state = ANY(:open)")
        params["open"] = sorted(OPEN_STATES)
    if categories:  # a group code selects its categories too
        where.append("(c.code = ANY(:cats) OR c.parent_id IN "
                     "(SELECT id FROM category WHERE code = ANY(:cats)))")
        params["cats"] = categories
    if sources:
        where.append("i.source = ANY(:sources)")
        params["sources"] = sources
    if since:
        where.append("i.received_at >= :since")
        params["since"] = since
    if until:
        where.append("i.received_at < :until")
        params["until"] = until
    if region:
        from grids.access import prefix_of

        where.append("i.region_code LIKE :region")
        params["region"] = prefix_of(region) + "%"
    if assignee:
        where.append("i.responsible_code = :assignee")
        params["assignee"] = assignee
    if lights:
        where.append(f"{light_sql('i', 'c')} = ANY(:lights)")
        params["lights"] = lights
    order = SORTS.get(sort)
    if order is None:
        raise GridError(f"Unknown sort {sort[:20]!r}.",
                        detail={"field": "sort", "expected": list(SORTS)}, code="invalid_sort")
    sql_where = " AND ".join(where)
    rows = conn.execute(text(f"{_SELECT} WHERE {sql_where} ORDER BY {order}, i.id "
                             "LIMIT :limit OFFSET :offset"), params).mappings().all()
    total = conn.execute(text(
        f"SELECT count(*) FROM incident i JOIN category c ON c.id = i.category_id "
        f"WHERE {sql_where}"), params).scalar_one()
    return {"items": [_public(dict(r), principal) for r in rows], "total": total,
            "limit": limit, "offset": offset}


EXPORT_COLUMNS = ("id", "source", "external_id", "category", "category_name", "state", "light",
                  "received_at", "due_at", "closed_at", "closed_on_time", "grid_code",
                  "community_code", "street_code", "responsible_code", "fallback", "department",
                  "card", "rework_count", "extension_hours", "address", "description", "lon",
                  "lat", "reporter_name", "reporter_phone")
EXPORT_MAX = 100_000


def export(conn: Connection, fmt: str, *, principal: Principal, **filters: Any
           ) -> tuple[bytes, str]:
    """The filtered incidents as CSV (UTF-8 with BOM, so Excel reads the Chinese) or XLSX.

    The same jurisdiction and masking as the list; at most :data:`EXPORT_MAX` rows.
    """
    import csv
    import io

    rows = search(conn, principal=principal, limit=EXPORT_MAX, offset=0, **filters)["items"]
    table = [[_cell(r[c]) for c in EXPORT_COLUMNS] for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(table)
        return ("\ufeff" + buf.getvalue()).encode(), "text/csv; charset=utf-8"
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("incidents")
    ws.append(list(EXPORT_COLUMNS))
    for line in table:
        ws.append(line)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue(), ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


# C0 controls other than tab, line feed and carriage return: XLSX (XML 1.0) cannot hold them
# (openpyxl raises IllegalCharacterError). The API refuses them at intake (app.input_guard), but
# text written before that, or by psql, must not break an export: both formats show U+FFFD.
_EXPORT_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _cell(value: Any) -> Any:
    """An export cell: times in ISO 8601, text without the controls XLSX cannot hold.

    >>> _cell("bell\\x07 tab\\t")
    'bell\ufffd tab\\t'
    """
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return _EXPORT_ILLEGAL.sub("\ufffd", value)
    return value


__all__ = ["IllegalTransition", "act", "export", "get", "search"]
