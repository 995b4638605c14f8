"""Freshness: a primary-worker change committed by ``psql`` must reach every API worker.

    python -m bench.freshness [--rounds 5]

uvicorn runs with ``--workers 2``. Before measuring, keep-alive connections are opened until each
worker holds one (a worker is recognised by its snapshot's ``loaded_at`` in ``/locate/status``);
a keep-alive connection stays with the worker that accepted it, so polling ``/locate`` on those
connections asks each worker in turn. Each round:

1. ``psql`` ends the grid's primary assignment and inserts one for another (available) worker, in
   one transaction;
2. both connections poll ``/locate`` at the grid's point until each names the new worker, then
   20 more answers each must agree (a flip back would be counted);
3. the change is undone the same way (``psql``) and timed the same way;
4. before the next step, both workers have rebuilt their rasters and are idle again (so the
   next change is measured on its own; the time this takes is reported too).

Times are from the moment ``psql`` exits (the commit is acknowledged) and, as an upper bound, from
the moment ``psql`` is started. The data are restored even if the run fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from sqlalchemy import create_engine

from bench import city
from bench.access import headers
from bench.common import random_points, save, server, wait_idle
from grids.locate import load_snapshot

TARGET_S = 1.0
CONFIRM = 20
TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.01  # between polling rounds: the poller must not starve the reload threads
PSQL = ["psql", "-h", "127.0.0.1", "-p", "54329", "-U", "citygrid", "-d", city.DBNAME,
        "-v", "ON_ERROR_STOP=1", "-tAq"]


def psql(sql: str) -> tuple[list[str], float, float]:
    t0 = time.perf_counter()
    out = subprocess.run([*PSQL, "-c", sql], capture_output=True, text=True, timeout=30)
    t1 = time.perf_counter()
    if out.returncode:
        raise RuntimeError(f"psql failed: {out.stderr}")
    return [ln for ln in out.stdout.split() if ln], t0, t1


class Pinned:
    """A keep-alive connection, hence pinned to one uvicorn worker."""

    def __init__(self, base: str) -> None:
        u = urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        self.headers = headers()

    def get(self, path: str) -> Any:
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status} {body[:200]!r}")
        return json.loads(body)

    def close(self) -> None:
        self.conn.close()


def one_per_worker(base: str, workers: int = 2, tries: int = 64) -> list[Pinned]:
    found: dict[str, Pinned] = {}
    spare = []
    for _ in range(tries):
        c = Pinned(base)
        key = c.get("/locate/status")["loaded_at"]
        if key in found:
            spare.append(c)
        else:
            found[key] = c
        if len(found) == workers:
            break
    for c in spare:
        c.close()
    if len(found) < workers:
        raise RuntimeError(f"reached only {len(found)} of {workers} workers")
    return list(found.values())


def wait_rasters(base: str, conns: list[Pinned], timeout: float = 60.0) -> float:
    """Until both workers show their raster and the server is idle again (the service may build
    more than ``/locate/status`` shows); returns the seconds waited."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    for c in conns:
        while (c.get("/locate/status").get("raster") or {}).get("cells", 0) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("raster not rebuilt in time")
            time.sleep(0.05)
    wait_idle(base, timeout=max(1.0, deadline - time.monotonic()))
    return time.monotonic() - t0


def poll(conns: list[Pinned], path: str, want: str, t_start: float,
         t_commit: float) -> dict[str, Any]:
    first: list[float | None] = [None] * len(conns)
    after = [0] * len(conns)
    flips = requests = 0
    while True:
        for i, c in enumerate(conns):
            code = (c.get(path).get("responsible") or {}).get("code")
            now = time.perf_counter()
            requests += 1
            if code == want:
                if first[i] is None:
                    first[i] = now
                else:
                    after[i] += 1
            elif first[i] is not None:
                flips += 1
            if now - t_commit > TIMEOUT_S:
                raise RuntimeError(f"workers still answer the old worker after {TIMEOUT_S} s")
        if all(n >= CONFIRM for n in after):
            break
        time.sleep(POLL_INTERVAL_S)
    done = [f for f in first if f is not None]
    return {"per_worker_s": [round(f - t_commit, 4) for f in done],
            "all_workers_s": round(max(done) - t_commit, 4),
            "all_workers_from_psql_start_s": round(max(done) - t_start, 4),
            "flips": flips, "requests": requests}


def pick_grids(rounds: int) -> list[dict[str, Any]]:
    """Grids whose answer is their own available primary, each with a point inside it and another
    available full-time worker to move in."""
    engine = create_engine(city.url())
    with engine.connect() as conn:
        snap = load_snapshot(conn)
    engine.dispose()
    lon, lat = random_points(20_000, seed=99)
    g = snap.grids.query_exact(lon, lat)
    picks: list[dict[str, Any]] = []
    used: set[int] = set()
    for i in np.flatnonzero(g >= 0):
        region = int(snap.grid_ids[g[i]])
        if region in used:
            continue
        ans = snap.answer(region)
        if ans["fallback"] is None and ans["responsible"]:
            picks.append({"grid": snap.regions[region].code, "lon": float(lon[i]),
                          "lat": float(lat[i]), "old": ans["responsible"]["code"]})
            used.add(region)
        if len(picks) == 2 * rounds:
            break
    # The incoming worker: the primary of another picked grid (available by construction).
    out = []
    for k in range(rounds):
        a, b = picks[2 * k], picks[2 * k + 1]
        out.append({**a, "new": b["old"]})
    return out


