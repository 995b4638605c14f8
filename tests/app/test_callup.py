"""The call-up API (/callups) on the demo city: who, send, list, the phone's inbox and answers,
jurisdiction, and errors as ``{code, message, detail}``. Each test runs in the test's rolled-back
transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text


@pytest.fixture
def area(conn: Connection, api) -> dict[str, Any]:
    """A 20 m disc inside t_worker's first grid."""
    grid = api[0].state.directory.by_name["t_worker"].grid_codes[0]
    disc = conn.execute(text(
        "SELECT ST_AsGeoJSON(ST_Transform(ST_Buffer(ST_Transform(ST_PointOnSurface(geom), "
        "citygrid_metric_srid()), 20, 8), 4490), 9) FROM region_current WHERE code = :g"),
        {"g": grid}).scalar_one()
    return {"grid": grid, "geojson": orjson.loads(disc)}


def error(res, status: int, code: str) -> dict[str, Any]:
    assert res.status_code == status, res.text
    body = res.json()
    assert {"code", "message", "detail"} <= set(body) and body["code"] == code, body
    return body


def test_who_send_answer(anonymous: TestClient, headers, area, conn: Connection) -> None:
    h = headers("t_dispatcher")
    res = anonymous.post("/callups/who", headers=h, json={"area": area["geojson"], "limit": 3})
    assert res.status_code == 200, res.text
    who = res.json()
    assert area["grid"] in [g["code"] for g in who["grids"]]
    assert who["responsible"] and who["heads"]
    assert all("*" in p["phone"] for p in who["responsible"])  # dispatchers see masked phones
    res = anonymous.post("/callups", headers=h, json={
        "area": {"type": "Feature", "properties": {}, "geometry": area["geojson"]},
        "kind": "emergency", "title": "暴雨集结", "limit": 0})
    assert res.status_code == 201, res.text
    sent = res.json()
    cid = sent["id"]
    assert len(sent["tasks"]) == sent["answers"]["sent"] > 0
    listed = anonymous.get("/callups", headers=h).json()
    assert cid in [c["id"] for c in listed]

    w = headers("t_worker")
    mine = anonymous.get("/callups/mine", headers=w).json()
    assert cid in [i["callup_id"] for i in mine["items"]]
    error(anonymous.post(f"/callups/{cid}/answer", headers=w, json={"answer": "decline"}),
          422, "note_required")
    other = next(t["staff_code"] for t in sent["tasks"] if t["staff_code"] != mine["staff_code"])
    error(anonymous.post(f"/callups/{cid}/answer", headers=w,
                         json={"answer": "acknowledge", "staff_code": other}), 403, "forbidden")
    res = anonymous.post(f"/callups/{cid}/answer", headers=w,
                         json={"answer": "decline", "note": "正在处置另一起事件"})
    assert res.status_code == 200, res.text
    task = next(t for t in res.json()["tasks"] if t["staff_code"] == mine["staff_code"])
    assert task["state"] == "declined" and task["note"] == "正在处置另一起事件"
    # the desk sees the answer
    seen = anonymous.get(f"/callups/{cid}", headers=h).json()
    assert seen["answers"]["declined"] == 1
    # a grid worker may not call up, nor close
    error(anonymous.post("/callups/who", headers=w, json={"region_code": area["grid"]}),
          403, "forbidden")
    error(anonymous.post(f"/callups/{cid}/close", headers=w), 403, "forbidden")
    res = anonymous.post(f"/callups/{cid}/close", headers=h)
    assert res.status_code == 200 and res.json()["closed_at"]
    error(anonymous.post(f"/callups/{cid}/close", headers=h), 409, "conflict")
    assert cid not in [i["callup_id"] for i in anonymous.get("/callups/mine", headers=w)
                       .json()["items"]]


