"""The lookup card states its uncertainty: an Amap link pasted near a grid's edge shows the grid,
the metres to its edge and the runner-up grid; a failed lookup clears the previous highlight; the
looked-up point is not drawn like a (red, overdue) case dot."""

from __future__ import annotations

import re

from sqlalchemy import Engine

from gis.transform import wgs84_to_gcj02
from tests.locate_edges import edge_point
from tests.ui.conftest import ARTIFACTS, login


def test_amap_link_near_an_edge_then_a_failed_lookup(page, engine: Engine) -> None:
    with engine.connect() as conn:
        edge = edge_point(conn)
    gx, gy = (float(v) for v in wgs84_to_gcj02(edge["lon"], edge["lat"]))
    login(page)
    page.click("[data-tab=tab-lookup]")
    page.fill("#coords", f"https://uri.amap.com/marker?position={gx:.7f},{gy:.7f}"
                         "&name=%E4%BA%95%E7%9B%96&src=mypage&coordinate=gaode&callnative=0")
    page.click("#locate")
    page.wait_for_selector("#card:not([hidden])")
    page.wait_for_function("document.querySelector('#loading').hidden")
    assert page.inner_text("#card-grid-code") == edge["a"]
    assert "高德" in page.inner_text("#card-link") and "GCJ-02" in page.inner_text("#card-link")
    metres = float(re.search(r"[\d.]+", page.inner_text("#card-edge")).group())
    assert abs(metres - edge["edge_m"]) < 0.3
    runner = page.inner_text("#card-runner-up")
    assert edge["b"] in runner and "30 米" in runner
    assert page.evaluate("window.citygrid.state.grid !== null")
    page.wait_for_function("window.citygrid.state.runnerUp !== null")  # the neighbour, dashed
    # the looked-up point is a ring-and-cross marker, not a filled circle like the case dots
    assert page.locator(".lookup-pin").count() == 1
    assert page.evaluate("!(window.citygrid.state.point instanceof L.CircleMarker)")
    page.screenshot(path=str(ARTIFACTS / "lookup-edge.png"))

    # a link that cannot be read: the error in Chinese, and nothing of the last lookup remains
    page.fill("#coords", "https://surl.amap.com/2kXyZ")
    page.click("#locate")
    page.wait_for_selector("#error:not([hidden])")
    assert "无法从该链接读出坐标" in page.inner_text("#error")
    assert page.is_hidden("#card")
    assert page.evaluate("window.citygrid.state.grid === null")
    assert page.evaluate("window.citygrid.state.point === null")
    assert page.evaluate("window.citygrid.state.runnerUp === null")
    assert page.locator(".lookup-pin").count() == 0
    page.screenshot(path=str(ARTIFACTS / "lookup-failed.png"))
