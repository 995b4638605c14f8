"""Heavy reads on a real streaming hot standby (app/replicas.py), started by ``app.devdb``.

The module copies the private cluster with ``python -m app.devdb replica up`` (pg_basebackup -R,
its own port and folder) and serves a tiny city of its own with ``CITYGRID_REPLICA_URLS`` set:

- a heavy read is answered by the standby (``X-CityGrid-Read: replica``);
- read your writes: after a write, the writer's reads stay on the primary until the standby has
  replayed it, while another client still reads the standby (which has not: its replay is paused);
- a standby whose replay is paused past the lag bound is skipped;
- a standby stopped in the middle of a read: the client gets its answer, from the primary.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from app import devdb, users
from app.deps import ReadConn
from app.main import create_app
from app.replicas import LSN_COOKIE, parse_lsn
from app.settings import ApiSettings, DatabaseSettings, ReplicaSettings, Settings
from grids.access import Principal
from tests.conftest import app_role_url, free_port, tiny_city_engine, wait_for
from tests.tiny_city import CITY, at

DB = "citygrid_test_replicas"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standby() -> Iterator[dict[str, Any]]:
    """The tiny city on the primary, then a fresh standby of the cluster on a free port."""
    owner = tiny_city_engine(DB, catalogue=True)
    with owner.begin() as conn:
        key = users.create_api_key(conn, name="replicas", role="admin", region_code=CITY,
                                   rate_limit_per_minute=1_000_000,
                                   principal=Principal.system())["key"]
    saved = {k: os.environ.get(k) for k in ("CITYGRID_REPLICA_PGDATA", "CITYGRID_REPLICA_PGPORT")}
    os.environ["CITYGRID_REPLICA_PGDATA"] = str(ROOT / "var" / "test-standby")
    os.environ["CITYGRID_REPLICA_PGPORT"] = str(free_port())
    devdb.replica_drop()  # a leftover of an interrupted run
    devdb.replica_up()
    super_engine = create_engine(devdb.replica_url(DB), isolation_level="AUTOCOMMIT")
    try:
        yield {"owner": owner, "key": key, "super": super_engine,
               "port": devdb.replica_port(), "primary_port": owner.url.port}
    finally:
        super_engine.dispose()
        devdb.replica_drop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        owner.dispose()


SLOW: dict[str, Any] = {"attempts": [], "started": threading.Event()}


def slow_read(conn: ReadConn) -> dict[str, Any]:
    """A read that takes a while on a standby (a test route): long enough to stop it under."""
    SLOW["attempts"].append(conn.execute(text("SELECT inet_server_port()")).scalar_one())
    SLOW["started"].set()
    conn.execute(text("SELECT pg_sleep(CASE WHEN pg_is_in_recovery() THEN 5 ELSE 0 END)"))
    return {"attempts": list(SLOW["attempts"])}


@pytest.fixture(scope="module")
def served(standby: dict[str, Any]) -> Iterator[tuple[FastAPI, TestClient]]:
    owner: Engine = standby["owner"]
    url = owner.url.render_as_string(hide_password=False)
    settings = Settings(
        db=DatabaseSettings(database_url=app_role_url(url), migration_url=url),
        api=ApiSettings(batch_raster=False, coverage_refresh_s=0),
        replicas=ReplicaSettings(
            replica_urls=[devdb.replica_url(DB, user="citygrid_app")],
            replica_max_lag_s=3600, replica_check_s=0.2))
    app = create_app(settings)
    app.add_api_route("/_test/slow-read", slow_read, methods=["GET"])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = standby["key"]
        yield app, client


def _standby_state(client: TestClient) -> dict[str, Any]:
    res = client.get("/health")
    assert res.status_code == 200, res.text
    (state,) = res.json()["replicas"]
    return state


def _caught_up(client: TestClient) -> None:
    assert wait_for(lambda: _standby_state(client)["state"] == "up", 30, every=0.1) is not None


@pytest.fixture
def paused(standby: dict[str, Any], served: tuple[FastAPI, TestClient]) -> Iterator[None]:
    """The standby receives the primary's WAL but does not replay it."""
    with standby["super"].connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()"))
    try:
        yield
    finally:
        with standby["super"].connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_resume()"))
        _caught_up(served[1])


def _incident(client: TestClient, external_id: str) -> Any:
    lon, lat = at(0.5, 0.5)
    res = client.post("/incidents", json={"source": "hotline_12345", "external_id": external_id,
                                          "category": "E0101", "description": "standby",
                                          "lon": lon, "lat": lat})
    assert res.status_code == 201, res.text
    return res


def _listed_ids(res: Any) -> set[int]:
    assert res.status_code == 200, res.text
    return {item["id"] for item in res.json()["items"]}


