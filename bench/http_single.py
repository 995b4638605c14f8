"""Single lookups over HTTP: ``GET /locate`` against a trivial endpoint and a one-query-per-request
PostGIS endpoint, one uvicorn worker, load from ``wrk`` (16 connections, 1 thread).

Two trivial baselines: ``trivial`` goes through the router (FastAPI's exception and exit-stack
middleware, routing, serialising a dict), ``trivial_hot`` answers the same bytes on ``/locate``'s
own hot path (:mod:`app.hotpath`). ``/locate`` is reported against both: the first says what a
dispatcher gets compared with the framework's cheapest route, the second what the lookup and
authentication cost on top of the same path.

    python -m bench.http_single [--seconds 5] [--rounds 2]

All endpoints (the three the targets compare: trivial, locate, postgis; and the diagnostics: the
threadpool PostGIS variant and the ``/_diag`` routes of :mod:`bench.app_factory`) are measured in
interleaved rounds, so a noisy neighbour hurts them alike; req/s is total requests over total
time, p50 the mean of the rounds, p99 the worst round. The same routes are also timed in process
without a network. Every request cycles through 10,000 random points inside grids and carries
the bench's API key when the app needs one (see :mod:`bench.access`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import city
from bench.access import api_key, headers
from bench.common import (
    PIDS,
    RESULTS,
    cpu_seconds,
    process_tree,
    random_points,
    ratio,
    reloads,
    save,
    server,
    wait_raster,
)

WRK = shutil.which("wrk") or "/usr/bin/wrk"
CONNECTIONS = 16
N_PATHS = 10_000
ENDPOINTS = {  # name -> path; every request carries the same query string and headers
    "trivial": "/_baseline/trivial",
    "trivial_hot": "/_baseline/trivial_hot",  # the trivial answer on /locate's hot path
    "locate": "/locate",
    "postgis": "/_baseline/postgis",
    # diagnostics (see bench/app_factory.py)
    "postgis_sync": "/_baseline/postgis_sync",
    "diag_params": "/_diag/params",
    "diag_params_auth": "/_diag/params_auth",
    "diag_trivial_hot_auth": "/_diag/trivial_hot_auth",
    "diag_locate_raw": "/_diag/locate_raw",
}
# In process (no network): the CPU-bound routes, plus the trivial route left at the end.
INPROCESS = {**{k: v for k, v in ENDPOINTS.items() if "postgis" not in k},
             "trivial_end": "/_baseline/trivial_end"}

LUA = r"""
local reqs = {}
function init(args)
  if args[3] and args[3] ~= "" then wrk.headers["X-API-Key"] = args[3] end
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("GET", args[2] .. line)
  end
end
local i = 0
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
"""


def points_inside(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points that fall inside a grid (so /locate answers 'inside')."""
    from sqlalchemy import create_engine

    from grids.locate import load_snapshot

    engine = create_engine(city.url())
    with engine.connect() as conn:
        snap = load_snapshot(conn)
    engine.dispose()
    lon, lat = random_points(n * 4, seed=7)
    g = snap.grids.query_exact(lon, lat)
    keep = np.flatnonzero(g >= 0)[:n]
    return lon[keep], lat[keep]


def write_inputs(workdir: Path) -> tuple[Path, Path]:
    lon, lat = points_inside(N_PATHS)
    paths = workdir / "wrk_paths.txt"
    paths.write_text("".join(f"?lon={x:.7f}&lat={y:.7f}\n" for x, y in zip(lon, lat, strict=True)))
    script = workdir / "wrk_cycle.lua"
    script.write_text(LUA)
    return paths, script


