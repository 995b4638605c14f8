"""Before a field report is sent: open cases near the pin that may be the same event, and adding
to one of them instead (补充) of opening a new case.

The candidates are the desk's (:mod:`layers.dispatch.duplicates`): the same predicate and score
(:func:`~layers.dispatch.duplicates.pair_sql`) and the category's ``duplicate_rule`` (distance,
time window, related categories), with the new report as case ``x`` at the pin, received now.
Only cases the caller can read are offered (their read scope: what they could add to).

Adding to a case is an ``incident_event`` with action ``supplement`` (the case's state does not
change) carrying the note and photos, at most once per client id (``field_receipt``, kind
``action``), like the phone's other actions.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.errors import Conflict
from grids.sql import like_any
from layers.dispatch.duplicates import OPEN_SQL, _rule_sql, density_sql, pair_sql
from layers.field import photos as photo_store
from layers.incidents import handling
from layers.incidents.workflow import OPEN_STATES, IllegalTransition

_COND, _SCORE = pair_sql("x", "o", "x")
NEAR_SQL = f"""
WITH o AS (
    SELECT i.id, i.geom, i.received_at, c.code AS cat, i.source, i.reporter_phone AS phone,
           i.state, i.address, i.description,
           i.region_code, c.name AS category_name, c.name_en AS category_name_en
    FROM incident i JOIN category c ON c.id = i.category_id
    WHERE i.state IN {OPEN_SQL}),
x0 AS (
    SELECT CAST(0 AS bigint) AS id, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS geom,
           now() AS received_at, CAST(:cat AS text) AS cat,
           CAST('grid_worker' AS text) AS source, CAST(NULL AS text) AS phone, rule.*
    FROM {_rule_sql('CAST(:cat AS text)')} rule),
x AS MATERIALIZED (
    SELECT x0.*, {density_sql('x0', 'o n')} AS dens FROM x0)
SELECT o.id, o.state, o.cat AS category, o.category_name, o.category_name_en, o.address,
       left(o.description, 140) AS description, o.received_at,
       round(ST_DistanceSphere(x.geom, o.geom)::numeric, 1)::float8 AS distance_m,
       round(({_SCORE})::numeric, 3)::float8 AS score,
       round(ST_X(o.geom)::numeric, 6)::float8 AS lon, round(ST_Y(o.geom)::numeric, 6)::float8 AS lat
FROM x JOIN o ON {_COND}
WHERE {like_any('o.region_code')}
ORDER BY score DESC, o.id
LIMIT :limit
"""


def near(conn: Connection, *, principal: Principal, category: str, lon: float, lat: float,
         limit: int = 10) -> dict[str, Any]:
    """Open cases the caller can read that the desk's rule pairs with a report of ``category``
    at (``lon``, ``lat``) received now, best first, with the rule that was applied."""
    principal.require(Permission.INCIDENTS_READ)
    rule = conn.execute(text(f"SELECT * FROM {_rule_sql('CAST(:cat AS text)')} r"),
                        {"cat": category}).mappings().first()
    rows = conn.execute(text(NEAR_SQL), {
        "lon": lon, "lat": lat, "cat": category, "scope": principal.scope.like_patterns(),
        "limit": limit}).mappings()
    return {"candidates": [dict(r) for r in rows],
            "rule": None if rule is None else {"radius_m": float(rule["radius_m"]),
                                               "window_h": float(rule["window_h"]),
                                               "related": list(rule["related"] or [])}}


def supplement(conn: Connection, incident_id: int, *, principal: Principal,
               cid: str, note: str, shas: list[str]) -> dict[str, Any]:
    """Add the worker's note and photos to an open case (``cid``: the client id, validated).
    A resend with the same client id changes nothing (``replayed``)."""
    principal.require(Permission.INCIDENTS_CREATE)
    inc = handling.get(conn, incident_id, principal=principal)  # 404 outside the scope
    fresh = conn.execute(text(
        "INSERT INTO field_receipt (client_id, kind, actor, incident_id, action) "
        "VALUES (:c, 'action', :a, :i, 'supplement') ON CONFLICT DO NOTHING "
        "RETURNING client_id"),
        {"c": cid, "a": principal.name, "i": incident_id}).scalar()
    if fresh is None:
        old = conn.execute(text("SELECT actor, incident_id, action FROM field_receipt "
                                "WHERE client_id = :c"), {"c": cid}).one()
        if (old.actor, old.incident_id, old.action) != (principal.name, incident_id,
                                                        "supplement"):
            raise Conflict("This client id was used for another request.",
                           detail={"field": "client_id"})
        return {"replayed": True, "incident": inc}
    if inc["state"] not in OPEN_STATES:
        raise IllegalTransition("supplement", inc["state"])
    body = note.strip() or "现场补充"
    event_id = conn.execute(text(
        "INSERT INTO incident_event (incident_id, actor, action, from_state, to_state, note, "
        "photos) VALUES (:i, :a, 'supplement', :s, :s, :n, CAST(:p AS jsonb)) RETURNING id"),
        {"i": incident_id, "a": principal.name, "s": inc["state"], "n": body[:2000],
         "p": orjson.dumps([photo_store.url_of(s) for s in shas]).decode()}).scalar_one()
    photo_store.link(conn, shas, incident_id, event_id)
    return {"replayed": False, "incident": handling.get(conn, incident_id, principal=principal)}
