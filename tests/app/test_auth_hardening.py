"""Authorisation escapes, sessions, throttles and the audit log, each as a tester reproduced it.

- a street supervisor taking another street's staff member (and with them their phone);
- Open311's request reads open to anyone;
- a street-level dispatcher seeing the whole city;
- a session cookie that still works after logout;
- X-Forwarded-For believed from anyone (throttle defeated, audit address forged), against a real
  uvicorn started the way ``citygrid serve`` starts it;
- a username spray from one address; the admin locked out by someone at their address;
- rate limits counted per worker process (two engines here, as two workers would have);
- the API key of ``?api_key=`` written to the access log;
- forged rows and a forged actor in ``audit_log``, as the application role ``citygrid_app``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from app.auth import (
    SESSION_COOKIE,
    Authenticator,
    Directory,
    KeyEntry,
    TooManyRequests,
    Unauthorized,
    hash_key_secret,
)
from app.db import set_actor
from app.settings import AuthSettings, DatabaseSettings, Settings
from tests.conftest import APP_ROLE, TEST_PASSWORD, app_role_url, free_port, tiny_city_engine


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_engine(db_url: str, engine: Engine) -> Iterator[Engine]:
    """The demo database as the application role, like a worker process's own pool."""
    eng = create_engine(app_role_url(db_url))
    yield eng
    eng.dispose()


@pytest.fixture
def app_conn(app_engine: Engine) -> Iterator[Connection]:
    """A connection *logged in* as citygrid_app (not SET ROLE: session_user is the app role)."""
    conn = app_engine.connect()
    trans = conn.begin()
    try:
        yield conn
    finally:
        trans.rollback()
        conn.close()


@pytest.fixture
def fresh_counters(engine: Engine) -> Iterator[None]:
    """Login counters are shared and committed (as they must be): start and end with none."""
    with engine.begin() as c:
        c.execute(text("DELETE FROM rate_counter WHERE key LIKE 'login%'"))
    yield
    with engine.begin() as c:
        c.execute(text("DELETE FROM rate_counter WHERE key LIKE 'login%'"))


def _grid_with_staff(conn: Connection, street: str) -> dict[str, Any]:
    row = conn.execute(text(
        "SELECT g.code, ST_X(ST_PointOnSurface(g.geom)) AS lon, "
        "ST_Y(ST_PointOnSurface(g.geom)) AS lat, s.code AS staff, s.phone "
        "FROM region_current g JOIN region r ON r.code = g.code "
        "JOIN assignment a ON a.region_id = r.id AND a.duty = 'primary' AND a.valid_to IS NULL "
        "JOIN staff s ON s.id = a.staff_id WHERE g.level = 'grid' AND g.code LIKE :p "
        "ORDER BY g.code LIMIT 1"), {"p": street + "%"}).mappings().one()
    return dict(row)


@pytest.fixture
def street1(conn: Connection) -> dict[str, Any]:
    return _grid_with_staff(conn, "330782001")


@pytest.fixture
def street2(conn: Connection) -> dict[str, Any]:
    return _grid_with_staff(conn, "330782002")


# -- authorisation escapes -----------------------------------------------------------------------
def test_a_supervisor_cannot_take_another_streets_staff(
    anonymous: TestClient, headers, street1: dict, street2: dict, conn: Connection
) -> None:
    h = headers("t_supervisor")  # 稠城街道 330782001
    theirs = street2["staff"]
    res = anonymous.post("/assignments", headers=h, json={
        "staff_code": theirs, "region_code": street1["code"], "duty": "backup"})
    assert res.status_code == 404, res.text
    assert res.json()["code"] == "staff_not_found"
    assert conn.execute(text(
        "SELECT count(*) FROM assignment a JOIN staff s ON s.id = a.staff_id "
        "JOIN region r ON r.id = a.region_id WHERE s.code = :s AND r.code LIKE '330782001%'"),
        {"s": theirs}).scalar_one() == 0
    # so their phone and their record stay out of reach
    assert anonymous.get(f"/staff/{theirs}", headers=h).status_code == 404
    assert anonymous.patch(f"/staff/{theirs}", headers=h,
                           json={"name": "改名", "phone": "13000000000"}).status_code == 404
    # their own street's supervisor may do it
    ok = anonymous.post("/assignments", headers=headers("t_supervisor2"), json={
        "staff_code": theirs, "region_code": street2["code"][:12], "duty": "head"})
    assert ok.status_code == 201, ok.text
    # and so may the street-1 supervisor with their own staff
    mine = anonymous.post("/assignments", headers=h, json={
        "staff_code": street1["staff"], "region_code": street1["code"][:12], "duty": "head"})
    assert mine.status_code == 201, mine.text


