"""Shared fixtures: a real PostGIS, migrated once; each test in a transaction that is rolled back.

The database is the private cluster that ``make test`` starts (``app.devdb``), or the one named by
``CITYGRID_TEST_DATABASE_URL``. The demo city is loaded once into the test database and kept.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text

from app import devdb
from app.db import is_empty, migrate
from app.deps import get_conn
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from grids.access import Principal

APP_ROLE = "citygrid_app"
# Test accounts: name → (role, jurisdiction). The grid worker's jurisdiction is their grids.
ACCOUNTS = {
    "t_admin": ("admin", "330782"),
    "t_dispatcher": ("dispatcher", "330782"),
    "t_supervisor": ("supervisor", "330782001"),  # 稠城街道
    "t_supervisor2": ("supervisor", "330782002"),  # 江东街道
    "t_planner": ("planner", "330782001"),
    "t_viewer": ("viewer", "330782001"),
    "t_worker": ("grid_worker", "330782001"),
}
TEST_PASSWORD = "test-password-not-for-production"


def app_role_url(owner_url: str) -> str:
    """The same database, as the restricted application role the API runs as."""
    from sqlalchemy.engine import make_url

    return make_url(owner_url).set(username=APP_ROLE).render_as_string(hide_password=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_city_engine(name: str, *, users: tuple[tuple[str, str], ...] = (),
                     catalogue: bool = False) -> Engine:
    """A database of its own, created fresh with the tiny hand-drawn city (tests/tiny_city.py),
    for tests that need committed changes seen by other connections. ``users`` are
    ``(username, role)`` pairs over the tiny city, password ``tiny-city-password``."""
    from app import users as user_accounts
    from layers.incidents.catalogue import seed
    from tests.tiny_city import write_tiny_city

    url = database_url(name, fresh=True)
    migrate(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        write_tiny_city(conn)
        if catalogue:
            seed(conn)
        for username, role in users:
            user_accounts.create_user(conn, username=username, password="tiny-city-password",
                                      role=role, region_code="990100",
                                      principal=Principal.system("test"))
    return engine


@contextmanager
def live_server(app: FastAPI, *, port: int | None = None, timeout: float = 60) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``port`` (default: a free one) in a thread; yield its base URL
    once the locator has loaded (tests that need committed transactions, SSE or a real browser)."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not (server.started and getattr(app.state, "locator", None) is not None
               and app.state.locator.snapshot is not None):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def database_url(name: str, *, fresh: bool = False) -> str:
    """URL of a test database on the test server, created if missing (emptied if ``fresh``)."""
    override = os.environ.get("CITYGRID_TEST_DATABASE_URL")
    if override:
        url = override.rsplit("/", 1)[0] + "/" + name
    else:
        subprocess.run([sys.executable, "-m", "app.devdb", "up"], check=True,
                       stdout=subprocess.DEVNULL)
        url = devdb.url(name)
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                              {"n": name}).scalar()
        if exists and fresh:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        if not exists or fresh:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url


@pytest.fixture(scope="session")
def db_url() -> str:
    url = database_url("citygrid_test")
    migrate(url)
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    with eng.begin() as conn:
        if is_empty(conn):
            from app.seed import load_demo

            load_demo(conn)
        from layers.incidents.catalogue import seed

        seed(conn)
        _ensure_accounts(conn)
    yield eng
    eng.dispose()


def _ensure_accounts(conn: Connection) -> None:
    """The test accounts, committed once into the demo database."""
    from app import users

    system = Principal.system("test-setup")
    for name, (role, region) in ACCOUNTS.items():
        if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": name}).first():
            continue
        staff = None
        if role == "grid_worker":
            staff = conn.execute(text(
                "SELECT s.code FROM assignment a JOIN staff s ON s.id = a.staff_id "
                "JOIN region r ON r.id = a.region_id WHERE r.code LIKE :p AND a.duty = 'primary' "
                "AND s.status = 'available' AND a.valid_to IS NULL ORDER BY r.code LIMIT 1"),
                {"p": region + "%"}).scalar_one()
        users.create_user(conn, username=name, password=TEST_PASSWORD, role=role,
                          region_code=region, staff_code=staff, principal=system)


# The second demo city (data/sources: 蒲江县, 510131, Sichuan, ~103.5°E, astride two Gauss-Krüger
# zones), with a few thousand incidents: for the tests that must hold in any city.
CITY2 = "510131"
CITY2_INCIDENTS = 3000


@pytest.fixture(scope="session")
def city2_engine() -> Iterator[Engine]:
    """A database holding the second demo city, loaded once and kept."""
    url = database_url("citygrid_test_city2")
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        if is_empty(conn):
            from app.seed import load_demo
            from app.seed_incidents import load_demo_incidents

            load_demo(conn, city=CITY2)
            load_demo_incidents(conn, n=CITY2_INCIDENTS)
    yield eng
    eng.dispose()


@pytest.fixture
def city2_conn(city2_engine: Engine) -> Iterator[Connection]:
    """A connection to the second demo city, rolled back after the test."""
    yield from _rolled_back(city2_engine)


@pytest.fixture(params=["demo", "city2"])
def any_city(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A rolled-back connection to each demo city in turn (the test runs once per city)."""
    eng = request.getfixturevalue("engine" if request.param == "demo" else "city2_engine")
    yield from _rolled_back(eng)


