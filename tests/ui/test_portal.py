"""The Leaflet portal in a real browser against a real server and the demo city.

Headless Debian Chromium through Playwright; every request that leaves 127.0.0.1 is blocked and
fails the test (the portal must work offline). Screenshots go to ``tests/ui/artifacts/``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text

from app.main import create_app
from app.settings import Settings
from gis.transform import wgs84_to_gcj02
from map_ui import portal

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

from tests.conftest import TEST_PASSWORD  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    """A uvicorn server on a free local port: the API plus the portal, on the demo city."""
    app = create_app(settings)  # create_app mounts the portal
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (srv.started and getattr(app.state, "locator", None) is not None
               and app.state.locator.snapshot is not None):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    """A fresh browser context on the portal; any request off 127.0.0.1 is blocked and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    outside: list[str] = []

    def guard(route) -> None:
        host = urlparse(route.request.url).hostname
        if host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.goto(server + "/")
    yield pg
    context.close()
    assert not outside, f"the portal tried to reach outside 127.0.0.1: {outside}"


def _login(page, username: str = "t_dispatcher") -> None:
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#map-view:not([hidden])")
    page.wait_for_function("window.citygrid.state.ready === true")
    page.wait_for_function("document.querySelector('#loading').hidden")


@pytest.fixture(scope="module")
def grid_point(engine: Engine) -> tuple[str, float, float]:
    """A current grid and a point inside it (WGS84)."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT r.code, ST_X(p), ST_Y(p) FROM region r "
            "JOIN region_boundary b ON b.region_id = r.id AND b.valid_to IS NULL, "
            "LATERAL ST_PointOnSurface(b.geom) p "
            "WHERE r.level = 'grid' ORDER BY r.code LIMIT 1 OFFSET 3")).one()
    return row[0], row[1], row[2]


@pytest.fixture(scope="module")
def expected(server: str, grid_point) -> dict:
    """What ``GET /locate`` answers for the grid point, as t_dispatcher."""
    _, lon, lat = grid_point
    with httpx.Client(base_url=server) as c:
        c.post("/auth/session", json={"username": "t_dispatcher", "password": TEST_PASSWORD}
               ).raise_for_status()
        res = c.get("/locate", params={"lon": lon, "lat": lat})
        res.raise_for_status()
        return res.json()


def test_page_and_config_are_public(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        assert c.get("/").headers["content-type"].startswith("text/html")
        assert c.get("/portal").status_code == 200
        assert c.get("/portal/config.json").json() == {"base_map": None}
        assert c.get("/portal/static/vendor/leaflet-1.9.4/leaflet.js").status_code == 200
        assert c.get("/regions", params={"level": "street"}).status_code == 401


def test_login_draws_streets(page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert page.is_visible("#login-form")
    page.screenshot(path=str(ARTIFACTS / "login.png"))
    _login(page)
    paths = page.locator("#map path").count()
    assert paths > 0
    assert page.locator(".leaflet-control-scale").count() == 1
    assert "图例" in page.inner_text(".legend")
    page.screenshot(path=str(ARTIFACTS / "streets.png"))


def _card_matches(page, expected: dict) -> None:
    page.wait_for_selector("#card:not([hidden])")
    assert page.inner_text("#card-grid-code") == expected["grid"]["code"]
    assert expected["responsible"]["name"] in page.inner_text("#card-responsible")


def test_click_shows_responsibility(page, grid_point, expected: dict) -> None:
    code, lon, lat = grid_point
    assert expected["grid"]["code"] == code
    _login(page)
    page.evaluate("([lon, lat]) => window.citygrid.state.map.setView([lat, lon], 15, "
                  "{ animate: false })", [lon, lat])
    xy = page.evaluate("([lon, lat]) => { const p = window.citygrid.state.map.latLngToContainerPoint("
                       "[lat, lon]); return [p.x, p.y]; }", [lon, lat])
    paths = page.locator("#map path").count()
    page.locator("#map").click(position={"x": xy[0], "y": xy[1]})
    _card_matches(page, expected)
    page.wait_for_function("document.querySelector('#loading').hidden")
    assert page.locator("#map path").count() > paths  # the grid found is drawn
    page.screenshot(path=str(ARTIFACTS / "lookup.png"))


def test_pasted_gcj02_gives_same_grid(page, grid_point, expected: dict) -> None:
    _, lon, lat = grid_point
    glon, glat = wgs84_to_gcj02(lon, lat)
    _login(page)
    page.fill("#coords", f"{float(glon):.7f},{float(glat):.7f}")
    page.select_option("#crs", "gcj02")
    page.click("#locate")
    _card_matches(page, expected)
    assert "GCJ-02" in page.inner_text("#card")  # the card says which CRS the input was read in


def test_english_switch(page) -> None:
    _login(page)
    assert page.inner_text("#locate") == "查询"
    page.click("#lang")
    assert page.inner_text("#locate") == "Look up"
    assert "Legend" in page.inner_text(".legend")
    page.screenshot(path=str(ARTIFACTS / "english.png"))
    page.click("#lang")
    assert page.inner_text("#locate") == "查询"


def test_far_point_shows_error(page) -> None:
    _login(page)
    page.fill("#coords", "100.0,45.0")
    page.click("#locate")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert message.startswith("出错了") and len(message) > len("出错了: ")
    assert page.is_hidden("#card")
    page.screenshot(path=str(ARTIFACTS / "error.png"))


def test_wrong_password_shows_error(page) -> None:
    page.fill("#username", "t_viewer")
    page.fill("#password", "not-the-password")
    page.click("#login-button")
    page.wait_for_selector("#error:not([hidden])")
    assert "login_failed" in page.inner_text("#error")
    assert page.is_visible("#login-form")


def test_street_choice_draws_its_communities(page) -> None:
    _login(page)
    before = page.locator("#map path").count()
    street = page.locator("#street option").nth(1).get_attribute("value")
    page.select_option("#street", street)
    page.wait_for_function(f"document.querySelectorAll('#map path').length > {before}")
    page.wait_for_function("document.querySelector('#loading').hidden")
    assert page.locator("#error").is_hidden()


def test_base_map_setting() -> None:
    assert portal.portal_config({}).base_map is None
    got = portal.portal_config({"CITYGRID_BASEMAP_URL": "https://tiles.example/{z}/{x}/{y}.png",
                                "CITYGRID_BASEMAP_CRS": "GCJ-02"})
    assert got.model_dump() == {"base_map": {"url": "https://tiles.example/{z}/{x}/{y}.png",
                                             "crs": "GCJ02"}}
    with pytest.raises(ValueError, match="BD09"):
        portal.portal_config({"CITYGRID_BASEMAP_URL": "https://t", "CITYGRID_BASEMAP_CRS": "bd09"})
