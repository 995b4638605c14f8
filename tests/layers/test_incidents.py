"""Incidents through the API on the demo city: intake, every path of the closed loop, queries."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook
from sqlalchemy import Connection, text

from app.routers.incidents import IncidentDetail, IncidentPage


@pytest.fixture
def spot(conn: Connection, api) -> dict:
    """A point in the test grid worker's own grid."""
    grid = api[0].state.directory.by_name["t_worker"].grid_codes[0]
    row = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat "
        "FROM region_current WHERE code = :g"), {"g": grid}).mappings().one()
    return {"grid": grid, **row}


def _new(client: TestClient, spot: dict, ext: str, **extra) -> int:
    res = client.post("/incidents", json={
        "source": "hotline_12345", "external_id": ext, "category": "E0101",
        "description": "垃圾堆放", "lon": spot["lon"], "lat": spot["lat"],
        "reporter_name": "张三", "reporter_phone": "13812345678", **extra})
    assert res.status_code == 201, res.text
    return res.json()["id"]


def _do(client: TestClient, headers, who: str, incident: int, action: str, **body) -> dict:
    res = client.post(f"/incidents/{incident}/actions", json={"action": action, **body},
                      headers=headers(who))
    assert res.status_code == 200, (action, who, res.text)
    return IncidentDetail.model_validate(res.json()).model_dump()


def test_intake_places_the_incident_and_is_idempotent(
    anonymous: TestClient, headers, spot: dict, conn: Connection
) -> None:
    h = headers("t_dispatcher")
    body = {"source": "hotline_12345", "external_id": "12345-0001", "category": "E0502",
            "lon": spot["lon"], "lat": spot["lat"], "address": "稠州北路"}
    first = anonymous.post("/incidents", json=body, headers=h)
    assert first.status_code == 201
    placed = first.json()
    assert placed["grid_code"] == spot["grid"] and placed["responsible_code"]
    assert placed["boundary_version_id"] is not None
    again = anonymous.post("/incidents", json={**body, "description": "retry"}, headers=h)
    assert again.status_code == 200 and again.json()["id"] == placed["id"]
    assert again.json()["created"] is False
    assert conn.execute(text("SELECT count(*) FROM incident WHERE external_id = '12345-0001'")
                        ).scalar() == 1


def test_normal_path_to_evaluation(anonymous: TestClient, headers, spot: dict) -> None:
    anonymous.headers.update(headers("t_dispatcher"))
    inc = _new(anonymous, spot, "normal-1")
    steps = [("t_dispatcher", "register"), ("t_dispatcher", "dispatch"), ("t_worker", "accept"),
             ("t_worker", "report"), ("t_supervisor", "verify"), ("t_supervisor", "close")]
    for who, action in steps:
        out = _do(anonymous, headers, who, inc, action, note=f"{action} done")
    assert out["state"] == "closed" and out["closed_on_time"] is True and out["light"] is None
    out = _do(anonymous, headers, "t_supervisor", inc, "evaluate", score=5)
    assert out["state"] == "evaluated" and out["score"] == 5
    assert [h["action"] for h in out["history"]] == [
        "receive", "register", "dispatch", "accept", "report", "verify", "close", "evaluate"]
    assert out["history"][3]["actor"] == "user:t_worker"
    assert out["history"][1]["note"] == "register done"


