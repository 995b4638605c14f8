"""Cross-channel duplicates: the same broken manhole cover from 12345, 110 and 数字城管.

Two cases are **candidates** when both are open, their categories are the same or related, they
lie within the category's distance and were received within its time window
(``duplicate_rule``, per category code, ``*`` as the default; migration 0015). The rule only
bounds the search; each candidate then gets a **score**: the probability that it reports the same
event, from a two-hypothesis model (docs/desk.md, *Duplicate candidates*)::

    odds  = P_DUP * f_place(d) * f_time(dt) / rate * w_cat * w_channel * w_phone
    score = odds / (1 + odds)

* ``f_place(d) = exp(-d^2 / 2s^2) / (2 pi s^2)``: two reports of one event differ by their
  location errors, ``s^2`` the sum of both channels' squared spread (a phone's or a patrol's GPS
  ~15 m; an address read out on the phone and geocoded ~30 m: :data:`SOURCE_SPREAD_M`).
* ``f_time(dt) = exp(-dt / TAU_H) / TAU_H``: a second report mostly comes within hours.
* ``rate``: how many *unrelated* cases of that category one expects per m^2 and hour at that
  place: the open cases of the category within :data:`DENSITY_RADIUS_M` and
  :data:`DENSITY_DAYS` of the new one (plus one). This is what separates a market, where
  rubbish is reported ten times a week within 40 m, from a quiet street: there the same
  distance and delay mean far less.
* ``w_cat`` 1 same category, 0.5 related; ``w_channel`` 0.3 when both came by the same channel
  (the task is reports *across* channels: a channel merges its own repeat calls at intake);
  ``w_phone`` 10 when both name the same reporter phone.

``score >= LIKELY`` (0.5: more likely the same event than not) is what the desk calls *likely*
and counts in the queue's badge; lower candidates are still listed, ranked. The same SQL, written
once (:func:`pair_sql`), serves the candidates of one case (:func:`candidates`) and the
measurement over a labelled set (:func:`measure`), so what is measured is what the desk runs.
None of the constants was fitted to the labelled set; ``bench/duplicates.py`` shows how the
figures move when each is halved or doubled.

The search reads the partial GiST index of open cases (``incident_open_geom_idx``): a box of the
radius around the point, then the exact spheroid-free distance (``ST_DistanceSphere``).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission
from grids.sql import like_any
from layers.dispatch.roles import DeskUser
from layers.incidents.handling import IncidentNotFound
from layers.incidents.workflow import OPEN_SQL

# Metres per degree of latitude; a degree of longitude is this times cos(latitude).
M_PER_DEG = 111_320.0

P_DUP = 0.03  # prior: a few cases in a hundred are another report of an open case
TAU_H = 3.0  # mean delay of a second report, hours
SOURCE_SPREAD_M = {"hotline_12345": 30.0}  # an address read out on the phone, geocoded
DEFAULT_SPREAD_M = 15.0  # a phone's or a patrol's GPS, a click on the map
DENSITY_RADIUS_M = 300.0
DENSITY_DAYS = 7.0
RELATED_WEIGHT = 0.5
SAME_CHANNEL_WEIGHT = 0.3
SAME_PHONE_WEIGHT = 10.0
LIKELY = 0.5


def _rule_sql(cat: str) -> str:
    """The rule of category code expression ``cat``: radius, window, related (default '*')."""
    return (f"(SELECT r.radius_m, r.window_h, r.related FROM duplicate_rule r "
            f"WHERE r.category_code IN ({cat}, '*') "
            f"ORDER BY r.category_code = '*' LIMIT 1)")


def _spread2(source: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN {v * v}" for k, v in SOURCE_SPREAD_M.items())
    return f"(CASE {source} {cases} ELSE {DEFAULT_SPREAD_M ** 2} END)"


def density_sql(a: str, table: str) -> str:
    """SQL counting the cases of ``table`` (alias ``n``) of ``a``'s category near ``a`` in
    place and time (``a`` has ``id``, ``geom``, ``received_at``, ``cat``; ``n`` has ``cat``)."""
    r = DENSITY_RADIUS_M
    # The box alone first, behind a fence (OFFSET 0): on 5M cases the planner otherwise ANDs the
    # whole history's GiST index with the open cases' time index, and a market's 300 m box holds
    # tens of thousands of past cases (36 ms a case); the open cases' own GiST index gives the
    # few hundred open ones (bench/desk.py scale, docs/desk.md).
    return (f"(SELECT count(*) FROM (SELECT * FROM {table} "
            f"WHERE n.geom && ST_Expand({a}.geom, {r} / ({M_PER_DEG} * "
            f"cos(radians(ST_Y({a}.geom)))), {r} / {M_PER_DEG}) OFFSET 0) n "
            f"WHERE n.cat = {a}.cat AND n.id <> {a}.id "
            f"AND ST_DistanceSphere({a}.geom, n.geom) <= {r} "
            f"AND n.received_at BETWEEN {a}.received_at - interval '{DENSITY_DAYS} days' "
            f"AND {a}.received_at + interval '{DENSITY_DAYS} days')")


def pair_sql(a: str, b: str, rule: str) -> tuple[str, str]:
    """(condition, score) SQL for case ``b`` as a candidate of case ``a``.

    ``a`` and ``b`` are aliases with ``geom``, ``received_at``, ``cat`` (category code),
    ``source`` and ``phone`` (the reporter's, or NULL); ``a`` also has ``dens`` (its
    :func:`density_sql`); ``rule`` an alias with ``radius_m``, ``window_h`` and ``related`` (the
    rule of ``a``).
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
    s2 = f"({_spread2(f'{a}.source')} + {_spread2(f'{b}.source')})"
    # unrelated cases per m^2 and hour around a
    rate = (f"(({a}.dens + 1) / ({math.pi * DENSITY_RADIUS_M ** 2} * "
            f"{2 * DENSITY_DAYS * 24}))")
    odds = (f"({P_DUP} * exp(-power({dist}, 2) / (2 * {s2})) / (2 * pi() * {s2}) "
            f"* exp(-({dt_h}) / {TAU_H}) / {TAU_H} / {rate} "
            f"* (CASE WHEN {b}.cat = {a}.cat THEN 1.0 ELSE {RELATED_WEIGHT} END) "
            f"* (CASE WHEN {b}.source = {a}.source THEN {SAME_CHANNEL_WEIGHT} ELSE 1.0 END) "
            f"* (CASE WHEN {b}.phone = {a}.phone THEN {SAME_PHONE_WEIGHT} ELSE 1.0 END))")
    score = f"({odds} / (1 + {odds}))"
    return cond, score


