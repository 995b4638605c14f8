"""Issue 19 in the supervisor's month (考核 tab, Chromium): "a monthly figure by old boundaries
equals the figure from before the split".

The supervisor reads a grid's 应结案数 in the month's table (grid level); a planner splits that
grid through the API and an admin approves it, then it is activated; the month drawn again with
the switch on 当月的 (``boundaries=then``) shows the figure read before, and on 今天的 (``today``)
the old grid's cases divide between it and the new grid by where they happened (their sum is the
old figure), as ``tests/app/test_crosswalk_api.py`` has it for the API.

Activation commits, so this module runs on its own database (``citygrid_test_month_crosswalk``,
recreated with the demo city and five cases at the start). Screenshots go to
``tests/ui/artifacts/month_crosswalk_*.png``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import closing
from zoneinfo import ZoneInfo

import httpx
import pytest
import shapely
from openpyxl import load_workbook
from shapely.ops import split
from sqlalchemy import Engine, create_engine, text

from app.db import migrate
from app.main import create_app
from app.settings import DatabaseSettings, Settings
from layers.analysis.month import last_full_month
from tests import plan_flow
from tests.app.test_plans_api import _grid_with_a_clean_cut
from tests.conftest import _ensure_accounts, app_role_url, database_url, live_server, token_for
from tests.ui.conftest import ARTIFACTS, login

MONTH = last_full_month(ZoneInfo("Asia/Shanghai"))  # the month the page opens on
STREET = "330782001000"  # 稠城街道, t_supervisor's jurisdiction


@pytest.fixture(scope="module")
def db() -> Iterator[tuple[str, Engine]]:
    from app.seed import load_demo
    from layers.incidents.catalogue import seed

    url = database_url("citygrid_test_month_crosswalk", fresh=True)
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        load_demo(conn)
        seed(conn)
        _ensure_accounts(conn)
    yield url, eng
    eng.dispose()


@pytest.fixture(scope="module")
def served(db) -> Iterator[tuple[str, object]]:
    url, _ = db
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(url),
                                                  migration_url=url)))
    with live_server(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def server(served) -> str:  # the page fixtures of tests/ui/conftest.py open this server
    return served[0]


def _client(served, username: str) -> httpx.Client:
    base, app = served
    return httpx.Client(base_url=base, timeout=120,
                        headers={"Authorization": f"Bearer {token_for(app, username)}"})


def _incident(eng: Engine, tag: str, grid: str, point: shapely.Point) -> None:
    """An open case received and due in the month, at ``point`` in ``grid``."""
    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, state, region_code, "
            "grid_code, community_code, street_code, received_at, due_at, geom) "
            "SELECT 'supervisor', :tag, c.id, 'received', :g, :g, left(:g, 12), "
            "left(:g, 9) || '000', CAST(:r AS timestamptz), CAST(:d AS timestamptz), "
            "ST_GeomFromText(:wkt, 4490) FROM category c WHERE c.code = 'E0101'"),
            {"tag": tag, "g": grid, "wkt": point.wkt, "r": f"{MONTH}-10 10:00+08",
             "d": f"{MONTH}-15 10:00+08"})


def _show(page, level: str, bounds: str) -> str:
    """The month at ``level`` by ``bounds`` (the switch, then the level as a user picks them,
    each answer awaited): the URL of the last request for the month's figures."""
    def month(lvl: str):
        return lambda r: "/analysis/month?" in r.url and f"level={lvl}" in r.url

    if page.input_value("#m-bounds") != bounds:
        with page.expect_response(month(page.input_value("#m-level"))):
            page.select_option("#m-bounds", bounds)
    with page.expect_response(month(level)) as res:
        page.select_option("#m-level", level)
    page.wait_for_function(f"window.citygridMonth.state.data.level === '{level}'")
    page.wait_for_function("document.querySelector('#loading').hidden")
    return str(res.value.url)


def _due(page) -> dict[str, str]:
    """The table's 应结案数 (its last column) per grid code, as shown."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '#m-table tbody tr')].map(r => [r.dataset.code, r.lastElementChild.textContent.trim()]))""")


