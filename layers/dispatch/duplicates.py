"""Cross-channel duplicates: the same broken manhole cover from 12345, 110 and 数字城管.

Two cases are **candidates** when both are open, their categories are the same or related, they
lie within the category's distance and were received within its time window
(``duplicate_rule``, per category code, ``*`` as the default; migration 0015). Each candidate has
a score in [0, 1]::

    score = w_cat * (0.5 + 0.3 * (1 - d / R) + 0.2 * (1 - |dt| / T))

with ``w_cat`` 1 for the same category and 0.7 for a related one, ``d`` the distance in metres
and ``dt`` the time apart. The same predicate, written once (:func:`pair_sql`), serves the
candidates of one case (:func:`candidates`) and the measurement over a labelled set
(:func:`measure`), so what is measured is what the desk runs.

The search reads the partial GiST index of open cases (``incident_open_geom_idx``): a box of the
radius around the point, then the exact spheroid-free distance (``ST_DistanceSphere``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission
from layers.dispatch.roles import DeskUser
from layers.incidents.handling import IncidentNotFound
from layers.incidents.workflow import OPEN_SQL

RELATED_WEIGHT = 0.7
# The time part of the score decays with time apart: e^-6 at the end of the window. Reports of
# one event mostly come within hours; the window is the outer bound, not the typical gap.
TIME_DECAY = 6.0
# Metres per degree of latitude; a degree of longitude is this times cos(latitude).
M_PER_DEG = 111_320.0


def _rule_sql(cat: str) -> str:
    """The rule of category code expression ``cat``: radius, window, related (default '*')."""
    return (f"(SELECT r.radius_m, r.window_h, r.related FROM duplicate_rule r "
            f"WHERE r.category_code IN ({cat}, '*') "
            f"ORDER BY r.category_code = '*' LIMIT 1)")


def pair_sql(a: str, b: str, rule: str) -> tuple[str, str]:
    """(condition, score) SQL for case ``b`` as a candidate of case ``a``.

    ``a`` and ``b`` are aliases with ``geom``, ``received_at`` and ``cat`` (category code);
    ``rule`` an alias with ``radius_m``, ``window_h`` and ``related`` (the rule of ``a``).
    """
    dist = f"ST_DistanceSphere({a}.geom, {b}.geom)"
    dt_h = f"abs(extract(epoch FROM {b}.received_at - {a}.received_at)) / 3600.0"
    cond = (f"({b}.cat = {a}.cat OR {b}.cat = ANY({rule}.related)) "
            f"AND {b}.geom && ST_Expand({a}.geom, {rule}.radius_m / ({M_PER_DEG} * "
            f"cos(radians(ST_Y({a}.geom)))), {rule}.radius_m / {M_PER_DEG}) "
            f"AND {dist} <= {rule}.radius_m "
            f"AND {b}.received_at BETWEEN {a}.received_at - make_interval(secs => "
            f"{rule}.window_h * 3600) AND {a}.received_at + make_interval(secs => "
            f"{rule}.window_h * 3600)")
    score = (f"(CASE WHEN {b}.cat = {a}.cat THEN 1.0 ELSE {RELATED_WEIGHT} END) * "
             f"(0.5 * (1 - {dist} / {rule}.radius_m) + "
             f"0.5 * exp(-{TIME_DECAY} * {dt_h} / {rule}.window_h))")
    return cond, score


_COND, _SCORE = pair_sql("x", "o", "x")
CANDIDATES_SQL = f"""
WITH x AS MATERIALIZED (
    SELECT i.id, i.geom, i.received_at, c.code AS cat, rule.*
    FROM incident i JOIN category c ON c.id = i.category_id,
    LATERAL {_rule_sql('c.code')} rule
    WHERE i.id = :id AND i.geom IS NOT NULL),