def test_staff_with_no_current_assignment_belong_where_they_last_worked(
    anonymous: TestClient, headers, street1: dict, street2: dict, conn: Connection
) -> None:
    theirs = street2["staff"]
    conn.execute(text(
        "UPDATE assignment SET valid_to = now() - interval '1 second' "
        "WHERE staff_id = (SELECT id FROM staff WHERE code = :s) AND valid_to IS NULL"),
        {"s": theirs})
    res = anonymous.post("/assignments", headers=headers("t_supervisor"), json={
        "staff_code": theirs, "region_code": street1["code"], "duty": "backup"})
    assert res.status_code == 404, res.text


def _street_dispatcher(anonymous: TestClient, headers, api, conn: Connection) -> dict[str, str]:
    made = anonymous.post("/users", headers=headers("t_admin"), json={
        "username": "street_dispatch", "password": "street-dispatcher-pw-1",
        "role": "dispatcher", "region_code": "330782001"})
    assert made.status_code == 201, made.text
    api[0].state.directory.reload(conn)  # made inside this test's transaction
    return headers("street_dispatch")


def test_a_street_dispatcher_sees_their_street_and_a_city_dispatcher_the_city(
    anonymous: TestClient, headers, api, own_directory, street1: dict, street2: dict,
    conn: Connection,
) -> None:
    h = _street_dispatcher(anonymous, headers, api, conn)
    here = {"lon": street1["lon"], "lat": street1["lat"]}
    there = {"lon": street2["lon"], "lat": street2["lat"]}
    assert anonymous.get("/locate", params=here, headers=h).status_code == 200
    assert anonymous.get("/locate", params=there, headers=h).status_code == 404
    incidents = anonymous.get("/incidents", params={"limit": 1000}, headers=h)
    assert incidents.status_code == 200
    codes = [i.get("grid_code") or i.get("region_code") for i in incidents.json()["items"]]
    assert all(c.startswith("330782001") for c in codes if c)
    # the city-level dispatcher keeps the whole city
    city = headers("t_dispatcher")
    assert anonymous.get("/locate", params=there, headers=city).status_code == 200


# -- Open311 reads -------------------------------------------------------------------------------
def _incident(conn: Connection, grid: dict, family_code: str = "E0101") -> int:
    return conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, region_code, grid_code, geom, "
        "description, address) SELECT 'hotline_12345', 'feed-' || :g || :c, c.id, :g, :g, "
        "ST_SetSRID(ST_MakePoint(:x, :y), 4490), '门口堆放垃圾', '某小区 3 幢 2 单元' "
        "FROM category c WHERE c.code = :c RETURNING id"),
        {"g": grid["code"], "c": family_code, "x": grid["lon"], "y": grid["lat"]}).scalar_one()


def test_open311_requests_need_credentials_and_are_cut_to_the_jurisdiction(
    anonymous: TestClient, headers, api, own_directory, street1: dict, street2: dict,
    conn: Connection,
) -> None:
    inside, outside = _incident(conn, street1), _incident(conn, street2)
    v2 = "/open311/v2"
    for url in (f"{v2}/requests.json", f"{v2}/requests/{inside}.json"):
        res = anonymous.get(url)
        assert res.status_code == 403 and res.json()[0]["code"] == 403, url
        assert "credentials" in res.json()[0]["description"]
    # a key of street 1, sent as the spec's api_key query parameter
    made = anonymous.post("/api-keys", headers=headers("t_admin"), json={
        "name": "feed-reader", "role": "viewer", "region_code": "330782001"})
    api[0].state.directory.reload(conn)
    key = made.json()["key"]
    listed = anonymous.get(f"{v2}/requests.json", params={"api_key": key})
    assert listed.status_code == 200, listed.text
    ids = {r["service_request_id"] for r in listed.json()}
    assert str(inside) in ids and str(outside) not in ids
    one = anonymous.get(f"{v2}/requests/{inside}.json", params={"api_key": key}).json()[0]
    assert one["lat"] == round(street1["lat"], 7) and one["description"] == "门口堆放垃圾"
    assert anonymous.get(f"{v2}/requests/{outside}.json",
                         params={"api_key": key}).status_code == 404
    # a role without incidents:read
    assert anonymous.get(f"{v2}/requests.json", headers=headers("t_planner")).status_code == 200
    assert anonymous.get(f"{v2}/requests.json", headers={
        "X-API-Key": "cgk_nope_nothing"}).status_code == 403


