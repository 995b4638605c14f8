"""Read replicas: the primary's CPU under a mixed heavy-read load, without and with a standby.

The same seeded list of heavy GETs (heat bins, region counts, vector tiles, incident lists, CSV
exports, the month's assessment, OGC items) is sent by ``--clients`` concurrent clients to a
``citygrid`` API process (uvicorn, one worker), twice in one run:

1. **baseline**: no ``CITYGRID_REPLICA_URLS``: every read on the primary;
2. **replica**: ``CITYGRID_REPLICA_URLS`` = the devdb standby (``python -m app.devdb replica up``,
   started here if it is not running): the heavy reads go to it.

Per run: wall time, requests per second, p50/p95 latency, how many answers came from the standby
(``X-CityGrid-Read``), and CPU seconds (user + system, from /proc) of the primary's PostgreSQL
processes, of the standby's and of the API process. The primary's figure counts its live
backends and what its exited ones used (the postmaster's ``cutime``/``cstime``), and includes
the WAL sender that feeds the standby. Read-only: nothing is written but the bench's API key.

    python -m app.devdb up citygrid && citygrid db upgrade && citygrid demo load --patrols 0
    python -m bench.replicas [--db citygrid] [--clients 4] [--requests 400]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app import devdb
from bench.common import (
    PYTHON,
    ROOT,
    cpu_seconds,
    free_port,
    machine,
    percentiles,
    process_tree,
)

CLK = os.sysconf("SC_CLK_TCK")


# -- CPU of a PostgreSQL cluster -------------------------------------------------------------------
def cluster_cpu_s(pgdata: Path) -> float:
    """CPU seconds of a cluster's processes so far: the postmaster, its live children, and the
    children it has reaped (a closed connection's backend)."""
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / CLK  # cutime + cstime
    return reaped + cpu_seconds(process_tree(pid))


# -- the workload ----------------------------------------------------------------------------------
def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    return (int((lon + 180) / 360 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def workload(engine: Any, n: int, seed: int = 20261206) -> list[str]:
    """``n`` heavy GETs over the city, the same for both runs (seeded)."""
    with engine.connect() as conn:
        x0, y0, x1, y1 = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom)"
            " AS e FROM region_current WHERE level = 'grid') s")).one()
        last = conn.execute(text("SELECT max(received_at) FROM incident")).scalar()
    last_day = (last.date() if last else date.today())
    rng = random.Random(seed)

    def bbox(span: float) -> str:
        w, h = (x1 - x0) * span, (y1 - y0) * span
        a, b = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
        return f"{a:.5f},{b:.5f},{a + w:.5f},{b + h:.5f}"

    def since(days: int) -> str:
        d = last_day - timedelta(days=rng.randint(days, 330))
        return f"{d.isoformat()}T00:00:00%2B08:00"

    def window(days: int) -> str:
        d = last_day - timedelta(days=rng.randint(days, 330))
        e = d + timedelta(days=days)
        return f"since={d.isoformat()}T00:00:00%2B08:00&until={e.isoformat()}T00:00:00%2B08:00"

    kinds = [
        lambda: f"/maps/heat?zoom={rng.choice([11, 12, 13])}&bbox={bbox(0.5)}"
                f"&shape={rng.choice(['square', 'hex'])}&{window(60)}",
        lambda: f"/maps/counts?level={rng.choice(['grid', 'community', 'street'])}"
                f"&since={since(30)}",
        lambda: "/tiles/{}/{}/{}/{}.mvt?{}".format(
            rng.choice(["bins", "incidents"]), *_tile(rng, x0, y0, x1, y1), window(30)),
        lambda: f"/incidents?limit=100&offset={rng.randint(0, 2000)}&since={since(30)}",
        lambda: f"/incidents/export.csv?{window(7)}",
        lambda: f"/analysis/month?month={_month(last_day, rng)}&level="
                f"{rng.choice(['street', 'community'])}",
        lambda: f"/ogc/collections/grids/items?bbox={bbox(0.2)}&limit=100",
    ]
    return [kinds[i % len(kinds)]() for i in range(n)]


def _tile(rng: random.Random, x0: float, y0: float, x1: float, y1: float
          ) -> tuple[int, int, int]:
    z = rng.choice([12, 13, 14])
    x, y = tile_of(rng.uniform(x0, x1), rng.uniform(y0, y1), z)
    return z, x, y


