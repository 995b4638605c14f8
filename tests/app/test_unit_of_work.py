"""A write is committed before the client is told it succeeded.

FastAPI runs the exit of a ``yield`` dependency after the response by default; the request's
transaction (``app.deps.get_conn``) must end before it, or a client that reads right after a 200
can see the old state, and a commit that fails (a deferred constraint) would follow a 200. This
test writes through a real server and reads straight after each answer from another connection.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from app import users
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from grids.access import Principal
from tests.conftest import app_role_url, live_server, tiny_city_engine
from tests.tiny_city import CITY


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, str, Engine]]:
    engine = tiny_city_engine("citygrid_test_uow")
    url = engine.url.render_as_string(hide_password=False)
    with engine.begin() as conn:
        key = users.create_api_key(conn, name="uow", role="admin", region_code=CITY,
                                   rate_limit_per_minute=100_000,
                                   principal=Principal.system())["key"]
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(url),
                                                  migration_url=url)))
    try:
        with live_server(app) as base:
            yield base, key, engine
    finally:
        engine.dispose()


def test_a_write_is_visible_to_a_read_sent_right_after_its_answer(live) -> None:
    base, key, engine = live
    stale = 0
    with engine.connect() as reader:
        for i in range(30):
            status = "on_leave" if i % 2 == 0 else "available"
            req = urllib.request.Request(
                f"{base}/staff/W1", method="PATCH", data=json.dumps({"status": status}).encode(),
                headers={"X-API-Key": key, "content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as res:
                assert res.status == 200
            seen = reader.execute(text("SELECT status FROM staff WHERE code = 'W1'")).scalar()
            reader.rollback()  # a fresh snapshot for the next read
            stale += seen != status
    assert stale == 0, f"{stale} of 30 reads right after a 200 saw the state before the write"