o AS (
    SELECT i.id, i.geom, i.received_at, c.code AS cat, i.source, i.state, i.address,
           i.description, i.region_code, i.reporter_phone IS NOT NULL AS has_reporter,
           c.name AS category_name, c.name_en AS category_name_en, i.version
    FROM incident i JOIN category c ON c.id = i.category_id
    WHERE i.state IN {OPEN_SQL})
SELECT o.id, o.source, o.state, o.cat AS category, o.category_name, o.category_name_en,
       o.address, left(o.description, 140) AS description, o.received_at, o.region_code,
       o.version, round(ST_DistanceSphere(x.geom, o.geom)::numeric, 1)::float8 AS distance_m,
       round((extract(epoch FROM o.received_at - x.received_at) / 3600.0)::numeric, 2)::float8
           AS hours_apart,
       round(({_SCORE})::numeric, 3)::float8 AS score
FROM x JOIN o ON o.id <> x.id AND {_COND}
WHERE o.region_code LIKE ANY(:scope)
ORDER BY score DESC, o.id
LIMIT :limit
"""


def candidates(conn: Connection, incident_id: int, *, user: DeskUser, limit: int = 20
               ) -> list[dict[str, Any]]:
    """Open cases that may be the same event as ``incident_id``, best first (in the caller's
    jurisdiction; a case with no point has none)."""
    principal = user.principal
    principal.require(Permission.INCIDENTS_READ)
    region = conn.execute(text("SELECT region_code FROM incident WHERE id = :id"),
                          {"id": incident_id}).first()
    scope = principal.locate_scope()
    if region is None or not scope.covers(region[0]):
        raise IncidentNotFound(f"No incident {incident_id} in your jurisdiction.",
                               detail={"field": "id", "value": incident_id})
    return [dict(r) for r in conn.execute(text(CANDIDATES_SQL), {
        "id": incident_id, "scope": scope.like_patterns(), "limit": limit}).mappings()]


def measure(conn: Connection, table: str, *, min_score: float = 0.0) -> dict[str, float]:
    """Recall and precision of the candidate rule on a labelled set.

    ``table`` (a temporary table the caller filled; a fixed name from the caller, not user
    input) has ``id``, ``geom`` (EPSG:4490), ``received_at``, ``cat`` and ``cluster`` (the same
    non-null value for reports of one event). Every case is paired with the earlier cases that
    pass the rule with a score of at least ``min_score`` (what the desk would propose at its
    intake); a proposed pair is right if both are in one cluster. Recall counts the cases whose
    cluster already had an earlier member and that got at least one of them proposed.
    """
    cond, score = pair_sql("a", "b", "a")
    row = conn.execute(text(f"""
        WITH a AS (SELECT t.*, rule.* FROM {table} t, LATERAL {_rule_sql('t.cat')} rule),
        pairs AS (
            SELECT a.id AS aid, b.id AS bid,
                   a.cluster IS NOT NULL AND a.cluster = b.cluster AS right_pair
            FROM a JOIN {table} b ON b.id <> a.id AND b.received_at <= a.received_at AND {cond}
            AND {score} >= :min_score),
        dups AS (
            SELECT a.id FROM {table} a WHERE a.cluster IS NOT NULL AND EXISTS (
                SELECT 1 FROM {table} b WHERE b.cluster = a.cluster AND b.id <> a.id
                AND b.received_at <= a.received_at))
        SELECT (SELECT count(*) FROM pairs) AS proposed,
               (SELECT count(*) FROM pairs WHERE right_pair) AS right_pairs,
               (SELECT count(*) FROM dups) AS duplicates,
               (SELECT count(*) FROM dups WHERE id IN (SELECT aid FROM pairs WHERE right_pair))
                   AS found
    """), {"min_score": min_score}).mappings().one()
    proposed, right, dups, found = (int(row[k]) for k in
                                    ("proposed", "right_pairs", "duplicates", "found"))
    return {"proposed": proposed, "right": right, "duplicates": dups, "found": found,
            "precision": right / proposed if proposed else 1.0,
            "recall": found / dups if dups else 1.0}
