"""GET /locate, /locate/history and POST /locate/batch on the demo city."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.schemas import ErrorPublic, LocatePublic
from gis.crs import from_lonlat
from gis.transform import wgs84_to_bd09, wgs84_to_gcj02


@pytest.fixture
def known(conn: Connection) -> dict:
    """A point inside a grid, with that grid and its primary worker, by PostGIS alone."""
    row = conn.execute(text(
        "SELECT g.code, ST_X(ST_PointOnSurface(g.geom)) AS lon, "
        "ST_Y(ST_PointOnSurface(g.geom)) AS lat FROM region_current g "
        "WHERE g.level = 'grid' AND g.code LIKE '330782001%' ORDER BY g.code LIMIT 1")).mappings().one()
    primary = conn.execute(text(
        "SELECT s.code FROM assignment a JOIN staff s ON s.id = a.staff_id "
        "JOIN region r ON r.id = a.region_id WHERE r.code = :c AND a.duty = 'primary' "
        "AND s.status = 'available' AND a.valid_to IS NULL ORDER BY s.code LIMIT 1"),
        {"c": row["code"]}).scalar()
    return {**row, "primary": primary}


def test_locate_names_the_grid_and_its_worker(client: TestClient, known: dict) -> None:
    res = client.get("/locate", params={"lon": known["lon"], "lat": known["lat"]})
    assert res.status_code == 200
    body = LocatePublic.model_validate(res.json())
    assert body.status == "inside" and body.grid.code == known["code"]
    assert [c.level for c in body.chain] == ["grid", "community", "street", "city"]
    assert body.point.crs_in == "EPSG:4326" and body.stale is False
    assert body.boundary_version is not None
    if known["primary"]:
        assert body.responsible.code == known["primary"] and body.fallback is None
    assert body.escalation[-1].level == "city"


@pytest.mark.parametrize("crs", ["gcj02", "GCJ-02", "bd09", "EPSG:4549", "EPSG:4490", "wgs84"])
def test_every_supported_crs_lands_in_the_same_grid(
    client: TestClient, known: dict, crs: str
) -> None:
    lon, lat = known["lon"], known["lat"]
    if crs.lower().startswith("gcj"):
        x, y = wgs84_to_gcj02(lon, lat)
    elif crs == "bd09":
        x, y = wgs84_to_bd09(lon, lat)
    else:
        x, y = from_lonlat(lon, lat, crs)
    body = client.get("/locate", params={"lon": float(x), "lat": float(y), "crs": crs}).json()
    assert body["grid"]["code"] == known["code"], body
    assert abs(body["point"]["lon"] - lon) < 1e-7 and abs(body["point"]["lat"] - lat) < 1e-7
    assert body["point"]["crs_in"] in {"GCJ-02", "BD-09", "EPSG:4549", "EPSG:4490", "EPSG:4326"}


def test_a_point_near_but_outside_the_city_names_the_nearest_grid(client: TestClient) -> None:
    body = client.get("/locate", params={"lon": 119.75, "lat": 29.30}).json()  # west of Yiwu
    assert body["status"] == "outside"
    assert body["nearest"]["code"] and 0 < body["nearest"]["distance_m"] < 30_000


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"lon": "nan", "lat": 29.3}, "invalid_coordinate", "lon"),
        ({"lon": 120.07, "lat": "inf"}, "invalid_coordinate", "lat"),
        ({"lon": 200, "lat": 29.3}, "invalid_coordinate", "lon"),
        ({"lon": 120.07, "lat": 95}, "invalid_coordinate", "lat"),
        ({"lon": 29.306, "lat": 120.075}, "swapped_coordinate", "lon"),
        ({"lon": 121.47, "lat": 31.23}, "point_far_outside", "lon"),  # Shanghai
        ({"lon": 120.07, "lat": 29.3, "crs": "EPSG:999999"}, "unknown_crs", "crs"),
        ({"lon": 120.07, "lat": 29.3, "crs": "'; DROP TABLE region; --"}, "unknown_crs", "crs"),
        ({"lon": "abc", "lat": 29.3}, "invalid_request", "lon"),
        ({"lat": 29.3}, "invalid_request", "lon"),
    ],
)
def test_bad_points_get_a_clear_4xx(client: TestClient, params: dict, code: str, field: str) -> None:
    res = client.get("/locate", params=params)
    assert res.status_code == 422, res.text
    err = ErrorPublic.model_validate(res.json())
    assert err.code == code
    detail = err.detail[0] if isinstance(err.detail, list) else err.detail
    assert detail["field"] == field
    assert client.get("/health").status_code == 200  # the server is still up


def test_swapped_error_carries_the_corrected_point(client: TestClient) -> None:
    detail = client.get("/locate", params={"lon": 29.306, "lat": 120.075}).json()["detail"]
    assert detail["corrected"] == {"lon": 120.075, "lat": 29.306}


def test_history_endpoint(client: TestClient, known: dict) -> None:
    now = client.get("/locate", params={"lon": known["lon"], "lat": known["lat"]}).json()
    past = client.get("/locate/history", params={
        "lon": known["lon"], "lat": known["lat"],
        "at": datetime.now(UTC).isoformat()}).json()
    assert past["grid"] == now["grid"] and past["responsible"] == now["responsible"]
    before = client.get("/locate/history", params={
        "lon": known["lon"], "lat": known["lat"], "at": "2020-01-01T00:00:00+08:00"}).json()
    assert before["status"] == "outside"  # the demo city's boundaries start in 2024
    assert client.get("/locate/history", params={"lon": 120.0, "lat": 29.3,
                                                  "at": "yesterday"}).status_code == 422


def _csv_rows(text_body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text_body)))


def test_batch_csv_keeps_fields_and_reports_bad_rows(client: TestClient, known: dict,
                                                     conn: Connection) -> None:
    # 2 km east of the city's easternmost vertex: outside, but within CITYGRID_MAX_OUTSIDE_M
    east = conn.execute(text(
        "SELECT ST_X(p.geom) + 0.02 AS lon, ST_Y(p.geom) AS lat FROM region_current c, "
        "ST_DumpPoints(c.geom) p WHERE c.level = 'city' ORDER BY ST_X(p.geom) DESC LIMIT 1"
    )).one()
    body = (
        "id,name,lon,lat\n"
        f"1,ok,{known['lon']},{known['lat']}\n"
        "2,words,abc,29.3\n"
        f"3,swapped,{known['lat']},{known['lon']}\n"
        "4,far,121.47,31.23\n"
        "5,empty,,\n"
        f"6,near,{east.lon},{east.lat}\n"
    )
    res = client.post("/locate/batch", content=body, headers={"content-type": "text/csv"})
    assert res.status_code == 200
    assert res.headers["x-citygrid-rows"] == "6" and res.headers["x-citygrid-bad-rows"] == "4"
    rows = _csv_rows(res.text)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[0]["name"] == "ok" and rows[0]["grid_code"] == known["code"]
    assert rows[0]["status"] == "inside" and rows[0]["responsible_code"]
    assert rows[1]["status"] == "error" and "non-numeric" in rows[1]["error"]
    assert rows[2]["status"] == "error" and "swapped" in rows[2]["error"]
    assert rows[2]["error_code"] == "swapped_coordinate"
    # Shanghai is farther than CITYGRID_MAX_OUTSIDE_M: an error, as a single /locate says
    assert rows[3]["status"] == "error" and rows[3]["error_code"] == "point_far_outside"
    assert rows[4]["status"] == "error" and rows[4]["error_code"] == "invalid_coordinate"
    single = client.get("/locate", params={"lon": east.lon, "lat": east.lat}).json()
    assert single["status"] == "outside" and rows[5]["status"] == "outside"
    assert rows[5]["grid_code"] == ""
    assert rows[5]["nearest_code"] == single["nearest"]["code"]
    assert float(rows[5]["nearest_distance_m"]) == single["nearest"]["distance_m"]


def test_batch_csv_in_another_crs_with_named_columns(client: TestClient, known: dict) -> None:
    x, y = wgs84_to_gcj02(known["lon"], known["lat"])
    body = f"X,Y\n{float(x)!r},{float(y)!r}\n"
    res = client.post("/locate/batch", params={"crs": "gcj02", "x_field": "X", "y_field": "Y"},
                      content=body, headers={"content-type": "text/csv"})
    assert res.headers["x-citygrid-crs"] == "GCJ-02"
    assert _csv_rows(res.text)[0]["grid_code"] == known["code"]


def test_batch_json_arrays_and_objects(client: TestClient, known: dict) -> None:
    arrays = client.post("/locate/batch", json=[[known["lon"], known["lat"], "a"], [1, "x"]])
    rows = arrays.json()
    assert rows[0][:3] == [known["lon"], known["lat"], "a"] and known["code"] in rows[0]
    assert "error" in rows[1]
    objects = client.post("/locate/batch", json={"crs": "EPSG:4326", "points": [
        {"lon": known["lon"], "lat": known["lat"], "ref": "A-1"}]}).json()
    assert objects[0]["ref"] == "A-1" and objects[0]["grid_code"] == known["code"]


def test_batch_geojson(client: TestClient, known: dict) -> None:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point",
                                         "coordinates": [known["lon"], known["lat"]]},
         "properties": {"case": "12345-1"}},
        {"type": "Feature", "geometry": None, "properties": {"case": "12345-2"}},
    ]}
    res = client.post("/locate/batch", content=orjson.dumps(fc),
                      headers={"content-type": "application/geo+json"})
    out = res.json()
    assert out["type"] == "FeatureCollection"
    assert out["features"][0]["properties"]["case"] == "12345-1"
    assert out["features"][0]["properties"]["grid_code"] == known["code"]
    assert out["features"][1]["properties"]["status"] == "error"
    assert res.headers["x-citygrid-bad-rows"] == "1"


@pytest.mark.parametrize(
    ("content", "ctype", "field"),
    [
        (b"a,b\n1,2\n", "text/csv", "lon"),
        (b"{not json", "application/json", "body"),
        (b'{"type": "Feature"}', "application/geo+json", "features"),
        (b"<xml/>", "application/xml", "content-type"),
        (b'"just a string"', "application/json", "points"),
    ],
)
def test_batch_rejects_unreadable_input_clearly(
    client: TestClient, content: bytes, ctype: str, field: str
) -> None:
    res = client.post("/locate/batch", content=content, headers={"content-type": ctype})
    assert res.status_code == 422
    assert res.json()["detail"]["field"] == field


def test_locate_is_answered_before_the_router_with_the_same_errors(
        api, client: TestClient, known: dict, monkeypatch) -> None:
    """/locate goes through the hot path (app/hotpath.py); its errors keep the app's own form."""
    app, _ = api
    assert any(m.cls.__name__ == "HotPath" for m in app.user_middleware)
    # The router is not reached: empty it and /locate still answers (other paths do not).
    monkeypatch.setattr(app.router, "routes", [])
    assert client.get("/health").status_code == 404
    res = client.get("/locate", params={"lon": known["lon"], "lat": known["lat"]})
    assert res.status_code == 200 and res.json()["grid"]["code"] == known["code"]
    res = client.get("/locate", params={"lon": known["lon"], "lat": known["lat"]},
                     headers={"authorization": ""})
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    assert set(ErrorPublic.model_validate(res.json()).model_dump()) == {"code", "message", "detail"}
    res = client.get("/locate", params={"lon": "abc", "lat": known["lat"]})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "lon"


def test_locate_keeps_cors_headers(settings, known: dict) -> None:
    """The hot path sits inside the CORS middleware, so configured origins still get headers."""
    from app.main import create_app

    s = settings.model_copy(update={"api": settings.api.model_copy(
        update={"cors_origins": ["https://portal.example"]})})
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        res = c.get("/locate", params={"lon": known["lon"], "lat": known["lat"]},
                    headers={"origin": "https://portal.example"})
    assert res.status_code == 401  # no credentials: still an answer with CORS headers
    assert res.headers["access-control-allow-origin"] == "https://portal.example"