def test_the_public_feed_when_switched_on_is_coarse_and_has_no_free_text(
    anonymous: TestClient, api, street1: dict, street2: dict, conn: Connection, monkeypatch
) -> None:
    monkeypatch.setattr(api[0].state.settings.auth, "open311_public_feed", True)
    inside, outside = _incident(conn, street1), _incident(conn, street2)
    social = _incident(conn, street1, "S0101")
    listed = anonymous.get("/open311/v2/requests.json")
    assert listed.status_code == 200, listed.text
    by_id = {r["service_request_id"]: r for r in listed.json()}
    assert str(inside) in by_id and str(outside) in by_id and str(social) not in by_id
    one = anonymous.get(f"/open311/v2/requests/{inside}.json").json()[0]
    assert one["lat"] == round(street1["lat"], 3) and one["long"] == round(street1["lon"], 3)
    assert one["description"] is None and one["address"] is None and one["media_url"] is None
    assert "门口" not in listed.text and "3 幢" not in listed.text
    assert anonymous.get(f"/open311/v2/requests/{social}.json").status_code == 404


# -- sessions ------------------------------------------------------------------------------------
def test_a_session_cookie_replayed_after_logout_is_refused(
    anonymous: TestClient, api, street1: dict, conn: Connection, engine: Engine,
    fresh_counters: None,
) -> None:
    res = anonymous.post("/auth/session", json={"username": "t_supervisor",
                                                "password": TEST_PASSWORD})
    assert res.status_code == 200
    cookie, csrf = res.cookies[SESSION_COOKIE], res.json()["csrf_token"]
    assert anonymous.get("/auth/me").status_code == 200
    assert anonymous.post("/auth/logout").status_code == 204
    anonymous.cookies.clear()
    anonymous.cookies.set(SESSION_COOKIE, cookie)  # the stolen or kept copy
    again = anonymous.get("/auth/me")
    assert again.status_code == 401 and again.json()["code"] == "session_ended"
    write = anonymous.patch(f"/staff/{street1['staff']}", json={"status": "on_leave"},
                            headers={"X-CSRF-Token": csrf})
    assert write.status_code == 401
    anonymous.cookies.clear()
    # every other worker learns it from the database (its directory reload on NOTIFY)
    other = Directory()
    with engine.connect() as c:
        other.reload(c)
    sid = api[0].state.auth._claims(cookie)["sid"]
    assert sid in other.revoked_sessions


# -- throttles and limits, shared through PostgreSQL ----------------------------------------------
def _authenticator(engine: Engine, **auth: Any) -> Authenticator:
    directory = Directory()
    with engine.connect() as c:
        directory.reload(c)
    return Authenticator(AuthSettings(**auth), directory, production=False)


def _login(auth: Authenticator, engine: Engine, username: str, password: str, ip: str) -> int:
    with engine.begin() as c:
        try:
            auth.login(c, username, password, ip)
        except TooManyRequests:
            return 429
        except Unauthorized:
            return 401
    return 200


def test_a_username_spray_from_one_address_is_limited(
    app_engine: Engine, fresh_counters: None
) -> None:
    auth = _authenticator(app_engine, login_attempts_per_address=20)
    ip = "198.51.100.30"
    statuses = [_login(auth, app_engine, f"sprayed{i:02d}", "wrong-password", ip)
                for i in range(30)]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    # another address is unaffected
    assert _login(auth, app_engine, "t_viewer", TEST_PASSWORD, "198.51.100.31") == 200


