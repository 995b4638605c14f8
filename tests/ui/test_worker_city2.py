"""The grid worker's phone on the second demo city (蒲江县, 510131, ~103.5°E, its own zone and
Gauss–Krüger CRS): nothing in the app names a city, so the same journey works there.

``citygrid_test_ui_city2`` (kept between runs, like ``citygrid_test_ui``): the second demo city
(``citygrid demo load --city 510131``'s loader), its catalogue and two accounts made here (a grid
worker of the city's first street and a dispatcher of the city). The phone logs in, draws its
grids where the city is, shows a case the dispatcher took in beside the pin before a field
report and adds the report to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import create_engine, text

from app.db import is_empty, migrate
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from grids.access import Principal
from tests.conftest import CITY2, TEST_PASSWORD, app_role_url, database_url, live_server
from tests.layers.test_field_photos import jpeg
from tests.ui.test_worker import PHONE, check_fits_the_phone, log_in, wait_until


@pytest.fixture(scope="module")
def city2_server(tmp_path_factory) -> Iterator[dict[str, Any]]:
    from app import users
    from app.seed import load_demo
    from layers.field.photos import LocalStore
    from layers.incidents.catalogue import seed

    url = database_url("citygrid_test_ui_city2")
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        if is_empty(conn):
            load_demo(conn, city=CITY2)
        seed(conn)
        system = Principal.system("test-setup")
        if not conn.execute(text("SELECT 1 FROM app_user WHERE username = 'c2_worker'")).first():
            staff, grid = conn.execute(text(
                "SELECT s.code, r.code FROM assignment a JOIN staff s ON s.id = a.staff_id "
                "JOIN region r ON r.id = a.region_id WHERE r.level = 'grid' AND a.duty = 'primary' "
                "AND s.status = 'available' AND a.valid_to IS NULL ORDER BY r.code LIMIT 1")).one()
            street = grid[:9]
            users.create_user(conn, username="c2_worker", password=TEST_PASSWORD,
                              role="grid_worker", region_code=street, staff_code=staff,
                              principal=system)
            users.create_user(conn, username="c2_dispatcher", password=TEST_PASSWORD,
                              role="dispatcher", region_code=CITY2, principal=system)
        extent = conn.execute(text("SELECT west, south, east, north FROM city_profile")).one()
        category = conn.execute(text(
            "SELECT code FROM category WHERE parent_id IS NOT NULL AND active ORDER BY code "
            "LIMIT 1")).scalar_one()
    eng.dispose()
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(url),
                                                  migration_url=url)))
    app.state.photo_store = LocalStore(tmp_path_factory.mktemp("photos2"))
    with live_server(app) as base:
        yield {"url": base, "extent": tuple(extent), "category": category, "db": url}


def _token(url: str, username: str) -> dict[str, str]:
    res = httpx.post(url + "/auth/token", json={"username": username, "password": TEST_PASSWORD})
    res.raise_for_status()
    return {"Authorization": "Bearer " + res.json()["access_token"]}


def test_the_phone_in_the_second_city(browser, city2_server: dict[str, Any]) -> None:
    url = city2_server["url"]
    h = _token(url, "c2_worker")
    me = httpx.get(url + "/field/me", headers=h).json()
    assert me["city"]["tz"] and me["grids"]
    eng = create_engine(city2_server["db"])
    with eng.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM region_current r, LATERAL ST_PointOnSurface(r.geom) p "
            "WHERE r.code = :g"), {"g": me["grids"][0]}).one()
    eng.dispose()
    # A case the desk took in at the grid's point, dispatched to the grid.
    d = _token(url, "c2_dispatcher")
    res = httpx.post(url + "/incidents", headers=d, json={
        "source": "hotline_12345", "external_id": f"city2-{uuid.uuid4()}",
        "category": city2_server["category"], "description": "井盖破损", "address": "鹤山街道",
        "lon": lon, "lat": lat})
    assert res.status_code == 201, res.text
    iid = res.json()["id"]

    requests: list[str] = []
    crashes: list[str] = []
    ctx = browser.new_context(**PHONE, permissions=["geolocation"],
                              geolocation={"longitude": lon, "latitude": lat, "accuracy": 8})
    try:
        ctx.on("request", lambda r: requests.append(r.url))
        page = ctx.new_page()
        page.on("pageerror", lambda exc: crashes.append(str(exc)))
        page.set_default_timeout(30_000)
        page.goto(url + "/worker/")
        log_in(page, "c2_worker")
        page.wait_for_function("window.citygridWorker.state().grids !== null")
        assert page.evaluate("window.citygridWorker.state().grids.features.length") == len(
            me["grids"])
        # The map is where the city is, not where the default city would be.
        west, south, east, north = city2_server["extent"]
        centre = page.evaluate("window.citygridWorker.state().me.city.center")
        assert south < centre[0] < north and west < centre[1] < east
        page.wait_for_function("window.citygridWorker.state().grids.features"
                               ".every(f => 'unpatrolled' in f.properties)")
        page.wait_for_timeout(1000)  # Leaflet's zoom animation settled, for the screenshot
        check_fits_the_phone(page, "city2-map")
        # A field report beside the case: the phone offers it and adds to it.
        page.click("#tabs [data-view=report]")
        page.wait_for_selector("#pin-map .leaflet-marker-icon")
        page.select_option("#report-category", city2_server["category"])
        page.set_input_files("#report-photos", files=[
            {"name": "c2.jpg", "mimeType": "image/jpeg",
             "buffer": jpeg(lon=lon, lat=lat, taken_at=datetime.now(UTC), seed=61)}])
        page.fill("#report-note", "井盖仍未盖好")
        page.click("#report-submit")
        item = page.locator(f"#dup-list li[data-incident='{iid}']")
        item.wait_for()
        check_fits_the_phone(page, "city2-duplicates")
        item.get_by_role("button", name="补充到此案件").click()

        def added() -> list[dict]:
            case = httpx.get(f"{url}/field/incidents/{iid}", headers=d).json()
            return [e for e in case["history"] if e["action"] == "supplement"]
        wait_until(lambda: len(added()) == 1)
        assert added()[0]["note"] == "井盖仍未盖好" and len(added()[0]["photos"]) == 1
    finally:
        ctx.close()
    outside = [u for u in requests if urlparse(u).hostname not in ("127.0.0.1", None)
               and not u.startswith(("data:", "blob:"))]
    assert not outside and not crashes, (outside[:5], crashes)
