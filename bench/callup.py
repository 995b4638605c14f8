"""Call-up bench: who to call for a street-sized drawn area (layers.dispatch.callup.who).

Beside it, in the same run, a baseline doing the same selection as one plain PostGIS query: the
grids the area intersects, their primary, backup and head duties, the heads of the communities
and streets above, and the nearest available staff by their last fix, taken the plain way
(``DISTINCT ON (staff_id)`` over the window's fixes, then the distance). Answers are compared
(the same people, the same nearest in the same order). p50/p95 over ``--repeat`` runs, the two
interleaved, in process (no HTTP), as a city-wide dispatcher.

    python -m bench.callup build [--db citygrid_bench_callup] [--days 7]   # demo city + patrols
    python -m bench.callup run [--db citygrid_bench_callup] [--repeat 50]
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, create_engine, text

from app.db import is_empty, migrate
from bench.common import database, p50_p95, timed
from grids.access import Principal, Scope
from layers.dispatch import callup

STREET = "330782001000"  # 稠城街道: 132 grids, patrolled in the demo



def build(db: str, days: int) -> None:
    from app.seed import load_demo
    from data.patrols import load_demo_patrols

    url = database(db)
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        if is_empty(conn):
            load_demo(conn)
        if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM patrol_fix)")).scalar_one():
            load_demo_patrols(conn, days=days)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE patrol_fix"))


BASELINE = """
WITH a AS (SELECT ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_SetSRID(
        ST_GeomFromGeoJSON(:gj), 4490)), 3)) AS g),
 g AS (SELECT r.id, r.parent_id FROM region_current r, a WHERE r.level = 'grid'
        AND ST_Intersects(r.geom, a.g) AND NOT ST_Touches(r.geom, a.g)),
 comm AS (SELECT c.id, c.parent_id FROM region_current c WHERE c.id IN (SELECT parent_id FROM g)
        AND c.level = 'community'),
 chain AS (SELECT id FROM comm UNION SELECT s.id FROM region_current s
        WHERE s.id IN (SELECT parent_id FROM comm) AND s.level = 'street'),
 called AS (SELECT DISTINCT s.code FROM assignment x JOIN staff s ON s.id = x.staff_id
        WHERE x.valid_from <= :now AND (x.valid_to IS NULL OR x.valid_to > :now)
        AND (x.region_id IN (SELECT id FROM g)
             OR (x.region_id IN (SELECT id FROM chain) AND x.duty = 'head'))),
 last AS (SELECT DISTINCT ON (staff_id) staff_id, at, geom FROM patrol_fix
        WHERE at > :since AND at <= :now ORDER BY staff_id, at DESC)
SELECT 'called' AS kind, code, NULL::float8 AS d, NULL::timestamptz AS at FROM called
UNION ALL (
SELECT 'nearest', s.code, ST_Distance(ST_Transform(l.geom, :srid), ST_Transform(a.g, :srid)),
       l.at
FROM last l JOIN staff s ON s.id = l.staff_id CROSS JOIN a
WHERE s.status = 'available' AND s.code NOT IN (SELECT code FROM called)
ORDER BY 3, l.at DESC, s.code LIMIT :n)
"""




def _area(conn: Connection) -> dict[str, Any]:
    """The street's outline, simplified to ~10 m, as a dispatcher would draw it."""
    gj = conn.execute(text(
        "SELECT ST_AsGeoJSON(ST_SimplifyPreserveTopology(ST_Buffer(geom, -0.0002), 0.0001), 7) "
        "FROM region_current WHERE code = :c"), {"c": STREET}).scalar_one()
    return orjson.loads(gj)


def run(db: str, repeat: int, limit: int, age_min: int) -> None:
    eng = create_engine(database(db))
    who = Principal.make("bench:dispatcher", "dispatcher", Scope.of("330782"))
    with eng.connect() as conn:
        conn.execute(text("SET jit = off"))  # as the service's connections run
        now = conn.execute(text("SELECT max(at) FROM patrol_fix")).scalar_one()
        n_fix = conn.execute(text("SELECT count(*) FROM patrol_fix")).scalar_one()
        srid = conn.execute(text("SELECT citygrid_metric_srid()")).scalar_one()
        area = _area(conn)
        since = now - timedelta(minutes=age_min)

        def layer() -> dict[str, Any]:
            return callup.who(conn, principal=who, area=area, limit=limit,
                              max_fix_age_min=age_min, now=now)

        def baseline() -> list[Any]:
            return conn.execute(text(BASELINE), {
                "gj": orjson.dumps(area).decode(), "now": now, "since": since, "srid": srid,
                "n": limit}).all()

        layer()
        baseline()  # warm both
        t_layer: list[float] = []
        t_base: list[float] = []
        for _ in range(repeat):  # interleaved: both see the same load on a shared machine
            tl, got = timed(layer, 1)
            tb, rows = timed(baseline, 1)
            t_layer += tl
            t_base += tb
        conn.rollback()
    called = {p["staff_code"] for p in got["responsible"] + got["heads"]}
    assert called == {r.code for r in rows if r.kind == "called"}, "the people called differ"
    near = [p["staff_code"] for p in got["nearest"]]
    assert near == [r.code for r in rows if r.kind == "nearest"], "the nearest differ"
    print(f"patrol_fix rows: {n_fix:,}; area: the outline of {STREET} (drawn), "
          f"{len(got['grids'])} grids, {len(called)} responsible and heads, "
          f"nearest {len(near)} of fixes within {age_min} min")
    print(f"who (layers.dispatch.callup): {p50_p95(t_layer)}")
    print(f"plain PostGIS query (DISTINCT ON last fix): {p50_p95(t_base)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("cmd", choices=["build", "run"])
    ap.add_argument("--db", default="citygrid_bench_callup")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--age-min", type=int, default=240)
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.db, args.days)
    else:
        run(args.db, args.repeat, args.limit, args.age_min)


if __name__ == "__main__":
    main()
