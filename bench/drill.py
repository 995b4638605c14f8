"""The load and outage drill: a 2-worker server on 127.0.0.1, hit the way a bad day would.

    python -m bench.drill [--outage-s 20]

Not in CI (about a minute and a half, and it stops the private PostgreSQL cluster for
``--outage-s`` seconds). It targets only 127.0.0.1, a database of its own (``citygrid_drill``,
the tiny hand-drawn city of ``tests/tiny_city.py`` with the incident catalogue, rebuilt each run)
and the private cluster of ``app/devdb.py``; a watchdog ends it after ``DEADLINE_S`` whatever
happens, and the cluster is always started again on the way out. It prints:

1. idempotency: 200 concurrent intakes of 50 (source, external id) pairs → incidents made, and
   whether every retry got its pair's id;
2. 200 concurrent requests (``/locate``, ``GET /incidents/{id}``, ``POST /incidents``) → 5xx;
3. ``/locate`` p50/p99 alone, then while two XLSX zip bombs (~300 kB → 100 MB) are uploaded
   again and again, and what the uploads were answered;
4. an outage: writers and lookups run while PostgreSQL is stopped for ``--outage-s`` s →
   lookups answered (and marked stale), the slowest write refusal, the first write after the
   restart, and acknowledged writes lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from bench.common import percentile

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # the only host this drill talks to
DBNAME = "citygrid_drill"
DEADLINE_S = 300


def _dbs() -> tuple[str, str]:
    """Owner and application-role URLs of the drill's database, created fresh."""
    from app import devdb
    from app.db import migrate

    owner = devdb.url(DBNAME)
    admin = create_engine(owner.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DBNAME}"'))
    admin.dispose()
    migrate(owner)
    from sqlalchemy.engine import make_url

    return owner, make_url(owner).set(username="citygrid_app").render_as_string(
        hide_password=False)


def _prepare(owner: str) -> str:
    from app import users
    from grids.access import Principal
    from layers.incidents import catalogue
    from tests.tiny_city import CITY, write_tiny_city

    engine = create_engine(owner)
    with engine.begin() as conn:
        write_tiny_city(conn)
        catalogue.seed(conn)
        key = users.create_api_key(conn, name="drill", role="admin", region_code=CITY,
                                   rate_limit_per_minute=100_000_000,
                                   principal=Principal.system("drill"))["key"]
    engine.dispose()
    return key


