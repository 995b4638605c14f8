"""Authorisation beyond the matrix: other streets, masking, audit, hostile input, sessions, keys."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from app.settings import ApiSettings, AuthSettings, Settings
from grids.access import mask_phone
from tests.app.test_auth_hardening import fresh_counters  # noqa: F401 - a fixture
from tests.conftest import APP_ROLE, TEST_PASSWORD


@pytest.fixture
def other_street(conn: Connection) -> dict:
    """A grid in 江东街道 (330782002): outside t_supervisor's 稠城街道."""
    row = conn.execute(text(
        "SELECT g.code, g.name, ST_X(ST_PointOnSurface(g.geom)) AS lon, "
        "ST_Y(ST_PointOnSurface(g.geom)) AS lat, s.code AS staff, a.id AS assignment "
        "FROM region_current g JOIN region r ON r.code = g.code "
        "JOIN assignment a ON a.region_id = r.id AND a.duty = 'primary' AND a.valid_to IS NULL "
        "JOIN staff s ON s.id = a.staff_id WHERE g.level = 'grid' AND g.code LIKE '330782002%' "
        "ORDER BY g.code LIMIT 1")).mappings().one()
    return dict(row)


@pytest.fixture
def own_grid(conn: Connection) -> dict:
    row = conn.execute(text(
        "SELECT g.code, ST_X(ST_PointOnSurface(g.geom)) AS lon, "
        "ST_Y(ST_PointOnSurface(g.geom)) AS lat, s.phone FROM region_current g "
        "JOIN region r ON r.code = g.code JOIN assignment a ON a.region_id = r.id "
        "AND a.duty = 'primary' AND a.valid_to IS NULL JOIN staff s ON s.id = a.staff_id "
        "WHERE g.level = 'grid' AND g.code LIKE '330782001%' AND s.status = 'available' "
        "ORDER BY g.code LIMIT 1")).mappings().one()
    return dict(row)


def test_a_street_supervisor_sees_nothing_of_another_street(
    anonymous: TestClient, headers, other_street: dict
) -> None:
    h = headers("t_supervisor")
    code = other_street["code"]
    # guessing codes and ids
    for url in (f"/regions/{code}", f"/regions/{code[:12]}", f"/regions/{code[:9]}",
                f"/regions/{code}/staff", f"/regions/{code[:12]}/children",
                f"/staff/{other_street['staff']}", "/users/t_supervisor2"):
        res = anonymous.get(url, headers=h)
        assert res.status_code == 404, url
    # search and listings
    assert anonymous.get("/regions", params={"q": "江东"}, headers=h).json()["total"] == 0
    listed = anonymous.get("/regions", params={"level": "grid", "limit": 5000}, headers=h).json()
    assert listed["total"] > 0 and all(r["code"].startswith("330782001") for r in listed["items"])
    assert all(u["region_code"].startswith("330782001")
               for u in anonymous.get("/users", headers=h).json())
    # changes
    assert anonymous.patch(f"/staff/{other_street['staff']}", json={"status": "on_leave"},
                           headers=h).status_code == 404
    assert anonymous.delete(f"/assignments/{other_street['assignment']}",
                            headers=h).status_code == 404
    assert anonymous.post("/assignments", json={"staff_code": other_street["staff"],
                                                "region_code": code, "duty": "backup"},
                          headers=h).status_code == 404
    # lookups, single and batch
    assert anonymous.get("/locate", params={"lon": other_street["lon"], "lat": other_street["lat"]},
                         headers=h).status_code == 404
    res = anonymous.post("/locate/batch", content=f"lon,lat\n{other_street['lon']},"
                         f"{other_street['lat']}\n", headers={**h, "content-type": "text/csv"})
    row = next(csv.DictReader(io.StringIO(res.text)))
    assert row["status"] == "forbidden" and row["grid_code"] == "" and row["responsible_name"] == ""
    # while a dispatcher gets the answer city-wide
    res = anonymous.post("/locate/batch", content=f"lon,lat\n{other_street['lon']},"
                         f"{other_street['lat']}\n",
                         headers={**headers("t_dispatcher"), "content-type": "text/csv"})
    assert next(csv.DictReader(io.StringIO(res.text)))["grid_code"] == code


