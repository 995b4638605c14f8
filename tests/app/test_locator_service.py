"""The locator stays fresh (LISTEN/NOTIFY) and keeps answering when the database goes away.

These tests need committed changes seen by another connection, so they use a scratch database
that is created empty for the session and dropped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from app.locator_service import LocatorService
from tests.conftest import psql, tiny_city_engine, wait_for
from tests.tiny_city import G1, at


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    engine = tiny_city_engine("citygrid_test_scratch")
    yield engine
    engine.dispose()


def test_a_change_committed_by_psql_reaches_the_locator_within_a_second(scratch: Engine) -> None:
    service = LocatorService(scratch, raster=False)
    service.reload()
    service.start()
    try:
        assert wait_for(lambda: service.reloads >= 1 and not service.stale, 5) is not None
        time.sleep(0.3)  # the listener is connected and LISTENing
        lon, lat = at(0.5, 0.5)
        assert service.snapshot.locate(lon, lat)["responsible"]["code"] == "W1"
        psql(scratch, "UPDATE staff SET status = 'on_leave' WHERE code = 'W1'")
        took = wait_for(
            lambda: service.snapshot.locate(lon, lat)["responsible"]["code"] == "B1", 1.0)
        assert took is not None, "the locator did not see the change within 1 s"
        psql(scratch, "UPDATE staff SET status = 'available' WHERE code = 'W1'")
        assert wait_for(
            lambda: service.snapshot.locate(lon, lat)["responsible"]["code"] == "W1", 1.0)
    finally:
        service.stop()


def test_lookups_keep_answering_from_memory_when_the_database_is_gone(scratch: Engine) -> None:
    service = LocatorService(scratch, raster=False)
    service.reload()
    service.start()
    try:
        assert wait_for(lambda: not service.stale, 5) is not None
        time.sleep(0.3)
        # Cut the listener off and point the service at a server that is not there.
        service.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
        with scratch.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name = :n"), {"n": service.listener_name})
        assert wait_for(lambda: service.stale, 5) is not None
        answer = service.snapshot.locate(*at(0.5, 0.5))
        assert answer["grid"]["code"] == G1  # still answering, flagged stale by the service
        assert service.status()["stale"] is True
        # The server comes back: the service reconnects and is fresh again.
        service.engine = scratch
        assert wait_for(lambda: not service.stale, 5) is not None
    finally:
        service.stop()


def test_api_keeps_locating_and_refuses_writes_cleanly_when_the_database_is_down(
    db_url: str, engine: Engine
) -> None:
    """The whole app: after start-up the database disappears (here: the app's engine and the
    listener are pointed at a port where nothing listens)."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from tests.conftest import app_role_url, token_for

    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(db_url),
                                                  migration_url=db_url)))
    with TestClient(app, raise_server_exceptions=False) as client:
        h = {"Authorization": f"Bearer {token_for(app, 't_admin')}"}
        with engine.connect() as conn:
            lon, lat, staff = conn.execute(text(
                "SELECT ST_X(ST_PointOnSurface(g.geom)), ST_Y(ST_PointOnSurface(g.geom)), s.code "
                "FROM region_current g JOIN region r ON r.code = g.code "
                "JOIN assignment a ON a.region_id = r.id JOIN staff s ON s.id = a.staff_id "
                "WHERE g.level = 'grid' ORDER BY g.code LIMIT 1")).one()
        assert client.get("/locate", params={"lon": lon, "lat": lat}, headers=h).json()[
            "stale"] is False
        dead = create_engine("postgresql+psycopg://citygrid_app@127.0.0.1:9/none",
                             connect_args={"connect_timeout": 1})
        app.state.engine = dead
        app.state.locator.engine = dead
        def cut() -> bool:  # drop the listener's live connection (again, if it got through)
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE application_name = :n"),
                             {"n": app.state.locator.listener_name})
            time.sleep(0.2)
            return app.state.locator.stale

        assert wait_for(cut, 15) is not None
        res = client.get("/locate", params={"lon": lon, "lat": lat}, headers=h)
        assert res.status_code == 200 and res.json()["stale"] is True
        assert res.json()["grid"] is not None
        write = client.patch(f"/staff/{staff}", json={"status": "on_leave"}, headers=h)
        assert write.status_code == 503
        assert write.json()["code"] == "database_unavailable"
        read = client.get("/regions", headers=h)
        assert read.status_code == 503


