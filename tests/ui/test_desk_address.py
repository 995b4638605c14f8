"""Address-only calls at the desk (desk-address.js) in a real browser, against a real server.

As a dispatcher: type a noisy spoken form of a book address (no province/city/district, Chinese
numerals, 號, 座 for 幢, 单元 left out), see candidates with confidence and grid as you type, pick
the first, fill category and description, and the case is created through the intake API in
the address's grid and opened in the desk. Screenshots in ``tests/ui/artifacts/desk-address-*``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from data.addresses import chinese_numeral, generate
from tests.address_book import ensure_demo_book
from tests.ui.conftest import ARTIFACTS, login


@pytest.fixture(scope="module")
def entry(engine: Engine):
    """A book address in 稠城街道 with a building and a unit, and the grid the book gives it."""
    ensure_demo_book(engine)
    with engine.connect() as conn:
        e = next(e for e in generate(conn) if e.key.startswith("330782001")
                 and e.unit is not None and e.house >= 11)
        grid = conn.execute(text("SELECT grid_code FROM address WHERE key = :k "
                                 "AND valid_to IS NULL"), {"k": e.key}).scalar_one()
    return e, grid


def test_address_only_call_creates_the_case_in_the_right_grid(page, entry) -> None:
    e, grid = entry
    ARTIFACTS.mkdir(exist_ok=True)
    typed = e.render(prefix=False, hao="號", building="座", unit="", numeral=chinese_numeral)
    assert "十" in typed and "單元" not in typed
    login(page, "t_dispatcher")
    page.click("[data-tab=tab-desk]")
    page.wait_for_selector("#desk-addr-q")
    page.locator("#desk-addr-q").press_sequentially(typed, delay=15)  # as typed: search as you go
    page.wait_for_function(
        "(() => { const b = window.citygridDeskAddress.box; return b.result && "
        f"b.result.candidates.length && b.q === {typed!r}; }})()")
    page.wait_for_selector("#desk-addr-candidates li")
    first = page.locator("#desk-addr-candidates li").first
    assert e.text in first.inner_text()
    assert "100%" in first.inner_text() and grid in first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "desk-address-candidates.png"))

    first.locator("button").click()
    page.wait_for_selector("#desk-addr-form")
    assert grid in page.inner_text("#desk-addr-chosen")
    page.select_option("#desk-addr-category", "C0101")
    page.select_option("#desk-addr-source", "police_110")
    page.fill("#desk-addr-description", "来电称楼道井盖缺失")
    page.click("#desk-addr-submit")
    page.wait_for_selector("#desk-addr-notice:not([hidden])")
    page.wait_for_function("window.citygridDesk.desk.view && "
                           "window.citygridDesk.desk.view.source === 'police_110'")
    view = page.evaluate("window.citygridDesk.desk.view")
    assert view["grid_code"] == grid and view["address"] == e.text
    assert view["description"] == "来电称楼道井盖缺失" and view["category"] == "C0101"
    assert abs(view["lon"] - e.lon) < 1e-6 and abs(view["lat"] - e.lat) < 1e-6
    assert f"#{view['id']}" in page.inner_text("#desk-addr-notice")
    assert f"#{view['id']}" in page.inner_text("#desk-case")
    page.wait_for_function("document.querySelector('#loading').hidden")
    page.screenshot(path=str(ARTIFACTS / "desk-address-created.png"))


def test_strings_follow_the_language_and_nothing_found_is_said(page) -> None:
    login(page, "t_dispatcher")
    page.click("[data-tab=tab-desk]")
    page.wait_for_selector("#desk-addr-q")
    page.fill("#desk-addr-q", "完全不存在的地方九九九九号")
    page.wait_for_selector("#desk-addr-none, #desk-addr-candidates")
    page.click("#lang")
    page.wait_for_function("document.querySelector('#desk-addr-toggle').textContent"
                           ".includes('Address-only call')")
    assert page.input_value("#desk-addr-q") == "完全不存在的地方九九九九号"  # survives the rebuild
