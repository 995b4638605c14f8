"""Dispatch desk benches: the queue's first page with filters, and duplicate candidates.

Each figure beside a baseline doing the same work in the same run: the same SQL sent as plain
text through the driver, without the desk's Python (filters, counts merged, dicts), so the gap is
what the domain layer costs; answers are compared. p50/p95 over ``--repeat`` runs, in process
(no HTTP), as a city-wide dispatcher.

    python -m bench.desk build [--db citygrid_bench_desk] [--n 220000]   # once: demo city + year
    python -m bench.desk run [--db citygrid_bench_desk] [--repeat 200]

``--n 5000000`` (with the 5M scale database of ``bench.scale``) runs the same at scale.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import create_engine, text

from app.db import is_empty, migrate
from bench.common import database, p50_p95, timed
from grids.access import Principal, Scope
from layers.dispatch import duplicates
from layers.dispatch.queue import QueueFilters, queue
from layers.dispatch.roles import DeskUser


def build(db: str, n: int) -> None:
    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents
    from layers.incidents.catalogue import seed

    url = database(db)
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        if is_empty(conn):
            load_demo(conn)
        seed(conn)
        if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one():
            load_demo_incidents(conn, n=n)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE incident"))




def run(db: str, repeat: int) -> None:
    eng = create_engine(database(db))
    user = DeskUser(Principal.make("bench:dispatcher", "dispatcher", Scope.of("330782")), None)
    filters = QueueFilters(lights=["red"], categories=["E01"], region="330782001")
    with eng.connect() as conn:
        conn.execute(text("SET jit = off"))  # as the service's connections run
        n_open = conn.execute(text(
            "SELECT count(*) FROM incident WHERE state IN ('received', 'registered', "
            "'dispatched', 'handling', 'reported', 'verified')")).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
        print(f"incidents {total:,}, open {n_open:,}")

        def desk_page() -> Any:
            return queue(conn, user=user, filters=filters, limit=50)

        from layers.dispatch.queue import _FROM, _ROW, _where
        from layers.incidents.workflow import light_sql

        where, params = _where(user, filters, with_state_light=True)
        cwhere, cparams = _where(user, filters, with_state_light=False)
        page_sql = text(_ROW.format(light=light_sql("i", "c")) + _FROM +
                        " LEFT JOIN staff s ON s.code = i.responsible_code WHERE " +
                        " AND ".join(where) + " ORDER BY i.due_at NULLS LAST, i.id LIMIT 50")
        count_sql = text(f"SELECT i.state, {light_sql('i', 'c')} AS light, count(*) {_FROM} "
                         f"WHERE {' AND '.join(cwhere)} GROUP BY 1, 2")

        def plain() -> Any:
            a = conn.execute(page_sql, params).all()
            b = conn.execute(count_sql, cparams).all()
            return a, b

        t_desk, got = timed(desk_page, repeat)
        t_plain, base = timed(plain, repeat)
        assert [r["id"] for r in got["items"]] == [r[0] for r in base[0]], "answers differ"
        print(f"queue first page (red, E01, street 330782001; {got['total']:,} match): "
              f"desk {p50_p95(t_desk)}; plain SQL {p50_p95(t_plain)}")
        plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + str(page_sql)), params).all()
        print("  plan:", " | ".join(r[0].strip() for r in plan[:6]))

        ids = [i for (i,) in conn.execute(text(
            "SELECT id FROM incident WHERE state IN ('received', 'registered', 'dispatched', "
            "'handling', 'reported', 'verified') AND geom IS NOT NULL ORDER BY id DESC LIMIT 50"))]
        k = iter(range(10**9))

        def desk_cands() -> Any:
            return duplicates.candidates(conn, ids[next(k) % len(ids)], user=user)

        j = iter(range(10**9))
        cand_sql = text(duplicates.CANDIDATES_SQL)

        def plain_cands() -> Any:
            return conn.execute(cand_sql, {"id": ids[next(j) % len(ids)], "scope": ["330782%"],
                                           "limit": 20}).all()

        m = iter(range(10**9))
        radius_sql = text(
            "SELECT o.id FROM incident x JOIN incident o ON o.id <> x.id AND o.state IN "
            f"{duplicates.OPEN_SQL} AND ST_DWithin(o.geom::geography, x.geom::geography, 60) "
            "WHERE x.id = :id")

        def radius() -> Any:  # the plain PostGIS question: open cases within 60 m
            return conn.execute(radius_sql, {"id": ids[next(m) % len(ids)]}).all()

        t_dc, _ = timed(desk_cands, repeat)
        t_pc, _ = timed(plain_cands, repeat)
        t_r, _ = timed(radius, repeat)
        print(f"duplicate candidates (50 newest open cases, in turn): desk {p50_p95(t_dc)}; "
              f"the same SQL plain {p50_p95(t_pc)}; plain PostGIS radius 60 m (ST_DWithin, "
              f"geography) {p50_p95(t_r)}")
        page_ids = [r["id"] for r in got["items"]] or ids

        def badge() -> Any:
            return duplicates.likely_counts(conn, page_ids, ["330782%"])

        t_b, counts = timed(badge, repeat)
        print(f"queue badge for a page of {len(page_ids)} rows (likely_counts, "
              f"{sum(counts.values())} likely): {p50_p95(t_b)} (included in the queue page above)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=("build", "run"))
    ap.add_argument("--db", default="citygrid_bench_desk")
    ap.add_argument("--n", type=int, default=220_000)
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.db, a.n)
    else:
        run(a.db, a.repeat)


if __name__ == "__main__":
    main()
