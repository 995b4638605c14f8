"""Vector tiles over HTTP, as the portal fetches them: gzip, an API key, uvicorn, the product's
route (``GET /tiles/{layer}/{z}/{x}/{y}.mvt``), beside the in-process figure for the same tiles
in the same run.

    python -m bench.tiles_http [--db citygrid_tiles] [--incidents 50000] [--tiles-per-zoom 6]

The database (default ``citygrid_tiles`` in the private cluster) is the demo city with the demo
year of incidents (``--incidents`` of them), created on the first run. The tiles sampled are
those of :func:`bench.scale.sample_tiles`: per zoom z10–z16, the densest tile and random tiles
holding incidents; they are listed in the output (``sampled``), so "any tile" means these.

Both sides first fetch one tile per layer at z9 (outside the sample: the first queries of a
connection are not what a view costs). Per layer and zoom, over HTTP one request at a time
(``Accept-Encoding: gzip``, ``X-API-Key``): the *first* request of each tile (the server's
tile cache is cold for it: what a new view costs) and two more (cached). In process:
:func:`layers.maps.gzipped_tile` with ``cache=None`` (the tile's work and its compression, no
HTTP, no auth). p50/p95/max by :func:`bench.common.percentiles`; wire bytes are the gzipped
body. The incidents layer is empty below z14 (by design: bins there).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time
import urllib.request
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import database, percentiles, save, server, timed

LAYERS = ("grids", "bins", "incidents")
ZOOMS = range(10, 17)
KEY_NAME = "bench-tiles"


def ensure(db: str, incidents: int) -> str:
    """The demo city with ``incidents`` demo incidents in ``db``; its URL."""
    from app.db import migrate
    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents

    url = database(db)
    migrate(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM region)")).scalar_one():
                load_demo(conn)
            if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one():
                t0 = time.perf_counter()
                load_demo_incidents(conn, n=incidents)
                print(f"loaded {incidents:,} incidents in {time.perf_counter() - t0:.0f} s",
                      flush=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))  # the fresh city's tables too, not only incident
    finally:
        engine.dispose()
    return url


def bench_key(url: str, role: str = "dispatcher") -> str:
    """A city-wide key (a dispatcher's unless ``role``) for this database (made anew each run,
    like a portal user's credentials: the auth check is part of what is measured)."""
    from app.auth import new_api_key

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM api_key WHERE name = :n"), {"n": KEY_NAME})
            key, prefix, key_hash = new_api_key()
            conn.execute(text(
                "INSERT INTO api_key (name, prefix, key_hash, role, region_id, "
                "rate_limit_per_minute) VALUES (:n, :p, :h, :role, "
                "(SELECT id FROM region WHERE level = 'city' ORDER BY code LIMIT 1), 2000000000)"),
                {"n": KEY_NAME, "p": prefix, "h": key_hash, "role": role})
    finally:
        engine.dispose()
    return key


def fetch(base: str, path: str, key: str) -> tuple[float, int, str]:
    """Seconds, wire bytes and Content-Encoding of one GET."""
    req = urllib.request.Request(base + path, headers={"Accept-Encoding": "gzip",
                                                       "X-API-Key": key})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        encoding = resp.headers.get("Content-Encoding", "")
    return time.perf_counter() - t0, len(body), encoding


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="citygrid_tiles")
    ap.add_argument("--incidents", type=int, default=50_000)
    ap.add_argument("--tiles-per-zoom", type=int, default=6)
    args = ap.parse_args()

    from bench.scale import sample_tiles
    from grids.access import Principal
    from layers import maps

    url = ensure(args.db, args.incidents)
    key = bench_key(url)
    engine = create_engine(url)
    rng = random.Random(20261206)
    with engine.connect() as conn:
        sampled = {z: sample_tiles(conn, z, args.tiles_per_zoom, rng) for z in ZOOMS}
        n = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
    out: dict[str, Any] = {"database": args.db, "incidents": n,
                           "sampled": {f"z{z}": [f"{x}/{y}" for x, y in t]
                                       for z, t in sampled.items()},
                           "http": {}, "inprocess": {}}
    t0 = time.perf_counter()
    x9, y9 = sampled[10][0][0] // 2, sampled[10][0][1] // 2  # a tile outside the sample
    with server(workers=1, extra_env={"CITYGRID_BENCH_DATABASE_URL": url}) as base:
        for layer in LAYERS:  # warm-up: the server's first queries, not a sampled tile
            fetch(base, f"/tiles/{layer}/9/{x9}/{y9}.mvt", key)
        for layer in LAYERS:
            for z, tiles in sampled.items():
                first, again, wire, plain = [], [], [], 0
                for x, y in tiles:
                    path = f"/tiles/{layer}/{z}/{x}/{y}.mvt"
                    s, size, enc = fetch(base, path, key)
                    first.append(s)
                    wire.append(size)
                    plain += enc != "gzip"
                    for _ in range(2):
                        again.append(fetch(base, path, key)[0])
                out["http"][f"{layer}/z{z}"] = {
                    "first_ms": percentiles(first, scale=1000),
                    "cached_ms": percentiles(again, scale=1000),
                    "max_wire_bytes": max(wire), "not_gzipped": plain}
    admin = Principal.system("bench")
    with engine.connect() as conn:
        conn.execute(text("SET default_transaction_read_only = on"))
        conn.commit()
        for layer in LAYERS:  # the same warm-up
            maps.gzipped_tile(conn, layer, 9, x9, y9, principal=admin, cache=None)
        for layer in LAYERS:
            for z, tiles in sampled.items():
                runs: list[float] = []
                for x, y in tiles:
                    r, _ = timed(functools.partial(maps.gzipped_tile, conn, layer, z, x, y,
                                                   principal=admin, cache=None), 3)
                    runs += r
                out["inprocess"][f"{layer}/z{z}"] = {"no_cache_ms": percentiles(runs)}
    engine.dispose()
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["worst_p95_ms"] = {
        "http_first": max(v["first_ms"]["p95"] for v in out["http"].values()),
        "http_cached": max(v["cached_ms"]["p95"] for v in out["http"].values()),
        "inprocess_no_cache": max(v["no_cache_ms"]["p95"] for v in out["inprocess"].values())}
    save("tiles_http", out)
    print(json.dumps({k: v for k, v in out.items() if k != "sampled"}, indent=1))
    print("sampled:", json.dumps(out["sampled"]))


if __name__ == "__main__":
    main()
