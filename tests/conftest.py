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
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine

from app import devdb
from app.db import is_empty, migrate
from app.deps import get_conn
from app.main import create_app
from app.settings import DatabaseSettings, Settings


def _database(name: str) -> str:
    override = os.environ.get("CITYGRID_TEST_DATABASE_URL")
    if override:
        return override.rsplit("/", 1)[0] + "/" + name
    subprocess.run([sys.executable, "-m", "app.devdb", "up", name], check=True,
                   stdout=subprocess.DEVNULL)
    return devdb.url(name)


@pytest.fixture(scope="session")
def db_url() -> str:
    url = _database("citygrid_test")
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
    url = _database("citygrid_test_empty")
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


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(db=DatabaseSettings(database_url=db_url))


@pytest.fixture
def client(settings: Settings, conn: Connection) -> Iterator[TestClient]:
    """The API on the test's own transaction: each request runs in a savepoint inside it."""
    app = create_app(settings)

    def shared_conn() -> Iterator[Connection]:
        with conn.begin_nested():
            yield conn

    app.dependency_overrides[get_conn] = shared_conn
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
