"""Batch location over HTTP: 1,000,000 points as CSV to ``POST /locate/batch`` on one uvicorn
worker, wall time from the first byte sent to the last byte received.

    python -m bench.batch_http

Two bodies: the benchmark's 1M uniform points in the city's bounding box (57 % fall outside the
city: the slow fallback path) and 1M points that all fall inside grids. Baselines in the same run:
``POST /_baseline/sink`` (reads the same body, streams back as many bytes as the locator answered:
the HTTP transport floor), and :func:`grids.batch.locate_csv` in process on the same body. Each is
the best of two runs (all runs are kept in the results).
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bench import city
from bench.access import headers, principal
from bench.batch_inprocess import service_snapshot
from bench.common import N_POINTS, random_points, ratio, reloads, save, server, wait_raster
from grids.batch import locate_csv
from grids.locate import Snapshot

TARGET_S = 5.0


def csv_body(lon: np.ndarray, lat: np.ndarray) -> bytes:
    ids = np.arange(lon.size)
    lines = "\n".join(f"{i},{x:.7f},{y:.7f}" for i, x, y in
                      zip(ids.tolist(), lon.tolist(), lat.tolist(), strict=True))
    return ("id,lon,lat\n" + lines + "\n").encode()


def post(base: str, path: str, body: bytes, timeout: float = 120.0) -> dict[str, Any]:
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.connect()
    t0 = time.perf_counter()
    conn.request("POST", path, body=body, headers={"Content-Type": "text/csv", **headers()})
    resp = conn.getresponse()
    t_head = time.perf_counter()
    size = lines = 0
    while chunk := resp.read(1 << 20):
        size += len(chunk)
        lines += chunk.count(b"\n")
    t1 = time.perf_counter()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}")
    return {"wall_s": t1 - t0, "headers_s": t_head - t0, "bytes_out": size, "lines": lines,
            "rows_header": resp.getheader("X-CityGrid-Rows"),
            "bad_rows_header": resp.getheader("X-CityGrid-Bad-Rows")}


def in_process(snap: Snapshot, body: bytes) -> float:
    t0 = time.perf_counter()
    res = locate_csv(snap, body, crs="EPSG:4326", principal=principal())
    for _ in res.chunks:
        pass
    return time.perf_counter() - t0


def bench(base: str, n: int = N_POINTS, repeat: int = 2) -> dict[str, Any]:
    snap, _ = service_snapshot()  # as a worker holds it, for the in-process comparison
    lon, lat = random_points(n)
    clon, clat = random_points(3 * n, seed=11)
    inside = np.flatnonzero(snap.grids.query(clon, clat) >= 0)[:n]
    bodies = {"bbox": csv_body(lon, lat), "inside": csv_body(clon[inside], clat[inside])}
    wait_raster(base)
    before = reloads(base)
    warm = post(base, "/locate/batch", bodies["bbox"][:400_000].rsplit(b"\n", 1)[0] + b"\n")
    out: dict[str, Any] = {"points": n, "target_s": TARGET_S, "warmup_s": round(warm["wall_s"], 3),
                           "bodies": {}}
    for name, body in bodies.items():
        tries = []
        for _ in range(repeat):  # best of ``repeat``: the machine is shared
            r = post(base, "/locate/batch", body)
            if r["rows_header"] != str(n) or r["bad_rows_header"] != "0" \
                    or r["lines"] != n + 1:
                raise RuntimeError(f"{name}: unexpected answer {r}")
            tries.append(r)
        r = min(tries, key=lambda t: t["wall_s"])
        t_in = min(in_process(snap, body) for _ in range(repeat))
        sink = min((post(base, f"/_baseline/sink?size={r['bytes_out']}", body)
                    for _ in range(repeat)), key=lambda t: t["wall_s"])
        out["bodies"][name] = {
            "mb_in": round(len(body) / 1e6, 1), "mb_out": round(r["bytes_out"] / 1e6, 1),
            "wall_s": round(r["wall_s"], 3), "to_headers_s": round(r["headers_s"], 3),
            "wall_s_runs": [round(t["wall_s"], 3) for t in tries],
            "points_per_s": round(n / r["wall_s"]),
            "rows": int(r["rows_header"]), "bad_rows": int(r["bad_rows_header"]),
            "in_process_locate_csv_s": round(t_in, 3),
            "in_process_share": ratio(t_in, r["wall_s"]),
            "sink_baseline_s": round(sink["wall_s"], 3),
            "sink_share": ratio(sink["wall_s"], r["wall_s"]),
            "under_target": r["wall_s"] < TARGET_S,
        }
    after = reloads(base)
    out["snapshot_reloaded_during_run"] = after != before  # someone changed citygrid_bench
    out["targets"] = {f"{k}: 1M points as CSV < {TARGET_S:g} s": v["under_target"]
                      for k, v in out["bodies"].items()}
    return out


def main() -> None:
    city.ensure()
    t0 = time.perf_counter()
    with server(workers=1) as base:
        res = bench(base)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    save("batch_http", res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
