"""Shared helpers: points, the uvicorn server under test, timing and results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
SEED = 20240601
N_POINTS = 1_000_000
PIDS: dict[str, int] = {}  # base URL -> uvicorn main process id (for profiling)


def random_points(n: int = N_POINTS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points in the city's lon/lat bounding box (fixed seed)."""
    from bench.city import city_bbox

    x0, y0, x1, y1 = city_bbox()
    rng = np.random.default_rng(seed)
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)


def percentile(runs: list[float] | np.ndarray, q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``runs`` (0 < q < 100): the smallest value with at
    least ``q`` % of the runs at or below it; ``q == 50`` is the median. The one percentile rule
    every bench uses (no interpolation: a reported p95 or p99 is a time that was measured).

    >>> percentile([float(i) for i in range(1, 101)], 95), percentile([3.0, 1.0, 2.0, 4.0], 50)
    (95.0, 2.5)
    >>> percentile([1.0, 2.0, 3.0, 100.0], 99)
    100.0
    """
    import math
    import statistics

    s = sorted(float(v) for v in runs)
    if not s:
        raise ValueError("no runs")
    if q == 50:
        return float(statistics.median(s))
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def percentiles(runs: list[float] | np.ndarray, *, scale: float = 1.0, digits: int = 1,
                high: float = 95) -> dict[str, float]:
    """p50, p``high`` (95 unless asked) and max of ``runs`` by :func:`percentile`, each
    multiplied by ``scale`` (1000 turns seconds into ms).

    >>> percentiles([float(i) for i in range(1, 101)])
    {'p50': 50.5, 'p95': 95.0, 'max': 100.0, 'n': 100}
    >>> percentiles([0.001, 0.002, 0.010], scale=1000, high=99)
    {'p50': 2.0, 'p99': 10.0, 'max': 10.0, 'n': 3}
    """
    s = sorted(float(v) for v in runs)
    if not s:
        raise ValueError("no runs")
    return {"p50": round(percentile(s, 50) * scale, digits),
            f"p{high:g}": round(percentile(s, high) * scale, digits),
            "max": round(s[-1] * scale, digits), "n": len(s)}


def timed(fn: Callable[[], Any], repeat: int, *, scale: float = 1000.0, warm: bool = False
          ) -> tuple[list[float], Any]:
    """Run ``fn`` ``repeat`` times (after one untimed run if ``warm``): each run's wall time
    times ``scale`` (ms by default), and the last result."""
    out, times = fn() if warm else None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * scale)
    return times, out


def p50_p95(times: list[float], unit: str = "ms") -> str:
    """``'p50 … ms, p95 … ms'`` for a line of a bench's printout (:func:`percentile`)."""
    return f"p50 {percentile(times, 50):.1f} {unit}, p95 {percentile(times, 95):.1f} {unit}"


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, list[float], Any]:
    """Best wall time of ``repeat`` runs, all times, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(base: str, path: str, timeout: float = 5.0, auth: bool = False) -> Any:
    req = urllib.request.Request(base + path)
    if auth:
        from bench.access import headers

        for k, v in headers().items():
            req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def server(workers: int = 1, extra_env: dict[str, str] | None = None,
           ready_timeout: float = 60.0) -> Iterator[str]:
    """Run uvicorn on 127.0.0.1 with the bench app; yield its base URL; stop it afterwards."""
    from bench.access import api_key

    api_key()  # create the bench's key before the app loads its directory of keys
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "--factory", "bench.app_factory:build",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           "--log-level", "warning", "--timeout-keep-alive", "60"]
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(ROOT)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / f"uvicorn-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    PIDS[base] = proc.pid
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}; see {log.name}")
            try:
                if get_json(base, "/health", timeout=1).get("status") == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not become ready")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn's workers), from /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (all their threads), from /proc."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_idle(base: str, timeout: float = 60.0, interval: float = 0.3,
              busy_share: float = 0.15) -> float:
    """Block until the server's processes use under ``busy_share`` of a core for two intervals
    in a row (background work such as raster builds is done). Returns the seconds waited."""
    t0 = time.monotonic()
    pids = process_tree(PIDS[base])
    quiet = 0
    last = cpu_seconds(pids)
    while quiet < 2:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the server did not become idle")
        time.sleep(interval)
        now = cpu_seconds(pids)
        quiet = quiet + 1 if now - last < busy_share * interval else 0
        last = now
    return time.monotonic() - t0


def wait_raster(base: str, timeout: float = 60.0) -> dict[str, Any]:
    """Block until this worker's batch raster is built (``/locate/status`` raster cells > 0) and
    the server has finished its background work (``/locate/status`` shows the grids' raster only;
    the service may build more after it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get_json(base, "/locate/status", auth=True)
        if (status.get("raster") or {}).get("cells", 0) > 0:
            wait_idle(base, timeout=max(1.0, deadline - time.monotonic()))
            return status
        time.sleep(0.1)
    raise RuntimeError("the batch raster was not built in time")


def reloads(base: str) -> tuple[int, str]:
    """The worker's reload counter and snapshot time: if they change during a measurement,
    something changed ``citygrid_bench`` meanwhile (the bench reports it)."""
    status = get_json(base, "/locate/status", auth=True)
    return int(status.get("reloads", 0)), str(status.get("loaded_at"))


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def database(db: str) -> str:
    """The owner URL of database ``db`` in the private cluster, created (empty) if missing."""
    from app import devdb

    subprocess.run([sys.executable, "-m", "app.devdb", "up", db], check=True,
                   stdout=subprocess.DEVNULL)
    return devdb.url(db)