def test_a_change_through_the_api_is_seen_by_its_own_next_request(scratch: Engine) -> None:
    """No waiting for NOTIFY: the worker that committed the change reloads before answering."""
    from fastapi.testclient import TestClient

    from app import users
    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from grids.access import Principal
    from tests.conftest import app_role_url, token_for

    with scratch.begin() as conn:
        if not conn.execute(text("SELECT 1 FROM app_user WHERE username = 'sup_tiny'")).first():
            users.create_user(conn, username="sup_tiny", password="tiny-city-password",
                              role="supervisor", region_code="990100",
                              principal=Principal.system("test"))
    owner = scratch.url.render_as_string(hide_password=False)
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(owner),
                                                  migration_url=owner)))
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.locator.stop()  # no listener: only the request's own refresh can help
        h = {"Authorization": f"Bearer {token_for(app, 'sup_tiny')}"}
        lon, lat = at(0.5, 0.5)
        assert client.get("/locate", params={"lon": lon, "lat": lat},
                          headers=h).json()["responsible"]["code"] == "W1"
        assert client.patch("/staff/W1", json={"status": "on_leave"},
                            headers=h).status_code == 200
        after = client.get("/locate", params={"lon": lon, "lat": lat}, headers=h).json()
        assert after["responsible"]["code"] == "B1" and after["fallback"] == "backup"
        assert client.patch("/staff/W1", json={"status": "available"},
                            headers=h).status_code == 200
        assert client.get("/locate", params={"lon": lon, "lat": lat},
                          headers=h).json()["responsible"]["code"] == "W1"


def test_an_outage_is_a_warning_without_traceback_and_no_failure(
    scratch: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Losing the database is expected weather: a warning, a reconnect with backoff, no 'bug'."""
    service = LocatorService(scratch, raster=False)
    service.reload()
    service.start()
    try:
        assert wait_for(lambda: not service.stale, 5) is not None
        time.sleep(0.3)
        with caplog.at_level("WARNING", logger="citygrid.locator"):
            service.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
            with scratch.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE application_name = :n"), {"n": service.listener_name})
            assert wait_for(lambda: service.stale and service.backoff_s > 0.5, 10) is not None
        lost = [r for r in caplog.records if "lost the database" in r.getMessage()]
        assert len(lost) == 1 and lost[0].levelname == "WARNING" and lost[0].exc_info is None
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
        assert service.failure is None and service.status()["failure"] is None
        service.engine = scratch
        assert wait_for(lambda: not service.stale, 10) is not None
    finally:
        service.stop()


def test_a_bug_in_a_reload_is_logged_with_traceback_and_shown_by_health(
    scratch: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that raises something other than a database error is a bug: the traceback goes
    to the log, /health says 'degraded' with the reason, the listener stays alive and heals when
    the fault goes away."""
    from fastapi.testclient import TestClient

    import app.locator_service as locator_service
    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from tests.conftest import app_role_url

    real = locator_service.load_snapshot
    armed = {"on": False}

    def faulty(conn):  # the fault injected into reload()
        if armed["on"]:
            raise ZeroDivisionError("injected fault in load_snapshot")
        return real(conn)

    monkeypatch.setattr(locator_service, "load_snapshot", faulty)
    url = scratch.url.render_as_string(hide_password=False)
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(url),
                                                  migration_url=url)))
    with TestClient(app, raise_server_exceptions=False) as client:
        service = app.state.locator
        assert wait_for(lambda: not service.stale, 10) is not None
        time.sleep(0.3)  # listening
        assert client.get("/health").json()["status"] == "ok"
        with caplog.at_level("WARNING", logger="citygrid.locator"):
            armed["on"] = True
            psql(scratch, f"UPDATE region SET name = name WHERE code = '{G1}'")
            assert wait_for(lambda: service.failure is not None, 5) is not None
            health = client.get("/health")
            armed["on"] = False
        bugs = [r for r in caplog.records if r.levelname == "ERROR"]
        assert bugs and bugs[0].exc_info is not None
        assert bugs[0].exc_info[0] is ZeroDivisionError
        assert not [r for r in caplog.records if "lost the database" in r.getMessage()]
        assert "ZeroDivisionError: injected fault" in service.failure
        assert health.status_code == 200  # degraded, not down: lookups still work
        body = health.json()
        assert body["status"] == "degraded" and "ZeroDivisionError" in body["reason"]
        assert body["works"]["locate"] is True
        # The listener is alive: once the fault is gone it reloads and the worker is ok again.
        assert service._thread is not None and service._thread.is_alive()
        assert wait_for(lambda: service.failure is None and not service.stale, 10) is not None
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/health").json().get("reason") is None
