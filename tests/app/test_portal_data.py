"""The portal's own data routes: outlines by view and zoom, and the live incident feed."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from grids import outlines
from grids.access import Principal, Scope
from layers import live

CENTRE = (120.0, 29.25, 120.15, 29.35)  # a box over the city centre


def test_level_follows_zoom_and_only_the_view_is_sent(client: TestClient) -> None:
    city = client.get("/portal/outlines", params={"zoom": 11})
    assert city.status_code == 200
    assert city.headers["content-type"] == "application/geo+json"
    body = city.json()
    assert body["level"] == "street" and len(body["features"]) == 14
    assert len(city.content) < 60_000  # 14 streets simplified for zoom 11, not raw geometry
    box = ",".join(map(str, CENTRE))
    near = client.get("/portal/outlines", params={"zoom": 13, "bbox": box}).json()
    assert near["level"] == "community" and 20 < len(near["features"]) < 544
    close = client.get("/portal/outlines", params={"zoom": 16, "bbox": "120.07,29.30,120.08,29.31"})
    grids = close.json()["features"]
    assert close.json()["level"] == "grid" and 0 < len(grids) < 100
    f = grids[0]
    assert set(f["properties"]) == {"code", "name", "level", "parent", "label"}
    assert len(f["properties"]["code"]) == 15 and f["properties"]["parent"] == f["properties"]["code"][:12]


def test_outlines_are_simplified_for_the_zoom(conn: Connection) -> None:
    everything = Scope.everything()
    coarse = outlines.outlines(conn, scope=everything, zoom=10, level="street")
    fine = outlines.outlines(conn, scope=everything, zoom=18, level="street")
    assert len(orjson.dumps(coarse)) < len(orjson.dumps(fine)) / 3
    raw = conn.execute(text("SELECT sum(ST_NPoints(geom)) FROM region_current "
                            "WHERE level = 'street'")).scalar_one()
    drawn = sum(len(ring) for f in coarse["features"]
                for poly in orjson.loads(orjson.dumps(f["geometry"]))["coordinates"]
                for ring in poly)
    assert drawn < raw / 2


def test_label_point_is_inside_its_region(conn: Connection) -> None:
    out = outlines.outlines(conn, scope=Scope.everything(), zoom=16, bbox=(120.07, 29.30, 120.08, 29.31))
    for f in out["features"][:10]:
        lon, lat = f["properties"]["label"]
        assert conn.execute(text(
            "SELECT ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4490)) FROM region_current "
            "WHERE code = :c"), {"x": lon, "y": lat, "c": f["properties"]["code"]}).scalar_one()


def test_outlines_stay_in_the_jurisdiction(anonymous: TestClient, headers) -> None:
    res = anonymous.get("/portal/outlines", params={"zoom": 11},
                        headers=headers("t_supervisor"))
    codes = [f["properties"]["code"] for f in res.json()["features"]]
    assert codes == ["330782001000"]
    other = anonymous.get("/portal/outlines", params={"zoom": 16, "parent": "330782002"},
                          headers=headers("t_supervisor"))
    assert other.status_code == 200 and other.json()["features"] == []


@pytest.mark.parametrize("params", [{"zoom": 11, "bbox": "1,2,3"}, {"zoom": 11, "bbox": "5,5,1,1"},
                                    {"zoom": 30}, {"zoom": 11, "level": "city"}])
def test_bad_requests_are_explained(client: TestClient, params: dict) -> None:
    res = client.get("/portal/outlines", params=params)
    assert res.status_code == 422
    assert {"code", "message", "detail"} <= set(res.json())


def test_too_many_outlines_is_refused_in_words(conn: Connection, monkeypatch) -> None:
    monkeypatch.setattr(outlines, "MAX_FEATURES", 100)
    with pytest.raises(outlines.OutlineRequestError, match="zoom in"):
        outlines.outlines(conn, scope=Scope.everything(), zoom=14)


def _incident(conn: Connection, grid: str, ext: str) -> int:
    return conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, region_code, grid_code, geom) "
        "SELECT 'hotline_12345', :e, c.id, :g, :g, ST_PointOnSurface(r.geom) FROM category c, "
        "region_current r WHERE c.code = 'E0101' AND r.code = :g RETURNING id"),
        {"g": grid, "e": ext}).scalar_one()


def _grid(conn: Connection, street: str) -> str:
    return conn.execute(text("SELECT code FROM region_current WHERE level = 'grid' AND code LIKE :p "
                             "ORDER BY code LIMIT 1"), {"p": street + "%"}).scalar_one()


def test_new_incidents_since_a_cursor_in_the_jurisdiction(conn: Connection) -> None:
    start = live.latest_id(conn)
    inside = _incident(conn, _grid(conn, "330782001"), "live-1")
    outside = _incident(conn, _grid(conn, "330782002"), "live-2")
    supervisor = Principal.make("user:s", "supervisor", Scope.of("330782001"))
    dispatcher = Principal.make("user:d", "dispatcher", Scope.of("330782"))
    got = live.new_incidents(conn, principal=supervisor, after_id=start).items
    assert [i["id"] for i in got] == [inside]
    assert got[0]["category"] == "E0101" and "history" not in got[0]
    assert [i["id"] for i in live.new_incidents(conn, principal=dispatcher,
                                                after_id=start).items] == [inside, outside]
    assert live.new_incidents(conn, principal=dispatcher, after_id=outside).items == []


def test_a_burst_asks_for_a_reload_instead_of_a_flood(conn: Connection) -> None:
    start = live.latest_id(conn)
    grid = _grid(conn, "330782001")
    for k in range(4):
        _incident(conn, grid, f"burst-{k}")
    dispatcher = Principal.make("user:d", "dispatcher", Scope.of("330782"))
    assert len(live.new_incidents(conn, principal=dispatcher, after_id=start, limit=4).items) == 4
    burst = live.new_incidents(conn, principal=dispatcher, after_id=start, limit=3)
    assert burst.overflow and burst.items == []


def test_a_late_commit_below_the_cursor_is_still_sent(conn: Connection) -> None:
    grid = _grid(conn, "330782001")
    older = _incident(conn, grid, "late-0")  # there before the stream started: not news
    first = _incident(conn, grid, "late-1")
    second = _incident(conn, grid, "late-2")
    dispatcher = Principal.make("user:d", "dispatcher", Scope.of("330782"))
    # the stream started at `older`, then sent `second` before `first` became visible
    seen = live.seen_ids(conn, principal=dispatcher, after_id=older) - {first, second}
    assert older in seen
    got = live.new_incidents(conn, principal=dispatcher, after_id=second, seen=seen | {second})
    assert [i["id"] for i in got.items] == [first]
    assert live.new_incidents(conn, principal=dispatcher, after_id=second,
                              seen=seen | {first, second}).items == []


def test_event_stream_says_hello_and_needs_a_login(anonymous: TestClient, headers) -> None:
    assert anonymous.get("/portal/events", params={"max_s": 0}).status_code == 401
    res = anonymous.get("/portal/events", params={"max_s": 0, "after": 5},
                        headers=headers("t_supervisor"))
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/event-stream")
    assert res.text.startswith("retry: 3000\nid: 5\nevent: hello\ndata: ")
    assert '"after":5' in res.text


def test_reconnect_resumes_from_last_event_id(anonymous: TestClient, headers) -> None:
    res = anonymous.get("/portal/events", params={"max_s": 0},
                        headers={**headers("t_supervisor"), "Last-Event-ID": "42"})
    assert '"after":42' in res.text