@pytest.fixture(scope="session")
def empty_engine() -> Iterator[Engine]:
    """A migrated database that holds no city: for imports that start from nothing."""
    url = database_url("citygrid_test_empty")
    migrate(url)
    eng = create_engine(url)
    yield eng
    eng.dispose()


def _rolled_back(eng: Engine) -> Iterator[Connection]:
    conn = eng.connect()
    trans = conn.begin()
    try:
        yield conn
    finally:
        trans.rollback()
        conn.close()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection to the demo city inside a transaction that is rolled back after the test."""
    yield from _rolled_back(engine)


@pytest.fixture
def empty_conn(empty_engine: Engine) -> Iterator[Connection]:
    yield from _rolled_back(empty_engine)


@pytest.fixture(scope="session")
def settings(db_url: str) -> Settings:
    return Settings(db=DatabaseSettings(database_url=app_role_url(db_url), migration_url=db_url))


@pytest.fixture(scope="session")
def api(settings: Settings, engine: Engine) -> Iterator[tuple[FastAPI, TestClient]]:
    """One app for the session: its lifespan (locator load) runs once."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.locator.wait_raster()
        yield app, c


def token_for(app: FastAPI, username: str) -> str:
    return app.state.auth.issue(app.state.directory.by_name[username])[0]


@pytest.fixture
def headers(api: tuple[FastAPI, TestClient]):
    """``headers('t_dispatcher')`` → an Authorization header for that test account."""
    app, _ = api
    return lambda username: {"Authorization": f"Bearer {token_for(app, username)}"}


@pytest.fixture
def anonymous(api: tuple[FastAPI, TestClient], conn: Connection) -> Iterator[TestClient]:
    """The API on the test's own transaction, with no credentials.

    Each request runs in a savepoint inside the test's transaction, as the restricted
    application role, with the request's own actor settings for the audit log.
    """
    app, c = api

    def shared_conn(request: Request) -> Iterator[Connection]:
        from app.auth import UNSAFE, current_principal
        from app.db import set_actor

        principal = current_principal(request) if request.method in UNSAFE else None
        with conn.begin_nested():
            conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
            if request.method in UNSAFE:
                set_actor(conn, principal.name if principal else "anonymous",
                          request.client.host if request.client else None)
            try:
                yield conn
            finally:
                conn.execute(text("RESET ROLE"))

    app.dependency_overrides[get_conn] = shared_conn
    c.headers.clear()
    try:
        yield c
    finally:
        app.dependency_overrides.clear()
        c.headers.clear()


@pytest.fixture
def client(anonymous: TestClient, headers) -> TestClient:
    """The API as the test admin (see :data:`ACCOUNTS` and ``headers`` for other roles)."""
    anonymous.headers.update(headers("t_admin"))
    return anonymous


@pytest.fixture
def own_directory(api, monkeypatch, engine):
    """The test drives the shared user directory by hand: background reloads are paused, and the
    committed state is restored afterwards."""
    monkeypatch.setattr(api[0].state.locator, "_subscribers", [])
    yield api[0].state.directory
    with engine.connect() as c:
        api[0].state.directory.reload(c)


def psql(engine: Engine, sql: str) -> None:
    """Commit a change the way an operator would: psql, another process, no API involved."""
    u = engine.url
    subprocess.run(["psql", "-h", u.host, "-p", str(u.port), "-U", u.username, "-d", u.database,
                    "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True)


def wait_for(predicate, timeout: float, *, every: float = 0.01) -> float | None:
    """Seconds until ``predicate()`` held, or None if it did not within ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(every)
    return None