def test_failures_at_one_address_do_not_lock_the_admin_out_elsewhere(
    app_engine: Engine, fresh_counters: None
) -> None:
    auth = _authenticator(app_engine)
    shared_nat = "203.0.113.7"
    statuses = [_login(auth, app_engine, "t_admin", "wrong-password", shared_nat)
                for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    assert _login(auth, app_engine, "t_admin", TEST_PASSWORD, shared_nat) == 429
    assert _login(auth, app_engine, "t_admin", TEST_PASSWORD, "192.0.2.44") == 200


def test_the_login_throttle_is_shared_by_two_workers(
    db_url: str, engine: Engine, fresh_counters: None
) -> None:
    engines = [create_engine(app_role_url(db_url)) for _ in range(2)]
    try:
        workers = [_authenticator(e) for e in engines]
        ip = "198.51.100.77"
        statuses = [_login(workers[i % 2], engines[i % 2], "t_planner", "wrong", ip)
                    for i in range(8)]
        assert statuses == [401] * 5 + [429] * 3  # was 8 × 401 with per-process counting
    finally:
        for e in engines:
            e.dispose()


def test_an_api_keys_rate_limit_is_shared_by_two_workers(db_url: str, engine: Engine) -> None:
    engines = [create_engine(app_role_url(db_url)) for _ in range(2)]
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
    secret = secrets.token_urlsafe(32)
    entry = KeyEntry(prefix=prefix, name=f"shared-{prefix}", key_hash=hash_key_secret(secret),
                     role="viewer", region_code="330782001", rate_limit_per_minute=5,
                     disabled=False)
    try:
        workers = [Authenticator(AuthSettings(), Directory(), production=False) for _ in engines]
        for w in workers:
            w.directory.keys = {prefix: entry}
        key = f"cgk_{prefix}_{secret}"
        # keep the 8 calls inside one minute window
        if 60 - time.time() % 60 < 5:
            time.sleep(60 - time.time() % 60 + 0.1)
        allowed = 0
        for i in range(8):
            try:
                workers[i % 2]._key(key, engines[i % 2])
                allowed += 1
            except TooManyRequests as exc:
                assert int(exc.headers["Retry-After"]) >= 1
        assert allowed == 5  # the tester got 8 on 2 workers
    finally:
        with engine.begin() as c:
            c.execute(text("DELETE FROM rate_counter WHERE key = :k"), {"k": f"key:{prefix}"})
        for e in engines:
            e.dispose()


# -- the audit log, as the application role ------------------------------------------------------
def test_the_application_role_cannot_insert_audit_rows(app_conn: Connection) -> None:
    assert app_conn.execute(text("SELECT session_user")).scalar_one() == APP_ROLE
    with pytest.raises(DBAPIError, match="permission denied"), app_conn.begin_nested():
        app_conn.execute(text("INSERT INTO audit_log (actor, ip, action, entity) "
                              "VALUES ('user:t_admin', '10.0.0.99', 'update', 'staff')"))
    with pytest.raises(DBAPIError, match="permission denied"), app_conn.begin_nested():
        app_conn.execute(text("SELECT key FROM audit_signing_key"))


def _touch_staff(conn: Connection, code: str) -> None:
    conn.execute(text("UPDATE staff SET status = CASE status WHEN 'available' THEN 'seconded' "
                      "ELSE 'available' END WHERE code = :c"), {"c": code})


def test_the_application_role_cannot_choose_the_recorded_actor(
    app_conn: Connection, street1: dict
) -> None:
    # the tester's forgery: name someone else and another address, then write
    with pytest.raises(DBAPIError, match="not attested"), app_conn.begin_nested():
        app_conn.execute(text("SELECT set_config('citygrid.actor', 'user:t_admin', true), "
                              "set_config('citygrid.ip', '10.0.0.99', true)"))
        _touch_staff(app_conn, street1["staff"])
    # a made-up proof, or a real proof from another transaction, does not help either
    other_txid = app_conn.execute(text("SELECT txid_current() - 1")).scalar_one()
    import hashlib
    import hmac

    from app.db import audit_key

    replayed = hmac.new(audit_key(), f"user:t_admin\n10.0.0.99\n{other_txid}".encode(),
                        hashlib.sha256).hexdigest()
    for proof in ("00" * 32, replayed):
        with pytest.raises(DBAPIError, match="not attested"), app_conn.begin_nested():
            app_conn.execute(text(
                "SELECT set_config('citygrid.actor', 'user:t_admin', true), "
                "set_config('citygrid.ip', '10.0.0.99', true), "
                "set_config('citygrid.proof', :p, true)"), {"p": proof})
            _touch_staff(app_conn, street1["staff"])
    # claiming nobody is recorded as what it is: the database role
    with app_conn.begin_nested():
        app_conn.execute(text("SELECT set_config('citygrid.actor', '', true), "
                              "set_config('citygrid.proof', '', true)"))
        _touch_staff(app_conn, street1["staff"])
        row = app_conn.execute(text(
            "SELECT actor, ip FROM audit_log WHERE entity = 'staff' AND entity_key = :c "
            "ORDER BY id DESC LIMIT 1"), {"c": street1["staff"]}).one()
        assert (row.actor, row.ip) == (f"db:{APP_ROLE}", None)
    # the application's own attested claim is recorded as made
    set_actor(app_conn, "user:t_supervisor", "192.0.2.8")
    _touch_staff(app_conn, street1["staff"])
    row = app_conn.execute(text(
        "SELECT actor, ip FROM audit_log WHERE entity = 'staff' AND entity_key = :c "
        "ORDER BY id DESC LIMIT 1"), {"c": street1["staff"]}).one()
    assert (row.actor, row.ip) == ("user:t_supervisor", "192.0.2.8")


# -- a real server, started as `citygrid serve` starts it ------------------------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Engine, _Records]]:
    """The tiny city behind uvicorn with ``citygrid serve``'s proxy setting and the access log
    on; its database commits for real (a fresh one, not the demo city)."""
    import uvicorn

    from app.cli import PROXY_HEADERS
    from app.main import create_app

    owner = tiny_city_engine("citygrid_test_auth", users=(("tiny_admin", "admin"),))
    url = owner.url.render_as_string(hide_password=False)
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    settings.api.batch_raster = False
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info",
                                           lifespan="on", proxy_headers=PROXY_HEADERS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    records = _Records()
    logging.getLogger("uvicorn.access").addHandler(records)
    try:
        yield f"http://127.0.0.1:{port}", owner, records
    finally:
        logging.getLogger("uvicorn.access").removeHandler(records)
        server.should_exit = True
        thread.join(timeout=10)
        owner.dispose()


def _token(base: str) -> dict[str, str]:
    res = httpx.post(f"{base}/auth/token", json={"username": "tiny_admin",
                                                 "password": "tiny-city-password"})
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['access_token']}"}


