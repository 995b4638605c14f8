"""The portal's main views in Chromium: grids by zoom, choropleth, search, heatmap, open cases,
live incidents, registering from the card, a street supervisor's view, patrols, phone layout.

Screenshots of each view go to ``tests/ui/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.conftest import TEST_PASSWORD
from tests.ui.conftest import ARTIFACTS, login

STREET = "330782001"  # 稠城街道, t_supervisor's jurisdiction


def _state(page, expr: str):
    return page.evaluate(f"window.citygrid.state.{expr}")


def _idle(page) -> None:
    page.wait_for_timeout(200)  # the map's moveend handler waits 150 ms before asking
    page.wait_for_function("document.querySelector('#loading').hidden")


def _session(server: str, username: str) -> httpx.Client:
    c = httpx.Client(base_url=server)
    res = c.post("/auth/session", json={"username": username, "password": TEST_PASSWORD})
    res.raise_for_status()
    c.headers["X-CSRF-Token"] = res.json()["csrf_token"]
    return c


@pytest.fixture(scope="module")
def street_point(engine: Engine) -> tuple[str, float, float]:
    """A grid in 稠城街道 and a point inside it."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
            "FROM region_current WHERE level = 'grid' AND code LIKE '330782001%' "
            "ORDER BY code OFFSET 7 LIMIT 1")).one())


