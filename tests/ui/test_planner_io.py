"""The planners' editor, issue 19: the plan's area out to a GeoPackage and back in (edited as in
QGIS), and moving a grid to another community inside a street plan, in Debian Chromium against a
live server, on a database of its own (``citygrid_test_planner_io``, recreated with the demo
city). The page fixture and helpers are those of tests/ui/test_planner.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from shapely.geometry import shape

from tests.ui.planner_support import (
    ARTIFACTS,
    _fit,
    _idle,
    _login,
    _open_new_plan,
    _xy,
    demo_database,
    planner_page,
    serve,
)

COMMUNITY = "330782001003"
STREET = "330782001000"


@pytest.fixture(scope="module")
def planner_db() -> Iterator[str]:
    yield demo_database("citygrid_test_planner_io")


@pytest.fixture(scope="module")
def server(planner_db: str) -> Iterator[str]:
    with serve(planner_db) as url:
        yield url


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    yield from planner_page(browser, server)


def _changes(page) -> dict[str, str]:
    return {f["properties"]["code"]: f["properties"]["change"]
            for f in page.evaluate("window.citygrid.state.features")["features"]
            if f["properties"]["change"] != "context"}


def test_geopackage_export_edit_and_import_into_the_plan(page, tmp_path: Path) -> None:
    import geopandas as gpd

    ARTIFACTS.mkdir(exist_ok=True)
    _login(page)
    _open_new_plan(page, "文件往返", COMMUNITY)
    with page.expect_download() as info:
        page.click("#export-gpkg")
    exported = tmp_path / "plan.gpkg"
    info.value.save_as(exported)
    assert exported.read_bytes()[:15] == b"SQLite format 3"
    frame = gpd.read_file(exported, layer="plan_grids")
    assert frame["code"].str.startswith(COMMUNITY).all() and len(frame) >= 2
    # as in QGIS: two neighbouring grids merged into the first
    geoms = dict(zip(frame["code"], frame.geometry, strict=True))
    a, b = next((a, b) for a in sorted(geoms) for b in sorted(geoms)
                if a < b and geoms[a].intersection(geoms[b]).length > 0)
    frame.loc[frame.code == a, "geometry"] = shapely.union_all([geoms[a], geoms[b]])
    frame = frame[frame.code != b]
    edited = tmp_path / "edited.gpkg"
    frame.to_file(edited, layer="plan_grids", driver="GPKG")

    page.set_input_files("#import-file", str(edited))
    page.click("#import-gpkg")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)
    changes = _changes(page)
    assert changes[a] == "changed" and changes[b] == "retired"
    assert "导入 edited.gpkg：1 个网格修改，0 个新增，1 个撤销" in page.inner_text("#edits")
    assert page.locator("#problems li").all_inner_texts() == ["无问题。"]
    page.screenshot(path=str(ARTIFACTS / "planner-imported.png"))

    # the import is one edit: undone, the grids are as they were
    page.click("#undo")
    page.wait_for_function("window.citygrid.state.plan.edits[0].state === 'undone'")
    _idle(page)
    assert _changes(page)[b] == "unchanged" and _changes(page)[a] == "unchanged"

    # a file that is not a GeoPackage is refused in words, and the plan is untouched
    bad = tmp_path / "bad.gpkg"
    bad.write_bytes(b"not a geopackage")
    page.set_input_files("#import-file", str(bad))
    page.click("#import-gpkg")
    page.wait_for_selector("#error:not([hidden])")
    assert "文件无法导入" in page.inner_text("#error")
    assert page.evaluate("window.citygrid.state.plan.edits.length") == 1


def test_move_a_grid_to_another_community_in_a_street_plan(page) -> None:
    _login(page)
    features = _open_new_plan(page, "移交社区", STREET)
    grids = {f["properties"]["code"]: (f["properties"]["parent_code"], shape(f["geometry"]))
             for f in features["features"] if f["properties"]["change"] == "unchanged"}
    code, target = next(
        (g, p2) for g, (p1, s1) in sorted(grids.items()) for h, (p2, s2) in sorted(grids.items())
        if p1 != p2 and s1.intersection(s2).length > 0)
    poly = grids[code][1]
    _fit(page, poly)
    inside = poly.representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{code}'")
    page.click("#tool-move")
    options = page.locator("#f-move option").evaluate_all("os => os.map(o => o.value)")
    assert target in options and grids[code][0] not in options
    page.select_option("#f-move", target)
    page.wait_for_selector("#check.ok")
    page.click("#apply")
    page.wait_for_function("window.citygrid.state.plan.edits.length === 1")
    _idle(page)
    moved = [c for c, ch in _changes(page).items() if c.startswith(target) and ch == "changed"]
    assert len(moved) == 1 and code not in _changes(page)
    text = page.inner_text("#edits")
    assert "移交社区" in text and f"新代码 {moved[0]}" in text
    page.screenshot(path=str(ARTIFACTS / "planner-moved.png"))


def test_move_needs_a_street_plan(page) -> None:
    _login(page)
    features = _open_new_plan(page, "社区方案不能移交", COMMUNITY)
    code = next(f["properties"]["code"] for f in features["features"]
                if f["properties"]["change"] == "unchanged")
    poly = next(shape(f["geometry"]) for f in features["features"]
                if f["properties"]["code"] == code)
    _fit(page, poly)
    inside = poly.representative_point()
    page.mouse.click(*_xy(page, inside.x, inside.y))
    page.wait_for_function(f"window.citygrid.state.selected.join() === '{code}'")
    page.click("#tool-move")
    assert "街道" in page.inner_text("#move-needs-street")
