"""The monthly map report: one HTML file that loads nothing remote and draws offline."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import Connection

from layers.report import ReportError, check_offline, monthly_report
from tests.layers.test_maps import grid_in, scatter

CHROMIUM = "/usr/bin/chromium"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(f"{tag} {name}={value}")


@pytest.fixture
def report(conn: Connection, tmp_path: Path) -> tuple[Path, dict]:
    for i, n in enumerate((60, 25, 5)):
        scatter(conn, grid_in(conn, "330782001", i), n, tag=f"rep{i}",
                received_at="2026-10-12T09:00:00+08:00")
    out = tmp_path / "report.html"
    return out, monthly_report(conn, month="2026-10", region="330782001", out_path=out)


def test_report_links_nothing_remote(report) -> None:
    path, summary = report
    page = path.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    remote = [link for link in parser.links if "//" in link.split("=", 1)[1][:8]]
    assert remote == []
    assert "leaflet" in page.lower() and "L.heatLayer" in page
    assert summary["incidents"] == 90 and summary["heat_cells"] > 0 and summary["worst"] > 0
    assert "no patrol data" in page or summary["patrol_data"]
    with pytest.raises(ReportError):
        check_offline('<script src="https://cdn.jsdelivr.net/npm/leaflet.js"></script>')


def test_report_draws_offline_in_chromium(report) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium")
    path, _ = report
    blocked: list[str] = []
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()

            def route(r) -> None:
                if r.request.url.startswith(("file:", "data:", "about:")):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_selector(".leaflet-container", timeout=10_000)
            page.wait_for_selector("canvas.leaflet-heatmap-layer", timeout=10_000)
            paths = page.locator("path.leaflet-interactive").count()
            rows = page.locator("#worst table tr").count()
        finally:
            browser.close()
    assert errors == [] and blocked == []
    assert paths > 0 and rows > 1


def test_report_shows_patrol_coverage_when_the_month_has_fixes(conn: Connection,
                                                               tmp_path: Path) -> None:
    from tests.layers.test_assessment import _patrol

    grid = grid_in(conn, "330782001", 0)
    scatter(conn, grid, 10, tag="repc", received_at="2026-10-12T09:00:00+08:00")
    _patrol(conn, grid)
    out = tmp_path / "report.html"
    summary = monthly_report(conn, month="2026-10", region="330782001", out_path=out)
    page = out.read_text(encoding="utf-8")
    assert summary["patrol_data"] and "patrol coverage" in page  # the layer (name JSON-escaped)
    import re

    # the walk's 50 m buffer may reach a neighbour; every grid of the street is counted
    assert re.search(r"grids patrolled [1-9][0-9]* of [0-9]+;", page)