class Server:
    def __init__(self, app_url: str, owner: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.base = f"http://{HOST}:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CITYGRID_DATABASE_URL": app_url,
               "CITYGRID_MIGRATION_URL": owner, "CITYGRID_BATCH_RASTER": "false",
               "CITYGRID_COVERAGE_REFRESH_S": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", HOST,
             "--port", str(self.port), "--workers", "2", "--no-access-log",
             "--log-level", "error"], env=env, cwd=ROOT, start_new_session=True)

    def wait(self, key: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(self.base, key, "GET", "/health", timeout=2)[0] == 200:
                    time.sleep(2)  # both workers' locators loaded
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the drill server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def call(base: str, key: str, method: str, path: str, body: Any = None, *,
         raw: bytes | None = None, ctype: str = "application/json",
         timeout: float = 30) -> tuple[int, Any, float]:
    """(status, JSON body, seconds)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, method=method, data=data,
                                 headers={"X-API-Key": key, "content-type": ctype})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            out = res.read()
            status = res.status
    except urllib.error.HTTPError as err:
        out, status = err.read(), err.code
    except OSError:
        return 0, None, time.perf_counter() - t0  # no answer at all
    try:
        parsed = json.loads(out or b"null")
    except ValueError:
        parsed = None
    return status, parsed, time.perf_counter() - t0


def report(source: str, external_id: str, lon: float, lat: float) -> dict[str, Any]:
    return {"source": source, "external_id": external_id, "category": "E0101", "lon": lon,
            "lat": lat}


def drill_idempotency(base: str, key: str) -> dict[str, Any]:
    from tests.tiny_city import at

    lon, lat = at(0.5, 0.5)

    def one(i: int) -> tuple[int, int, Any]:
        status, body, _ = call(base, key, "POST", "/incidents",
                               report("citizen_app", f"idem-{i % 50}", lon, lat))
        return i % 50, status, body

    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, range(200)))
    statuses = Counter(s for _, s, _ in results)
    ids: dict[int, set[int]] = {}
    for pair, status, body in results:
        if status in (200, 201):
            ids.setdefault(pair, set()).add(body["id"])
    return {"requests": 200, "pairs": 50, "created": statuses[201], "retries_200": statuses[200],
            "other": {k: v for k, v in statuses.items() if k not in (200, 201)},
            "every_retry_got_the_id": len(ids) == 50 and all(len(v) == 1 for v in ids.values())}


def drill_mix(base: str, key: str) -> dict[str, Any]:
    from tests.tiny_city import at

    lon, lat = at(1.5, 0.5)
    status, first, _ = call(base, key, "POST", "/incidents", report("police_110", "mix-0",
                                                                    lon, lat))
    assert status in (200, 201), first

    def one(i: int) -> tuple[str, int, float]:
        kind = ("locate", "read", "write")[i % 3]
        if kind == "locate":
            status, _, t = call(base, key, "GET", f"/locate?lon={lon}&lat={lat}")
        elif kind == "read":
            status, _, t = call(base, key, "GET", f"/incidents/{first['id']}")
        else:
            status, _, t = call(base, key, "POST", "/incidents",
                                report("police_110", f"mix-{time.time_ns()}-{i}", lon, lat))
        return kind, status, t

    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, range(600)))
    statuses = Counter(s for _, s, _ in results)
    times = np.array([t for _, _, t in results])
    return {"requests": len(results), "concurrency": 200, "statuses": dict(statuses),
            "5xx": sum(v for k, v in statuses.items() if k >= 500 or k == 0),
            "p50_ms": round(percentile(times, 50) * 1000, 1),
            "p99_ms": round(percentile(times, 99) * 1000, 1)}


def _locate_times(base: str, key: str, seconds: float) -> list[float]:
    from tests.tiny_city import at

    lon, lat = at(0.5, 0.5)
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, _, t = call(base, key, "GET", f"/locate?lon={lon}&lat={lat}", timeout=10)
        out.append(t if status == 200 else float("inf"))
    return out


def drill_zip_bombs(base: str, key: str) -> dict[str, Any]:
    from tests.grids.test_upload_limits import zip_bomb

    bomb = zip_bomb(100)
    alone = _locate_times(base, key, 3)
    stop = threading.Event()
    answers: Counter[int] = Counter()
    slowest = [0.0]

    def upload() -> None:
        while not stop.is_set():
            status, _, t = call(base, key, "POST", "/incidents/bulk", raw=bomb, timeout=120,
                                ctype="application/vnd.openxmlformats-officedocument."
                                      "spreadsheetml.sheet")
            answers[status] += 1
            slowest[0] = max(slowest[0], t)

    uploaders = [threading.Thread(target=upload) for _ in range(2)]
    for u in uploaders:
        u.start()
    under = _locate_times(base, key, 5)
    stop.set()
    for u in uploaders:
        u.join(130)

    def pct(ts: list[float], q: float) -> float:
        return round(percentile(ts, q) * 1000, 2)

    return {"bomb_bytes": len(bomb), "uploads": dict(answers),
            "slowest_upload_ms": round(slowest[0] * 1000, 1),
            "locate_alone": {"n": len(alone), "p50_ms": pct(alone, 50), "p99_ms": pct(alone, 99)},
            "locate_under_bombs": {"n": len(under), "p50_ms": pct(under, 50),
                                   "p99_ms": pct(under, 99)}}


def drill_outage(base: str, key: str, owner: str, outage_s: float) -> dict[str, Any]:
    from tests.tiny_city import at

    lon, lat = at(0.5, 0.5)
    stop = threading.Event()
    lock = threading.Lock()
    acked: list[str] = []
    phase = {"now": "before"}
    writes: dict[str, Counter[int]] = {"before": Counter(), "during": Counter(),
                                       "after": Counter()}
    refusal_s: list[float] = []
    lookups: dict[str, Counter[str]] = {"before": Counter(), "during": Counter(),
                                        "after": Counter()}
    first_ok_after: list[float] = []
    restarted = [0.0]

    def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ext = f"outage-{w}-{n}"
            p = phase["now"]
            status, _, t = call(base, key, "POST", "/incidents",
                                report("hotline_12345", ext, lon, lat), timeout=10)
            with lock:
                writes[p][status] += 1
                if status in (200, 201):
                    acked.append(ext)
                    if p == "after" and not first_ok_after:
                        first_ok_after.append(time.monotonic() - restarted[0])
                elif status == 503 and p == "during":
                    refusal_s.append(t)
            time.sleep(0.02)

    def reader() -> None:
        while not stop.is_set():
            p = phase["now"]
            status, body, _ = call(base, key, "GET", f"/locate?lon={lon}&lat={lat}", timeout=10)
            with lock:
                if status == 200:
                    lookups[p]["stale" if body.get("stale") else "fresh"] += 1
                else:
                    lookups[p][f"http_{status}"] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    phase["now"] = "during"  # from the moment the stop is asked (pg_ctl -m fast)
    subprocess.run([sys.executable, "-m", "app.devdb", "down"], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    time.sleep(outage_s)
    subprocess.run([sys.executable, "-m", "app.devdb", "up"], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    restarted[0] = time.monotonic()
    phase["now"] = "after"
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(15)
    engine = create_engine(owner)
    with engine.connect() as conn:
        stored = Counter(conn.execute(text(
            "SELECT external_id FROM incident WHERE source = 'hotline_12345' "
            "AND external_id LIKE 'outage-%'")).scalars())
    engine.dispose()
    return {"outage_s": outage_s,
            "writes": {k: dict(v) for k, v in writes.items()},
            "write_refusal_ms": {
                "p50": round(percentile(refusal_s, 50) * 1000, 1),
                "p99": round(percentile(refusal_s, 99) * 1000, 1),
                "max": round(max(refusal_s) * 1000, 1)} if refusal_s else None,
            "first_write_ok_after_restart_s": round(first_ok_after[0], 2) if first_ok_after
            else None,
            "lookups": {k: dict(v) for k, v in lookups.items()},
            "acknowledged": len(acked),
            "lost": sum(1 for e in acked if stored[e] == 0),
            "duplicated": sum(1 for n in stored.values() if n > 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage-s", type=float, default=20.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("drill")))
    signal.alarm(DEADLINE_S)
    owner, app_url = _dbs()
    key = _prepare(owner)
    server = Server(app_url, owner)
    results: dict[str, Any] = {}
    try:
        server.wait(key)
        for name, run in (("idempotency", lambda: drill_idempotency(server.base, key)),
                          ("mix_200", lambda: drill_mix(server.base, key)),
                          ("zip_bombs", lambda: drill_zip_bombs(server.base, key)),
                          ("outage", lambda: drill_outage(server.base, key, owner,
                                                          args.outage_s))):
            results[name] = run()
            print(name, json.dumps(results[name], ensure_ascii=False), flush=True)
    finally:
        signal.alarm(0)
        server.stop()
        subprocess.run([sys.executable, "-m", "app.devdb", "up"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "drill.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
