"""/locate states its uncertainty when asked: metres to the grid's edge, the runner-up grid,
the WGS84/GCJ-02 doubt; and reads links copied from Amap, Baidu and Tencent maps."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.schemas import LocatePublic
from gis.crs import to_lonlat
from gis.transform import wgs84_to_bd09, wgs84_to_gcj02
from tests.locate_edges import edge_point


@pytest.fixture
def edge(conn: Connection) -> dict:
    """A point inside grid A, a few metres from grid B (PostGIS alone, metres in the city's
    metric CRS): a shared edge's midpoint moved towards A's inside."""
    return edge_point(conn)


def test_plain_lookup_carries_no_uncertainty(client: TestClient, edge: dict) -> None:
    body = client.get("/locate", params={"lon": edge["lon"], "lat": edge["lat"]}).json()
    assert body["grid"]["code"] == edge["a"]
    assert "uncertainty" not in body and "datum_doubt" not in body


def test_edge_distance_and_runner_up(client: TestClient, edge: dict) -> None:
    res = client.get("/locate", params={"lon": edge["lon"], "lat": edge["lat"],
                                        "detail": "edges"})
    assert res.status_code == 200, res.text
    body = res.json()
    LocatePublic.model_validate(body)
    u = body["uncertainty"]
    assert body["grid"]["code"] == edge["a"]
    assert u["edge_m"] == pytest.approx(edge["edge_m"], abs=0.2)
    assert u["accuracy_m"] == 30 and u["metric_crs"].startswith("EPSG:")
    assert u["runner_up"]["code"] == edge["b"]
    assert u["runner_up"]["distance_m"] == pytest.approx(edge["to_b"], abs=0.2)
    # a caller whose GPS is good to 2 m: the neighbour is no longer a contender
    tight = client.get("/locate", params={"lon": edge["lon"], "lat": edge["lat"],
                                          "accuracy": 2}).json()["uncertainty"]
    assert tight["runner_up"] is None and tight["accuracy_m"] == 2
    assert tight["edge_m"] == pytest.approx(edge["edge_m"], abs=0.2)


def test_point_deep_inside_has_no_runner_up(client: TestClient, conn: Connection) -> None:
    row = conn.execute(text("""
        SELECT code, ST_X(c) AS lon, ST_Y(c) AS lat,
               ST_Distance(ST_Transform(ST_Boundary(geom), citygrid_metric_srid()),
                           ST_Transform(c, citygrid_metric_srid())) AS edge_m
        FROM (SELECT code, geom, ST_PointOnSurface(geom) AS c FROM region_current
              WHERE level = 'grid' AND code LIKE '330782001%') g
        ORDER BY 4 DESC LIMIT 1""")).mappings().one()
    u = client.get("/locate", params={"lon": row["lon"], "lat": row["lat"],
                                      "detail": "edges"}).json()["uncertainty"]
    assert row["edge_m"] > 30
    assert u["edge_m"] == pytest.approx(row["edge_m"], abs=0.2) and u["runner_up"] is None


@pytest.mark.parametrize("accuracy", ["0", "-5", "501", "x", "nan"])
def test_bad_accuracy_is_a_422(client: TestClient, edge: dict, accuracy: str) -> None:
    res = client.get("/locate", params={"lon": edge["lon"], "lat": edge["lat"],
                                        "accuracy": accuracy})
    assert res.status_code == 422 and res.json()["code"] == "invalid_request"


def _grid_at(conn: Connection, lon: float, lat: float) -> str | None:
    return conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND ST_Covers(geom, "
        "ST_SetSRID(ST_Point(:x, :y), 4490)) ORDER BY code LIMIT 1"), {"x": lon, "y": lat}).scalar()


def test_wgs84_and_gcj02_readings_in_different_grids_are_flagged(
        client: TestClient, conn: Connection) -> None:
    points = conn.execute(text(
        "SELECT code, ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat "
        "FROM region_current WHERE level = 'grid' AND code LIKE '330782001%' ORDER BY code "
        "LIMIT 30")).mappings().all()
    flagged = agreed = 0
    for p in points:
        lon, lat = (float(v) for v in to_lonlat(p["lon"], p["lat"], "gcj02"))
        other = _grid_at(conn, lon, lat)
        body = client.get("/locate", params={"lon": p["lon"], "lat": p["lat"],
                                            "detail": "edges"}).json()
        doubt = body["datum_doubt"]
        if other == p["code"]:
            assert doubt is None
            agreed += 1
            continue
        flagged += 1
        assert doubt["read_as"] == "GCJ-02"
        assert doubt["point"]["lon"] == pytest.approx(lon, abs=1e-7)
        assert (doubt["grid"] or {}).get("code") == other
        # read the other way round: the same two grids, swapped
        gx, gy = (float(v) for v in wgs84_to_gcj02(p["lon"], p["lat"]))
        back = client.get("/locate", params={"lon": gx, "lat": gy, "crs": "gcj02",
                                            "detail": "edges"}).json()
        assert back["grid"]["code"] == p["code"]
        if _grid_at(conn, gx, gy) not in (None, p["code"]):
            assert back["datum_doubt"]["read_as"] == "EPSG:4326"
    assert flagged > 0  # grids are a few hundred metres wide, the shift is too


def test_links_from_the_three_maps(client: TestClient, edge: dict) -> None:
    lon, lat = edge["lon"], edge["lat"]
    gx, gy = (float(v) for v in wgs84_to_gcj02(lon, lat))
    bx, by = (float(v) for v in wgs84_to_bd09(lon, lat))
    links = [f"https://uri.amap.com/marker?position={gx:.7f},{gy:.7f}&name=x&callnative=0",
             f"https://www.amap.com/?p=B0FFX,{gy:.7f},{gx:.7f},name,addr",
             f"https://apis.map.qq.com/uri/v1/marker?marker=coord:{gy:.7f},{gx:.7f};title:x"
             "&referer=app",
             f"http://api.map.baidu.com/marker?location={by:.7f},{bx:.7f}&title=x&output=html",
             f"https://map.baidu.com/?latlng={by:.7f},{bx:.7f}&title=x"]
    for link in links:
        res = client.get("/locate", params={"link": link, "detail": "edges"})
        assert res.status_code == 200, (link, res.text)
        body = res.json()
        assert body["grid"]["code"] == edge["a"], link
        assert body["point"]["lon"] == pytest.approx(lon, abs=2e-6), link
        assert body["link"]["provider"] in ("amap", "tencent", "baidu")
        assert body["uncertainty"]["runner_up"]["code"] == edge["b"]


def test_unreadable_link_is_a_422(client: TestClient) -> None:
    res = client.get("/locate", params={"link": "https://surl.amap.com/abc"})
    assert res.status_code == 422
    assert res.json()["code"] == "unreadable_map_link"
    assert res.json()["detail"]["reason"] == "short_link"


def test_point_just_outside_the_city(client: TestClient, conn: Connection) -> None:
    """10 m west of the westernmost grid vertex: outside, 10 m from the grid that may hold it."""
    row = conn.execute(text("""
        WITH v AS (SELECT code, (ST_DumpPoints(geom)).geom AS p FROM region_current
                   WHERE level = 'grid' ORDER BY ST_X((ST_DumpPoints(geom)).geom) LIMIT 1)
        SELECT code, ST_X(q) AS lon, ST_Y(q) AS lat FROM v,
               LATERAL ST_Transform(ST_Translate(ST_Transform(p, citygrid_metric_srid()),
                                                 -10, 0), 4490) q""")).mappings().one()
    body = client.get("/locate", params={"lon": row["lon"], "lat": row["lat"],
                                        "detail": "edges"}).json()
    assert body["status"] == "outside"
    u = body["uncertainty"]
    assert 9.0 < u["edge_m"] <= 10.05
    assert u["runner_up"]["code"] == row["code"] == body["nearest"]["code"]
