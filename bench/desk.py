"""Dispatch desk benches: the queue's first page with filters, and duplicate candidates.

Each figure beside a baseline doing the same work in the same run: the same SQL sent as plain
text through the driver, without the desk's Python (filters, counts merged, dicts), so the gap is
what the domain layer costs; answers are compared. p50/p95 over ``--repeat`` runs, in process
(no HTTP), as a city-wide dispatcher.

    python -m bench.desk build [--db citygrid_bench_desk] [--n 220000]   # once: demo city + year
    python -m bench.desk run [--db citygrid_bench_desk] [--repeat 200]

The same at 5M incidents, on the scale city of ``bench.scale setup`` (read only; no build, no
migration), plus a deep page by OFFSET against the keyset cursor and the headline over HTTP:

    CITYGRID_PGPORT=54390 CITYGRID_PGDATA=/work/scale/.pgdata python -m bench.desk scale
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


BENCH_USER = "bench_dispatcher"


def bench_account(conn: Any, city: str) -> tuple[str, str]:
    """A dispatcher over the whole city for the HTTP runs (created once; the bench databases'
    cities differ, so the tests' accounts do not fit them all). Returns (username, password)."""
    from app import users

    password = "bench-password-not-for-production"
    if not conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"),
                        {"u": BENCH_USER}).first():
        users.create_user(conn, username=BENCH_USER, password=password, role="dispatcher",
                          region_code=city, principal=Principal.system("bench"))
    return BENCH_USER, password


def _codes(conn: Any) -> tuple[str, str]:
    """The city's code and its first street's (the demo: 330782 / 330782001; the scale city
    writes them with 12 digits)."""
    city = conn.execute(text("SELECT code FROM region_current WHERE level = 'city' "
                             "ORDER BY code LIMIT 1")).scalar_one()
    street = conn.execute(text("SELECT code FROM region_current WHERE level = 'street' "
                               "ORDER BY code LIMIT 1")).scalar_one()
    return city, street


def run(db: str, repeat: int, *, deep: bool = False) -> None:
    eng = create_engine(database(db))
    with eng.connect() as conn:
        conn.execute(text("SET jit = off"))  # as the service's connections run
        city, street = _codes(conn)
        scope = Scope.of(city)
        user = DeskUser(Principal.make("bench:dispatcher", "dispatcher", scope), None)
        filters = QueueFilters(lights=["red"], categories=["E01"], region=street)
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
        print(f"queue first page (red, E01, street {street}; {got['total']:,} match): "
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
            return conn.execute(cand_sql, {"id": ids[next(j) % len(ids)],
                                           "scope": scope.like_patterns(), "limit": 20}).all()

        m = iter(range(10**9))
        radius_sql = text(
            "SELECT o.id FROM incident x JOIN incident o ON o.id <> x.id AND o.state IN "
            f"{duplicates.OPEN_SQL} AND ST_DWithin(o.geom::geography, x.geom::geography, 60) "
            "WHERE x.id = :id")

        def radius() -> Any:  # the plain PostGIS question: open cases within 60 m
            return conn.execute(radius_sql, {"id": ids[next(m) % len(ids)]}).all()

        q = iter(range(10**9))
        # the same question written for the geometry index: a box of 60 m in degrees, then
        # the metres (what the desk's SQL does before its score)
        radius_idx_sql = text(
            "SELECT o.id FROM incident x JOIN incident o ON o.id <> x.id AND o.state IN "
            f"{duplicates.OPEN_SQL} AND ST_DWithin(o.geom, x.geom, 60 / ({duplicates.M_PER_DEG}"
            " * cos(radians(ST_Y(x.geom))))) "
            "AND ST_DistanceSphere(o.geom, x.geom) <= 60 WHERE x.id = :id")

        def radius_idx() -> Any:
            return conn.execute(radius_idx_sql, {"id": ids[next(q) % len(ids)]}).all()

        t_dc, _ = timed(desk_cands, repeat)
        t_pc, _ = timed(plain_cands, repeat)
        t_r, _ = timed(radius, repeat)
        t_ri, _ = timed(radius_idx, repeat)
        print(f"duplicate candidates (50 newest open cases, in turn): desk {p50_p95(t_dc)}; "
              f"the same SQL plain {p50_p95(t_pc)}; plain PostGIS radius 60 m (ST_DWithin, "
              f"geography) {p50_p95(t_r)}; plain ST_DWithin on the geometry index (degrees, then "
              f"metres) {p50_p95(t_ri)}")
        plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + duplicates.CANDIDATES_SQL), {
            "id": ids[0], "scope": scope.like_patterns(), "limit": 20}).all()
        print("  candidates plan: " + " | ".join(r[0].strip() for r in plan[:12]))
        page_ids = [r["id"] for r in got["items"]] or ids

        def badge() -> Any:
            return duplicates.likely_counts(conn, page_ids, scope.like_patterns())

        t_b, counts = timed(badge, repeat)
        print(f"queue badge for a page of {len(page_ids)} rows (likely_counts, "
              f"{sum(counts.values())} likely): {p50_p95(t_b)} (included in the queue page above)")
        if deep:
            _deep_pages(conn, user, repeat)


