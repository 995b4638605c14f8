"""The planners' editor (``/planner``, issue 8 item 6) in a real browser against a real server.

A planner splits a grid by drawing a line with Leaflet-Geoman, sees the live check and the impact
preview, has it approved (issue 19: submit, admin approves), activates the plan, and a dispatcher's
lookup in the new half then names the new grid.

Activation commits a new boundary version, so this module runs on its own database
(``citygrid_test_planner``, recreated and loaded with the demo city at the start of the module) and
leaves the shared ``citygrid_test`` untouched. Every request that leaves 127.0.0.1 is blocked and
fails the test. Screenshots go to ``tests/ui/artifacts/planner-*.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from shapely.geometry import LineString, Point, Polygon, shape
from shapely.ops import unary_union
from sqlalchemy import Engine, create_engine

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

from tests.conftest import TEST_PASSWORD  # noqa: E402
from tests.ui.planner_support import (  # noqa: E402
    ARTIFACTS,
    COMMUNITY,
    _approve,
    _approve_in_page,
    _fit,
    _idle,
    _locate,
    _login,
    _open_new_plan,
    _session,
    _settled,
    _vertices,
    _xy,
    demo_database,
    planner_page,
    serve,
)


@pytest.fixture(scope="module")
def planner_db() -> Iterator[str]:
    """A database of its own, fresh each run: activation here commits a new boundary version."""
    yield demo_database("citygrid_test_planner")


@pytest.fixture(scope="module")
def server(planner_db: str) -> Iterator[str]:
    """A uvicorn server on a free local port: the API, the portal and the planner page."""
    with serve(planner_db) as url:
        yield url


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    yield from planner_page(browser, server)


@pytest.fixture(scope="module")
def planner_engine(planner_db: str) -> Iterator[Engine]:
    eng = create_engine(planner_db)
    yield eng
    eng.dispose()


def test_page_and_geoman_are_served(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        page = c.get("/planner")
        assert page.status_code == 200 and "planner.js" in page.text
        for asset in ("/portal/static/vendor/geoman/leaflet-geoman.min.js",
                      "/portal/static/vendor/geoman/leaflet-geoman.css",
                      "/portal/static/planner.js", "/portal/static/i18n-planner.js",
                      "/portal/static/planner.css",
                      "/portal/static/common.js"):
            assert c.get(asset).status_code == 200, asset
        assert c.get("/plans").status_code == 401  # the page is public, the plans are not


def test_planner_splits_previews_activates_and_lookup_names_new_grid(page, server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _login(page)
    assert page.evaluate("typeof L.PM") == "object"  # Geoman loaded from the vendored copy
    features = _open_new_plan(page, "拆分测试")
    working = [f for f in features["features"] if f["properties"]["change"] == "unchanged"]
    assert working, "the new plan shows the community's grids"
    target = max(working, key=lambda f: shape(f["geometry"]).area)
    code = target["properties"]["code"]
    poly = shape(target["geometry"])
    page.screenshot(path=str(ARTIFACTS / "planner-plan.png"))

    # Zoom to the grid, select it by clicking inside it.
    minx, miny, maxx, maxy = poly.bounds
    page.evaluate("([a, b, c, d]) => window.citygrid.state.map.fitBounds([[b, a], [d, c]], "
                  "{ animate: false, padding: [60, 60] })", [minx, miny, maxx, maxy])
    inside = poly.representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{code}'")

    # Draw a west-east line across the grid, a little beyond its edges, that cuts it in two parts
    # of useful size; the last point is clicked twice to finish the line.
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
    page.wait_for_selector("#tool-box:not([hidden])")
    a, b = _xy(page, *cut.coords[0]), _xy(page, *cut.coords[1])
    page.mouse.click(*a)
    page.mouse.click(*b)
    page.mouse.click(*b)
    page.wait_for_selector("#check.ok")  # the live dry-run check passed
    assert page.is_enabled("#apply")
    page.screenshot(path=str(ARTIFACTS / "planner-split-drawn.png"))
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    page.wait_for_selector("#impact-grids")
    _idle(page)
    edits = page.evaluate("window.citygrid.state.plan.edits")
    assert edits[0]["op"] == "split"

    features = page.evaluate("window.citygrid.state.features")
    new = [f for f in features["features"] if f["properties"]["change"] == "new"]
    assert len(new) == 1, [(f["properties"]["code"], f["properties"]["change"])
                           for f in features["features"]]
    new_code = new[0]["properties"]["code"]
    assert new_code != code and new_code.startswith(COMMUNITY)
    impact_text = page.inner_text("#impact-grids")
    assert code in impact_text and new_code in impact_text
    page.screenshot(path=str(ARTIFACTS / "planner-split-applied.png"))

    # The old-versus-new view draws the current boundary of the split grid over the plan.
    page.check("input[name='view'][value='diff']")
    page.wait_for_function("window.citygrid.state.oldLayer.getLayers().length > 0")
    _idle(page)
    assert f"{code[-3:]}（旧）" in page.inner_text("#map")  # the split grid's current boundary
    page.screenshot(path=str(ARTIFACTS / "planner-diff.png"))
    page.check("input[name='view'][value='plan']")

    # Before activation the city still answers with the old grid, and an open incident reported
    # in the new half lands there; the refreshed preview lists it as moving to the new grid.
    point = shape(new[0]["geometry"]).representative_point()
    assert _locate(server, point.x, point.y)["grid"]["code"] == code
    with _session(server, "t_dispatcher") as c:
        res = c.post("/incidents", json={"source": "hotline_12345", "external_id": "planner-ui-1",
                                         "category": "E0101", "description": "垃圾堆放",
                                         "lon": point.x, "lat": point.y})
        assert res.status_code == 201, res.text
        incident = res.json()["id"]
        assert res.json()["grid_code"] == code, res.json()
        deadline = time.monotonic() + 5  # committed (the API answers before it commits)
        while c.get(f"/incidents/{incident}").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
    page.click("#impact-refresh")
    page.wait_for_function("document.querySelector('#impact-incidents')?.textContent === '1'")
    _idle(page)
    assert f"#{incident} {code} → {new_code}" in page.inner_text("#impact")
    page.screenshot(path=str(ARTIFACTS / "planner-impact.png"))

    assert page.is_disabled("#activate")  # a draft is not activated: it is approved first
    _approve_in_page(page, server)
    page.check("#reroute")
    page.click("#activate")
    page.wait_for_selector("#activate-result:not([hidden])")
    _idle(page)
    assert page.inner_text("#plan-status") == "已启用"
    assert int(page.inner_text("#activated-version")) > 1
    assert page.inner_text("#activated-rerouted") == "1"
    page.screenshot(path=str(ARTIFACTS / "planner-activated.png"))

    # A dispatcher's lookup in the new half names the new grid (the locator swaps within 1 s;
    # allow a few seconds on a loaded test machine).
    deadline = time.monotonic() + 5
    while True:
        got = _locate(server, point.x, point.y)["grid"]["code"]
        if got == new_code or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == new_code
    with _session(server, "t_dispatcher") as c:  # the open incident was re-routed, as the planner chose
        assert c.get(f"/incidents/{incident}").json()["grid_code"] == new_code

    # The same answer in the portal, as the dispatcher.
    page.context.clear_cookies()
    page.goto(server + "/portal")
    page.fill("#username", "t_dispatcher")
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-button")
    page.wait_for_function("window.citygrid.state.ready === true")
    page.click("[data-tab=tab-lookup]")
    page.fill("#coords", f"{point.x:.7f},{point.y:.7f}")
    page.evaluate("([lon, lat]) => window.citygrid.state.map.setView([lat, lon], 15, { animate: false })",
                  [point.x, point.y])
    page.click("#locate")
    page.wait_for_selector("#card:not([hidden])")
    assert page.inner_text("#card-grid-code") == new_code
    page.wait_for_function("document.querySelector('#loading').hidden")
    page.screenshot(path=str(ARTIFACTS / "planner-portal-lookup.png"))


def test_stale_etag_conflict_is_shown_in_words(page, server: str) -> None:
    _login(page)
    features = _open_new_plan(page, "冲突测试")
    plan = page.evaluate("window.citygrid.state.plan")
    working = [f for f in features["features"] if f["properties"]["change"] == "unchanged"]
    a = working[0]["properties"]["code"]
    # Another session of the same planner changes the plan behind the page's back.
    with _session(server, "t_planner") as c:
        res = c.post(f"/plans/{plan['id']}/edits", json={"op": "recode", "code": a,
                                                           "new_code": a[:-3] + "901"},
                     headers={"If-Match": f'"{plan["etag"]}"'})
        assert res.status_code == 200, res.text
        _settled(c, plan["id"], res.headers["ETag"])
    page.click("#review-submit")  # submitting what the page read: stale
    page.wait_for_selector("#error:not([hidden]) .conflict")
    text = page.inner_text("#error")
    assert "冲突" in text and "重新载入" in text
    page.screenshot(path=str(ARTIFACTS / "planner-conflict.png"))
    page.click("#conflict-reload")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")


def test_invalid_reshape_is_explained_and_drawn(page) -> None:
    _login(page)
    features = _open_new_plan(page, "校验测试")
    working = [f for f in features["features"] if f["properties"]["change"] == "unchanged"]
    community = unary_union([shape(f["geometry"]) for f in working])
    centre = community.centroid
    # The vertex farthest from the community's centre lies on the community's outer boundary.
    vertices = [(f, xy) for f in working for xy in _vertices(shape(f["geometry"]))]
    target, (vx, vy) = max(vertices, key=lambda v: Point(v[1]).distance(centre))
    code = target["properties"]["code"]
    minx, miny, maxx, maxy = community.bounds
    page.evaluate("([a, b, c, d]) => window.citygrid.state.map.fitBounds([[b, a], [d, c]], "
                  "{ animate: false, padding: [120, 120] })", [minx, miny, maxx, maxy])
    inside = shape(target["geometry"]).representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{code}'")
    page.click("#tool-reshape")
    # Drag that vertex outward, well outside the community: the live check must refuse it.
    start = _xy(page, vx, vy)
    cx, cy = _xy(page, centre.x, centre.y)
    dx, dy = start[0] - cx, start[1] - cy
    scale = 80 / max(1.0, (dx * dx + dy * dy) ** 0.5)
    end = (start[0] + dx * scale, start[1] + dy * scale)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
    page.mouse.move(*end, steps=5)
    page.mouse.up()
    page.wait_for_selector("#check.bad")
    assert page.is_disabled("#apply")
    assert page.locator("#problems li b").count() >= 1
    assert page.evaluate("window.citygrid.state.problemLayer.getLayers().length") >= 1
    page.screenshot(path=str(ARTIFACTS / "planner-invalid.png"))
    page.click("#cancel")
    assert page.evaluate("window.citygrid.state.plan.edits.length") == 0


def test_merge_and_create_in_the_editor(page) -> None:
    _login(page)
    features = _open_new_plan(page, "合并新建测试")
    working = {f["properties"]["code"]: shape(f["geometry"]) for f in features["features"]
               if f["properties"]["change"] == "unchanged"}
    a, b = next((a, b) for a in sorted(working) for b in sorted(working)
                if a < b and working[a].intersection(working[b]).length > 0)
    _fit(page, working[a].union(working[b]))

    # Merge: with the tool on, clicks add grids to the selection; the lower code is kept.
    page.click("#tool-merge")
    for code in (a, b):
        inside = working[code].representative_point()
        page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{a},{b}'")
    page.select_option("#f-keep", a)
    page.wait_for_selector("#check.ok")
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)
    changes = {f["properties"]["code"]: f["properties"]["change"]
               for f in page.evaluate("window.citygrid.state.features")["features"]}
    assert changes[a] == "changed" and changes[b] == "retired"
    page.screenshot(path=str(ARTIFACTS / "planner-merged.png"))
    # The current boundaries still show both grids; editing is off in that view.
    page.check("input[name='view'][value='old']")
    page.wait_for_function("window.citygrid.state.oldLayer.getLayers().length > 0")
    _idle(page)
    assert page.is_disabled("#tool-split")
    labels = page.locator(".old-label").all_inner_texts()
    assert a[-3:] in labels and b[-3:] in labels
    page.screenshot(path=str(ARTIFACTS / "planner-current.png"))
    page.check("input[name='view'][value='plan']")
    assert page.is_enabled("#tool-split")

    # Create: draw a small square inside another grid, closing it on its first corner.
    other = next(c for c in sorted(working) if c not in (a, b))
    poly = working[other]
    _fit(page, poly, 40)
    centre = poly.representative_point()
    side = min(poly.bounds[2] - poly.bounds[0], poly.bounds[3] - poly.bounds[1]) / 5
    square = [(centre.x - side / 2, centre.y - side / 2), (centre.x + side / 2, centre.y - side / 2),
              (centre.x + side / 2, centre.y + side / 2), (centre.x - side / 2, centre.y + side / 2)]
    assert poly.contains(Polygon(square))
    page.click("#tool-create")
    for corner in [*square, square[0]]:
        page.mouse.click(*_xy(page, *corner))
    page.fill("#f-name", "新建测试网格")
    page.wait_for_selector("#check.ok")
    page.screenshot(path=str(ARTIFACTS / "planner-create-drawn.png"))
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 2")
    _idle(page)
    feats = page.evaluate("window.citygrid.state.features")["features"]
    created = [f for f in feats if f["properties"]["change"] == "new"]
    assert len(created) == 1 and created[0]["properties"]["name"] == "新建测试网格"
    # The drawn square, up to the clicks' pixel rounding (a pixel is metres at this zoom).
    assert shape(created[0]["geometry"]).symmetric_difference(Polygon(square)).area \
        < 0.05 * Polygon(square).area
    assert next(f for f in feats if f["properties"]["code"] == other)["properties"]["change"] \
        == "changed"  # carved out of the grid it covers
    page.screenshot(path=str(ARTIFACTS / "planner-created.png"))


def test_english_switch(page) -> None:
    _login(page)
    assert page.inner_text("#search") == "搜索"
    page.click("#lang")
    assert page.inner_text("#search") == "Search"
    _open_new_plan(page, "english")
    assert page.inner_text("#tool-split") == "Split by line"
    assert "Legend" in page.inner_text(".legend")
    assert page.inner_text("#plan-status") == "draft"
    page.screenshot(path=str(ARTIFACTS / "planner-english.png"))
    page.click("#lang")
    assert page.inner_text("#search") == "搜索"
    assert page.inner_text("#plan-status") == "草稿"


def test_valid_reshape_moves_a_shared_vertex(page) -> None:
    community = "330782001003"
    _login(page)
    features = _open_new_plan(page, "移动顶点", community)
    working = {f["properties"]["code"]: shape(f["geometry"]) for f in features["features"]
               if f["properties"]["change"] == "unchanged"}
    outline = unary_union(list(working.values())).boundary
    # A vertex of grid a on its border with grid b, well inside the community.
    a, b, (vx, vy) = next(
        (a, b, xy) for a in sorted(working) for xy in _vertices(working[a]) for b in sorted(working)
        if b != a and working[b].boundary.distance(Point(xy)) < 1e-9
        and outline.distance(Point(xy)) > 0.002)
    _fit(page, working[a].union(working[b]))
    inside = working[a].representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{a}'")
    page.click("#tool-reshape")
    # Drag it 40 px towards the inside of b: a takes that sliver from b.
    start = _xy(page, vx, vy)
    target = working[b].representative_point()
    tx, ty = _xy(page, target.x, target.y)
    d = ((tx - start[0]) ** 2 + (ty - start[1]) ** 2) ** 0.5
    end = (start[0] + (tx - start[0]) * 40 / d, start[1] + (ty - start[1]) * 40 / d)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    page.wait_for_selector("#check.ok")
    page.screenshot(path=str(ARTIFACTS / "planner-reshape.png"))
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)
    assert page.evaluate("window.citygrid.state.plan.edits[0].op") == "reshape"
    changes = {f["properties"]["code"]: f["properties"]["change"]
               for f in page.evaluate("window.citygrid.state.features")["features"]}
    assert changes[a] == "changed" and changes[b] == "changed"
    assert b in page.inner_text("#impact-grids")

    # Retire a: its area joins b.
    inside = shape(next(f for f in page.evaluate("window.citygrid.state.features")["features"]
                        if f["properties"]["code"] == a)["geometry"]).representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{a}'")
    page.click("#tool-retire")
    page.select_option("#f-into", b)
    page.wait_for_selector("#check.ok")
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 2")
    _idle(page)
    changes = {f["properties"]["code"]: f["properties"]["change"]
               for f in page.evaluate("window.citygrid.state.features")["features"]}
    assert changes[a] == "retired" and changes[b] == "changed"
    page.screenshot(path=str(ARTIFACTS / "planner-retired.png"))


def test_activation_after_another_plan_is_a_conflict_in_words(page, server: str) -> None:
    community = "330782001002"
    _login(page)
    features = _open_new_plan(page, "后启用的方案", community)
    working = sorted(f["properties"]["code"] for f in features["features"]
                     if f["properties"]["change"] == "unchanged")
    # This plan re-codes a grid in the editor.
    first = working[0]
    geom = shape(next(f for f in features["features"] if f["properties"]["code"] == first)["geometry"])
    _fit(page, geom)
    inside = geom.representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{first}'")
    page.click("#tool-recode")
    page.fill("#f-recode", first[:-3] + "950")
    page.wait_for_selector("#check.ok")
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)

    # Meanwhile another planner's plan over the same community re-codes another grid and is
    # activated first.
    with _session(server, "t_planner") as c:
        other = c.post("/plans", json={"name": "先启用的方案", "region_code": community})
        assert other.status_code == 201, other.text
        pid = other.json()["id"]
        _settled(c, pid)
        res = c.post(f"/plans/{pid}/edits", json={"op": "recode", "code": working[1],
                                                  "new_code": working[1][:-3] + "960"},
                     headers={"If-Match": other.headers["ETag"]})
        assert res.status_code == 200, res.text
        _settled(c, pid, res.headers["ETag"])
        etag = _approve(server, pid, res.headers["ETag"])
        res = c.post(f"/plans/{pid}/activate", json={}, headers={"If-Match": etag})
        assert res.status_code == 200, res.text
        _settled(c, pid, res.headers["ETag"])
        version = res.json()["boundary_version"]

    _approve_in_page(page, server)  # approved on the boundaries it was opened on
    page.click("#activate")
    page.wait_for_selector("#error:not([hidden]) .conflict")
    text = page.inner_text("#error")
    assert "期间启用的边界版本" in text and str(version) in text and "先启用的方案" in text
    assert page.inner_text("#plan-status") == "已批准"
    page.screenshot(path=str(ARTIFACTS / "planner-activate-conflict.png"))
    page.click("#conflict-reload")  # reopened, the plan says it is out of date
    page.wait_for_selector("#review-stale")
    assert "启用会冲突" in page.inner_text("#review-stale")


def test_scheduled_activation_keeps_the_old_boundaries_until_then(page, server: str) -> None:
    community = "330782001004"
    _login(page)
    features = _open_new_plan(page, "定时启用", community)
    working = {f["properties"]["code"]: shape(f["geometry"]) for f in features["features"]
               if f["properties"]["change"] == "unchanged"}
    a, b = next((a, b) for a in sorted(working) for b in sorted(working)
                if a < b and working[a].intersection(working[b]).length > 0)
    _fit(page, working[a].union(working[b]))
    page.click("#tool-merge")
    for code in (a, b):
        inside = working[code].representative_point()
        page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_selector("#check.ok")
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)

    # The planner proposes the time on submit; the approval makes the scheduled activation
    # (a scheduled activation waits for the approval).
    when = (datetime.now().astimezone() + timedelta(hours=2)).replace(second=0, microsecond=0)
    page.fill("#review-effective", when.strftime("%Y-%m-%dT%H:%M"))  # the browser's local time
    page.check("#review-reroute")
    page.fill("#review-reason", "界面测试：人员另行安排")
    page.click("#review-submit")
    page.wait_for_selector("#review-status[data-status='submitted']")
    _idle(page)
    plan = page.evaluate("window.citygrid.state.plan")
    assert datetime.fromisoformat(plan["proposed_effective_at"]) == when
    assert plan["reroute_open_incidents"] is True
    with _session(server, "t_admin") as c:
        res = c.post(f"/plans/{plan['id']}/approve", json={},
                     headers={"If-Match": f'"{plan["etag"]}"'})
        assert res.status_code == 200, res.text
        assert res.json()["activation"]["work"]["pending"] is True
        _settled(c, plan["id"], res.headers["ETag"])
    page.evaluate("document.dispatchEvent(new CustomEvent('cg:plan-reload'))")
    page.wait_for_function("window.citygrid.state.plan.status === 'activated'")
    _idle(page)
    plan = page.evaluate("window.citygrid.state.plan")
    assert datetime.fromisoformat(plan["effective_at"]) == when
    page.wait_for_selector("#review-work")
    assert "生效时转移" in page.inner_text("#review-work")
    # Until then the city keeps the old boundaries: b's point still names b.
    point = working[b].representative_point()
    assert _locate(server, point.x, point.y)["grid"]["code"] == b
    page.screenshot(path=str(ARTIFACTS / "planner-scheduled.png"))


def test_history_diff_and_restore(page) -> None:
    """After the split test's activation, community 001 differs between the demo version and now;
    the diff map shows it and restoring the demo version opens a plan that undoes it."""
    _login(page)
    page.fill("#region-q", COMMUNITY)
    page.click("#search")
    page.click(f"#region-results button[data-code='{COMMUNITY}']")
    page.wait_for_selector("#history-section:not([hidden])")
    _idle(page)
    page.select_option("#hist-from", "1")  # the demo city's version
    page.select_option("#hist-to", "")  # the boundaries now
    page.click("#hist-show")
    page.wait_for_selector("#hist-list")
    _idle(page)
    rows = page.locator("#hist-list li").all_inner_texts()
    new = [r.split()[0] for r in rows if "新增" in r]
    changed = [r.split()[0] for r in rows if "已改" in r]
    assert len(new) == 1 and len(changed) == 1, rows  # the split: one grid cut, one new
    assert page.evaluate("window.citygrid.state.historyLayer.getLayers().length") >= 3
    page.screenshot(path=str(ARTIFACTS / "planner-history.png"))

    page.click("#hist-restore")
    page.wait_for_selector("#plan-section:not([hidden])")
    page.wait_for_function("window.citygrid.state.plan && window.citygrid.state.plan.restored_from === 1")
    _idle(page)
    changes = {f["properties"]["code"]: f["properties"]["change"]
               for f in page.evaluate("window.citygrid.state.features")["features"]}
    assert changes[new[0]] == "retired" and changes[changed[0]] == "changed"
    page.screenshot(path=str(ARTIFACTS / "planner-restore.png"))


def test_without_plan_permission_the_page_says_so(page) -> None:
    _login(page, "t_dispatcher")
    page.fill("#region-q", COMMUNITY)
    page.click("#search")
    page.click(f"#region-results button[data-code='{COMMUNITY}']")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("出错了: 没有权限。")
    assert page.is_hidden("#plan-section")


def test_discard_a_draft(page) -> None:
    _login(page)
    _open_new_plan(page, "放弃测试", "330782001005")
    plan_id = page.evaluate("window.citygrid.state.plan.id")
    assert page.locator(f"#plan-list button[data-plan='{plan_id}']").count() == 1
    page.click("#discard")
    page.wait_for_selector("#error.notice:not([hidden])")
    assert page.inner_text("#error") == "方案已放弃。"
    assert page.is_hidden("#plan-section")
    _idle(page)
    assert page.locator(f"#plan-list button[data-plan='{plan_id}']").count() == 0