def test_dispatchers_see_masked_phones_and_the_grids_supervisor_sees_them_in_full(
    anonymous: TestClient, headers, own_grid: dict
) -> None:
    params = {"lon": own_grid["lon"], "lat": own_grid["lat"]}
    dispatcher = anonymous.get("/locate", params=params, headers=headers("t_dispatcher")).json()
    supervisor = anonymous.get("/locate", params=params, headers=headers("t_supervisor")).json()
    assert supervisor["responsible"]["phone"] == own_grid["phone"]
    assert dispatcher["responsible"]["phone"] == mask_phone(own_grid["phone"])
    assert "****" in dispatcher["responsible"]["phone"]
    for step in dispatcher["escalation"]:
        if step["head"]:
            assert "****" in step["head"]["phone"]
    staff = anonymous.get(f"/regions/{own_grid['code']}/staff",
                          headers=headers("t_planner")).json()
    assert staff and all("****" in s["phone"] for s in staff)
    full = anonymous.get(f"/regions/{own_grid['code']}/staff",
                         headers=headers("t_supervisor")).json()
    assert own_grid["phone"] in {s["phone"] for s in full}


def test_every_change_is_audited_with_before_and_after(
    anonymous: TestClient, headers, own_grid: dict, conn: Connection
) -> None:
    h = headers("t_supervisor")
    staff = anonymous.get(f"/regions/{own_grid['code']}/staff", headers=h).json()[0]["code"]
    assert anonymous.patch(f"/staff/{staff}", json={"status": "seconded"},
                           headers=h).status_code == 200
    made = anonymous.post("/assignments", json={"staff_code": staff, "region_code":
                                                own_grid["code"][:12], "duty": "head"},
                          headers=h)
    assert made.status_code == 201, made.text
    assert anonymous.delete(f"/assignments/{made.json()['id']}", headers=h).status_code == 200
    log = anonymous.get("/audit", params={"entity": "staff", "key": staff}, headers=h).json()
    assert log[0]["actor"] == "user:t_supervisor" and log[0]["ip"]
    assert log[0]["before"]["status"] != "seconded" and log[0]["after"]["status"] == "seconded"
    entries = anonymous.get("/audit", params={"entity": "assignment"}, headers=h).json()
    actions = [(e["action"], e["after"] and e["after"].get("valid_to") is not None)
               for e in entries if (e["after"] or e["before"])["id"] == made.json()["id"]]
    assert ("insert", False) in actions and ("update", True) in actions
    # a supervisor of another street does not see these entries; the admin does
    other = anonymous.get("/audit", params={"entity": "staff", "key": staff},
                          headers=headers("t_supervisor2")).json()
    assert other == []
    assert anonymous.get("/audit", params={"entity": "staff", "key": staff},
                         headers=headers("t_admin")).json()[0]["id"] == log[0]["id"]
    # users and keys are audited too, without their secrets
    anonymous.post("/users", json={"username": "audited", "password": "long-enough-password-9",
                                   "role": "viewer", "region_code": "330782001"},
                   headers=headers("t_admin"))
    user_log = anonymous.get("/audit", params={"entity": "app_user", "key": "audited"},
                             headers=headers("t_admin")).json()
    assert user_log and "password_hash" not in user_log[0]["after"]


def test_the_audit_log_is_append_only(conn: Connection) -> None:
    conn.execute(text("INSERT INTO audit_log (actor, action, entity) "
                      "VALUES ('test', 'insert', 'probe')"))
    with conn.begin_nested():
        conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
        with pytest.raises(DBAPIError, match="permission denied"), conn.begin_nested():
            conn.execute(text("DELETE FROM audit_log WHERE entity = 'probe'"))
        with pytest.raises(DBAPIError, match="permission denied"), conn.begin_nested():
            conn.execute(text("UPDATE audit_log SET actor = 'x' WHERE entity = 'probe'"))
        conn.execute(text("RESET ROLE"))
    # Even the owner cannot rewrite it: a trigger refuses.
    with pytest.raises(DBAPIError, match="append-only"), conn.begin_nested():
        conn.execute(text("DELETE FROM audit_log WHERE entity = 'probe'"))
    assert conn.execute(text("SELECT count(*) FROM audit_log WHERE entity = 'probe'")).scalar() == 1


HOSTILE = ["' OR '1'='1", "'; DROP TABLE region; --", "\" OR 1=1 --", "330782' UNION SELECT 1--",
           "%' AND pg_sleep(5)--", "\\x00\\", "Robert'); DELETE FROM staff;--"]


