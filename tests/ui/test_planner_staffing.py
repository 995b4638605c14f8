"""Staffing and approval in the planners' editor (issue 19) in a real browser against a real server.

A planner splits a grid, assigns the new grid's two workers (a primary and a backup) in the
staffing panel, and submits the plan; an admin opens it, approves it and activates it; then a
dispatcher's lookup (/locate) in the new grid names the two new workers.

Activation commits, so this module runs on its own database (``citygrid_test_planner_staffing``,
recreated with the demo city at the start). Requests off 127.0.0.1 are blocked and fail the test.
Screenshots go to ``tests/ui/artifacts/planner-staffing-*.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from shapely.geometry import LineString, shape

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

from tests.conftest import TEST_PASSWORD  # noqa: E402
from tests.ui.planner_support import (  # noqa: E402
    ARTIFACTS,
    COMMUNITY,
    _idle,
    _locate,
    _login,
    _xy,
    demo_database,
    planner_page,
    serve,
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(demo_database("citygrid_test_planner_staffing")) as base:
        yield base


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    yield from planner_page(browser, server, height=1000)


def _pick_community(page) -> None:
    page.fill("#region-q", COMMUNITY)
    page.click("#search")
    page.click(f"#region-results button[data-code='{COMMUNITY}']")
    page.wait_for_selector("#plans-section:not([hidden])")
    _idle(page)


def _assign(page, grid: str, staff: str, duty: str) -> None:
    page.select_option("#staff-grid", grid)
    page.fill("#staff-code", staff)
    page.select_option("#staff-duty", duty)
    page.click("#staff-assign")
    page.wait_for_selector(f"#staffing-roster tr[data-grid='{grid}'] li.planned[data-staff='{staff}']")
    _idle(page)


def _desk_row(server: str, lon: float, lat: float, grid: str) -> dict:
    """A dispatcher takes a 12345 call at (lon, lat); the desk's queue row for the new grid."""
    res = httpx.post(f"{server}/auth/token", json={"username": "t_dispatcher",
                                                   "password": TEST_PASSWORD})
    res.raise_for_status()
    with httpx.Client(base_url=server, headers={
            "Authorization": f"Bearer {res.json()['access_token']}"}) as c:
        res = c.post("/incidents", json={
            "source": "hotline_12345", "external_id": f"redraw-{time.time_ns()}",
            "category": "C0101", "description": "新网格内路灯不亮", "address": "测试路 1 号",
            "lon": lon, "lat": lat})
        assert res.status_code == 201, res.text
        case_id = res.json()["id"]
        res = c.get("/desk/queue", params={"region": grid})
        assert res.status_code == 200, res.text
        return next(r for r in res.json()["items"] if r["id"] == case_id)


