"""The auth Directory is a cache: a request's credentials are checked in memory, and a change
committed anywhere reaches every worker through ``NOTIFY citygrid.changed`` (app/auth.py).

- a user disabled through one worker, and a key revoked from another process (psql), are
  refused by a second worker with its own engine and directory once the NOTIFY arrives;
- a key or token already checked costs no SQL statement at all (counted with a SQLAlchemy
  ``before_cursor_execute`` event on the worker's engine, in the thread that checks).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from starlette.requests import Request

from app.main import create_app
from app.settings import DatabaseSettings, Settings
from tests.conftest import app_role_url, psql, tiny_city_engine, wait_for

PASSWORD = "tiny-city-password"


@pytest.fixture(scope="module")
def city() -> Iterator[Engine]:
    engine = tiny_city_engine("citygrid_test_auth_cache",
                              users=(("cache_admin", "admin"), ("cache_viewer", "viewer")))
    yield engine
    engine.dispose()


def _worker(owner: Engine) -> FastAPI:
    """One API worker: its own engine, locator, listener and user directory."""
    url = owner.url.render_as_string(hide_password=False)
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    settings.api.batch_raster = False
    settings.api.coverage_refresh_s = 0  # no background statements on the engine
    return create_app(settings)


@pytest.fixture(scope="module")
def workers(city: Engine) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(_worker(city)) as a, TestClient(_worker(city)) as b:
        yield a, b


def _bearer(client: TestClient, username: str) -> dict[str, str]:
    res = client.post("/auth/token", json={"username": username, "password": PASSWORD})
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['access_token']}"}


def _new_key(client: TestClient, admin: dict[str, str], name: str, rate: int = 600) -> str:
    res = client.post("/api-keys", headers=admin, json={
        "name": name, "role": "viewer", "region_code": "990100",
        "rate_limit_per_minute": rate})
    assert res.status_code == 201, res.text
    return str(res.json()["key"])


def _status(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/locate/status", headers=headers).status_code


def test_a_user_disabled_on_one_worker_is_refused_by_another_after_the_notify(
    workers: tuple[TestClient, TestClient]
) -> None:
    a, b = workers
    admin = _bearer(a, "cache_admin")
    viewer = _bearer(a, "cache_viewer")  # a token is good on any worker (one secret)
    assert _status(b, viewer) == 200  # worker b has the user in its directory
    res = a.patch("/users/cache_viewer", headers=admin, json={"disabled": True})
    assert res.status_code == 200, res.text
    try:
        took = wait_for(lambda: _status(b, viewer) == 401, timeout=5)
        assert took is not None, "worker b still accepts a disabled user's token after 5 s"
        assert b.get("/locate/status", headers=viewer).json()["code"] == "invalid_token"
    finally:
        a.patch("/users/cache_viewer", headers=admin, json={"disabled": False})


def test_a_key_revoked_by_another_process_is_refused_after_the_notify(
    city: Engine, workers: tuple[TestClient, TestClient]
) -> None:
    a, b = workers
    key = {"X-API-Key": _new_key(a, _bearer(a, "cache_admin"), "cache-revoked")}
    assert wait_for(lambda: _status(b, key) == 200, timeout=5) is not None
    assert _status(b, key) == 200  # checked once: now in b's verified-key cache
    assert key["X-API-Key"] in b.app.state.directory.verified_keys  # type: ignore[attr-defined]
    psql(city, "UPDATE api_key SET disabled = true WHERE name = 'cache-revoked'")
    took = wait_for(lambda: _status(b, key) == 401, timeout=5)
    assert took is not None, "worker b still accepts a revoked key after 5 s"
    assert b.get("/locate/status", headers=key).json()["code"] == "invalid_api_key"
    assert wait_for(lambda: _status(a, key) == 401, timeout=5) is not None  # and worker a


def _request(app: FastAPI, headers: dict[str, str]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/locate", "query_string": b"",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                    "app": app})


class _Statements:
    """SQL statements executed on ``engine`` by this thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.thread = threading.get_ident()
        self.seen: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() == self.thread:
            self.seen.append(statement)

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self)


def test_a_checked_key_or_token_costs_no_sql(workers: tuple[TestClient, TestClient]) -> None:
    a, _ = workers
    app: FastAPI = a.app  # type: ignore[assignment]
    admin = _bearer(a, "cache_admin")
    key = {"X-API-Key": _new_key(a, admin, "cache-fast", rate=6000)}  # a lease of 300
    assert wait_for(lambda: _status(a, key) == 200, timeout=5) is not None
    auth = app.state.auth
    with _Statements(app.state.engine) as first:
        assert auth.principal(_request(app, key)).name == "key:cache-fast"
    with _Statements(app.state.engine) as cached:
        for _ in range(50):
            assert auth.principal(_request(app, key)).name == "key:cache-fast"
            assert auth.principal(_request(app, admin)).name == "user:cache_admin"
    assert cached.seen == [], cached.seen
    # the counter works: a key the directory has not verified yet reads its rate counter
    app.state.directory.verified_keys.clear()
    auth.key_limits._leases.clear()
    with _Statements(app.state.engine) as fresh:
        auth.principal(_request(app, key))
    assert any("rate_counter" in s for s in fresh.seen), fresh.seen
    assert len(first.seen) <= 1, first.seen  # at most the rate-limit lease
