"""Under load a worker answers, or refuses fast with Retry-After; it never stalls into 500s.

Against a real server (uvicorn in a thread, one worker) on a tiny city of its own:

- 200 concurrent intakes of 50 (source, external id) pairs, mixed with reads, on a small pool:
  exactly 50 incidents, every retry told that incident's id, no 5xx (before app/backpressure.py
  the thread pool and the connection pool starved each other: 500s after 30 s);
- over the in-flight limit and its queue: a 503 ``server_busy`` with ``Retry-After`` at once;
- a statement timeout is called a statement timeout (it was "the database is unreachable").
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app import users
from app.main import create_app
from app.settings import ApiSettings, DatabaseSettings, Settings
from grids.access import Principal
from tests.conftest import app_role_url, live_server, tiny_city_engine, wait_for
from tests.tiny_city import CITY, at


@pytest.fixture(scope="module")
def city() -> Iterator[tuple[Engine, str]]:
    engine = tiny_city_engine("citygrid_test_backpressure", catalogue=True)
    with engine.begin() as conn:
        key = users.create_api_key(conn, name="load", role="admin", region_code=CITY,
                                   rate_limit_per_minute=1_000_000,
                                   principal=Principal.system())["key"]
    yield engine, key
    engine.dispose()


def _settings(engine: Engine, *, db: dict[str, Any] | None = None,
              api: dict[str, Any] | None = None) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    return Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url,
                                        **(db or {})),
                    api=ApiSettings(batch_raster=False, coverage_refresh_s=0, **(api or {})))


def call(base: str, key: str, method: str, path: str, body: Any = None,
         timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": key, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, dict(res.headers), json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


def test_200_concurrent_intakes_and_reads_on_a_small_pool(city) -> None:
    engine, key = city
    app = create_app(_settings(engine, db={"pool_size": 3, "pool_overflow": 2}))
    lon, lat = at(0.5, 0.5)
    with live_server(app) as base:
        status, _, first = call(base, key, "POST", "/incidents", {
            "source": "police_110", "external_id": "seed", "category": "E0101",
            "lon": lon, "lat": lat})
        assert status == 201

        def one(i: int) -> tuple[int, str, Any]:
            if i % 4 == 3:
                status, _, body = call(base, key, "GET", f"/incidents/{first['id']}")
                return status, "read", body
            status, _, body = call(base, key, "POST", "/incidents", {
                "source": "citizen_app", "external_id": f"load-{i % 50}", "category": "E0101",
                "lon": lon, "lat": lat})
            return status, f"load-{i % 50}", body

        with ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(one, range(267)))  # 200 intakes, 67 reads
    statuses = Counter(s for s, _, _ in results)
    assert statuses[500] == 0 and statuses[503] == 0, statuses
    assert set(statuses) <= {200, 201}, statuses
    ids: dict[str, set[int]] = {}
    for _status, what, body in results:
        if what != "read":
            ids.setdefault(what, set()).add(body["id"])
    assert len(ids) == 50 and all(len(v) == 1 for v in ids.values())  # every retry: that id
    with engine.connect() as conn:
        made = conn.execute(text(
            "SELECT count(*) FROM incident WHERE external_id LIKE 'load-%'")).scalar()
    assert made == 50


@pytest.fixture
def locked_w1(city) -> Iterator[threading.Event]:
    """Staff W1's row locked by another transaction until the event is set."""
    engine, _ = city
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1 FROM staff WHERE code = 'W1' FOR UPDATE"))
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10)
    yield release
    release.set()
    thread.join(10)


def _waiting_on_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%staff%'")).scalar())


def test_over_the_limit_a_fast_503_with_retry_after_and_timeouts_named(city, locked_w1
                                                                       ) -> None:
    engine, key = city
    app = create_app(_settings(engine, db={"statement_timeout_ms": 3000},
                               api={"max_in_flight": 1, "queue_max": 1, "queue_wait_s": 0.3,
                                    "retry_after_s": 3}))
    with live_server(app) as base:
        stuck: dict[str, Any] = {}

        def patch() -> None:  # holds the only slot, waiting on the lock
            stuck["answer"] = call(base, key, "PATCH", "/staff/W1", {"status": "on_leave"})

        writer = threading.Thread(target=patch)
        writer.start()
        assert wait_for(lambda: _waiting_on_lock(engine), 10) is not None

        # The slot is taken: a request waits in the queue, then is refused with Retry-After.
        status, headers, body = call(base, key, "GET", "/incidents?limit=1")
        assert status == 503 and body["code"] == "server_busy", body
        assert headers.get("retry-after") == "3"
        assert body["detail"]["reason"] == "queue_wait"
        # Lookups are answered from memory, never queued.
        status, _, _ = call(base, key, "GET", f"/locate?lon={at(0.5, 0.5)[0]}"
                                              f"&lat={at(0.5, 0.5)[1]}")
        assert status == 200

        writer.join(20)
        status, headers, body = stuck["answer"]
    # The statement timeout is called what it is, not "the database is unreachable".
    assert status == 503 and body["code"] == "statement_timeout", body
    assert "statement timeout" in body["message"] and "3000 ms" in body["message"]
    assert "unreachable" not in body["message"]
    assert headers.get("retry-after")
