"""With a GCJ-02 base map configured, every overlay is shifted for display and clicks are shifted
back, so the answer is the place under the cursor on the (shifted) base map, not 500 m off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from app.main import create_app
from app.settings import PortalSettings, Settings
from gis.transform import wgs84_to_gcj02
from tests.conftest import free_port, live_server
from tests.ui.conftest import ARTIFACTS, login


@pytest.fixture(scope="module")
def gcj_server(settings: Settings, engine: Engine) -> Iterator[str]:
    port = free_port()
    # A local URL (nothing answers it with tiles: the test is about overlays, and stays offline).
    portal = PortalSettings(basemap_url=f"http://127.0.0.1:{port}/no-tiles/{{z}}/{{x}}/{{y}}.png",
                            basemap_crs="GCJ-02")
    app = create_app(settings.model_copy(update={"portal": portal}))
    with live_server(app, port=port) as url:
        yield url


def test_overlays_shift_and_clicks_shift_back(browser, gcj_server: str, grid_point, expected
                                              ) -> None:
    code, lon, lat = grid_point
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1")
                  else r.abort())
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(gcj_server + "/")
    try:
        login(page)
        assert page.evaluate("window.citygrid.state.gcj") is True
        glon, glat = (float(v) for v in wgs84_to_gcj02(lon, lat))
        # an overlay vertex is drawn at its GCJ-02 position
        drawn = page.evaluate("""() => {
            const layer = window.citygrid.state.outlines.getLayers()[0];
            let f = layer.feature.geometry.coordinates;
            while (Array.isArray(f[0])) f = f[0];
            let ll = layer.getLatLngs();
            while (Array.isArray(ll)) ll = ll[0];
            return [f[0], f[1], ll.lng, ll.lat]; }""")
        want = wgs84_to_gcj02(drawn[0], drawn[1])
        assert drawn[2] == pytest.approx(float(want[0]), abs=1e-7)
        assert drawn[3] == pytest.approx(float(want[1]), abs=1e-7)
        assert abs(drawn[2] - drawn[0]) > 0.003  # ~500 m: really shifted
        # a click where the grid is drawn (its GCJ-02 position) finds that grid
        page.evaluate("([x, y]) => void window.citygrid.state.map.setView([y, x], 16, "
                      "{ animate: false })", [glon, glat])
        page.evaluate("void window.citygrid.state.caseLayer.remove()")
        xy = page.evaluate("([x, y]) => { const p = window.citygrid.state.map"
                           ".latLngToContainerPoint([y, x]); return [p.x, p.y]; }", [glon, glat])
        page.locator("#map").click(position={"x": xy[0], "y": xy[1]})
        page.wait_for_selector("#card:not([hidden])")
        assert page.inner_text("#card-grid-code") == code == expected["grid"]["code"]
        assert "GCJ" in page.inner_text("#card").upper()
        page.wait_for_function("document.querySelector('#loading').hidden")
        page.screenshot(path=str(ARTIFACTS / "gcj02-basemap.png"))
    finally:
        context.close()