_COND, _SCORE = pair_sql("x", "o", "x")
# The density of a case is counted only if some open case passes its rule at all (CASE runs its
# sub-query only then): most cases of a queue page have no candidate, and in a market the count
# reads a few hundred open cases (5M city: the badge of a page went from 250 to ~20 ms).
_LAZY_DENSITY = (f"(CASE WHEN EXISTS (SELECT 1 FROM o o2 WHERE o2.id <> x0.id AND "
                 f"{pair_sql('x0', 'o2', 'x0')[0]}) THEN {density_sql('x0', 'o n')} ELSE 0 END)")
_OPEN_CASES = f"""
    SELECT i.id, i.geom, i.received_at, c.code AS cat, i.source, i.reporter_phone AS phone,
           i.state, i.address, i.description, i.region_code, c.name AS category_name,
           c.name_en AS category_name_en, i.version
    FROM incident i JOIN category c ON c.id = i.category_id
    WHERE i.state IN {OPEN_SQL}"""
CANDIDATES_SQL = f"""
WITH x0 AS MATERIALIZED (
    SELECT i.id, i.geom, i.received_at, c.code AS cat, i.source, i.reporter_phone AS phone,
           i.address || ' ' || i.description AS words, rule.*
    FROM incident i JOIN category c ON c.id = i.category_id,
    LATERAL {_rule_sql('c.code')} rule
    WHERE i.id = :id AND i.geom IS NOT NULL),
o AS NOT MATERIALIZED ({_OPEN_CASES}),
x AS MATERIALIZED (
    SELECT x0.*, {_LAZY_DENSITY} AS dens FROM x0)
SELECT o.id, o.source, o.state, o.cat AS category, o.category_name, o.category_name_en,
       o.address, left(o.description, 140) AS description, o.received_at, o.region_code,
       o.version, round(ST_DistanceSphere(x.geom, o.geom)::numeric, 1)::float8 AS distance_m,
       round((extract(epoch FROM o.received_at - x.received_at) / 3600.0)::numeric, 2)::float8
           AS hours_apart,
       o.source = x.source AS same_channel,
       coalesce(o.phone = x.phone, false) AS same_phone,
       round(similarity(x.words, o.address || ' ' || o.description)::numeric, 2)::float8
           AS text_similarity,
       round(({_SCORE})::numeric, 3)::float8 AS score,
       ({_SCORE}) >= {LIKELY} AS likely
FROM x JOIN o ON o.id <> x.id AND {_COND}
WHERE {like_any('o.region_code')}
ORDER BY score DESC, o.id
LIMIT :limit
"""


