"""The planners' editor, issue 19: undo and redo of single edits, the edit list in zh-CN (and
English), renaming a grid, and the history list refreshed after activation, in Debian Chromium
against a live server.

Activation commits, so this module runs on a database of its own (``citygrid_test_planner_undo``,
recreated with the demo city at the start of the module). The page fixture, the log-in and the
map helpers are those of tests/ui/test_planner.py (every request off 127.0.0.1 fails the test,
and so does a script error in the page).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from shapely.geometry import shape

from tests.ui.planner_support import (
    ARTIFACTS,
    _approve_in_page,
    _fit,
    _idle,
    _login,
    _open_new_plan,
    _xy,
    demo_database,
    planner_page,
    serve,
)

COMMUNITY = "330782001002"


@pytest.fixture(scope="module")
def planner_db() -> Iterator[str]:
    yield demo_database("citygrid_test_planner_undo")


@pytest.fixture(scope="module")
def server(planner_db: str) -> Iterator[str]:
    with serve(planner_db) as url:
        yield url


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    yield from planner_page(browser, server)


def _activate(page, server: str) -> int:
    """Activate the open plan in the page; returns the boundary version.

    The one place the tests activate: once activation needs a proposal and an approval, only
    this helper changes: the planner submits, the admin approves (issue 19), then activation."""
    _approve_in_page(page, server)
    page.click("#activate")
    page.wait_for_selector("#activate-result:not([hidden])")
    _idle(page)
    return int(page.inner_text("#activated-version"))


def _select(page, features: dict, code: str) -> None:
    poly = next(shape(f["geometry"]) for f in features["features"]
                if f["properties"]["code"] == code)
    _fit(page, poly)
    inside = poly.representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{code}'")


def _rename(page, features: dict, code: str, name: str) -> None:
    _select(page, features, code)
    page.click("#tool-rename")
    page.fill("#f-rename", name)
    page.wait_for_selector("#check.ok")  # the live dry run accepted it
    n = page.evaluate("window.citygrid.state.plan.edits.length")
    page.click("#apply")
    page.wait_for_function(f"window.citygrid.state.plan.edits.length === {n + 1}")
    _idle(page)


def _names(page) -> dict[str, str]:
    return {f["properties"]["code"]: f["properties"]["name"]
            for f in page.evaluate("window.citygrid.state.features")["features"]
            if f["properties"]["change"] not in ("context", "retired")}


def _working(features: dict) -> list[str]:
    return sorted(f["properties"]["code"] for f in features["features"]
                  if f["properties"]["change"] == "unchanged")


def test_rename_undo_redo_and_the_edit_list_in_chinese(page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _login(page)
    features = _open_new_plan(page, "撤销重做", COMMUNITY)
    a, b = _working(features)[:2]
    old_a, old_b = _names(page)[a], _names(page)[b]
    assert page.is_disabled("#undo") and page.is_disabled("#redo")

    _rename(page, features, a, "东片网格")
    _rename(page, features, b, "西片网格")
    assert _names(page)[a] == "东片网格" and _names(page)[b] == "西片网格"
    items = page.locator("#edits li").all_inner_texts()
    assert len(items) == 2
    assert items[0].startswith("改名") and f"{a} 改名：{old_a} → 东片网格" in items[0]
    assert not re.search(r"renamed|re-coded|split|merged", " ".join(items))  # no English
    assert page.is_enabled("#undo") and page.is_disabled("#redo")

    page.click("#undo")
    page.wait_for_function("window.citygrid.state.plan.edits[1].state === 'undone'")
    _idle(page)
    assert _names(page)[b] == old_b and _names(page)[a] == "东片网格"
    assert "已撤销" in page.inner_text("#error")  # the notice names what was undone
    assert "已撤销，可重做" in page.locator("#edits li").nth(1).inner_text()
    assert page.is_enabled("#redo")
    page.screenshot(path=str(ARTIFACTS / "planner-undone.png"))

    page.click("#undo")
    page.wait_for_function("window.citygrid.state.plan.edits[0].state === 'undone'")
    _idle(page)
    assert _names(page)[a] == old_a
    assert page.is_disabled("#undo")

    page.click("#redo")
    page.wait_for_function("window.citygrid.state.plan.edits[0].state === 'done'")
    _idle(page)
    assert _names(page)[a] == "东片网格" and _names(page)[b] == old_b

    # A new edit clears the redo stack: the second rename is dropped for good.
    _rename(page, features, b, "北片网格")
    states = page.evaluate("window.citygrid.state.plan.edits.map(e => e.state)")
    assert states == ["done", "dropped", "done"]
    assert page.is_disabled("#redo")
    assert _names(page)[b] == "北片网格"

    page.click("#lang")
    items = page.locator("#edits li").all_inner_texts()
    assert items[0].startswith("Rename") and f"{a} renamed: {old_a} → 东片网格" in items[0]
    assert page.inner_text("#undo") == "Undo"
    page.click("#lang")
    page.screenshot(path=str(ARTIFACTS / "planner-edit-list.png"))


def test_history_list_refreshes_after_activation(page, server: str) -> None:
    _login(page)
    features = _open_new_plan(page, "启用后刷新历史", COMMUNITY)
    before = page.locator("#hist-from option").all_inner_texts()
    code = _working(features)[-1]
    _rename(page, features, code, "启用测试网格")
    version = _activate(page, server)
    # The list is read again after the activation's other reads: wait for it, not for idle.
    page.wait_for_function(
        f"[...document.querySelectorAll('#hist-from option')].some((o) => o.value === '{version}')")
    options = page.locator("#hist-from option").evaluate_all("os => os.map(o => o.value)")
    assert str(version) in options and len(options) == len(before) + 1
    assert page.is_disabled("#undo") and page.is_disabled("#redo")  # not a draft any more