@pytest.fixture(scope="module")
def other_point(engine: Engine) -> tuple[str, float, float]:
    """A grid in 江东街道 (outside t_supervisor's street) and a point inside it."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
            "FROM region_current WHERE level = 'grid' AND code LIKE '330782002%' "
            "ORDER BY code OFFSET 5 LIMIT 1")).one())


def test_grids_drawn_by_zoom_with_labels(page, grid_point) -> None:
    code, lon, lat = grid_point
    login(page)
    assert _state(page, "outlineData.level") == "street"
    page.evaluate("([lon, lat]) => void window.citygrid.state.map.setView([lat, lon], 13, "
                  "{ animate: false })", [lon, lat])
    _idle(page)
    assert _state(page, "outlineData.level") == "community"
    page.evaluate("([lon, lat]) => void window.citygrid.state.map.setView([lat, lon], 16, "
                  "{ animate: false })", [lon, lat])
    _idle(page)
    assert _state(page, "outlineData.level") == "grid"
    codes = set(_state(page, "outlineData.features.map(f => f.properties.code)"))
    assert code in codes
    assert len(codes) < 400  # only the view, never the city's 2,634 grids
    assert page.locator(".region-label.grid").count() == len(codes)  # labels at this zoom
    page.screenshot(path=str(ARTIFACTS / "grids.png"))


def test_choropleth_and_legend(page) -> None:
    login(page)
    assert page.input_value("#theme") == "incidents"
    breaks = _state(page, "breaks")
    assert breaks and len(breaks) >= 3 and breaks == sorted(breaks)
    legend = page.inner_text(".legend")
    assert "事件数" in legend
    page.select_option("#theme", "overdue")
    page.wait_for_function("document.querySelector('.legend').innerText.includes('超期')")
    page.select_option("#theme", "incidents")
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "choropleth.png"))


def test_search_by_name_and_by_grid_code(page, server: str, grid_point, expected) -> None:
    code, _, _ = grid_point
    login(page)
    page.click("[data-tab=tab-lookup]")
    page.fill("#search", "江滨")  # search as you type: a part of a community's name
    page.wait_for_selector("#search-results li[data-code]")
    first = page.locator("#search-results li[data-code]").first
    assert "江滨" in first.inner_text()
    first.click()
    page.wait_for_selector("#card:not([hidden])")
    assert "江滨" in page.inner_text("#card")
    page.fill("#search", code)
    page.wait_for_selector(f"#search-results li[data-code='{code}']")
    page.press("#search", "Enter")
    page.wait_for_function(f"document.querySelector('#card-grid-code') && "
                           f"document.querySelector('#card-grid-code').innerText === '{code}' && "
                           "document.querySelector('#card-responsible')")
    assert expected["responsible"]["name"] in page.inner_text("#card-responsible")
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "search.png"))


def test_heatmap_toggles_and_filters_change_it(page) -> None:
    login(page)
    page.click("[data-tab=tab-map]")
    page.click(".presets button[data-days='365']")
    _idle(page)
    assert _state(page, "heat === null")
    page.check("#heat-on")
    page.wait_for_function("window.citygrid.state.heatDrawn === true")
    _idle(page)
    assert page.locator("canvas.leaflet-heatmap-layer").count() == 1
    everything = _state(page, "heatData.total")
    bins = len(_state(page, "heatData.features"))
    assert everything > 1000 and bins > 10
    page.screenshot(path=str(ARTIFACTS / "heat.png"))

    page.select_option("#heat-category", index=1)  # one category group
    page.wait_for_function(f"window.citygrid.state.heatDrawn && "
                           f"window.citygrid.state.heatData.total !== {everything}")
    one_group = _state(page, "heatData.total")
    assert 0 < one_group < everything
    page.select_option("#heat-state", "open")
    page.wait_for_function(f"window.citygrid.state.heatDrawn && "
                           f"window.citygrid.state.heatData.total !== {one_group}")
    assert 0 <= _state(page, "heatData.total") < one_group
    page.screenshot(path=str(ARTIFACTS / "heat-filtered.png"))

    page.uncheck("#heat-on")
    assert _state(page, "heat === null")
    assert page.locator("canvas.leaflet-heatmap-layer").count() == 0


def test_open_cases_synced_with_map_and_detail(page) -> None:
    login(page)
    page.click("[data-tab=tab-cases]")
    items = page.locator("#cases li[data-id]")
    assert items.count() > 0
    assert items.first.locator("i.dot").count() == 1  # the traffic light
    assert _state(page, "caseMarkers.size") == items.count() - sum(
        1 for c in _state(page, "cases") if c["lon"] is None)
    case_id = int(items.first.get_attribute("data-id"))
    items.first.click()
    page.wait_for_selector("#case-detail:not([hidden])")
    assert f"#{case_id}" in page.inner_text("#case-detail")
    assert page.locator("#case-detail .history li").count() >= 1
    assert _state(page, "selectedCase") == case_id
    # the map followed the list: the case's marker is in view and drawn larger
    assert page.evaluate(f"(() => {{ const m = window.citygrid.state.caseMarkers.get({case_id}); "
                         "return window.citygrid.state.map.getBounds().contains(m.getLatLng()) "
                         "&& m.getRadius() > 6; })()")
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "cases.png"))


def test_new_incident_appears_live(page, server: str, street_point, other_point) -> None:
    login(page, "t_supervisor")
    page.click("[data-tab=tab-cases]")
    page.wait_for_function("window.citygrid.state.liveState === 'on'")
    before = set(page.evaluate("window.citygrid.state.cases.map(c => c.id)"))
    other = _session(server, "t_dispatcher")  # another session, another user
    try:
        outside = other.post("/incidents", json={
            "source": "hotline_12345", "external_id": f"ui-live-out-{uuid.uuid4().hex[:12]}",
            "category": "E0101", "lon": other_point[1], "lat": other_point[2],
            "description": "江东街道的事件"})
        outside.raise_for_status()
        inside = other.post("/incidents", json={
            "source": "hotline_12345", "external_id": f"ui-live-{uuid.uuid4().hex[:12]}",
            "category": "E0101", "lon": street_point[1], "lat": street_point[2],
            "description": "实时推送测试"})
        inside.raise_for_status()
    finally:
        other.close()
    new_id = inside.json()["id"]
    t0 = time.monotonic()
    page.wait_for_selector(f"#cases li[data-id='{new_id}']", timeout=15_000)
    took = time.monotonic() - t0
    assert new_id not in before
    assert page.locator(f"#cases li[data-id='{outside.json()['id']}']").count() == 0
    log = _state(page, "liveLog")
    assert ["incident", new_id] in log, log  # it came by the event stream, on its own
    assert not [e for e in log if e[0] == "reload"], log
    assert "fresh" in page.locator(f"#cases li[data-id='{new_id}']").get_attribute("class"), log
    assert took < 5  # by NOTIFY, not the 10 s safety poll
    page.screenshot(path=str(ARTIFACTS / "live.png"))


def test_dispatcher_registers_incident_from_card(page, server: str, street_point) -> None:
    code, lon, lat = street_point
    login(page)
    page.click("[data-tab=tab-lookup]")
    page.fill("#coords", f"{lon:.7f},{lat:.7f}")
    page.click("#locate")
    page.wait_for_selector("#register-form:not([hidden])")
    page.select_option("#reg-category", "E0101")
    page.fill("#reg-address", "测试路 1 号")
    page.fill("#reg-description", "门户登记测试")
    page.click("#reg-submit")
    page.wait_for_selector("#reg-result:not([hidden])")
    new_id = int(page.get_attribute("#reg-result a", "data-case"))
    c = _session(server, "t_dispatcher")
    try:
        got = c.get(f"/incidents/{new_id}").json()
    finally:
        c.close()
    assert got["grid_code"] == code == page.inner_text("#card-grid-code")
    assert got["description"] == "门户登记测试" and got["category"] == "E0101"
    assert page.evaluate("window.citygrid.state.map.getZoom()") >= 15  # the pasted point, close up
    page.screenshot(path=str(ARTIFACTS / "register.png"))
    page.click("#reg-result a")  # straight to the new case, with its history
    page.wait_for_selector("#case-detail:not([hidden])")
    assert f"#{new_id}" in page.inner_text("#case-detail")
    assert "门户登记测试" in page.inner_text("#case-detail")


def test_street_supervisor_sees_only_their_street(page, server: str, other_point) -> None:
    login(page, "t_supervisor")
    options = page.locator("#street option").evaluate_all("os => os.map(o => o.value)")
    assert [o for o in options if o] == [STREET + "000"]
    codes = _state(page, "outlineData.features.map(f => f.properties.code)")
    assert codes and all(c.startswith(STREET) for c in codes)
    cases = _state(page, "cases")
    assert cases and all(c["region_code"].startswith(STREET) for c in cases)
    # zoomed in on the neighbouring street: nothing of it is drawn
    page.evaluate("([lon, lat]) => void window.citygrid.state.map.setView([lat, lon], 16, "
                  "{ animate: false })", [other_point[1], other_point[2]])
    _idle(page)
    assert all(c.startswith(STREET)
               for c in _state(page, "outlineData.features.map(f => f.properties.code)"))
    counts = page.evaluate("[...window.citygrid.state.values.keys()]")
    assert counts and all(c.startswith(STREET) for c in counts)
    # the heatmap counts only the street's incidents: what a dispatcher gets for that street
    page.evaluate("void window.citygrid.state.map.setView([29.3, 120.07], 12, { animate: false })")
    _idle(page)
    page.check("#heat-on")
    page.wait_for_function("window.citygrid.state.heatDrawn === true")
    query = _state(page, "heatQuery")
    mine = _state(page, "heatData.total")
    c = _session(server, "t_dispatcher")
    try:
        street = c.get(f"/maps/heat?{query}&region={STREET}").json()["total"]
        city = c.get(f"/maps/heat?{query}").json()["total"]
    finally:
        c.close()
    assert 0 < mine == street < city
    page.uncheck("#heat-on")
    # nor can it be found by name or code
    page.click("[data-tab=tab-lookup]")
    page.fill("#search", other_point[0])
    page.wait_for_selector("#search-results:not([hidden])")
    assert page.locator("#search-results li[data-code]").count() == 0
    page.evaluate("void window.citygrid.state.map.setView([29.3, 120.07], 12, { animate: false })")
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "supervisor.png"))


def test_patrol_coverage_unpatrolled_and_track(page, engine: Engine) -> None:
    login(page, "t_supervisor")
    page.click("[data-tab=tab-patrol]")
    page.click("#patrol-show")
    page.wait_for_selector("#patrol-table:not([hidden]) tbody tr")
    _idle(page)
    rows = page.locator("#patrol-table tbody tr")
    assert rows.count() > 10
    assert _state(page, "outlineData.level") == "grid"
    assert page.input_value("#theme") == "coverage"
    shares = _state(page, "coverage.grids.map(g => g.share)")
    assert max(shares) > 0  # yesterday's patrols are there
    page.screenshot(path=str(ARTIFACTS / "coverage.png"))
    # the same grids by hours since their last patrol
    page.click("[data-tab=tab-map]")
    page.select_option("#theme", "since_patrol")
    page.wait_for_function("document.querySelector('.legend').innerText.includes('距上次巡查')")
    _idle(page)
    hours = page.evaluate("[...window.citygrid.state.values.values()].filter(v => v !== null)")
    assert hours and min(hours) >= 0
    page.screenshot(path=str(ARTIFACTS / "since-patrol.png"))
    page.click("[data-tab=tab-patrol]")
    rows.first.click()  # the least covered grid
    page.wait_for_function("window.citygrid.state.unpatrolled !== null")
    _idle(page)
    assert "未巡查" in page.inner_text(".legend")
    page.screenshot(path=str(ARTIFACTS / "unpatrolled.png"))
    with engine.connect() as conn:
        staff, day = conn.execute(text(
            "SELECT s.code, ((f.at AT TIME ZONE 'Asia/Shanghai')::date)::text FROM patrol_fix f "
            "JOIN staff s ON s.id = f.staff_id JOIN assignment a ON a.staff_id = s.id "
            "JOIN region r ON r.id = a.region_id WHERE r.code LIKE '330782001%' "
            "ORDER BY f.at DESC LIMIT 1")).one()
    page.fill("#track-staff", staff)
    page.fill("#track-date", day)
    page.click("#track-form button")
    page.wait_for_function("window.citygrid.state.track !== null")
    _idle(page)
    assert page.evaluate("window.citygrid.state.track.getLayers().length") >= 1
    assert "公里" in page.inner_text("#track-info")
    page.screenshot(path=str(ARTIFACTS / "patrol.png"))


def test_what_is_offered_follows_the_role(page, new_page) -> None:
    login(page, "t_planner")
    assert page.is_visible("#planner-link")
    assert page.get_attribute("#planner-link", "href") == "/planner"
    assert page.is_visible("[data-tab=tab-patrol]")  # planners read patrols
    other = new_page()
    login(other, "t_dispatcher")
    assert other.is_hidden("#planner-link")
    # dispatchers may not read patrols: the tab and the patrol themes are not offered
    assert other.is_hidden("[data-tab=tab-patrol]")
    assert other.evaluate("document.querySelector('#theme option[value=coverage]').hidden")


def test_phone_layout(new_page) -> None:
    phone = new_page(390, 844)
    login(phone)
    box = phone.locator("#map").bounding_box()
    aside = phone.locator("aside").bounding_box()
    assert box["width"] == pytest.approx(390, abs=2) and box["height"] > 300
    assert aside["y"] >= box["y"] + box["height"] - 1  # the panel is below the map
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert phone.locator(".leaflet-control-scale").is_visible()
    phone.screenshot(path=str(ARTIFACTS / "phone.png"))
    phone.click("[data-tab=tab-cases]")
    phone.screenshot(path=str(ARTIFACTS / "phone-cases.png"), full_page=True)


def test_session_survives_a_reload_and_logout_ends_it(page) -> None:
    login(page, "t_supervisor")
    page.reload()
    page.wait_for_selector("#map-view:not([hidden])")
    page.wait_for_function("window.citygrid.state.ready === true")
    assert page.inner_text("#who").startswith("t_supervisor")
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.is_hidden("#map-view") and page.is_hidden("#live-status")
    page.reload()
    assert page.is_visible("#login-form")  # the session is gone, not just hidden
    # another user in the same tab sees their own jurisdiction, nothing of the last one's
    login(page, "t_dispatcher")
    assert page.locator("#street option").count() == 15  # all 14 streets and "all"
    assert page.inner_text("#who").startswith("t_dispatcher")