def _month(last_day: date, rng: random.Random) -> str:
    d = last_day.replace(day=1) - timedelta(days=28 * rng.randint(0, 10))
    return d.strftime("%Y-%m")


# -- the API process -------------------------------------------------------------------------------
@contextlib.contextmanager
def api(db: str, replica_url: str | None) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYGRID_")
           or k in ("CITYGRID_PGPORT", "CITYGRID_PGDATA")}
    env.update(CITYGRID_DATABASE_URL=devdb.url(db, user="citygrid_app"),
               CITYGRID_MIGRATION_URL=devdb.url(db), CITYGRID_BATCH_RASTER="false",
               CITYGRID_COVERAGE_REFRESH_S="0", PYTHONPATH=str(ROOT))
    if replica_url:
        env["CITYGRID_REPLICA_URLS"] = replica_url
    proc = subprocess.Popen(
        [PYTHON, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the API process exited")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(base + "/health", timeout=2) as res:
                if json.loads(res.read())["status"] == "ok":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the API process did not start")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def fetch(base: str, key: str, path: str) -> tuple[int, str, float]:
    req = urllib.request.Request(base + path, headers={"X-API-Key": key,
                                                       "Accept-Encoding": "gzip"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            res.read()
            return res.status, res.headers.get("x-citygrid-read", "-"), time.perf_counter() - t0
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, err.headers.get("x-citygrid-read", "-"), time.perf_counter() - t0


def measure(db: str, key: str, paths: list[str], clients: int, replica_url: str | None,
            standby_data: Path | None) -> dict[str, Any]:
    with api(db, replica_url) as (base, pid):
        # warm-up: the first of each kind of request (imports, the catalogue, plans)
        for path in paths[:7]:
            fetch(base, key, path)
        primary0 = cluster_cpu_s(devdb._pgdata())
        standby0 = cluster_cpu_s(standby_data) if standby_data else 0.0
        api0 = cpu_seconds(process_tree(pid))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            out = list(pool.map(lambda p: fetch(base, key, p), paths))
        wall = time.perf_counter() - t0
        primary = cluster_cpu_s(devdb._pgdata()) - primary0
        standby = (cluster_cpu_s(standby_data) - standby0) if standby_data else 0.0
        api_cpu = cpu_seconds(process_tree(pid)) - api0
    statuses = Counter(s for s, _, _ in out)
    return {
        "requests": len(out), "wall_s": round(wall, 2), "rps": round(len(out) / wall, 1),
        "latency_ms": percentiles([t for _, _, t in out], scale=1000),
        "statuses": dict(statuses), "read_from": dict(Counter(r for _, r, _ in out)),
        "primary_cpu_s": round(primary, 2), "standby_cpu_s": round(standby, 2),
        "api_cpu_s": round(api_cpu, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="citygrid")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=400)
    args = ap.parse_args()
    from app import users
    from grids.access import Principal

    owner = create_engine(devdb.url(args.db))
    with owner.begin() as conn:
        region = conn.execute(text(
            "SELECT code FROM region_current WHERE level = 'city' LIMIT 1")).scalar_one()
        key = users.create_api_key(conn, name=f"bench-replicas-{int(time.time())}", role="admin",
                                   region_code=region[:6], rate_limit_per_minute=1_000_000,
                                   principal=Principal.system("bench"))["key"]
        incidents = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
    paths = workload(owner, args.requests)
    owner.dispose()
    devdb.replica_up()
    replica = devdb.replica_url(args.db, user="citygrid_app")
    standby_data = devdb.replica_pgdata()
    result: dict[str, Any] = {"machine": machine(), "database": args.db, "incidents": incidents,
                              "clients": args.clients, "standby": replica}
    result["baseline_primary_only"] = measure(args.db, key, paths, args.clients, None,
                                              standby_data)
    result["with_replica"] = measure(args.db, key, paths, args.clients, replica, standby_data)
    b, r = result["baseline_primary_only"], result["with_replica"]
    result["primary_cpu_ratio"] = round(r["primary_cpu_s"] / max(b["primary_cpu_s"], 1e-9), 3)
    result["wall_ratio"] = round(r["wall_s"] / max(b["wall_s"], 1e-9), 3)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
