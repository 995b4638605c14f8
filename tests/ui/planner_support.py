"""What the planner's browser journeys share (tests/ui/test_planner*.py, test_month_crosswalk.py):
a fresh demo database of their own, a live server on it, the /planner page with the outside world
blocked, and the steps the journeys take (log in, open a plan, approve it behind the page's back).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
from sqlalchemy import create_engine

from app.db import migrate
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from tests.conftest import (
    TEST_PASSWORD,
    _ensure_accounts,
    app_role_url,
    database_url,
    live_server,
)

ARTIFACTS = Path(__file__).parent / "artifacts"
COMMUNITY = "330782001001"  # a community inside t_planner's jurisdiction (稠城街道 330782001)


def demo_database(name: str) -> str:
    """Database ``name``, recreated with the demo city, the catalogue and the test accounts (the
    journeys activate plans, which commits new boundary versions: each module has its own)."""
    url = database_url(name, fresh=True)
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        from app.seed import load_demo
        from layers.incidents.catalogue import seed

        load_demo(conn)
        seed(conn)
        _ensure_accounts(conn)
    eng.dispose()
    return url


@contextmanager
def serve(url: str) -> Iterator[str]:
    """A uvicorn server on a free local port over ``url`` (as the application role)."""
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    with live_server(create_app(settings)) as base:
        yield base


def planner_page(browser, server: str, height: int = 900) -> Iterator[object]:
    """A fresh browser context on /planner (for a ``page`` fixture: ``yield from``); any request
    off 127.0.0.1 is blocked and recorded, and fails the test, as do script errors."""
    context = browser.new_context(viewport={"width": 1400, "height": height}, locale="zh-CN")
    outside: list[str] = []

    def guard(route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.on("dialog", lambda d: d.accept())  # the activation's confirm()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server + "/planner")
    yield pg
    context.close()
    assert not outside, f"the editor tried to reach outside 127.0.0.1: {outside}"
    assert not errors, f"script errors in the page: {errors}"


def _idle(page) -> None:
    page.wait_for_function("document.querySelector('#loading').hidden")


def _login(page, username: str = "t_planner") -> None:
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#editor-view:not([hidden])")
    page.wait_for_function("window.citygrid.state.ready === true")
    _idle(page)


def _open_new_plan(page, name: str, community: str = COMMUNITY) -> dict:
    """Search the community, create a plan for it; returns the plan's features (GeoJSON)."""
    page.fill("#region-q", community)
    page.click("#search")
    page.click(f"#region-results button[data-code='{community}']")
    page.wait_for_selector("#plans-section:not([hidden])")
    _idle(page)
    page.fill("#plan-name", name)
    page.click("#create-plan")
    page.wait_for_selector("#plan-section:not([hidden])")
    page.wait_for_function("window.citygrid.state.features !== null")
    _idle(page)
    return page.evaluate("window.citygrid.state.features")


def _xy(page, lon: float, lat: float) -> tuple[float, float]:
    """Page pixel coordinates of a lon/lat on the map."""
    p = page.evaluate("([lon, lat]) => { const p = window.citygrid.state.map.latLngToContainerPoint("
                      "[lat, lon]); return [p.x, p.y]; }", [lon, lat])
    box = page.locator("#map").bounding_box()
    return box["x"] + p[0], box["y"] + p[1]


def _settled(c: httpx.Client, plan_id: int, etag: str | None = None) -> None:
    """Wait until a write to a plan is visible to another request: the browser may send its next
    request before this client's sees the committed state."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        res = c.get(f"/plans/{plan_id}")
        if res.status_code == 200 and (etag is None or res.headers["ETag"] == etag):
            return
        time.sleep(0.05)
    raise AssertionError(f"plan {plan_id} did not reach {etag}")


@contextmanager
def _session(server: str, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server) as c:
        res = c.post("/auth/session", json={"username": username, "password": TEST_PASSWORD})
        res.raise_for_status()
        c.headers["X-CSRF-Token"] = res.json()["csrf_token"]
        yield c


def _approve(server: str, plan_id: int, etag: str, submit: dict | None = None) -> str:
    """The planner submits (giving a reason for grids without a worker) and the admin approves
    (issue 19: only an approved plan is activated); the approved plan's ETag header."""
    with _session(server, "t_planner") as c:
        res = c.post(f"/plans/{plan_id}/submit", headers={"If-Match": etag},
                     json={"unstaffed_reason": "界面测试：人员另行安排", **(submit or {})})
        assert res.status_code == 200, res.text
        _settled(c, plan_id, res.headers["ETag"])
    with _session(server, "t_admin") as c:
        res = c.post(f"/plans/{plan_id}/approve", json={}, headers={"If-Match": res.headers["ETag"]})
        assert res.status_code == 200, res.text
        _settled(c, plan_id, res.headers["ETag"])
        return str(res.headers["ETag"])


def _approve_in_page(page, server: str, status: str = "approved", **submit) -> None:
    """Approve the page's open plan behind its back and let the page read it again."""
    plan = page.evaluate("window.citygrid.state.plan")
    _approve(server, plan["id"], f'"{page.evaluate("window.citygrid.state.etag")}"', submit)
    page.evaluate("document.dispatchEvent(new CustomEvent('cg:plan-reload'))")
    page.wait_for_function(f"window.citygrid.state.plan.status === '{status}'")
    _idle(page)


def _locate(server: str, lon: float, lat: float) -> dict:
    with _session(server, "t_dispatcher") as c:
        res = c.get("/locate", params={"lon": lon, "lat": lat})
        res.raise_for_status()
        return res.json()


def _vertices(geom) -> list[tuple[float, float]]:
    polys = geom.geoms if geom.geom_type == "MultiPolygon" else [geom]
    return [xy for p in polys for xy in p.exterior.coords[:-1]]


def _fit(page, geom, padding: int = 80) -> None:
    minx, miny, maxx, maxy = geom.bounds
    page.evaluate("([a, b, c, d, p]) => window.citygrid.state.map.fitBounds([[b, a], [d, c]], "
                  "{ animate: false, padding: [p, p] })", [minx, miny, maxx, maxy, padding])
