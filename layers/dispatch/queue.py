"""The case queue: every open case in the caller's jurisdiction, filtered, sorted and paged on the
server, with the counts per state and per traffic light of the same selection.

Only open cases are read, and the indexes of migration 0015 are partial over open cases
(``incident_open_due_idx`` for the default order by due time, ``incident_open_geom_idx``,
``incident_open_text_idx`` for free text with pg_trgm; ``incident_open_region_idx`` of 0026 for a
street, community or grid, index-only), so the cost follows the number of open cases, not the
city's whole history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, prefix_of
from grids.errors import GridError
from grids.sql import in_scope
from layers.dispatch.duplicates import likely_counts
from layers.dispatch.roles import DeskUser
from layers.incidents.workflow import OPEN_ORDER, OPEN_SQL, OPEN_STATES, light_sql

LIGHTS = ("red", "yellow", "green")
SORTS = {"due_at": "i.due_at NULLS LAST, i.id", "-due_at": "i.due_at DESC NULLS LAST, i.id DESC",
         "received_at": "i.received_at, i.id", "-received_at": "i.received_at DESC, i.id DESC"}
FILTER_KEYS = ("states", "lights", "categories", "sources", "region", "assignee", "department",
               "since", "until", "q", "sort")


class QueueInvalid(GridError):
    code = "invalid_queue_filter"


@dataclass
class QueueFilters:
    """What a queue page (and a saved view) is made of."""

    states: list[str] = field(default_factory=list)
    lights: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # a group code selects its categories
    sources: list[str] = field(default_factory=list)
    region: str | None = None  # a street, community or grid code: its subtree
    assignee: str | None = None  # the responsible worker's staff code
    department: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None  # free text: id, external id, address, description
    sort: str = "due_at"

    def check(self) -> None:
        bad = [s for s in self.states if s not in OPEN_STATES]
        if bad:
            raise QueueInvalid(f"The queue holds open cases only; {bad[0][:20]!r} is not open.",
                               detail={"field": "states", "expected": list(OPEN_ORDER)})
        bad = [v for v in self.lights if v not in LIGHTS]
        if bad:
            raise QueueInvalid("A light is red, yellow or green.",
                               detail={"field": "lights", "expected": list(LIGHTS)})
        if self.sort not in SORTS:
            raise QueueInvalid(f"Unknown sort {self.sort[:20]!r}.",
                               detail={"field": "sort", "expected": list(SORTS)})
        if self.region is not None and not (self.region.isdigit() and 6 <= len(self.region) <= 15):
            raise QueueInvalid("A region is a code of 6 to 15 digits.",
                               detail={"field": "region", "value": self.region[:20]})


def _where(user: DeskUser, f: QueueFilters, *, with_state_light: bool
           ) -> tuple[list[str], dict[str, Any]]:
    principal = user.principal
    where = [f"i.state IN {OPEN_SQL}"]
    params: dict[str, Any] = {}
    scope = principal.locate_scope()
    cond, scoped = in_scope(scope, "i.region_code")
    where.append(cond)
    params |= scoped
    department = user.department or f.department
    if department:
        where.append("d.code = :department")
        params["department"] = department
    if f.categories:
        where.append("(c.code = ANY(:cats) OR c.parent_id IN "
                     "(SELECT id FROM category WHERE code = ANY(:cats)))")
        params["cats"] = f.categories
    if f.sources:
        where.append("i.source = ANY(:sources)")
        params["sources"] = f.sources
    if f.region:
        where.append("i.region_code LIKE :region")
        params["region"] = prefix_of(f.region) + "%"
    if f.assignee:
        where.append("i.responsible_code = :assignee")
        params["assignee"] = f.assignee
    if f.since:
        where.append("i.received_at >= :since")
        params["since"] = f.since
    if f.until:
        where.append("i.received_at < :until")
        params["until"] = f.until
    q = (f.q or "").strip()
    if q:
        q = q.lstrip("#")
        if q.isdigit() and len(q) <= 18:
            where.append("(i.id = :qid OR i.external_id = :q)")
            params["qid"] = int(q)
        else:
            where.append("((i.address || ' ' || i.description) ILIKE :qlike "
                         "OR i.external_id = :q)")
            params["qlike"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
        params["q"] = q
    if with_state_light:
        if f.states:
            where.append("i.state = ANY(:states)")
            params["states"] = f.states
        if f.lights:
            where.append(f"{light_sql('i', 'c')} = ANY(:lights)")
            params["lights"] = f.lights
    return where, params


_FROM = ("FROM incident i JOIN category c ON c.id = i.category_id "
         "LEFT JOIN department d ON d.id = i.department_id")
_ROW = (
    "SELECT i.id, i.source, i.external_id, c.code AS category, c.name AS category_name, "
    "c.name_en AS category_name_en, i.state, {light} AS light, i.address, "
    "left(i.description, 140) AS description, i.received_at, i.state_since, i.due_at, "
    "i.region_code, i.grid_code, i.community_code, i.street_code, i.responsible_code, "
    "s.name AS responsible_name, d.code AS department, d.name AS department_name, i.card, "
    "i.version, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat "
)


_SORT_COLUMN = {"due_at": "due_at", "-due_at": "due_at", "received_at": "received_at",
                "-received_at": "received_at"}


def _keyset(sort: str, after: str) -> tuple[str, dict[str, Any]]:
    """SQL condition for the rows after cursor ``after`` (``'<iso time or empty>|<id>'``, the
    ``next`` of the previous page) in ``sort`` order, NULL due times last."""
    value, _, raw_id = after.rpartition("|")
    try:
        last_id = int(raw_id)
        at = datetime.fromisoformat(value) if value else None
    except ValueError:
        raise QueueInvalid("The cursor is not one this queue gave.",
                           detail={"field": "after", "value": after[:80]}) from None
    if at is not None and at.tzinfo is None:
        raise QueueInvalid("The cursor is not one this queue gave.",
                           detail={"field": "after", "value": after[:80]})
    col = f"i.{_SORT_COLUMN[sort]}"
    desc = sort.startswith("-")
    cmp, id_cmp = ("<", "<") if desc else (">", ">")
    params: dict[str, Any] = {"k_id": last_id, "k_at": at}
    if at is None:  # already among the rows without a due time (they come last)
        return f"({col} IS NULL AND i.id {id_cmp} :k_id)", params
    return (f"({col} {cmp} :k_at OR ({col} = :k_at AND i.id {id_cmp} :k_id) "
            f"OR {col} IS NULL)"), params


def cursor_of(row: dict[str, Any], sort: str) -> str:
    """The keyset cursor after ``row`` in ``sort`` order."""
    at = row[_SORT_COLUMN[sort]]
    return f"{at.isoformat() if at is not None else ''}|{row['id']}"


def queue(conn: Connection, *, user: DeskUser, filters: QueueFilters, limit: int = 50,
          offset: int = 0, after: str | None = None) -> dict[str, Any]:
    """One page of the queue, its total, and the counts per state and per light.

    The counts are over the same selection without the state and light filters (so every
    state and light shows how many it would give); ``total`` is the filtered count.
    Pages go by ``offset`` or, steadier under live intake and cheap deep down, by keyset:
    ``after`` = the previous page's ``next`` (then ``offset`` must be 0).
    """
    user.principal.require(Permission.INCIDENTS_READ)
    filters.check()
    # One scan of the selection (without the state and light filters), the light computed once
    # per case: the counts come from it, and so does the page (state, light, cursor, order,
    # limit); the names are joined to the page's rows only. At 5M incidents this halved the
    # first page of a street (bench/desk.py scale, docs/desk.md).
    where, params = _where(user, filters, with_state_light=False)
    page_where = ["true"]
    if filters.states:
        page_where.append("i.state = ANY(:states)")
        params["states"] = filters.states
    if filters.lights:
        page_where.append("i.light = ANY(:lights)")
        params["lights"] = filters.lights
    if after is not None:
        if offset:
            raise QueueInvalid("Page by offset or by cursor, not both.",
                               detail={"field": "after", "expected": "offset 0 with a cursor"})
        cond, kparams = _keyset(filters.sort, after)
        page_where.append(cond)
        params.update(kparams)
    params.update(limit=limit, offset=offset)
    # the department only when filtered by it: its (removed) outer join still keeps PostgreSQL
    # from an index-only scan of incident_open_region_idx (migration 0026)
    sel_from = _FROM if (user.department or filters.department) else (
        "FROM incident i JOIN category c ON c.id = i.category_id")
    sql = (
        f"WITH sel AS MATERIALIZED (SELECT i.id, i.state, {light_sql('i', 'c')} AS light, "
        f"i.due_at, i.received_at {sel_from} WHERE {' AND '.join(where)}), "
        f"page AS (SELECT i.id, i.light FROM sel i WHERE {' AND '.join(page_where)} "
        f"ORDER BY {SORTS[filters.sort]} LIMIT :limit OFFSET :offset), "
        "cells AS (SELECT coalesce(json_agg(json_build_array(state, light, n)), '[]') AS cells "
        "FROM (SELECT state, light, count(*) AS n FROM sel GROUP BY 1, 2) k) "
        "SELECT cells.cells, r.* FROM cells LEFT JOIN (" + _ROW.format(light="p.light") +
        f"FROM page p JOIN incident i ON i.id = p.id JOIN category c ON c.id = i.category_id "
        "LEFT JOIN department d ON d.id = i.department_id "
        "LEFT JOIN staff s ON s.code = i.responsible_code) r ON true "
        f"ORDER BY {SORTS[filters.sort].replace('i.', 'r.')}")
    rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
    cells = rows[0].pop("cells") if rows else []
    items = []
    for r in rows:
        r.pop("cells", None)
        if r["id"] is not None:
            items.append(r)
    # the duplicate badge: likely duplicates of each row (layers.dispatch.duplicates)
    badge = likely_counts(conn, [r["id"] for r in items],
                          user.principal.locate_scope().like_patterns())
    for r in items:
        r["duplicates"] = badge.get(r["id"], 0)
    by_state = dict.fromkeys(OPEN_ORDER, 0)
    by_light = dict.fromkeys(LIGHTS, 0)
    total = 0
    for state, light, n in cells:
        by_state[state] = by_state.get(state, 0) + n
        if light:
            by_light[light] = by_light.get(light, 0) + n
        if (not filters.states or state in filters.states) and (
                not filters.lights or light in filters.lights):
            total += n
    nxt = cursor_of(items[-1], filters.sort) if len(items) == limit else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next": nxt,
            "counts": {"state": by_state, "light": by_light},
            "department": user.department}
