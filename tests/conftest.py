"""Shared fixtures: a real PostGIS, migrated once; each test in a transaction that is rolled back.

The database is the private cluster that ``make test`` starts (``app.devdb``), or the one named by
``CITYGRID_TEST_DATABASE_URL``. The demo city is loaded once into the test database and kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text

from app import devdb
from app.db import is_empty, migrate
from app.deps import get_conn
from app.main import create_app
from app.settings import DatabaseSettings, Settings


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
    yield eng
    eng.dispose()


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
    return Settings(db=DatabaseSettings(database_url=db_url))


@pytest.fixture(scope="session")
def api(settings: Settings, engine: Engine) -> Iterator[tuple[FastAPI, TestClient]]:
    """One app for the session: its lifespan (locator load) runs once."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.locator.wait_raster()
        yield app, c


@pytest.fixture
def client(api: tuple[FastAPI, TestClient], conn: Connection) -> Iterator[TestClient]:
    """The API on the test's own transaction: each request runs in a savepoint inside it."""
    app, c = api

    def shared_conn() -> Iterator[Connection]:
        with conn.begin_nested():
            yield conn

    app.dependency_overrides[get_conn] = shared_conn
    try:
        yield c
    finally:
        app.dependency_overrides.clear()
