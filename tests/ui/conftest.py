"""The browser tests run a real server, which commits: they get a database of their own.

``citygrid_test_ui`` on the test cluster holds the demo city, the test accounts, 20,000 generated
incidents (the demo year's pattern, ending 2026-11-01) and yesterday's patrols in 稠城街道 and
江东街道 ending today. It is kept between runs (incidents the tests register accumulate; no test
counts on a fixed total), so that the data tests in ``citygrid_test`` never see what these
tests commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from app.db import is_empty, migrate
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from tests.conftest import (
    TEST_PASSWORD,
    _ensure_accounts,
    app_role_url,
    database_url,
    live_server,
)

UI_INCIDENTS = 20_000


@pytest.fixture(scope="session")
def ui_db_url() -> str:
    url = database_url("citygrid_test_ui")
    migrate(url)
    return url


# ``engine`` and ``settings`` are overridden here, not ``db_url``: a session fixture is cached by
# its definition, so overriding only its dependency would hand these tests the data tests' engine
# (or the data tests this one) whenever both run in one session.
@pytest.fixture(scope="session")
def engine(ui_db_url: str) -> Iterator[Engine]:
    """The browser tests' database: demo city, test accounts, incidents, yesterday's patrols."""
    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents
    from data.patrols import load_demo_patrols
    from layers.incidents.catalogue import seed
    from layers.patrols import grid_cover

    eng = create_engine(ui_db_url)
    with eng.begin() as conn:
        if is_empty(conn):
            load_demo(conn)
        seed(conn)
        _ensure_accounts(conn)
        if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one():
            load_demo_incidents(conn, n=UI_INCIDENTS)
        # Yesterday's patrols (Beijing time), once: one day at a time, so runs on later days
        # add their own day without colliding with the fixes already there.
        have = conn.execute(text(
            "SELECT EXISTS (SELECT 1 FROM patrol_fix WHERE (at AT TIME ZONE 'Asia/Shanghai')::date"
            " = (now() AT TIME ZONE 'Asia/Shanghai')::date - 1)")).scalar_one()
        if not have:
            load_demo_patrols(conn, days=1)
            grid_cover.refresh_stale(conn)  # their coverage per grid, as the API's worker would
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def settings(ui_db_url: str) -> Settings:
    return Settings(db=DatabaseSettings(database_url=app_role_url(ui_db_url),
                                        migration_url=ui_db_url))


CHROMIUM = "/usr/bin/chromium"

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="session")
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    """A uvicorn server on a free local port: the API plus the portal, on the demo city."""
    with live_server(create_app(settings)) as url:  # create_app mounts the portal
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    # Skipped (not failed) where Playwright or Debian's Chromium is missing.
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser, server: str) -> Iterator[Callable[..., object]]:
    """``new_page(width=, height=)``: a fresh browser context on the portal. Any request off
    127.0.0.1 is blocked and fails the test, and so does any uncaught exception in the page."""
    contexts = []
    outside: list[str] = []

    def guard(route) -> None:
        host = urlparse(route.request.url).hostname
        if host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def make(width: int = 1366, height: int = 768) -> object:
        context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
        contexts.append(context)
        context.route("**/*", guard)
        pg = context.new_page()
        pg.on("pageerror", lambda exc: crashes.append(str(exc)))
        pg.set_default_timeout(20_000)
        pg.goto(server + "/")
        return pg

    crashes: list[str] = []  # uncaught exceptions in the page's scripts
    yield make
    for context in contexts:
        context.close()
    assert not outside, f"the portal tried to reach outside 127.0.0.1: {outside}"
    assert not crashes, f"the page threw: {crashes}"


@pytest.fixture
def page(new_page) -> object:
    """The portal at 1366×768 in a fresh context."""
    return new_page()


def login(page, username: str = "t_dispatcher") -> None:
    """Log in on the portal page and wait for the first view to be drawn."""
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#map-view:not([hidden])")
    page.wait_for_function("window.citygrid.state.ready === true")
    page.wait_for_function("document.querySelector('#loading').hidden")


@pytest.fixture(scope="session")
def grid_point(engine: Engine) -> tuple[str, float, float]:
    """A current grid and a point inside it (WGS84)."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT r.code, ST_X(p), ST_Y(p) FROM region r "
            "JOIN region_boundary b ON b.region_id = r.id AND b.valid_to IS NULL, "
            "LATERAL ST_PointOnSurface(b.geom) p "
            "WHERE r.level = 'grid' ORDER BY r.code LIMIT 1 OFFSET 3")).one()
    return row[0], row[1], row[2]


@pytest.fixture(scope="session")
def expected(server: str, grid_point) -> dict:
    """What ``GET /locate`` answers for the grid point, as t_dispatcher."""
    _, lon, lat = grid_point
    with httpx.Client(base_url=server) as c:
        c.post("/auth/session", json={"username": "t_dispatcher", "password": TEST_PASSWORD}
               ).raise_for_status()
        res = c.get("/locate", params={"lon": lon, "lat": lat})
        res.raise_for_status()
        return res.json()