def _deep_pages(conn: Any, user: DeskUser, repeat: int, depth: int = 5000) -> None:
    """A page deep in the unfiltered queue (by due time): by OFFSET against by the keyset cursor
    of the row before it (the same 50 rows, checked)."""
    from layers.dispatch.queue import cursor_of

    f = QueueFilters()
    before = queue(conn, user=user, filters=f, limit=1, offset=depth - 1)["items"]
    if not before:
        return
    after = cursor_of(before[0], f.sort)
    t_off, by_off = timed(lambda: queue(conn, user=user, filters=f, limit=50, offset=depth),
                           max(repeat // 4, 20))
    t_key, by_key = timed(lambda: queue(conn, user=user, filters=f, limit=50, after=after),
                           max(repeat // 4, 20))
    assert [r["id"] for r in by_off["items"]] == [r["id"] for r in by_key["items"]]
    print(f"queue page at row {depth:,} of {by_key['total']:,} (no filter, by due time, with "
          f"counts and badge): keyset cursor {p50_p95(t_key)}; OFFSET {p50_p95(t_off)}")


def http(db: str, repeat: int) -> None:
    """The headline over HTTP: the real app (uvicorn in a thread, the application role), a
    dispatcher's bearer token, gzip: the queue's first page with the filters, and the duplicate
    candidates of the 50 newest open cases in turn."""
    import httpx

    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from tests.conftest import app_role_url, live_server

    url = database(db)
    eng = create_engine(url)
    with eng.begin() as conn:
        city, street = _codes(conn)
        user, password = bench_account(conn, city)
        ids = [i for (i,) in conn.execute(text(
            f"SELECT id FROM incident WHERE state IN {duplicates.OPEN_SQL} AND geom IS NOT NULL "
            "ORDER BY id DESC LIMIT 50"))]
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    with live_server(create_app(settings), timeout=600) as base, \
            httpx.Client(base_url=base, timeout=60) as c:
        token = c.post("/auth/token", json={"username": user, "password": password}
                       ).json()["access_token"]
        c.headers["Authorization"] = "Bearer " + token
        c.headers["Accept-Encoding"] = "gzip"
        params = {"light": "red", "category": "E01", "region": street, "limit": 50}
        seen: set[str] = set()

        def page() -> Any:
            res = c.get("/desk/queue", params=params)
            res.raise_for_status()
            seen.add(res.headers.get("content-encoding") or "identity")
            return res.json()

        k = iter(range(10**9))

        def cands() -> Any:
            res = c.get(f"/desk/cases/{ids[next(k) % len(ids)]}/duplicates")
            res.raise_for_status()
            return res.json()

        timed(page, 5)
        t_q, got = timed(page, repeat)
        t_c, _ = timed(cands, repeat)
        print(f"over HTTP (bearer token, Accept-Encoding gzip): queue first page (red, E01, street {street}; "
              f"{got['total']:,} match; content-encoding {', '.join(sorted(seen))}) {p50_p95(t_q)}; "
              f"duplicate candidates {p50_p95(t_c)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=("build", "run", "scale"))
    ap.add_argument("--db", default="citygrid_bench_desk")
    ap.add_argument("--n", type=int, default=220_000)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--http-only", action="store_true")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.db, a.n)
    elif a.cmd == "run":
        run(a.db, a.repeat)
    else:  # the scale city, as built by bench.scale setup (never rebuilt or migrated here)
        db = "citygrid_scale" if a.db == "citygrid_bench_desk" else a.db
        if not a.http_only:
            run(db, a.repeat, deep=True)
        if not a.no_http:
            http(db, a.repeat)


if __name__ == "__main__":
    main()