def test_a_split_keeps_the_months_figure_by_the_old_boundaries(page, served, db) -> None:
    _, eng = db
    with closing(_client(served, "t_planner")) as planner:
        community = planner.get("/regions", params={"parent": STREET, "level": "community"}
                                ).json()["items"][0]["code"]
        code, blade = _grid_with_a_clean_cut(planner, community)  # type: ignore[arg-type]
        geom = shapely.geometry.shape(planner.get(f"/regions/{code}").json()["geometry"])
    big, small = sorted(split(geom, shapely.geometry.shape(blade)).geoms, key=lambda g: -g.area)
    for n in range(3):
        _incident(eng, f"mcw-big-{n}", code, big.representative_point())
    for n in range(2):
        _incident(eng, f"mcw-small-{n}", code, small.representative_point())

    login(page, "t_supervisor")
    page.click("[data-tab=tab-month]")
    page.wait_for_selector("#m-table:not([hidden]) tbody tr")
    assert page.input_value("#m-month") == MONTH
    assert page.input_value("#m-bounds") == "then" and "当月的" in page.inner_text("#m-bounds")
    assert "boundaries=then" in _show(page, "grid", "then")
    before = _due(page)
    assert before[code] == "5", before  # the five cases of the month, all due in it

    # the split, through the API: plan, edit, submit, approve (admin), activate
    with closing(_client(served, "t_planner")) as planner:
        res = planner.post("/plans", json={"name": "拆分网格", "region_code": community})
        assert res.status_code == 201, res.text
        plan = res.json()
        done = planner.post(f"/plans/{plan['id']}/edits",
                            json={"op": "split", "code": code, "line": blade},
                            headers={"If-Match": res.headers["etag"]})
        assert done.status_code == 200, done.text
        etag = plan_flow.approve_http(
            planner, plan["id"], done.headers["etag"].strip('"'), {},  # type: ignore[arg-type]
            approver_headers={"Authorization": f"Bearer {token_for(served[1], 't_admin')}"})
        act = planner.post(f"/plans/{plan['id']}/activate", json={},
                           headers={"If-Match": etag})
        assert act.status_code == 200, act.text
        new = next(f["properties"]["code"] for f in planner.get(
            f"/plans/{plan['id']}/features").json()["features"]
            if f["properties"]["change"] == "new")

    # by the month's boundaries (当月的): the figure read before the split, the rest unchanged
    _show(page, "community", "then")
    assert "boundaries=then" in _show(page, "grid", "then")
    then = _due(page)
    assert then[code] == before[code]
    assert then.get(new, "0") == "0"
    assert {k: v for k, v in then.items() if k != new} == before
    page.screenshot(path=str(ARTIFACTS / "month_crosswalk_then.png"))

    # by today's (今天的): the old grid's cases divide by where they happened, their sum the same
    _show(page, "community", "today")
    assert "boundaries=today" in _show(page, "grid", "today")
    today = _due(page)
    assert (today[code], today[new]) == ("3", "2"), today
    assert int(today[code]) + int(today[new]) == int(before[code])
    assert {k: v for k, v in today.items() if k not in (code, new)} == {
        k: v for k, v in before.items() if k not in (code, new)}
    assert "今天的" in page.inner_text("#m-bounds")
    assert page.evaluate("window.citygridMonth.state.data.boundaries") == "today"
    # the table's XLSX export goes by the same boundaries: the new grid is in it
    href = page.get_attribute("#m-xlsx", "href")
    assert "boundaries=today" in href
    with closing(_client(served, "t_supervisor")) as c:
        book = c.get(href)
    assert book.status_code == 200, book.text
    codes = [r[0] for r in load_workbook(io.BytesIO(book.content)).active.iter_rows(
        min_row=4, values_only=True)]
    assert new in codes and code in codes
    page.screenshot(path=str(ARTIFACTS / "month_crosswalk_today.png"))

    # the meeting pack from the button goes by the same boundaries (its grid sheet too)
    with page.expect_request(lambda r: "/analysis/pack" in r.url and r.method == "POST") as req:
        page.click("#m-pack")
    assert req.value.post_data_json["boundaries"] == "today"
    page.wait_for_selector("#m-pack-out a[data-kind=xlsx]", timeout=180_000)
    pack_xlsx = page.get_attribute("#m-pack-out a[data-kind=xlsx]", "href")
    assert pack_xlsx
    with closing(_client(served, "t_supervisor")) as c:
        book = c.get(pack_xlsx)
    assert book.status_code == 200, book.text
    sheet = load_workbook(io.BytesIO(book.content))["网格"]
    grids = {r[0]: r[3] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert (grids[code], grids[new]) == (3, 2), (grids.get(code), grids.get(new))