def test_jurisdiction(anonymous: TestClient, headers, area) -> None:
    s1, s2 = headers("t_supervisor"), headers("t_supervisor2")
    res = anonymous.post("/callups", headers=s1, json={
        "region_code": area["grid"], "title": "演练", "kind": "routine", "limit": 0})
    assert res.status_code == 201, res.text
    cid = res.json()["id"]
    error(anonymous.get(f"/callups/{cid}", headers=s2), 404, "callup_not_found")
    assert cid not in [c["id"] for c in anonymous.get("/callups", headers=s2).json()]
    error(anonymous.post("/callups/who", headers=s2, json={"region_code": area["grid"]}),
          404, "region_not_found")
    body = error(anonymous.post("/callups/who", headers=s2, json={"area": area["geojson"]}),
                 422, "no_grids_in_area")
    assert body["detail"]["outside_jurisdiction"] >= 1
    error(anonymous.post(f"/callups/{cid}/answer", headers=s2,
                         json={"answer": "acknowledge", "staff_code": "X"}),
          404, "callup_not_found")
    error(anonymous.post(f"/callups/{cid}/answer", headers=s1,
                         json={"answer": "acknowledge", "staff_code": "NOBODY"}),
          404, "callup_task_not_found")


def test_errors(anonymous: TestClient, headers, area) -> None:
    h = headers("t_dispatcher")
    error(anonymous.post("/callups/who", headers=h, json={}), 422, "area_required")
    error(anonymous.post("/callups/who", headers=h, json={
        "area": {"type": "Polygon", "coordinates": [[[1, 1], [2, 2]]]}}), 422, "invalid_area")
    error(anonymous.post("/callups/who", headers=h, json={"area": {"type": "Point",
                                                                   "coordinates": [1, 1]}}),
          422, "invalid_area")
    error(anonymous.post("/callups/who", headers=h, json={"region_code": "330782"}),
          422, "area_too_large")
    error(anonymous.post("/callups", headers=h, json={
        "region_code": area["grid"], "title": "x", "incident_id": 2**61}), 404,
        "incident_not_found")
    error(anonymous.post("/callups", headers=h, json={
        "region_code": area["grid"], "title": "x", "kind": "event"}), 422, "invalid_window")
    error(anonymous.post("/callups", headers=h, json={"region_code": area["grid"]}), 422,
          "invalid_request")
    error(anonymous.get("/callups/99999999", headers=h), 404, "callup_not_found")


def test_event_window_adds_reinforcements(anonymous: TestClient, headers, area,
                                          conn: Connection) -> None:
    """An event (重大活动) by the street's supervisor: the nearest person called stands on the
    area's grid as a backup for the window; a dispatcher may not open a window (403)."""
    helper = conn.execute(text(
        "SELECT s.code FROM staff s JOIN assignment a ON a.staff_id = s.id AND a.valid_to IS NULL "
        "AND a.duty = 'primary' JOIN region r ON r.id = a.region_id WHERE s.status = 'available' "
        "AND r.code LIKE :street AND r.code NOT LIKE :community ORDER BY s.code LIMIT 1"),
        {"street": area["grid"][:9] + "%", "community": area["grid"][:12] + "%"}).scalar_one()
    conn.execute(text(
        "INSERT INTO patrol_fix (staff_id, at, geom) SELECT s.id, now() - interval '1 minute', "
        "ST_Centroid(ST_GeomFromGeoJSON(:gj)) FROM staff s WHERE s.code = :s"),
        {"s": helper, "gj": orjson.dumps(area["geojson"]).decode()})
    start = datetime.now(UTC) + timedelta(hours=1)
    body = {"area": area["geojson"], "kind": "event", "title": "灯光节", "limit": 1,
            "max_fix_age_min": 30, "window_from": start.isoformat(),
            "window_to": (start + timedelta(hours=4)).isoformat()}
    error(anonymous.post("/callups", headers=headers("t_dispatcher"), json=body), 403,
          "forbidden")
    res = anonymous.post("/callups", headers=headers("t_supervisor"), json=body)
    assert res.status_code == 201, res.text
    task = next(t for t in res.json()["tasks"] if t["staff_code"] == helper)
    assert task["reason"] == "nearest" and task["distance_m"] == 0
    (r,) = task["reinforcements"]
    assert r["grid_code"] == area["grid"]
    assert datetime.fromisoformat(r["valid_to"]) == start + timedelta(hours=4)
    error(anonymous.post("/callups", headers=headers("t_supervisor"), json={
        **body, "window_to": body["window_from"]}), 422, "invalid_window")
