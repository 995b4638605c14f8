"""The Leaflet portal in a real browser against a real server and the demo city.

Headless Debian Chromium through Playwright; every request that leaves 127.0.0.1 is blocked and
fails the test (the portal must work offline). Screenshots go to ``tests/ui/artifacts/``.
Fixtures (server, browser, page, login) are in ``conftest.py``.
"""

from __future__ import annotations

import httpx
import pytest

from gis.transform import wgs84_to_bd09, wgs84_to_gcj02
from map_ui import portal
from tests.ui.conftest import ARTIFACTS, login


def test_page_and_config_are_public(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        assert c.get("/").headers["content-type"].startswith("text/html")
        assert c.get("/portal").status_code == 200
        config = c.get("/portal/config.json").json()
        assert config["base_map"] is None and config["city"]["code"] == "330782000000"
        assert len(config["city"]["center"]) == 2 and config["city"]["zoom"] >= 9
        assert c.get("/portal/static/vendor/leaflet-1.9.4/leaflet.js").status_code == 200
        assert c.get("/regions", params={"level": "street"}).status_code == 401


def test_login_draws_streets(page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert page.is_visible("#login-form")
    page.screenshot(path=str(ARTIFACTS / "login.png"))
    login(page)
    drawn = page.evaluate("window.citygrid.state.outlineData")
    assert drawn["level"] == "street" and len(drawn["features"]) == 14
    assert page.locator("#map canvas").count() >= 1  # outlines drawn on the canvas renderer
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
    login(page)
    page.evaluate("([lon, lat]) => void window.citygrid.state.map.setView([lat, lon], 15, "
                  "{ animate: false })", [lon, lat])
    xy = page.evaluate("([lon, lat]) => { const p = window.citygrid.state.map.latLngToContainerPoint("
                       "[lat, lon]); return [p.x, p.y]; }", [lon, lat])
    page.evaluate("void window.citygrid.state.caseLayer.remove()")  # click the map, not a case
    page.locator("#map").click(position={"x": xy[0], "y": xy[1]})
    _card_matches(page, expected)
    page.wait_for_function("document.querySelector('#loading').hidden")
    assert page.evaluate("window.citygrid.state.grid !== null")  # the grid found is drawn
    page.screenshot(path=str(ARTIFACTS / "lookup.png"))


def test_pasted_gcj02_gives_same_grid(page, grid_point, expected: dict) -> None:
    _, lon, lat = grid_point
    glon, glat = wgs84_to_gcj02(lon, lat)
    login(page)
    page.click("[data-tab=tab-lookup]")
    page.fill("#coords", f"{float(glon):.7f},{float(glat):.7f}")
    page.select_option("#crs", "gcj02")
    page.click("#locate")
    _card_matches(page, expected)
    assert "GCJ-02" in page.inner_text("#card")  # the card says which CRS the input was read in


def test_pasted_bd09_gives_same_grid(page, grid_point, expected: dict) -> None:
    _, lon, lat = grid_point
    blon, blat = wgs84_to_bd09(lon, lat)
    login(page)
    page.click("[data-tab=tab-lookup]")
    page.fill("#coords", f"{float(blon):.7f}, {float(blat):.7f}")
    page.select_option("#crs", "bd09")
    page.click("#locate")
    _card_matches(page, expected)
    assert "BD-09" in page.inner_text("#card").upper().replace("BD09", "BD-09")


def test_english_switch(page) -> None:
    login(page)
    assert page.inner_text("#locate") == "查询"
    page.click("#lang")
    assert page.inner_text("#locate") == "Look up"
    assert "Legend" in page.inner_text(".legend")
    assert page.inner_text("[data-tab=tab-cases]") == "Cases"
    assert page.inner_text("#who").endswith("(dispatcher)")
    page.screenshot(path=str(ARTIFACTS / "english.png"))
    page.click("#lang")
    assert page.inner_text("#locate") == "查询"


def test_far_point_shows_error(page) -> None:
    login(page)
    page.click("[data-tab=tab-lookup]")
    page.fill("#coords", "100.0,45.0")
    page.click("#locate")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert message.startswith("出错了") and len(message) > len("出错了: ")
    assert page.is_hidden("#card")
    # A background refresh (the outlines after a pan) does not hide the user's error.
    page.evaluate("() => { const m = window.citygrid.state.map; m.panBy([40, 0], {animate: false}); }")
    page.wait_for_timeout(400)
    page.wait_for_function("document.querySelector('#loading').hidden")
    assert page.is_visible("#error") and page.inner_text("#error") == message
    page.screenshot(path=str(ARTIFACTS / "error.png"))


def test_wrong_password_shows_error(page) -> None:
    page.fill("#username", "t_viewer")
    page.fill("#password", "not-the-password")
    page.click("#login-button")
    page.wait_for_selector("#error:not([hidden])")
    assert "login_failed" in page.inner_text("#error")
    assert page.is_visible("#login-form")


def test_street_choice_draws_only_that_street(page) -> None:
    login(page)
    street = page.locator("#street option").nth(1).get_attribute("value")
    page.select_option("#street", street)
    page.wait_for_function("document.querySelector('#loading').hidden")
    page.wait_for_function(f"window.citygrid.state.outlineData.features.every("
                           f"f => f.properties.code.startsWith('{street[:9]}'))")
    assert page.locator("#error").is_hidden()


def test_base_map_setting() -> None:
    assert portal.portal_config({}).base_map is None
    got = portal.portal_config({"CITYGRID_BASEMAP_URL": "https://tiles.example/{z}/{x}/{y}.png",
                                "CITYGRID_BASEMAP_CRS": "GCJ-02"})
    assert got.model_dump() == {"base_map": {"url": "https://tiles.example/{z}/{x}/{y}.png",
                                             "crs": "GCJ02"}, "city": None}
    with pytest.raises(ValueError, match="BD09"):
        portal.portal_config({"CITYGRID_BASEMAP_URL": "https://t", "CITYGRID_BASEMAP_CRS": "bd09"})