def run_wrk(base: str, prefix: str, script: Path, paths: Path, seconds: float) -> dict[str, Any]:
    cmd = [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{int(round(seconds))}s", "--timeout", "5s", "--latency",
           "-s", str(script), base, "--", str(paths), prefix, api_key()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    m = re.search(r"^BENCHJSON (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk output not understood:\n{out.stdout}\n{out.stderr}")
    res = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    res["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["wrk_text"] = out.stdout
    return res


def check_answers(base: str, paths: Path) -> dict[str, Any]:
    """One request to each endpoint with the same point: all must agree on the grid."""
    from bench.common import get_json

    q = paths.read_text().splitlines()[0]
    loc = get_json(base, "/locate" + q, auth=True)
    pg = get_json(base, "/_baseline/postgis" + q)
    pgs = get_json(base, "/_baseline/postgis_sync" + q)
    grid = (loc.get("grid") or {}).get("code")
    if not (grid and grid == pg["grid"] == pgs["grid"]):
        raise RuntimeError(f"endpoints disagree on {q}: {grid} {pg} {pgs}")
    import urllib.request

    def fetch(path: str) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers())) as r:
            return r.read()

    same = 0
    for q2 in paths.read_text().splitlines()[:200]:
        want = fetch("/locate" + q2)
        for diag in ("/_diag/locate_raw",):
            if fetch(diag + q2) != want:
                raise RuntimeError(f"{diag} differs from /locate at {q2}")
        same += 1
    return {"point": q, "grid": grid, "diag_identical_bytes_points": same}


def asgi_inprocess(paths: Path, calls: int = 1000, repeat: int = 5) -> dict[str, float]:
    """Microseconds per request with no network and no load generator: the app called as an
    ASGI callable in this process, one request at a time, cycling through the same points. The
    routes take turns for ``repeat`` rounds and each keeps its best round, so a busy moment on the
    machine does not land on one route only."""
    import asyncio

    from bench.app_factory import build

    hdrs = [(b"host", b"127.0.0.1"), *((k.lower().encode(), v.encode())
                                       for k, v in headers().items())]
    queries = [q[1:].encode() for q in paths.read_text().splitlines()]

    async def run() -> dict[str, float]:
        app = build()
        out: dict[str, float] = {}
        async with app.router.lifespan_context(app):
            app.state.locator.wait_raster()

            async def call(path: str, query: bytes) -> int:
                sent: list[dict[str, Any]] = []

                async def receive() -> dict[str, Any]:
                    return {"type": "http.request", "body": b"", "more_body": False}

                async def send(message: dict[str, Any]) -> None:
                    sent.append(message)

                await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                           "method": "GET", "scheme": "http", "path": path,
                           "raw_path": path.encode(), "root_path": "", "query_string": query,
                           "headers": hdrs, "client": ("127.0.0.1", 1),
                           "server": ("127.0.0.1", 80)}, receive, send)
                return sent[0]["status"]

            for path in INPROCESS.values():
                if await call(path, queries[0]) != 200:
                    raise RuntimeError(f"{path} failed in process")
            best = dict.fromkeys(INPROCESS, float("inf"))
            for _ in range(repeat):
                for name, path in INPROCESS.items():
                    t0 = time.perf_counter()
                    for i in range(calls):
                        await call(path, queries[i % len(queries)])
                    best[name] = min(best[name], (time.perf_counter() - t0) / calls)
            out = {k: round(v * 1e6, 1) for k, v in best.items()}
        return out

    return asyncio.run(run())