def test_planner_staffs_a_split_admin_approves_and_lookup_names_the_new_workers(
        page, server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _login(page, "t_planner")
    _pick_community(page)
    page.fill("#plan-name", "拆分并配人")
    page.click("#create-plan")
    page.wait_for_selector("#plan-section:not([hidden])")
    page.wait_for_function("window.citygrid.state.features !== null")
    _idle(page)
    features = page.evaluate("window.citygrid.state.features")
    working = [f for f in features["features"] if f["properties"]["change"] == "unchanged"]
    target = max(working, key=lambda f: shape(f["geometry"]).area)
    code, poly = target["properties"]["code"], shape(target["geometry"])

    # Split it with a drawn west-east line (as in tests/ui/test_planner.py).
    minx, miny, maxx, maxy = poly.bounds
    page.evaluate("([a, b, c, d]) => window.citygrid.state.map.fitBounds([[b, a], [d, c]], "
                  "{ animate: false, padding: [60, 60] })", [minx, miny, maxx, maxy])
    inside = poly.representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{code}'")
    margin = (maxx - minx) * 0.1
    for frac in (0.5, 0.4, 0.6, 0.3, 0.7):
        y = miny + (maxy - miny) * frac
        cut = LineString([(minx - margin, y), (maxx + margin, y)])
        pieces = list(getattr(poly.difference(cut.buffer(1e-9)), "geoms", []))
        if len(pieces) == 2 and min(p.area for p in pieces) > 0.2 * poly.area:
            break
    else:
        pytest.fail(f"no straight west-east line cuts grid {code} in two")
    page.click("#tool-split")
    a, b = _xy(page, *cut.coords[0]), _xy(page, *cut.coords[1])
    page.mouse.click(*a)
    page.mouse.click(*b)
    page.mouse.click(*b)
    page.wait_for_selector("#check.ok")
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)
    new = next(f for f in page.evaluate("window.citygrid.state.features")["features"]
               if f["properties"]["change"] == "new")
    new_code = new["properties"]["code"]

    # The staffing panel says the new grid has nobody; submitting now is refused in words.
    page.wait_for_function(f"document.querySelector('#staffing-without')?.textContent.includes('{new_code}')")
    page.click("#review-submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "没有网格员" in page.inner_text("#error")

    # Two available workers of the community (not on the split grid) take the new grid.
    candidates = page.evaluate("window.citygrid.staffing.state.impact.staffing.candidates")
    on_grid = {p["staff_code"] for g in page.evaluate(
        "window.citygrid.staffing.state.impact.staffing.roster") if g["code"] == code
        for p in g["people"]}
    free = [c["staff_code"] for c in candidates
            if c["status"] == "available" and c["staff_code"] not in on_grid]
    assert len(free) >= 2, candidates
    primary, backup = free[0], free[1]
    _assign(page, new_code, primary, "primary")
    _assign(page, new_code, backup, "backup")
    page.wait_for_function("document.querySelector('#staffing-warn').className === 'ok'")
    assert [(c["staff_code"], c["region_code"], c["duty"]) for c in
            page.evaluate("window.citygrid.state.plan.staffing")] == [
        (primary, new_code, "primary"), (backup, new_code, "backup")]
    page.screenshot(path=str(ARTIFACTS / "planner-staffing-assigned.png"))

    page.fill("#review-comment", "拆分后新网格由两人负责")
    page.click("#review-submit")
    page.wait_for_selector("#review-status[data-status='submitted']")
    _idle(page)
    assert page.is_disabled("#activate")  # not approved yet
    assert page.is_disabled("#staff-assign")  # a submitted plan does not change
    plan_id = page.evaluate("window.citygrid.state.plan.id")

    # The admin (the city's approver role) opens the plan, approves and activates it.
    page.context.clear_cookies()
    page.goto(server + "/planner")
    _login(page, "t_admin")
    _pick_community(page)
    page.click(f"#plan-list button[data-plan='{plan_id}']")
    page.wait_for_selector("#review-status[data-status='submitted']")
    page.wait_for_function("!document.querySelector('#review-approve').disabled")
    _idle(page)
    assert "拆分后新网格由两人负责" in page.inner_text("#review-history")
    page.fill("#review-note", "同意")
    page.click("#review-approve")
    page.wait_for_selector("#review-status[data-status='approved']")
    page.wait_for_function("!document.querySelector('#activate').disabled")
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "planner-staffing-approved.png"))
    page.click("#activate")
    page.wait_for_selector("#activate-result:not([hidden])")
    _idle(page)
    assert page.evaluate("window.citygrid.state.plan.status") == "activated"
    page.wait_for_function(
        "[...document.querySelectorAll('#review-history li')].map((li) => li.dataset.action)"
        ".join() === 'submit,approve,activate'")
    page.screenshot(path=str(ARTIFACTS / "planner-staffing-activated.png"))

    # The lookup in the new grid names its two new workers.
    point = shape(new["geometry"]).representative_point()
    deadline = time.monotonic() + 5
    while True:
        answer = _locate(server, point.x, point.y)
        if answer["grid"]["code"] == new_code or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer["grid"]["code"] == new_code
    assert answer["responsible"]["code"] == primary
    assert answer["backup"]["code"] == backup

    # A call placed there reaches the dispatch desk's queue with the new worker by name.
    row = _desk_row(server, point.x, point.y, new_code)
    assert row["grid_code"] == new_code and row["responsible_code"] == primary
    assert row["responsible_name"] == answer["responsible"]["name"], row