@pytest.mark.parametrize("evil", HOSTILE)
def test_injection_strings_touch_nothing(client: TestClient, conn: Connection, evil: str) -> None:
    before = conn.execute(text("SELECT (SELECT count(*) FROM audit_log), "
                               "(SELECT count(*) FROM region), (SELECT count(*) FROM staff)")).one()
    responses = [
        client.get("/regions", params={"q": evil, "parent": evil[:15]}),
        client.get("/regions", params={"q": evil}),
        client.get(f"/regions/{evil}"),
        client.get(f"/staff/{evil}"),
        client.get("/locate", params={"lon": evil, "lat": "29.3"}),
        client.get("/locate", params={"lon": 120.07, "lat": 29.3, "crs": evil}),
        client.get("/audit", params={"entity": evil, "key": evil}),
        client.get(f"/users/{evil}"),
        client.patch("/staff/S000001", json={"name": evil * 20, "phone": evil}),
        client.post("/assignments", json={"staff_code": evil, "region_code": evil, "duty": evil}),
        client.post("/users", json={"username": evil, "password": evil, "role": evil,
                                    "region_code": evil}),
        client.post("/auth/token", json={"username": evil, "password": evil}),
        client.post("/locate/batch", content=f"lon,lat\n{evil},{evil}\n",
                    headers={"content-type": "text/csv"}),
    ]
    for res in responses:
        assert res.status_code < 500, res.text
    assert all(r.status_code >= 400 for r in responses[2:6] + responses[7:12]), \
        [r.status_code for r in responses]
    after = conn.execute(text("SELECT (SELECT count(*) FROM audit_log), "
                              "(SELECT count(*) FROM region), (SELECT count(*) FROM staff)")).one()
    assert tuple(after) == tuple(before)


def test_oversized_bodies_are_refused(client: TestClient) -> None:
    res = client.patch("/staff/S000001", content=b"{" + b" " * 2_000_000 + b"}",
                       headers={"content-type": "application/json"})
    assert res.status_code == 413 and res.json()["code"] == "payload_too_large"


def test_malformed_and_expired_tokens(anonymous: TestClient, api, settings) -> None:
    for value in ("Bearer nonsense", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer ",
                  "Bearer " + jwt.encode({"sub": "1", "tv": 1, "typ": "access",
                                          "exp": datetime.now(UTC) + timedelta(minutes=5)},
                                         "not-the-secret-key-at-all-0123456789", algorithm="HS256")):
        res = anonymous.get("/regions", headers={"Authorization": value})
        assert res.status_code == 401, value
        assert res.json()["code"] in {"invalid_token", "unauthorized"}
    user = api[0].state.directory.by_name["t_admin"]
    expired = jwt.encode({"sub": str(user.id), "tv": user.token_version, "typ": "access",
                          "exp": datetime.now(UTC) - timedelta(seconds=5)},
                         settings.auth.secret_key, algorithm="HS256")
    res = anonymous.get("/regions", headers={"Authorization": f"Bearer {expired}"})
    assert res.status_code == 401 and res.json()["code"] == "token_expired"
    assert anonymous.get("/regions", headers={"X-API-Key": "cgk_abcdefgh_wrong"}).status_code == 401


