"""OGC API - Features over HTTP on the demo city: documents, paging, bbox, jurisdiction, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import shape
from sqlalchemy import Connection, text

from app.routers.ogc import CollectionPublic, CollectionsPublic, Conformance, LandingPage
from app.schemas import ErrorPublic

STREET = "330782001"  # 稠城街道, t_supervisor's jurisdiction


def _rels(doc: dict) -> dict[str, dict]:
    return {link["rel"]: link for link in doc["links"]}


def _codes(conn: Connection, sql: str, **params) -> list[str]:
    return list(conn.execute(text(sql), params).scalars())


def test_landing_conformance_and_collections(client: TestClient) -> None:
    landing = client.get("/ogc")
    assert landing.status_code == 200 and landing.headers["content-type"] == "application/json"
    rels = _rels(LandingPage.model_validate(landing.json()).model_dump())
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(rels)
    assert client.get(rels["service-desc"]["href"]).status_code == 200  # the OpenAPI document
    conformance = Conformance.model_validate(client.get(rels["conformance"]["href"]).json())
    assert {"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
            "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs"} <= set(
        conformance.conformsTo)

    listing = CollectionsPublic.model_validate(client.get(rels["data"]["href"]).json())
    assert [c.id for c in listing.collections] == ["grids", "communities", "streets", "city"]
    grids = next(c for c in listing.collections if c.id == "grids")
    assert "http://www.opengis.net/def/crs/OGC/1.3/CRS84" in grids.crs
    assert "http://www.opengis.net/def/crs/EPSG/0/4490" in grids.crs
    west, south, east, north = grids.extent["spatial"]["bbox"][0]
    assert 119.8 < west < east < 120.5 and 29.0 < south < north < 29.6  # 义乌, lon/lat
    links = {link.rel: link.href for link in grids.links}
    one = CollectionPublic.model_validate(client.get(links["self"]).json())
    assert one.id == "grids" and one.extent == grids.extent
    assert links["items"].endswith("/ogc/collections/grids/items")


def test_items_paging_walks_every_grid_of_a_street(
    anonymous: TestClient, headers, conn: Connection
) -> None:
    truth = _codes(conn, "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE :p "
                         "ORDER BY code", p=STREET + "%")
    assert len(truth) > 120  # enough for three pages of 50
    h = headers("t_supervisor")  # sees only 稠城街道
    url: str | None = "/ogc/collections/grids/items?limit=50"
    seen: list[str] = []
    pages = 0
    while url:
        res = anonymous.get(url, headers=h)
        assert res.status_code == 200
        assert res.headers["content-type"] == "application/geo+json"
        body = res.json()
        assert body["type"] == "FeatureCollection"
        assert body["numberMatched"] == len(truth)
        assert body["numberReturned"] == len(body["features"]) <= 50
        rels = _rels(body)
        assert ("prev" in rels) == (pages > 0)
        seen += [f["id"] for f in body["features"]]
        url = rels["next"]["href"] if "next" in rels else None
        pages += 1
    assert seen == truth  # every grid once, in code order
    assert pages == -(-len(truth) // 50)
    # A page past the end: nothing returned, still the right count, a way back.
    past = anonymous.get("/ogc/collections/grids/items",
                         params={"limit": 50, "offset": len(truth) + 10}, headers=h).json()
    assert past["numberReturned"] == 0 and past["numberMatched"] == len(truth)
    assert "next" not in _rels(past) and "prev" in _rels(past)


def test_bbox_matches_postgis_and_links_keep_the_filter(
    client: TestClient, conn: Connection
) -> None:
    x, y = conn.execute(text(
        "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geom) AS c FROM region_current "
        "WHERE code = :s) q"), {"s": STREET + "000"}).one()
    box = (x - 0.01, y - 0.008, x + 0.012, y + 0.01)
    truth = set(_codes(conn, "SELECT code FROM region_current WHERE level = 'grid' AND "
                             "ST_Intersects(geom, ST_MakeEnvelope(:w, :s, :e, :n, 4490))",
                       w=box[0], s=box[1], e=box[2], n=box[3]))
    assert 5 < len(truth) < 400
    res = client.get("/ogc/collections/grids/items",
                     params={"bbox": ",".join(map(str, box)), "limit": 1000})
    body = res.json()
    assert {f["id"] for f in body["features"]} == truth
    assert body["numberMatched"] == len(truth)
    envelope = shapely.box(*box)
    for f in body["features"]:
        assert shape(f["geometry"]).intersects(envelope)
    # The same box in CGCS2000's own axis order (lat, lon) selects the same grids.
    latlon = (box[1], box[0], box[3], box[2])
    same = client.get("/ogc/collections/grids/items", params={
        "bbox": ",".join(map(str, latlon)), "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4490",
        "limit": 1000}).json()
    assert {f["id"] for f in same["features"]} == truth
    # Paging links keep the bbox.
    small = client.get("/ogc/collections/grids/items",
                       params={"bbox": ",".join(map(str, box)), "limit": 2}).json()
    nxt = parse_qs(urlsplit(_rels(small)["next"]["href"]).query)
    assert nxt["bbox"] == [",".join(map(str, box))] and nxt["offset"] == ["2"]


def test_one_feature_by_id(client: TestClient, conn: Connection) -> None:
    row = conn.execute(text(
        "SELECT code, name, parent_code, area_m2, version_id, ST_AsText(geom) AS wkt "
        "FROM region_current WHERE level = 'grid' AND code LIKE :p ORDER BY code LIMIT 1"),
        {"p": STREET + "%"}).mappings().one()
    res = client.get(f"/ogc/collections/grids/items/{row['code']}", params={"f": "json"},
                     headers={"Accept": "application/geo+json"})
    assert res.status_code == 200 and res.headers["content-type"] == "application/geo+json"
    assert res.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    feature = res.json()
    assert feature["type"] == "Feature" and feature["id"] == row["code"]
    props = feature["properties"]
    assert props["name"] == row["name"] and props["parent_code"] == row["parent_code"]
    assert props["level"] == "grid" and props["boundary_version"] == row["version_id"]
    assert props["area_m2"] == pytest.approx(row["area_m2"], abs=0.1)
    # The region and its boundary, nothing about people (no staff names or phones).
    assert set(props) == {"code", "name", "level", "parent_code", "area_m2", "boundary_version",
                          "valid_from"}
    stored = shapely.from_wkt(row["wkt"])
    served = shape(feature["geometry"])
    assert served.equals_exact(stored, 1e-6)
    assert _rels(feature)["collection"]["href"].endswith("/ogc/collections/grids")
    # Part 2: EPSG:4490 answers in its own axis order (lat, lon).
    flipped = client.get(f"/ogc/collections/grids/items/{row['code']}",
                         params={"crs": "EPSG:4490"})
    assert flipped.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4490>"
    lat_lon = shape(flipped.json()["geometry"])
    assert shapely.transform(lat_lon, lambda c: c[:, ::-1]).equals_exact(stored, 1e-6)
    # A street is not a grid: asked in the wrong collection it is not found.
    assert client.get(f"/ogc/collections/grids/items/{STREET}000").status_code == 404
    street = client.get(f"/ogc/collections/streets/items/{STREET}000").json()
    assert street["properties"]["name"] == "稠城街道"


def test_outside_the_jurisdiction_is_invisible(
    anonymous: TestClient, headers, conn: Connection
) -> None:
    outside = conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE '330782002%' "
        "ORDER BY code LIMIT 1")).scalar_one()
    h = headers("t_supervisor")
    missing = anonymous.get(f"/ogc/collections/grids/items/{outside}", headers=h)
    assert missing.status_code == 404
    assert ErrorPublic.model_validate(missing.json()).code == "feature_not_found"
    assert anonymous.get(f"/ogc/collections/grids/items/{outside}",
                         headers=headers("t_supervisor2")).status_code == 200
    # Lists and extents hold only the jurisdiction: no other street's grids, no city outline.
    listed = anonymous.get("/ogc/collections/grids/items", params={"limit": 10000},
                           headers=h).json()
    assert listed["features"] and all(f["id"].startswith(STREET) for f in listed["features"])
    city = anonymous.get("/ogc/collections/city/items", headers=h).json()
    assert city["numberMatched"] == 0 and city["features"] == []
    streets = anonymous.get("/ogc/collections/streets/items", headers=h).json()
    assert [f["id"] for f in streets["features"]] == [STREET + "000"]
    described = anonymous.get("/ogc/collections/city", headers=h).json()
    assert "extent" not in described  # nothing of the city is theirs to describe
    # A grid worker sees their own grids only.
    worker = anonymous.get("/ogc/collections/grids/items", headers=headers("t_worker")).json()
    own = set(_codes(conn, "SELECT r.code FROM app_user u JOIN assignment a ON a.staff_id = "
                           "u.staff_id JOIN region r ON r.id = a.region_id WHERE u.username = "
                           "'t_worker' AND r.level = 'grid' AND a.duty IN ('primary', 'backup') "
                           "AND a.valid_to IS NULL"))
    assert {f["id"] for f in worker["features"]} == own


def test_api_key_as_qgis_sends_it(anonymous: TestClient, headers, api, own_directory,
                                  conn: Connection) -> None:
    made = anonymous.post("/api-keys", headers=headers("t_admin"), json={
        "name": "qgis-desk", "role": "viewer", "region_code": STREET})
    assert made.status_code == 201
    api[0].state.directory.reload(conn)  # the key was made inside this test's transaction
    res = anonymous.get("/ogc/collections/communities/items",
                        headers={"X-API-Key": made.json()["key"]})
    assert res.status_code == 200
    assert res.json()["numberMatched"] == len(_codes(
        conn, "SELECT code FROM region_current WHERE level = 'community' AND code LIKE :p",
        p=STREET + "%"))
    assert anonymous.get("/ogc/collections").status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"bbox": "120,29,120.1"}, "bbox"),
    ({"bbox": "a,b,c,d"}, "bbox"),
    ({"bbox": "120,29.3,120.1,29.2"}, "bbox"),  # south above north
    ({"bbox": "120,29,120.1,nan"}, "bbox"),
    ({"bbox": "120,29,120.1,29.1", "bbox-crs": "EPSG:3857"}, "bbox-crs"),
    ({"limit": 0}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"offset": -1}, "offset"),
    ({"crs": "EPSG:4549"}, "crs"),
    ({"datetime": "yesterday"}, "datetime"),
    ({"datetime": "2026-01-01T00:00:00Z/2025-01-01T00:00:00Z"}, "datetime"),
    ({"f": "html"}, "f"),
])
def test_bad_input_is_a_4xx_json_error(client: TestClient, params: dict, field: str) -> None:
    res = client.get("/ogc/collections/grids/items", params=params)
    # The standard's 400 for what the features module parses; FastAPI's 422 for typed parameters.
    assert res.status_code == (422 if field in ("limit", "offset", "f") else 400), res.text
    err = ErrorPublic.model_validate(res.json())
    fields = [d["field"] for d in err.detail] if isinstance(err.detail, list) \
        else [err.detail["field"]]
    assert field in fields


def test_limits_unknown_names_and_datetime(client: TestClient, conn: Connection) -> None:
    # Above the maximum is not an error (the standard): the maximum is used.
    big = client.get("/ogc/collections/communities/items", params={"limit": 50_000}).json()
    assert big["numberReturned"] == big["numberMatched"] == 544
    assert "limit=10000" in _rels(big)["self"]["href"]
    assert len(client.get("/ogc/collections/grids/items").json()["features"]) == 100  # default
    for url in ("/ogc/collections/planets", "/ogc/collections/planets/items",
                "/ogc/collections/grids/items/999999999999999"):
        res = client.get(url)
        assert res.status_code == 404 and {"code", "message", "detail"} <= set(res.json())
    # datetime: boundaries in force then. All current grids began before now, none after.
    since = conn.execute(text("SELECT min(valid_from) FROM region_current")).scalar_one()
    total = client.get("/ogc/collections/grids/items", params={"limit": 1}).json()["numberMatched"]
    now = client.get("/ogc/collections/grids/items", params={
        "limit": 1, "datetime": "../" + "2999-01-01T00:00:00Z"}).json()
    assert now["numberMatched"] == total
    before = client.get("/ogc/collections/grids/items", params={
        "limit": 1, "datetime": (since.replace(year=since.year - 1)).isoformat()}).json()
    assert before["numberMatched"] == 0


@pytest.fixture
def live_server(settings) -> Iterator[str]:
    """The app served by uvicorn in a child process, for clients that speak real HTTP.

    A child, not a thread: pyogrio keeps the GIL while GDAL fetches, so a server thread in this
    process could never answer.
    """
    import os
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CITYGRID_DATABASE_URL": settings.db.database_url,
           "CITYGRID_MIGRATION_URL": settings.db.owner_url, "CITYGRID_BATCH_RASTER": "false"}
    child = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app",
                              "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                             env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("the server did not start")
        yield url
    finally:
        child.terminate()
        child.wait(10)


def _token(url: str, username: str) -> str:
    import httpx

    from tests.conftest import TEST_PASSWORD

    return httpx.post(f"{url}/auth/token", json={"username": username,
                                                 "password": TEST_PASSWORD}).json()["access_token"]


@pytest.mark.skipif("OAPIF" not in pyogrio.list_drivers(), reason="GDAL without the OAPIF driver")
def test_gdal_oapif_client_reads_the_service(live_server: str, conn: Connection, tmp_path) -> None:
    """GDAL's OGC API - Features driver (a real client, as QGIS would be) reads the service."""
    url = live_server
    header_file = tmp_path / "headers.txt"
    pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": str(header_file)})
    try:
        header_file.write_text(f"Authorization: Bearer {_token(url, 't_supervisor')}\n")
        layers = {name for name, _ in pyogrio.list_layers(f"OAPIF:{url}/ogc")}
        assert layers == {"grids", "communities", "streets", "city"}
        own = pyogrio.read_dataframe(f"OAPIF:{url}/ogc", layer="grids")
        truth = _codes(conn, "SELECT code FROM region_current WHERE level = 'grid' AND "
                             "code LIKE :p ORDER BY code", p=STREET + "%")
        assert sorted(own["code"]) == truth
        # GDAL asks in the storage CRS (EPSG:4490, lat/lon axis order) and still gets lon/lat
        # right: the grids lie where PostGIS has them.
        assert own.crs.to_epsg() == 4490
        west, south, east, north = own.total_bounds
        assert 119.8 < west < east < 120.5 and 29.0 < south < north < 29.6

        header_file.write_text(f"Authorization: Bearer {_token(url, 't_admin')}\n")
        box = (120.05, 29.29, 120.09, 29.32)
        boxed = pyogrio.read_dataframe(f"OAPIF:{url}/ogc", layer="grids", bbox=box)
        assert set(boxed["code"]) == set(_codes(
            conn, "SELECT code FROM region_current WHERE level = 'grid' AND "
                  "ST_Intersects(geom, ST_MakeEnvelope(:w, :s, :e, :n, 4490))",
            w=box[0], s=box[1], e=box[2], n=box[3]))
    finally:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": None})
