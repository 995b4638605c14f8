"""The grid worker's phone API (/field) on the demo city, as the test grid worker ``t_worker``.

Each test runs in the test's rolled-back transaction. A case is taken in by the dispatcher at a
point inside the worker's first grid, registered and dispatched: it lands in the worker's inbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely
import shapely.geometry
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from layers.field import photos
from layers.patrols import grid_cover
from tests.layers.test_field_photos import jpeg


@pytest.fixture
def store(api, tmp_path) -> Iterator[photos.LocalStore]:
    app = api[0]
    before = getattr(app.state, "photo_store", None)
    app.state.photo_store = photos.LocalStore(tmp_path)
    yield app.state.photo_store
    app.state.photo_store = before


@pytest.fixture
def worker(api) -> dict[str, Any]:
    entry = api[0].state.directory.by_name["t_worker"]
    return {"grids": list(entry.grid_codes)}


def _point(conn: Connection, grid: str) -> tuple[float, float]:
    row = conn.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM region_current r, LATERAL ST_PointOnSurface(r.geom) p "
        "WHERE r.code = :g"), {"g": grid}).one()
    return float(row[0]), float(row[1])


def _category(conn: Connection) -> str:
    return conn.execute(text("SELECT code FROM category WHERE parent_id IS NOT NULL AND active "
                             "ORDER BY code LIMIT 1")).scalar_one()


def dispatched_case(client: TestClient, headers, conn: Connection, grid: str) -> dict[str, Any]:
    lon, lat = _point(conn, grid)
    h = headers("t_dispatcher")
    res = client.post("/incidents", headers=h, json={
        "source": "hotline_12345", "external_id": f"field-{uuid.uuid4()}",
        "category": _category(conn), "description": "井盖破损", "address": "测试路 1 号",
        "lon": lon, "lat": lat})
    assert res.status_code == 201, res.text
    iid = res.json()["id"]
    for action in ("register", "dispatch"):
        r = client.post(f"/incidents/{iid}/actions", headers=h, json={"action": action})
        assert r.status_code == 200, r.text
    return {"id": iid, "lon": lon, "lat": lat}


def upload(client: TestClient, h: dict, data: bytes) -> dict[str, Any]:
    res = client.post("/field/photos", headers={**h, "Content-Type": "image/jpeg"}, content=data)
    assert res.status_code in (200, 201), res.text
    return res.json()


def act(client: TestClient, h: dict, iid: int, action: str, **body: Any):
    return client.post(f"/field/tasks/{iid}/actions", headers=h,
                       json={"client_id": str(uuid.uuid4()), "action": action, **body})


def test_me_grids_and_tasks(anonymous: TestClient, headers, conn: Connection, worker) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    me = anonymous.get("/field/me", headers=h).json()
    assert me["role"] == "grid_worker" and me["staff_code"] and me["grids"] == worker["grids"]
    assert me["can_verify"] is False
    tasks = anonymous.get("/field/tasks", headers=h).json()
    mine = [t for t in tasks["tasks"] if t["id"] == case["id"]]
    assert mine and mine[0]["state"] == "dispatched" and mine[0]["light"] == "green"
    assert mine[0]["allowed_actions"] == ["accept", "return"]
    assert tasks["verify"] == []
    grids = anonymous.get("/field/grids", headers=h).json()
    assert sorted(f["properties"]["code"] for f in grids["features"]) == sorted(worker["grids"])
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in grids["features"])
    assert case["id"] in [c["id"] for c in grids["cases"]]
    # A supervisor verifies: the reported cases of the street are their 核查 list.
    assert anonymous.get("/field/me", headers=headers("t_supervisor")).json()["can_verify"]


def test_coverage_of_my_grids_follows_my_fixes(anonymous: TestClient, headers, conn: Connection,
                                               worker) -> None:
    h = headers("t_worker")
    grid = worker["grids"][0]

    def share() -> float:
        body = anonymous.get("/field/grids", headers=h).json()
        return next(f["properties"]["patrolled_share"] for f in body["features"]
                    if f["properties"]["code"] == grid)
    before = share()
    row = conn.execute(text(
        "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM region_current "
        "WHERE code = :g"), {"g": grid}).one()
    staff = anonymous.get("/field/me", headers=h).json()["staff_code"]
    now = datetime.now(UTC)
    fixes = [{"staff_code": staff, "time": (now - timedelta(seconds=200 - i)).isoformat(),
              "lon": row[0] + (row[2] - row[0]) * i / 199, "lat": (row[1] + row[3]) / 2,
              "accuracy_m": 5} for i in range(200)]
    res = anonymous.post("/patrols/fixes", headers=h, json={"fixes": fixes})
    assert res.json()["accepted"] == 200
    assert anonymous.post("/patrols/fixes", headers=h, json={"fixes": fixes}).json()[
        "duplicates"] == 200  # a resent batch changes nothing
    # The plain share is the background worker's (patrol_grid_cover): not moved yet; asked with
    # the unpatrolled parts, the worker sees their own walk at once.
    assert share() == before
    fresh = anonymous.get("/field/grids", headers=h, params={"unpatrolled": "true"}).json()
    assert next(f["properties"]["patrolled_share"] for f in fresh["features"]
                if f["properties"]["code"] == grid) > before
    assert grid_cover.refresh_stale(conn) is not None  # as the background worker would
    assert share() > before
    # The unpatrolled parts only when asked, and then smaller than the grid.
    plain = anonymous.get("/field/grids", headers=h).json()["features"]
    assert all("unpatrolled" not in f["properties"] for f in plain)
    body = anonymous.get("/field/grids", headers=h, params={"unpatrolled": "true"}).json()
    mine = next(f for f in body["features"] if f["properties"]["code"] == grid)
    rest = shapely.geometry.shape(mine["properties"]["unpatrolled"])
    whole = shapely.geometry.shape(mine["geometry"])
    assert 0 < rest.area < whole.area * (1 - mine["properties"]["patrolled_share"] / 2)
    again = anonymous.get("/field/grids", headers=h, params={"unpatrolled": "true"}).json()
    assert again["features"] == body["features"]  # kept: the cover rows did not change


def test_nearby_open_cases_and_adding_to_one(anonymous: TestClient, headers, conn: Connection,
                                             worker, store) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    cat = _category(conn)
    near = anonymous.get("/field/duplicates", headers=h, params={
        "category": cat, "lon": case["lon"] + 0.0001, "lat": case["lat"]}).json()
    found = {c["id"]: c for c in near["candidates"]}
    assert case["id"] in found and 5 < found[case["id"]]["distance_m"] < 20
    assert near["rule"]["radius_m"] > 0
    far = anonymous.get("/field/duplicates", headers=h, params={
        "category": cat, "lon": case["lon"] + 0.05, "lat": case["lat"]}).json()
    assert case["id"] not in [c["id"] for c in far["candidates"]]
    # Add to it: the note and photo land in the case's history once, whatever the resends.
    photo = upload(anonymous, h, jpeg(lon=case["lon"], lat=case["lat"], seed=31))
    cid = str(uuid.uuid4())
    body = {"client_id": cid, "note": "井盖仍未修复，补充照片", "photos": [photo["url"]]}
    url = f"/field/incidents/{case['id']}/supplements"
    res = anonymous.post(url, headers=h, json=body)
    assert res.status_code == 201, res.text
    assert anonymous.post(url, headers=h, json=body).status_code == 200
    history = anonymous.get(f"/field/incidents/{case['id']}", headers=h).json()["history"]
    added = [e for e in history if e["action"] == "supplement"]
    assert len(added) == 1 and added[0]["note"] == body["note"]
    assert added[0]["photos"] == [photo["url"]]
    assert res.json()["incident"]["state"] == "dispatched"  # the state does not move
    got = anonymous.get(photo["url"], headers=headers("t_supervisor"))
    assert got.status_code == 200  # whoever sees the case sees its photos
    # The same client id for another case is a conflict; an empty supplement is refused.
    other = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    assert anonymous.post(f"/field/incidents/{other['id']}/supplements", headers=h,
                          json=body).status_code == 409
    empty = anonymous.post(url, headers=h, json={"client_id": str(uuid.uuid4())})
    assert empty.status_code == 422 and empty.json()["code"] == "invalid_field_request"


def test_accept_report_with_photo_is_in_the_history(anonymous: TestClient, headers,
                                                    conn: Connection, worker, store) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    cid = str(uuid.uuid4())
    first = anonymous.post(f"/field/tasks/{case['id']}/actions", headers=h,
                           json={"client_id": cid, "action": "accept"})
    assert first.status_code == 200 and first.json()["replayed"] is False
    again = anonymous.post(f"/field/tasks/{case['id']}/actions", headers=h,
                           json={"client_id": cid, "action": "accept"})
    assert again.status_code == 200 and again.json()["replayed"] is True
    history = again.json()["incident"]["history"]
    assert [e["action"] for e in history].count("accept") == 1
    data = jpeg(lon=case["lon"] + 0.0002, lat=case["lat"], taken_at=datetime.now(UTC), seed=1)
    photo = upload(anonymous, h, data)
    assert photo["created"] is True
    assert upload(anonymous, h, data) == {**photo, "created": False}  # a resend: nothing new
    res = act(anonymous, h, case["id"], "report", note="已修复", photos=[photo["sha256"]],
              position={"lon": case["lon"], "lat": case["lat"], "accuracy_m": 8})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["incident"]["state"] == "reported"
    assert body["evidence"]["suspicious"] is False, body["evidence"]
    # The case's history, through the desk's own API, shows the photo.
    inc = anonymous.get(f"/incidents/{case['id']}", headers=headers("t_supervisor")).json()
    report = [e for e in inc["history"] if e["action"] == "report"]
    assert report and report[0]["photos"] == [photos.url_of(photo["sha256"])]
    assert report[0]["note"] == "已修复"
    # Anyone who sees the case sees its photo; the thumbnail too.
    got = anonymous.get(photos.url_of(photo["sha256"]), headers=headers("t_supervisor"))
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content[:3] == b"\xff\xd8\xff"
    thumb = anonymous.get(photos.url_of(photo["sha256"]) + "/thumb", headers=h)
    assert thumb.status_code == 200 and len(thumb.content) < len(got.content)
    # ... and no one outside it.
    assert anonymous.get(photos.url_of(photo["sha256"]),
                         headers=headers("t_supervisor2")).status_code == 404


def test_return_needs_a_reason(anonymous: TestClient, headers, conn: Connection, worker) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    res = act(anonymous, h, case["id"], "return")
    assert res.status_code == 422 and res.json()["code"] == "reason_required"
    res = act(anonymous, h, case["id"], "return", reason="不属于本网格")
    assert res.status_code == 200 and res.json()["incident"]["state"] == "registered"
    assert res.json()["incident"]["history"][-1]["note"] == "不属于本网格"


def test_a_client_id_is_not_reused_for_something_else(anonymous: TestClient, headers,
                                                      conn: Connection, worker) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    cid = str(uuid.uuid4())
    assert anonymous.post(f"/field/tasks/{case['id']}/actions", headers=h,
                          json={"client_id": cid, "action": "accept"}).status_code == 200
    res = anonymous.post(f"/field/tasks/{case['id']}/actions", headers=h,
                         json={"client_id": cid, "action": "report"})
    assert res.status_code == 409


def test_report_needs_uploaded_photos(anonymous: TestClient, headers, conn: Connection,
                                      worker) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    act(anonymous, h, case["id"], "accept")
    res = act(anonymous, h, case["id"], "report", photos=["b" * 64])
    assert res.status_code == 422 and res.json()["code"] == "photo_not_uploaded"


def test_false_reply_is_flagged_and_cleared_by_a_supervisor(
        anonymous: TestClient, headers, conn: Connection, worker, store) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    act(anonymous, h, case["id"], "accept")
    # Taken 5 km away, a day before the dispatch; the phone sends from far away, no patrol near.
    photo = upload(anonymous, h, jpeg(lon=case["lon"] + 0.05, lat=case["lat"],
                                      taken_at=datetime.now(UTC) - timedelta(days=1), seed=2))
    res = act(anonymous, h, case["id"], "report", photos=[photo["sha256"]],
              position={"lon": case["lon"] + 0.05, "lat": case["lat"], "accuracy_m": 10})
    check = res.json()["evidence"]
    kinds = {f["kind"] for f in check["findings"]}
    assert check["suspicious"] and {"photo_far", "photo_before_dispatch", "sent_far",
                                    "never_near"} <= kinds
    case_view = anonymous.get(f"/field/incidents/{case['id']}", headers=h).json()
    assert case_view["evidence"][0]["suspicious"] and case_view["evidence"][0]["cleared_at"] is None
    flag = [e for e in case_view["history"] if e["action"] == "evidence_flag"]
    assert flag and flag[0]["note"].startswith("疑似虚假回复")
    # The worker may not clear it; a supervisor must give a reason.
    url = f"/field/incidents/{case['id']}/evidence/{check['id']}/clear"
    assert anonymous.post(url, headers=h, json={"reason": "ok"}).status_code == 403
    sup = headers("t_supervisor")
    assert anonymous.post(url, headers=sup, json={"reason": ""}).status_code == 422
    res = anonymous.post(url, headers=sup, json={"reason": "现场复核属实，照片为旧机补传"})
    assert res.status_code == 200 and res.json()["cleared_by"] == "user:t_supervisor"
    assert anonymous.post(url, headers=sup, json={"reason": "again"}).status_code == 409
    audit = conn.execute(text(
        "SELECT actor, after ->> 'clear_reason' FROM audit_log WHERE entity = 'evidence_check' "
        "AND entity_key = :k ORDER BY id DESC LIMIT 1"), {"k": str(check["id"])}).one()
    assert audit == ("user:t_supervisor", "现场复核属实，照片为旧机补传")
    history = anonymous.get(f"/incidents/{case['id']}", headers=sup).json()["history"]
    assert history[-1]["action"] == "evidence_clear"


def test_patrol_trace_near_the_case_is_evidence(anonymous: TestClient, headers,
                                                conn: Connection, worker, store) -> None:
    case = dispatched_case(anonymous, headers, conn, worker["grids"][0])
    h = headers("t_worker")
    staff = anonymous.get("/field/me", headers=h).json()["staff_code"]
    act(anonymous, h, case["id"], "accept")
    now = datetime.now(UTC)
    fixes = [{"staff_code": staff, "time": (now - timedelta(seconds=30 - i)).isoformat(),
              "lon": case["lon"] + 0.0003, "lat": case["lat"], "accuracy_m": 5}
             for i in range(5)]
    assert anonymous.post("/patrols/fixes", headers=h,
                          json={"fixes": fixes}).json()["accepted"] == 5
    photo = upload(anonymous, h, jpeg(lon=case["lon"], lat=case["lat"], taken_at=now, seed=3))
    check = act(anonymous, h, case["id"], "report", photos=[photo["sha256"]]).json()["evidence"]
    assert not check["suspicious"], check["findings"]


def test_field_report_is_idempotent(anonymous: TestClient, headers, conn: Connection, worker,
                                    store) -> None:
    lon, lat = _point(conn, worker["grids"][0])
    h = headers("t_worker")
    photo = upload(anonymous, h, jpeg(lon=lon, lat=lat, taken_at=datetime.now(UTC), seed=4))
    body = {"client_id": str(uuid.uuid4()), "category": _category(conn), "lon": lon, "lat": lat,
            "address": "测试路 2 号", "note": "占道经营", "photos": [photo["url"]]}
    first = anonymous.post("/field/reports", headers=h, json=body)
    assert first.status_code == 201, first.text
    again = anonymous.post("/field/reports", headers=h, json=body)
    assert again.status_code == 200 and again.json()["replayed"] is True
    inc = first.json()["incident"]
    assert inc["id"] == again.json()["incident"]["id"] and inc["source"] == "grid_worker"
    assert inc["grid_code"] == worker["grids"][0]
    attach = [e for e in inc["history"] if e["action"] == "attach"]
    assert attach[0]["photos"] == [photo["url"]]
    n = conn.execute(text("SELECT count(*) FROM incident WHERE external_id = :e"),
                     {"e": body["client_id"]}).scalar_one()
    assert n == 1


def test_outside_my_grids_is_refused(anonymous: TestClient, headers, conn: Connection) -> None:
    other = conn.execute(text("SELECT code FROM region_current WHERE level = 'grid' AND code "
                              "LIKE '330782002%' ORDER BY code LIMIT 1")).scalar_one()
    lon, lat = _point(conn, other)
    res = anonymous.post("/field/reports", headers=headers("t_worker"), json={
        "client_id": str(uuid.uuid4()), "category": _category(conn), "lon": lon, "lat": lat})
    assert res.status_code == 404 and res.json()["code"] == "outside_jurisdiction"


def test_photo_upload_is_checked(anonymous: TestClient, headers, store) -> None:
    h = {**headers("t_worker"), "Content-Type": "image/jpeg"}
    res = anonymous.post("/field/photos", headers=h, content=b"<svg/>")
    assert res.status_code == 422 and res.json()["code"] == "invalid_photo"
    assert anonymous.post("/field/photos", headers={"Content-Type": "image/jpeg"},
                          content=jpeg()).status_code == 401


def test_the_phone_s_data_in_any_city(any_city: Connection) -> None:
    """Both demo cities: the phone's zone and first view come from the city profile, my grids
    (with a walked one's unpatrolled part) and the nearby cases work with the city's own CRS."""
    from grids.access import Principal, Scope
    from grids.city import profile
    from grids.locate import load_snapshot
    from layers.field import duplicates, tasks
    from layers.incidents import intake
    from layers.patrols import grid_cover

    conn = any_city
    city = profile(conn)
    grid, staff, x0, y0, x1, y1 = conn.execute(text(
        "SELECT r.code, a.staff_id, ST_XMin(r.geom), ST_YMin(r.geom), ST_XMax(r.geom), "
        "ST_YMax(r.geom) FROM region_current r JOIN assignment a ON a.region_id = r.id "
        "AND a.valid_to IS NULL WHERE r.level = 'grid' ORDER BY r.code LIMIT 1")).one()
    who = Principal.make("user:nobody", "grid_worker", Scope.of(grid))
    me = tasks.me(conn, principal=who)
    assert me["city"]["tz"] == city.tz.key and me["city"]["name"] == city.name
    lat, lon = me["city"]["center"]
    west, south, east, north = city.extent
    assert west < lon < east and south < lat < north
    # A walk along the grid's middle today: the share (after the background refresh) and an
    # unpatrolled part that is not the whole grid.
    now = datetime.now(UTC)
    ats = [now - timedelta(seconds=3 * (300 - i)) for i in range(300)]
    conn.execute(text(
        "INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m) SELECT :s, a, "
        "ST_SetSRID(ST_MakePoint(x, :y), 4490), 5 FROM unnest(CAST(:a AS timestamptz[]), "
        "CAST(:x AS float8[])) AS u(a, x)"),
        {"s": staff, "a": ats, "y": (y0 + y1) / 2,
         "x": [x0 + (x1 - x0) * i / 299 for i in range(300)]})
    grid_cover.refresh_stale(conn)
    body = tasks.my_grids(conn, principal=who, unpatrolled=True)
    f = body["features"][0]["properties"]
    assert f["code"] == grid and 0 < f["patrolled_share"] < 1
    rest = shapely.geometry.shape(f["unpatrolled"])
    whole = shapely.geometry.shape(body["features"][0]["geometry"])
    assert west < rest.centroid.x < east and 0 < rest.area < whole.area
    # The nearby cases: an open case of the grid is found from a pin beside it.
    cx, cy = conn.execute(text("SELECT ST_X(p), ST_Y(p) FROM region_current r, "
                               "LATERAL ST_PointOnSurface(r.geom) p WHERE r.code = :g"),
                          {"g": grid}).one()
    placed, _ = intake.create(conn, load_snapshot(conn), {
        "source": "hotline_12345", "external_id": f"city-{uuid.uuid4()}",
        "category": _category(conn), "description": "井盖破损", "lon": cx, "lat": cy},
        principal=Principal.system())
    near = duplicates.near(conn, principal=who, category=_category(conn), lon=cx + 0.00005,
                           lat=cy)
    assert placed["id"] in [c["id"] for c in near["candidates"]]