@pytest.mark.usefixtures("fresh_counters")  # login failures are counted in the database
def test_login_gives_a_working_token_and_failures_are_rate_limited(anonymous: TestClient) -> None:
    ok = anonymous.post("/auth/token", json={"username": "t_viewer", "password": TEST_PASSWORD})
    assert ok.status_code == 200
    token = ok.json()["access_token"]
    me = anonymous.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["role"] == "viewer" and me["scope"] == ["330782001"]
    statuses = [anonymous.post("/auth/token", json={"username": "t_planner",
                                                    "password": "wrong-password"}).status_code
                for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    assert anonymous.post("/auth/token", json={"username": "t_planner",
                                               "password": TEST_PASSWORD}).status_code == 429


def test_portal_session_cookie_needs_csrf_on_writes(anonymous: TestClient, own_grid: dict) -> None:
    res = anonymous.post("/auth/session", json={"username": "t_supervisor",
                                                "password": TEST_PASSWORD})
    assert res.status_code == 200
    cookie = res.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    csrf = res.json()["csrf_token"]
    assert anonymous.get(f"/regions/{own_grid['code']}").status_code == 200  # reads: cookie only
    staff = anonymous.get(f"/regions/{own_grid['code']}/staff").json()[0]["code"]
    refused = anonymous.patch(f"/staff/{staff}", json={"status": "on_leave"})
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    wrong = anonymous.patch(f"/staff/{staff}", json={"status": "on_leave"},
                            headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    done = anonymous.patch(f"/staff/{staff}", json={"status": "on_leave"},
                           headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200
    anonymous.post("/auth/logout")
    anonymous.cookies.clear()
    assert anonymous.get(f"/regions/{own_grid['code']}").status_code == 401


def test_api_keys_have_their_own_role_scope_and_rate_limit(
    anonymous: TestClient, headers, api, own_directory, conn: Connection, own_grid: dict,
    other_street: dict,
) -> None:
    admin = headers("t_admin")
    made = anonymous.post("/api-keys", headers=admin, json={
        "name": "citizen-app", "role": "viewer", "region_code": "330782001",
        "rate_limit_per_minute": 3})
    assert made.status_code == 201
    key = made.json()["key"]
    assert conn.execute(text("SELECT count(*) FROM api_key WHERE key_hash LIKE :k"),
                        {"k": "%" + key.split("_", 2)[2] + "%"}).scalar() == 0  # not stored in clear
    api[0].state.directory.reload(conn)  # the key was made inside this test's transaction
    h = {"X-API-Key": key}
    assert anonymous.get(f"/regions/{own_grid['code']}", headers=h).status_code == 200
    assert anonymous.get(f"/regions/{other_street['code']}", headers=h).status_code == 404
    assert anonymous.get("/users", headers=h).status_code == 403
    limited = anonymous.get(f"/regions/{own_grid['code']}", headers=h)
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert anonymous.delete("/api-keys/citizen-app", headers=admin).status_code == 200
    api[0].state.directory.reload(conn)
    assert anonymous.get("/regions", headers=h).status_code == 401


def test_disabling_a_user_or_resetting_a_password_ends_their_tokens(
    client: TestClient, anonymous: TestClient, api, own_directory, headers, conn: Connection
) -> None:
    old = headers("t_viewer")
    assert anonymous.get("/regions", headers=old).status_code == 200
    assert client.post("/users/t_viewer/password",
                       json={"password": "a-brand-new-password"}).status_code == 200
    api[0].state.directory.reload(conn)
    assert anonymous.get("/regions", headers=old).status_code == 401
    fresh = headers("t_viewer")
    assert client.patch("/users/t_viewer", json={"disabled": True}).status_code == 200
    api[0].state.directory.reload(conn)
    assert anonymous.get("/regions", headers=fresh).status_code == 401


def test_production_refuses_a_development_secret() -> None:
    with pytest.raises(ValidationError, match="development or short secret"):
        Settings(api=ApiSettings(mode="production"))
    with pytest.raises(ValidationError):
        Settings(api=ApiSettings(mode="production"), auth=AuthSettings(secret_key="short"))
    ok = Settings(api=ApiSettings(mode="production"), auth=AuthSettings(secret_key="x" * 40))
    assert ok.api.mode == "production"


def test_cors_is_closed_by_default(anonymous: TestClient) -> None:
    res = anonymous.options("/regions", headers={"Origin": "https://evil.example",
                                                 "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in res.headers
    res = anonymous.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in res.headers


def test_boundary_writes_are_audited_with_their_actor(conn: Connection) -> None:
    import geopandas as gpd
    from shapely import box

    from app.db import set_actor
    from grids import store

    set_actor(conn, "user:planner-test", "10.1.2.3")
    grid = conn.execute(text("SELECT code, name, parent_code FROM region_current "
                             "WHERE level = 'grid' ORDER BY code LIMIT 1")).one()
    frame = gpd.GeoDataFrame([{"code": grid.code, "name": grid.name, "level": "grid",
                               "parent_code": grid.parent_code}],
                             geometry=[box(120.0, 29.0, 120.001, 29.001)], crs="EPSG:4490")
    version = store.new_version(conn, label="audit probe")
    store.insert_regions(conn, frame, version_id=version)
    rows = conn.execute(text(
        "SELECT action, actor, ip, before, after FROM audit_log WHERE entity = 'region_boundary' "
        "AND region_code = :c ORDER BY id"), {"c": grid.code}).mappings().all()
    closed = [r for r in rows if r["action"] == "update"]
    added = [r for r in rows if r["action"] == "insert"]
    assert closed and added
    assert closed[-1]["before"]["valid_to"] is None and closed[-1]["after"]["valid_to"]
    assert added[-1]["after"]["geom_md5"] and "geom" not in added[-1]["after"]
    assert {r["actor"] for r in rows[-2:]} == {"user:planner-test"}
    assert rows[-1]["ip"] == "10.1.2.3"


def test_an_import_into_one_plan_takes_the_bulk_limit() -> None:
    """``/plans/{id}/import`` carries a GeoPackage: the bulk cap, not the 1 MB default; other
    paths under /plans/{id} keep the default (app.main.BULK_PATTERNS)."""
    from app.limits import BodySizeLimit
    from app.main import BULK_PATHS, BULK_PATTERNS

    guard = BodySizeLimit(lambda *a: None, default=10, bulk=1000, bulk_paths=BULK_PATHS,
                          bulk_patterns=BULK_PATTERNS)
    assert guard._is_bulk("/plans/12/import") and guard._is_bulk("/plans/import")
    assert not guard._is_bulk("/plans/12/edits") and not guard._is_bulk("/plans/12/import/x")
    assert not guard._is_bulk("/plans/x/import")