def change_sql(p: dict[str, Any]) -> str:
    return (
        "BEGIN; "
        "UPDATE assignment SET valid_to = now() WHERE duty = 'primary' AND valid_to IS NULL "
        f"AND region_id = (SELECT id FROM region WHERE code = '{p['grid']}') RETURNING id; "
        "INSERT INTO assignment (staff_id, region_id, duty, valid_from) VALUES ("
        f"(SELECT id FROM staff WHERE code = '{p['new']}'), "
        f"(SELECT id FROM region WHERE code = '{p['grid']}'), 'primary', now()) RETURNING id; "
        "COMMIT;")


def restore_sql(old_id: str, new_id: str) -> str:
    return (f"BEGIN; DELETE FROM assignment WHERE id = {int(new_id)}; "
            f"UPDATE assignment SET valid_to = NULL WHERE id = {int(old_id)}; COMMIT;")


def reload_cost() -> dict[str, float]:
    """What a worker's reload costs, in process and alone: the full snapshot; the part of it an
    assignment change actually needs (the staff/assignment query as ``load_snapshot`` runs it);
    the same query read as plain psycopg tuples; and the same for two regions only."""
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from grids.locate import _IN_FORCE

    staff_sql = ("SELECT a.region_id, a.duty, s.code, s.name, s.phone, s.role, s.status "
                 "FROM assignment a JOIN staff s ON s.id = a.staff_id "
                 f"WHERE {_IN_FORCE.format(t='a')} "
                 "ORDER BY CASE s.status WHEN 'available' THEN 0 ELSE 1 END, s.code")
    engine = create_engine(city.url())
    with engine.connect() as conn:
        load_snapshot(conn)
        t0 = time.perf_counter()
        load_snapshot(conn)
        t1 = time.perf_counter()
        rows = conn.execute(text(staff_sql), {"at": None}).mappings().all()
        [dict(r) for r in rows]
        t2 = time.perf_counter()
    engine.dispose()
    dsn = make_url(city.url()).set(drivername="postgresql").render_as_string(hide_password=False)
    plain = staff_sql.replace("CAST(:at AS timestamptz)", "CAST(NULL AS timestamptz)")
    with psycopg.connect(dsn) as pg:
        pg.execute(plain).fetchall()
        t3 = time.perf_counter()
        pg.execute(plain).fetchall()
        t4 = time.perf_counter()
        two = plain.replace("WHERE ", "WHERE a.region_id = ANY(%s) AND ", 1)
        pg.execute(two, ([1, 2],)).fetchall()
        t5 = time.perf_counter()
    return {"load_snapshot_s": round(t1 - t0, 3), "staff_query_only_s": round(t2 - t1, 3),
            "staff_query_psycopg_tuples_s": round(t4 - t3, 3),
            "staff_query_two_regions_s": round(t5 - t4, 4)}


def bench(base: str, rounds: int = 5) -> dict[str, Any]:
    picks = pick_grids(rounds)
    cost = reload_cost()
    conns = one_per_worker(base)
    wait_rasters(base, conns)
    busy: list[float] = []  # after each step: until both workers are idle again
    samples: list[dict[str, Any]] = []
    pending: tuple[str, str] | None = None
    try:
        for p in picks:
            path = f"/locate?lon={p['lon']:.8f}&lat={p['lat']:.8f}"
            for c in conns:  # both workers answer the old worker before the change
                got = (c.get(path).get("responsible") or {}).get("code")
                if got != p["old"]:
                    raise RuntimeError(f"{p['grid']}: expected {p['old']}, got {got}")
            ids, t0, t1 = psql(change_sql(p))
            pending = (ids[0], ids[1])
            samples.append({"step": "change", "grid": p["grid"],
                            **poll(conns, path, p["new"], t0, t1)})
            busy.append(time.perf_counter() - t1 + wait_rasters(base, conns))
            _, t0, t1 = psql(restore_sql(*pending))
            pending = None
            samples.append({"step": "restore", "grid": p["grid"],
                            **poll(conns, path, p["old"], t0, t1)})
            busy.append(time.perf_counter() - t1 + wait_rasters(base, conns))
    finally:
        if pending:
            psql(restore_sql(*pending))
        for c in conns:
            c.close()
    worst = max(s["all_workers_s"] for s in samples)
    return {
        "workers": len(conns), "rounds": rounds, "poll_interval_s": POLL_INTERVAL_S,
        "reload_cost_in_process": cost, "samples": samples,
        "all_workers_s": {"median": round(float(np.median([s["all_workers_s"] for s in samples])), 4),
                          "max": worst},
        "first_worker_s_median": round(float(np.median(
            [min(s["per_worker_s"]) for s in samples])), 4),
        "all_workers_from_psql_start_s_max": max(s["all_workers_from_psql_start_s"]
                                                 for s in samples),
        "flips": sum(s["flips"] for s in samples),
        # from the commit until both workers are idle again (reload + rasters), upper bound
        "busy_after_change_s_median": round(float(np.median(busy)), 2),
        "targets": {f"both workers fresh < {TARGET_S:g} s after commit (worst of "
                    f"{len(samples)})": worst < TARGET_S},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    city.ensure()
    t0 = time.perf_counter()
    with server(workers=2) as base:
        res = bench(base, args.rounds)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    save("freshness", res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