def test_return_rework_void_extension_and_red_card(
    anonymous: TestClient, headers, spot: dict
) -> None:
    anonymous.headers.update(headers("t_dispatcher"))
    # return: the worker hands it back, it goes one step back
    a = _new(anonymous, spot, "return-1")
    for who, act in [("t_dispatcher", "register"), ("t_dispatcher", "dispatch"),
                     ("t_worker", "accept")]:
        _do(anonymous, headers, who, a, act)
    out = _do(anonymous, headers, "t_worker", a, "return", note="不属本网格")
    assert out["state"] == "dispatched"
    # rework: a failed check sends it back to dispatch and counts
    b = _new(anonymous, spot, "rework-1")
    for who, act in [("t_dispatcher", "register"), ("t_dispatcher", "dispatch"),
                     ("t_worker", "accept"), ("t_worker", "report")]:
        _do(anonymous, headers, who, b, act)
    out = _do(anonymous, headers, "t_supervisor", b, "rework", note="未清理干净",
              photos=["https://example.org/p/1.jpg"])
    assert out["state"] == "dispatched" and out["rework_count"] == 1
    assert out["history"][-1]["photos"] == ["https://example.org/p/1.jpg"]
    for who, act in [("t_worker", "accept"), ("t_worker", "report"),
                     ("t_supervisor", "verify"), ("t_supervisor", "close")]:
        out = _do(anonymous, headers, who, b, act)
    assert out["state"] == "closed"
    # void: a duplicate call is voided before dispatch
    c = _new(anonymous, spot, "void-1")
    out = _do(anonymous, headers, "t_dispatcher", c, "void", note="重复来电")
    assert out["state"] == "voided" and out["allowed_actions"] == []
    # extension: more time, same state, later due
    d = _new(anonymous, spot, "extend-1")
    for who, act in [("t_dispatcher", "register"), ("t_dispatcher", "dispatch")]:
        before = _do(anonymous, headers, who, d, act)
    out = _do(anonymous, headers, "t_supervisor", d, "extend", hours=48, note="需协调")
    assert out["state"] == "dispatched" and out["extension_hours"] == 48
    assert out["due_at"] - before["due_at"] == timedelta(hours=48)
    # red card: supervision, state unchanged
    out = _do(anonymous, headers, "t_supervisor", d, "card", card="red")
    assert out["card"] == "red" and out["state"] == "dispatched"


def test_illegal_and_unauthorised_steps(anonymous: TestClient, headers, spot: dict) -> None:
    anonymous.headers.update(headers("t_dispatcher"))
    inc = _new(anonymous, spot, "illegal-1")
    res = anonymous.post(f"/incidents/{inc}/actions", json={"action": "close"},
                         headers=headers("t_supervisor"))
    assert res.status_code == 409
    assert res.json()["code"] == "illegal_transition"
    assert set(res.json()["detail"]["allowed"]) == {"register", "void", "card"}
    # a grid worker may not register; a dispatcher may not give cards
    assert anonymous.post(f"/incidents/{inc}/actions", json={"action": "register"},
                          headers=headers("t_worker")).status_code == 403
    assert anonymous.post(f"/incidents/{inc}/actions", json={"action": "card", "card": "red"},
                          headers=headers("t_dispatcher")).status_code == 403
    # two people acting on the same version: the second gets 409
    _do(anonymous, headers, "t_dispatcher", inc, "register", expected_version=1)
    stale = anonymous.post(f"/incidents/{inc}/actions", json={
        "action": "dispatch", "expected_version": 1}, headers=headers("t_dispatcher"))
    assert stale.status_code == 409 and stale.json()["detail"]["current"] == 2


def test_traffic_lights_and_queries(
    anonymous: TestClient, headers, spot: dict, conn: Connection
) -> None:
    anonymous.headers.update(headers("t_dispatcher"))
    ids = [_new(anonymous, spot, f"light-{i}") for i in range(3)]
    # 'received' has a 1 h register limit for E0101: 30 min green, 50 min yellow, 2 h red
    for inc, minutes in zip(ids, (30, 50, 120), strict=True):
        conn.execute(text("UPDATE incident SET state_since = now() - make_interval(mins => :m) "
                          "WHERE id = :id"), {"m": minutes, "id": inc})
    lights = {i.id: i.light for i in IncidentPage.model_validate(anonymous.get(
        "/incidents", params={"region": spot["grid"], "limit": 1000}).json()).items}
    assert [lights[i] for i in ids] == ["green", "yellow", "red"]
    red = anonymous.get("/incidents", params={"light": "red", "region": spot["grid"]}).json()
    assert [i["id"] for i in red["items"]] == [ids[2]]
    by_cat = anonymous.get("/incidents", params={"category": "E01", "state": "received",
                                                 "region": spot["grid"], "sort": "id"}).json()
    assert [i["id"] for i in by_cat["items"]] == ids  # a group code selects its categories
    mine = anonymous.get("/incidents", params={"assignee": by_cat["items"][0]["responsible_code"],
                                               "region": spot["grid"]}).json()
    assert mine["total"] >= 3
    # a supervisor of another street sees none of them; the grid's supervisor sees all
    other = anonymous.get("/incidents", params={"region": spot["grid"]},
                          headers=headers("t_supervisor2")).json()
    assert other["total"] == 0
    assert anonymous.get(f"/incidents/{ids[0]}", headers=headers("t_supervisor2")
                         ).status_code == 404