LIKELY_COUNTS_SQL = f"""
WITH x0 AS MATERIALIZED (
    SELECT i.id, i.geom, i.received_at, c.code AS cat, i.source, i.reporter_phone AS phone,
           rule.*
    FROM incident i JOIN category c ON c.id = i.category_id,
    LATERAL {_rule_sql('c.code')} rule
    -- "IS TRUE": pick the rows by id (pkey), not by a partial index of every open case
    WHERE i.id = ANY(:ids) AND i.geom IS NOT NULL AND (i.state IN {OPEN_SQL}) IS TRUE),
o AS NOT MATERIALIZED ({_OPEN_CASES}),
x AS MATERIALIZED (
    SELECT x0.*, {_LAZY_DENSITY} AS dens FROM x0)
SELECT x.id, count(*) FILTER (WHERE ({_SCORE}) >= {LIKELY}) AS likely
FROM x JOIN o ON o.id <> x.id AND {_COND}
WHERE {like_any('o.region_code')}
GROUP BY x.id
"""


def likely_counts(conn: Connection, ids: list[int], scope: list[str]) -> dict[int, int]:
    """Per open case of ``ids``: how many open cases in ``scope`` (LIKE patterns) are *likely*
    the same event (score >= :data:`LIKELY`): the queue's duplicate badge. One statement for a
    page of the queue."""
    if not ids:
        return {}
    return {int(r[0]): int(r[1]) for r in conn.execute(text(LIKELY_COUNTS_SQL), {
        "ids": ids, "scope": scope})}


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


def operating_point(conn: Connection, table: str, *, precision: float = 0.90) -> float:
    """The lowest score threshold whose proposals, by the score's own account, are right at
    ``precision``: the mean score of the pairs at or above it is at least ``precision``.

    No label is read: the score is a probability, and where it is calibrated the mean score of
    what is proposed is the expected precision. Never below :data:`LIKELY`. ``table`` as for
    :func:`measure` (its ``cluster`` is not used)."""
    cond, score = pair_sql("a", "b", "a")
    scores = conn.execute(text(f"""
        WITH a AS (SELECT t.*, rule.*, {density_sql('t', f'{table} n')} AS dens
                   FROM {table} t, LATERAL {_rule_sql('t.cat')} rule)
        SELECT {score} AS s FROM a JOIN {table} b ON b.id <> a.id
        AND b.received_at <= a.received_at AND {cond} ORDER BY 1 DESC""")).scalars().all()
    best, total = 1.0, 0.0
    for k, s in enumerate(scores, start=1):
        total += float(s)
        if total / k >= precision:
            best = float(s)
    return max(LIKELY, best)


def measure(conn: Connection, table: str, *, min_score: float = 0.0) -> dict[str, float]:
    """Recall and precision of the candidate rule on a labelled set.

    ``table`` (a temporary table the caller filled; a fixed name from the caller, not user
    input) has ``id``, ``geom`` (EPSG:4490), ``received_at``, ``cat``, ``source``, ``phone`` and
    ``cluster`` (the same non-null value for reports of one event). Every case is paired with the
    earlier cases that
    pass the rule with a score of at least ``min_score`` (what the desk would propose at its
    intake); a proposed pair is right if both are in one cluster. Recall counts the cases whose
    cluster already had an earlier member and that got at least one of them proposed.
    """
    cond, score = pair_sql("a", "b", "a")
    row = conn.execute(text(f"""
        WITH a AS (SELECT t.*, rule.*, {density_sql('t', f'{table} n')} AS dens
                   FROM {table} t, LATERAL {_rule_sql('t.cat')} rule),
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