# -- tests ---------------------------------------------------------------------------------------
def test_the_standby_streams_and_heavy_reads_go_to_it(
    standby: dict[str, Any], served: tuple[FastAPI, TestClient]
) -> None:
    app, client = served
    assert "streaming" in devdb.replica_status()
    # the locator's snapshot and LISTEN use the primary's engine, never a standby's
    assert app.state.locator.engine is app.state.engine
    assert app.state.engine.url.port == standby["primary_port"]
    _caught_up(client)
    for path in ("/incidents", "/maps/counts", "/ogc/collections",
                 "/incidents/export.csv"):
        res = client.get(path)
        assert res.status_code == 200, (path, res.text)
        assert res.headers["x-citygrid-read"] == "replica", path
    # writes and light reads stay on the primary
    res = client.get("/categories")
    assert res.headers["x-citygrid-read"] == "primary"
    res = _incident(client, "stream-1")
    assert res.headers["x-citygrid-read"] == "primary"


def test_a_writer_reads_its_own_write_while_the_standby_is_behind(
    standby: dict[str, Any], served: tuple[FastAPI, TestClient], paused: None
) -> None:
    _, client = served
    client.cookies.clear()
    made = _incident(client, "ryw-1")
    written = made.headers["x-citygrid-write-lsn"]
    assert client.cookies.get(LSN_COOKIE) == written
    new_id = made.json()["id"]
    _standby_state(client)  # a fresh check: the standby is up, within the (large) bound
    mine = client.get("/incidents", params={"limit": 1000})
    assert mine.headers["x-citygrid-read"] == "primary"
    assert new_id in _listed_ids(mine)
    # a client without the cookie reads the standby, which has not replayed the write
    cookie = client.cookies.get(LSN_COOKIE)
    client.cookies.clear()
    other = client.get("/incidents", params={"limit": 1000})
    assert other.headers["x-citygrid-read"] == "replica"
    assert new_id not in _listed_ids(other)
    # the header works for clients without cookies
    by_header = client.get("/incidents", params={"limit": 1000},
                           headers={"X-CityGrid-Min-LSN": written})
    assert by_header.headers["x-citygrid-read"] == "primary"
    assert new_id in _listed_ids(by_header)
    client.cookies.set(LSN_COOKIE, cookie or "")
    # once the standby has replayed past the write, the writer reads it there
    with standby["super"].connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_resume()"))

    def replayed() -> bool:
        state = _standby_state(client)
        return (parse_lsn(state["replayed"]) or 0) >= (parse_lsn(written) or 0)

    assert wait_for(replayed, 30, every=0.1) is not None
    again = client.get("/incidents", params={"limit": 1000})
    assert again.headers["x-citygrid-read"] == "replica"
    assert new_id in _listed_ids(again)
    client.cookies.clear()


def test_a_lagging_standby_is_skipped(
    standby: dict[str, Any], served: tuple[FastAPI, TestClient], paused: None,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = served
    monkeypatch.setattr(app.state.replicas, "max_lag_s", 0.5)
    _incident(client, "lag-1")  # something the paused standby cannot replay
    client.cookies.clear()
    assert wait_for(lambda: _standby_state(client)["state"] == "lagging", 30,
                    every=0.1) is not None
    assert _standby_state(client)["lag_s"] > 0.5
    res = client.get("/incidents")
    assert res.status_code == 200, res.text
    assert res.headers["x-citygrid-read"] == "primary"
    body = client.get("/health").json()
    assert body["status"] == "ok"  # a standby behind does not degrade the worker


def test_a_standby_stopped_mid_read_costs_the_client_nothing(
    standby: dict[str, Any], served: tuple[FastAPI, TestClient]
) -> None:
    _, client = served
    client.cookies.clear()
    _caught_up(client)
    SLOW["attempts"].clear()
    SLOW["started"].clear()

    def stop_when_started() -> None:
        if SLOW["started"].wait(30):
            devdb.replica_down()

    stopper = threading.Thread(target=stop_when_started)
    stopper.start()
    try:
        res = client.get("/_test/slow-read")
        stopper.join(60)
        assert res.status_code == 200, res.text
        assert res.json()["attempts"] == [standby["port"], standby["primary_port"]]
        assert res.headers["x-citygrid-read"] == "primary"
        # with the standby gone, heavy reads go to the primary, without an error
        for path in ("/incidents", "/maps/counts"):
            res = client.get(path)
            assert res.status_code == 200, (path, res.text)
            assert res.headers["x-citygrid-read"] == "primary"
        assert _standby_state(client)["state"] == "down"
        assert client.get("/health").json()["status"] == "ok"
    finally:
        stopper.join(60)
        devdb.replica_up()  # started again (the folder is kept): it catches up and is used again
    _caught_up(client)
    assert client.get("/incidents").headers["x-citygrid-read"] == "replica"


def test_wal_positions_and_what_counts_as_a_standby_failure() -> None:
    from psycopg import errors as pg
    from sqlalchemy.exc import DBAPIError, OperationalError

    from app.replicas import format_lsn, replica_failure

    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848") or 0) == "16/B374D848"
    assert parse_lsn("nonsense") is None and parse_lsn("") is None and parse_lsn("1/zz") is None
    lost = OperationalError("SELECT 1", {}, pg.AdminShutdown("terminating connection"))
    read_only = DBAPIError("INSERT", {}, pg.ReadOnlySqlTransaction("read-only transaction"))
    bad_input = DBAPIError("SELECT", {}, pg.InvalidTextRepresentation("invalid input"))
    assert replica_failure(lost) and replica_failure(read_only)
    assert not replica_failure(bad_input) and not replica_failure(ValueError("x"))