def test_a_forwarded_for_header_from_a_client_is_not_believed(
    served: tuple[str, Engine, _Records]
) -> None:
    base, owner, _ = served
    h = _token(base)
    made = httpx.post(f"{base}/users", headers={**h, "X-Forwarded-For": "10.0.0.99"}, json={
        "username": "xff_probe", "password": "xff-probe-password-1", "role": "viewer",
        "region_code": "990100"})
    assert made.status_code == 201, made.text
    with owner.connect() as c:
        ip = c.execute(text("SELECT ip FROM audit_log WHERE entity = 'app_user' "
                            "AND entity_key = 'xff_probe' ORDER BY id DESC LIMIT 1")).scalar_one()
    assert ip == "127.0.0.1"
    # rotating the header does not reset the login throttle
    statuses = [httpx.post(f"{base}/auth/token", json={"username": "xff_victim",
                                                       "password": "wrong-password"},
                           headers={"X-Forwarded-For": f"10.9.{i}.{i}"}).status_code
                for i in range(7)]
    assert statuses == [401] * 5 + [429] * 2


def test_an_api_key_in_the_query_string_is_not_logged(
    served: tuple[str, Engine, _Records]
) -> None:
    base, _, records = served
    made = httpx.post(f"{base}/api-keys", headers=_token(base), json={
        "name": "query-key", "role": "viewer", "region_code": "990100"})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    secret = key.split("_", 2)[2]
    deadline = time.monotonic() + 5  # the other workers' directories reload on NOTIFY
    while True:
        res = httpx.get(f"{base}/open311/v2/requests.json", params={"api_key": key})
        if res.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert res.status_code == 200, res.text
    time.sleep(0.2)  # the access line is written after the response
    lines = [line for line in records.lines if "/open311/v2/requests.json" in line]
    assert lines, records.lines[-5:]
    assert all(secret not in line for line in records.lines)
    assert any("api_key=[redacted]" in line for line in lines)