def test_reporter_data_is_masked_for_dispatchers(
    anonymous: TestClient, headers, spot: dict
) -> None:
    anonymous.headers.update(headers("t_dispatcher"))
    inc = _new(anonymous, spot, "mask-1")
    seen = anonymous.get(f"/incidents/{inc}").json()
    assert seen["reporter_phone"] == "138****5678" and seen["reporter_name"] == "张*"
    full = anonymous.get(f"/incidents/{inc}", headers=headers("t_supervisor")).json()
    assert full["reporter_phone"] == "13812345678" and full["reporter_name"] == "张三"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"category": "NOPE"}, "category"),
        ({"category": "E01"}, "category"),  # a group, not a category
        ({"lon": 29.3, "lat": 120.07}, "lon"),  # swapped
        ({"lon": 200.0}, "lon"),
        ({"lon": "east"}, "lon"),
        ({"description": "x" * 4001}, "description"),
        ({"reporter_name": "n" * 101}, "reporter_name"),
        ({"source": "fax"}, "source"),
        ({"external_id": ""}, "external_id"),
        ({"attachments": ["javascript:alert(1)"]}, "attachments.0"),
        ({"received_at": "2999-01-01T00:00:00Z"}, "received_at"),
        ({"lon": 121.47, "lat": 31.23}, "lon"),  # Shanghai: far outside
    ],
)
def test_malformed_fields_name_the_field_and_write_nothing(
    client: TestClient, spot: dict, conn: Connection, patch: dict, field: str
) -> None:
    before = conn.execute(text("SELECT count(*) FROM incident")).scalar()
    body = {"source": "hotline_12345", "external_id": "bad-1", "category": "E0101",
            "lon": spot["lon"], "lat": spot["lat"], **patch}
    res = client.post("/incidents", json=body)
    assert 400 <= res.status_code < 500, res.text
    detail = res.json()["detail"]
    named = detail[0]["field"] if isinstance(detail, list) else detail["field"]
    assert named == field, res.json()
    assert conn.execute(text("SELECT count(*) FROM incident")).scalar() == before


