"""Stateless API processes: limits are counted once for every process, not once per process.

Three real ``citygrid serve`` commands on 127.0.0.1 over one tiny city of their own: two with one
worker and one with ``--workers 2`` (four processes). A client that spreads its requests over them,
as a load balancer would, reaches an API key's rate limit and the login throttle exactly once:
per process it would have got three or four times as many. The servers are stopped at the end
(SIGTERM, then SIGKILL of their own process groups after a bound).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from app import users
from grids.access import Principal
from tests.conftest import app_role_url, free_port, tiny_city_engine, wait_for
from tests.tiny_city import CITY

ROOT = Path(__file__).resolve().parents[2]
KEY_RATE = 6  # a minute: a lease of one request, so every request counts in PostgreSQL
LOGIN_ATTEMPTS = 4
Servers = tuple[list[str], str, list[subprocess.Popen[bytes]], Engine]


def _serve(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("citygrid")
    cmd = [exe] if exe else [sys.executable, "-c", "from app.cli import main; main()"]
    return subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group (start_new_session)
            proc.wait(timeout=10)


def _workers_of(pid: int) -> int:
    """How many uvicorn worker processes ``pid`` supervises (multiprocessing spawns them)."""
    n = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = stat.read_text().rsplit(")", 1)[1].split()[1]
            args = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        n += ppid == str(pid) and b"spawn_main" in args
    return n


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    owner = tiny_city_engine("citygrid_test_shared_limits", catalogue=True)
    with owner.begin() as conn:
        key = users.create_api_key(conn, name="shared", role="viewer", region_code=CITY,
                                   rate_limit_per_minute=KEY_RATE,
                                   principal=Principal.system())["key"]
    url = owner.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYGRID_")
           or k in ("CITYGRID_PGPORT", "CITYGRID_PGDATA")}
    env.update(CITYGRID_DATABASE_URL=app_role_url(url), CITYGRID_MIGRATION_URL=url,
               CITYGRID_BATCH_RASTER="false", CITYGRID_COVERAGE_REFRESH_S="0",
               CITYGRID_LOGIN_ATTEMPTS=str(LOGIN_ATTEMPTS), CITYGRID_LOGIN_WINDOW_S="3600",
               PYTHONPATH=str(ROOT))
    ports = [free_port() for _ in range(3)]
    procs = [_serve(env, ports[0], 1), _serve(env, ports[1], 1), _serve(env, ports[2], 2)]
    bases = [f"http://127.0.0.1:{p}" for p in ports]

    def all_up() -> bool:
        for proc in procs:
            assert proc.poll() is None, "a `citygrid serve` exited"
        try:
            return all(httpx.get(f"{b}/health", timeout=5).json()["status"] == "ok"
                       for b in bases)
        except httpx.HTTPError:
            return False

    try:
        assert wait_for(all_up, 120, every=0.5) is not None, "the servers did not start"
        yield bases, key, procs, owner
    finally:
        for proc in procs:
            _stop(proc)
        owner.dispose()


def _fresh_window(window_s: int, margin_s: float = 15) -> None:
    """Wait for the next fixed window if this one ends within ``margin_s`` (app/auth.py)."""
    left = window_s - time.time() % window_s
    if left < margin_s:
        time.sleep(left + 0.2)


def test_the_workers_flag_starts_that_many_processes(servers: Servers) -> None:
    procs = servers[2]
    assert [_workers_of(p.pid) for p in procs] == [0, 0, 2]


def test_an_api_keys_rate_limit_is_reached_once_over_all_processes(
    servers: Servers
) -> None:
    bases, key, _, _ = servers
    _fresh_window(60)
    statuses = []
    with httpx.Client(timeout=30, headers={"X-API-Key": key}) as client:
        for base, _ in zip(cycle(bases), range(3 * KEY_RATE), strict=False):
            statuses.append(client.get(f"{base}/categories").status_code)
    # per process, each of the four would have allowed KEY_RATE
    assert statuses.count(200) == KEY_RATE, statuses
    assert statuses[:KEY_RATE] == [200] * KEY_RATE
    assert set(statuses[KEY_RATE:]) == {429}, statuses
    with servers[3].connect() as conn:  # one counter for all of them, in PostgreSQL
        rows = conn.execute(text("SELECT count(*) FROM rate_counter WHERE key LIKE 'key:%'"
                                 " AND window_start > now() - interval '1 minute'")).scalar_one()
    assert rows == 1


def test_the_login_throttle_is_shared_by_all_processes(servers: Servers) -> None:
    bases, _, _, _ = servers
    _fresh_window(3600)
    username = f"nobody_{uuid.uuid4().hex[:8]}"
    statuses = [httpx.post(f"{base}/auth/token", timeout=30,
                           json={"username": username, "password": "wrong-password"}).status_code
                for base, _ in zip(cycle(bases), range(3 * LOGIN_ATTEMPTS), strict=False)]
    assert statuses == [401] * LOGIN_ATTEMPTS + [429] * (2 * LOGIN_ATTEMPTS), statuses
    with servers[3].connect() as conn:
        n = conn.execute(text("SELECT sum(n) FROM rate_counter WHERE key LIKE :k"),
                         {"k": f"login:%:{username}"}).scalar_one()
    assert n == LOGIN_ATTEMPTS  # refused attempts are not counted again