def bench(base: str, seconds: float = 5.0, rounds: int = 2, warmup: float = 1.0) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths, script = write_inputs(RESULTS)
    raster = wait_raster(base)  # the background raster build would otherwise steal the CPU
    check = check_answers(base, paths)
    before = reloads(base)
    for prefix in ENDPOINTS.values():
        run_wrk(base, prefix, script, paths, warmup)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ENDPOINTS}
    pids = process_tree(PIDS[base])
    for name, prefix in [e for _ in range(rounds) for e in ENDPOINTS.items()]:
        c0 = cpu_seconds(pids)
        r = run_wrk(base, prefix, script, paths, seconds)
        r["server_cpu_s"] = cpu_seconds(pids) - c0
        runs[name].append(r)
    out: dict[str, Any] = {"connections": CONNECTIONS, "wrk_threads": 1, "seconds_per_round": seconds,
                           "rounds": rounds, "paths": N_PATHS, "check": check,
                           "raster": raster["raster"], "endpoints": {}}
    for name, rs in runs.items():
        req = sum(r["requests"] for r in rs)
        dur = sum(r["duration_us"] for r in rs) / 1e6
        errors = sum(r["non_2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
                     for r in rs)
        out["endpoints"][name] = {
            "rps": round(req / dur, 1), "requests": req,
            "rps_rounds": [round(r["rps"], 1) for r in rs],
            "p50_ms": round(float(np.mean([r["p50_us"] for r in rs])) / 1000, 2),
            "p90_ms": round(float(np.mean([r["p90_us"] for r in rs])) / 1000, 2),
            "p99_ms": round(max(r["p99_us"] for r in rs) / 1000, 2),
            "errors": errors,
            "server_cpu_us_per_req": round(sum(r["server_cpu_s"] for r in rs) / req * 1e6, 1),
        }
        if errors:
            raise RuntimeError(f"{name}: {errors} failed requests\n{rs[-1]['wrk_text']}")
    ep = out["endpoints"]
    best_pg = max(("postgis", "postgis_sync"), key=lambda k: ep[k]["rps"])
    out["postgis_best"] = best_pg
    out["ratios"] = {
        "locate_vs_trivial": ratio(ep["locate"]["rps"], ep["trivial"]["rps"]),
        "locate_vs_trivial_hot": ratio(ep["locate"]["rps"], ep["trivial_hot"]["rps"]),
        "locate_vs_trivial_hot_rounds": [ratio(a["rps"], b["rps"]) for a, b in
                                         zip(runs["locate"], runs["trivial_hot"], strict=True)],
        "locate_vs_postgis": ratio(ep["locate"]["rps"], ep[best_pg]["rps"]),
        "locate_vs_trivial_rounds": [ratio(a["rps"], b["rps"]) for a, b in
                                     zip(runs["locate"], runs["trivial"], strict=True)],
        # the same comparison by the server's CPU per request (less sensitive to neighbours)
        "locate_vs_trivial_by_cpu": ratio(ep["trivial"]["server_cpu_us_per_req"],
                                          ep["locate"]["server_cpu_us_per_req"]),
        "diag_params_vs_trivial": ratio(ep["diag_params"]["rps"], ep["trivial"]["rps"]),
        "diag_params_auth_vs_trivial": ratio(ep["diag_params_auth"]["rps"], ep["trivial"]["rps"]),
        # what authentication costs on the hot path: the same trivial answer with and without
        "diag_trivial_hot_auth_vs_trivial_hot": ratio(ep["diag_trivial_hot_auth"]["rps"],
                                                      ep["trivial_hot"]["rps"]),
        "diag_locate_raw_vs_trivial": ratio(ep["diag_locate_raw"]["rps"], ep["trivial"]["rps"]),
        "diag_locate_raw_vs_postgis": ratio(ep["diag_locate_raw"]["rps"], ep[best_pg]["rps"]),
    }
    out["targets"] = {
        "locate >= 0.85 x trivial": out["ratios"]["locate_vs_trivial"] >= 0.85,
        "locate >= 0.85 x trivial_hot": out["ratios"]["locate_vs_trivial_hot"] >= 0.85,
        "locate >= 2 x postgis": out["ratios"]["locate_vs_postgis"] >= 2.0,
    }
    after = reloads(base)
    out["snapshot_reloaded_during_run"] = after != before  # someone changed citygrid_bench
    out["wrk_sample"] = runs["locate"][-1]["wrk_text"]
    out["asgi_inprocess_us_per_request"] = asgi_inprocess(paths)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    city.ensure()
    t0 = time.perf_counter()
    with server(workers=1) as base:
        res = bench(base, args.seconds, args.rounds)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    save("http_single", res)
    print(json.dumps({k: v for k, v in res.items() if k != "wrk_sample"}, indent=2))


if __name__ == "__main__":
    main()
