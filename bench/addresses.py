"""Address search bench: top-1 accuracy on noisy spoken forms, and latency with 1M addresses.

The book: the demo city with ~1M generated addresses (``data.addresses.generate`` scaled), imported
through the real import path (normalise, locate, versioned insert, trigram index). The queries:
``--queries`` noisy variants of real entries (``data.addresses.noisy_variants``: full-width
digits, 號, 幢/座 swaps, dropped 省/市/区 prefix, Chinese numerals, missing 单元, stray spaces).

Three searchers answer the same queries in the same run, as a city-wide dispatcher:

- ``ours``: ``grids.addresses.search`` (normalise both sides; the exact-substring pass on the GIN
  trigram index of ``norm``, the fuzzy word-similarity pass if it finds nothing; numbers
  re-ranked); ``ours_fuzzy_pass``: the same with the fuzzy pass only (what a query that matches
  no address exactly costs);
- ``trgm_raw``: the same trigram SQL on the raw ``text`` with the raw query (its own GIN index,
  built here): trigram search without normalisation;
- ``ilike``: ``text ILIKE '%query%'`` (what one writes first), no index.

Each reports top-1 accuracy (the entry the query came from is first) and p50/p95 latency. The
headline is also measured over HTTP (``GET /addresses/search``, bearer token, uvicorn in a thread).

    python -m bench.addresses build [--db citygrid_bench_addr] [--scale 40]   # once, ~1M rows
    python -m bench.addresses run [--db citygrid_bench_addr] [--queries 1000]

On the 5M scale city (its own streets and communities; no migration, no seed; only the address
book is replaced):

    CITYGRID_PGPORT=54390 CITYGRID_PGDATA=/work/scale/.pgdata \\
        python -m bench.addresses build --db citygrid_scale --existing --size 1000000
    CITYGRID_PGPORT=54390 CITYGRID_PGDATA=/work/scale/.pgdata \\
        python -m bench.addresses run --db citygrid_scale
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sqlalchemy import Connection, create_engine, text

from bench.common import percentiles
from data.addresses import generate, noisy_variants
from grids.access import Principal, Scope

PER_COMMUNITY = 48


def _url(db: str) -> str:
    from bench.common import database

    return database(db)


def build(db: str, scale: int, *, size: int | None = None, existing: bool = False) -> None:
    """The book: ``scale`` × 48 addresses per community, or about ``size`` in all. ``existing``:
    the database already holds its city at its own migration (the shared scale city): neither
    migrate nor seed it, only replace its address book."""
    from app.db import is_empty, migrate
    from app.seed import load_demo
    from grids.addresses import Record, import_records

    url = _url(db)
    if not existing:
        migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        if not existing and is_empty(conn):
            load_demo(conn)
    with eng.begin() as conn:
        if size is not None:
            communities = conn.execute(text(
                "SELECT count(*) FROM region_current WHERE level = 'community'")).scalar_one()
            scale = max(1, -(-size // (communities * PER_COMMUNITY)))
        t0 = time.perf_counter()
        entries = generate(conn, per_community=PER_COMMUNITY, scale=scale)
        t1 = time.perf_counter()
        records = [Record(row=i, text=e.text, x=e.lon, y=e.lat, code=e.key)
                   for i, e in enumerate(entries, start=2)]
        summary = import_records(conn, records, principal=Principal.system("bench"),
                                 mode="replace", source=f"bench.addresses scale {scale}")
        t2 = time.perf_counter()
        print(f"generated {len(entries):,} in {t1 - t0:.1f} s; imported {summary} "
              f"in {t2 - t1:.1f} s", flush=True)
        # the baseline's own index: trigram search on the raw text
        conn.execute(text("CREATE INDEX IF NOT EXISTS bench_address_text_trgm_idx ON address "
                          "USING gin (text gin_trgm_ops) WHERE valid_to IS NULL"))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE address"))


def _trgm_raw(conn: Connection, query: str, limit: int = 10) -> list[str]:
    conn.execute(text("SELECT set_config('pg_trgm.word_similarity_threshold', '0.5', true)"))
    return list(conn.execute(text(
        "SELECT code FROM address WHERE valid_to IS NULL AND :q <% text "
        "ORDER BY word_similarity(:q, text) DESC, similarity(:q, text) DESC LIMIT :n"),
        {"q": query, "n": limit}).scalars())


def _ilike(conn: Connection, query: str, limit: int = 10) -> list[str]:
    like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(conn.execute(text(
        "SELECT code FROM address WHERE valid_to IS NULL AND text ILIKE :q LIMIT :n"),
        {"q": like, "n": limit}).scalars())


def _measure(name: str, fn, queries: list[tuple[str, str, str]]) -> dict[str, Any]:
    times, hits = [], 0
    by_noise: dict[str, list[int]] = {}
    for query, key, noise in queries:
        t0 = time.perf_counter()
        codes = fn(query)
        times.append(time.perf_counter() - t0)
        hit = bool(codes) and codes[0] == key
        hits += hit
        for n in noise.split("+"):
            by_noise.setdefault(n, [0, 0])
            by_noise[n][0] += hit
            by_noise[n][1] += 1
    out = {"top1": round(hits / len(queries), 4), **percentiles(times, scale=1000)}
    out["top1_by_noise"] = {k: round(h / n, 3) for k, (h, n) in sorted(by_noise.items())}
    print(name, json.dumps(out, ensure_ascii=False), flush=True)
    return out


def run(db: str, n_queries: int, http: bool, slow: int = 100) -> dict[str, Any]:
    """Measure ``n_queries`` with ours (and over HTTP), the first ``slow`` with the baselines."""
    from grids.addresses import search

    url = _url(db)
    eng = create_engine(url)
    result: dict[str, Any] = {}
    with eng.connect() as conn:
        conn.execute(text("SET jit = off"))  # as the service's connections run
        city = conn.execute(text("SELECT code FROM region_current WHERE level = 'city' "
                                 "ORDER BY code LIMIT 1")).scalar_one()
        dispatcher = Principal.make("bench:dispatcher", "dispatcher", Scope.of(city))
        n = conn.execute(text("SELECT count(*) FROM address WHERE valid_to IS NULL")).scalar_one()
        source = conn.execute(text("SELECT source FROM address WHERE valid_to IS NULL "
                                   "AND source LIKE 'bench.addresses scale %' LIMIT 1")).scalar()
        scale = int(source.rsplit(" ", 1)[1]) if source else 1
        entries = generate(conn, per_community=PER_COMMUNITY, scale=scale)
        queries = noisy_variants(entries, n=n_queries, seed=2026)
        result["addresses"] = n
        result["queries"] = len(queries)
        for q, _, _ in queries[:20]:  # warm the cache like a running service
            search(conn, q, principal=dispatcher)
        result["ours"] = _measure("ours", lambda q: [c["code"] for c in search(
            conn, q, principal=dispatcher)["candidates"]], queries)
        result["ours_fuzzy_pass"] = _measure("ours_fuzzy_pass", lambda q: [
            c["code"] for c in search(conn, q, principal=dispatcher, exact_first=False)[
                "candidates"]], queries[:slow])
        result["trgm_raw"] = _measure("trgm_raw", lambda q: _trgm_raw(conn, q), queries[:slow])
        result["ilike"] = _measure("ilike", lambda q: _ilike(conn, q), queries[:slow])
        conn.rollback()
    if http:
        result["http"] = _http(url, queries)
    return result


def _http(url: str, queries: list[tuple[str, str, str]]) -> dict[str, Any]:
    import httpx

    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from bench.desk import _codes, bench_account
    from tests.conftest import app_role_url, live_server

    eng = create_engine(url)
    with eng.begin() as conn:
        user, password = bench_account(conn, _codes(conn)[0])
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    with live_server(create_app(settings), timeout=600) as base, \
            httpx.Client(base_url=base) as c:
        token = c.post("/auth/token", json={"username": user,
                                            "password": password}).json()["access_token"]
        c.headers["Authorization"] = "Bearer " + token
        c.headers["Accept-Encoding"] = "gzip"
        for q, _, _ in queries[:20]:
            c.get("/addresses/search", params={"q": q})

        def over_http(q: str) -> list[str]:
            res = c.get("/addresses/search", params={"q": q})
            res.raise_for_status()
            return [x["code"] for x in res.json()["candidates"]]

        return _measure("http", over_http, queries)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--db", default="citygrid_bench_addr")
    b.add_argument("--scale", type=int, default=40)
    b.add_argument("--size", type=int, default=None,
                   help="about this many addresses in all (sets the scale from the communities)")
    b.add_argument("--existing", action="store_true",
                   help="the city is there already (e.g. citygrid_scale): no migration, no seed")
    r = sub.add_parser("run")
    r.add_argument("--db", default="citygrid_bench_addr")
    r.add_argument("--queries", type=int, default=1000)
    r.add_argument("--no-http", action="store_true")
    r.add_argument("--http-only", action="store_true")
    args = parser.parse_args()
    if args.cmd == "build":
        build(args.db, args.scale, size=args.size, existing=args.existing)
    elif args.http_only:
        with create_engine(_url(args.db)).connect() as conn:
            source = conn.execute(text("SELECT source FROM address WHERE valid_to IS NULL AND "
                                       "source LIKE 'bench.addresses scale %' LIMIT 1")).scalar()
            scale = int(source.rsplit(" ", 1)[1]) if source else 1
            entries = generate(conn, per_community=PER_COMMUNITY, scale=scale)
        _http(_url(args.db), noisy_variants(entries, n=args.queries, seed=2026))
    else:
        print(json.dumps(run(args.db, args.queries, not args.no_http), ensure_ascii=False,
                         indent=2))


if __name__ == "__main__":
    main()