def test_bulk_csv_and_xlsx(client: TestClient, spot: dict, conn: Connection) -> None:
    header = "source,external_id,category,description,lon,lat,received_at\n"
    good = "".join(f"hotline_12345,day-{i},E0101,第{i}条,{spot['lon']},{spot['lat']},"
                   f"2026-11-28T09:{i:02d}:00+08:00\n" for i in range(20))
    res = client.post("/incidents/bulk", content=header + good,
                      headers={"content-type": "text/csv"})
    assert res.status_code == 200, res.text
    assert res.json() | {"errors": []} == {"rows": 20, "imported": 20, "duplicates": 0,
                                           "bad_rows": 0, "errors": []}
    again = client.post("/incidents/bulk", content=header + good,
                        headers={"content-type": "text/csv"}).json()
    assert again["imported"] == 0 and again["duplicates"] == 20
    before = conn.execute(text("SELECT count(*) FROM incident")).scalar()
    bad = (header + "hotline_12345,x-1,E0101,,120.07,29.3,\n"
           "fax,x-2,E0101,,120.07,29.3,\nhotline_12345,x-3,NOPE,,120.07,29.3,\n"
           "hotline_12345,x-4,E0101,,abc,29.3,\n")
    rejected = client.post("/incidents/bulk", content=bad, headers={"content-type": "text/csv"})
    assert rejected.status_code == 422
    rows = {(e["row"], e["field"]) for e in rejected.json()["detail"]["errors"]}
    assert rows == {(3, "source"), (4, "category"), (5, "lon")}
    assert conn.execute(text("SELECT count(*) FROM incident")).scalar() == before
    partial = client.post("/incidents/bulk", params={"partial": True}, content=bad,
                          headers={"content-type": "text/csv"}).json()
    assert partial["imported"] == 1 and partial["bad_rows"] == 3
    wb = Workbook()
    ws = wb.active
    ws.append(["source", "external_id", "category", "lon", "lat"])
    for i in range(5):
        ws.append(["police_110", f"110-{i}", "S0101", spot["lon"], spot["lat"]])
    buf = io.BytesIO()
    wb.save(buf)
    xlsx = client.post("/incidents/bulk", content=buf.getvalue(), headers={
        "content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    assert xlsx.status_code == 200 and xlsx.json()["imported"] == 5, xlsx.text
    placed = conn.execute(text("SELECT DISTINCT grid_code FROM incident WHERE source = "
                               "'police_110' AND external_id LIKE '110-%'")).scalars().all()
    assert placed == [spot["grid"]]


def test_an_incident_keeps_its_grid_after_a_redraw(
    client: TestClient, spot: dict, conn: Connection
) -> None:
    import geopandas as gpd
    from shapely import box

    from grids import store

    inc = client.post("/incidents", json={
        "source": "supervisor", "external_id": "kept-1", "category": "E0101",
        "lon": spot["lon"], "lat": spot["lat"]}).json()
    row = conn.execute(text("SELECT name, parent_code FROM region_current WHERE code = :g"),
                       {"g": spot["grid"]}).one()
    frame = gpd.GeoDataFrame([{"code": spot["grid"], "name": row.name, "level": "grid",
                               "parent_code": row.parent_code}],
                             geometry=[box(spot["lon"] + 0.01, spot["lat"] + 0.01,
                                           spot["lon"] + 0.011, spot["lat"] + 0.011)],
                             crs="EPSG:4490")
    version = store.new_version(conn, label="redraw")
    store.insert_regions(conn, frame, version_id=version)
    kept = client.get(f"/incidents/{inc['id']}").json()
    assert kept["grid_code"] == spot["grid"]
    assert kept["boundary_version_id"] == inc["boundary_version_id"] != version


def test_export_csv_and_xlsx_follow_filters_and_masking(
    anonymous: TestClient, headers, spot: dict
) -> None:
    import csv as csvmod

    from openpyxl import load_workbook

    anonymous.headers.update(headers("t_dispatcher"))
    ids = [_new(anonymous, spot, f"export-{i}") for i in range(3)]
    res = anonymous.get("/incidents/export.csv", params={"region": spot["grid"], "sort": "id"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    rows = list(csvmod.DictReader(io.StringIO(res.content.decode("utf-8-sig"))))
    assert [int(r["id"]) for r in rows][-3:] == ids
    assert rows[-1]["reporter_phone"] == "138****5678"  # the dispatcher's masking applies
    xlsx = anonymous.get("/incidents/export.xlsx", params={"region": spot["grid"]},
                         headers=headers("t_supervisor"))
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    values = list(sheet.values)
    assert values[0][0] == "id" and len(values) - 1 >= 3
    assert "13812345678" in {v[values[0].index("reporter_phone")] for v in values[1:]}
    other = anonymous.get("/incidents/export.csv", params={"region": spot["grid"]},
                          headers=headers("t_supervisor2"))
    assert len(list(csvmod.DictReader(io.StringIO(other.content.decode("utf-8-sig"))))) == 0
