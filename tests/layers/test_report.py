"""The monthly meeting pack: an HTML page that loads nothing remote and draws offline with a
legend on every map, an XLSX whose totals equal the API's, and a PDF with pages."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Connection

from grids.access import Principal
from layers.analysis import month as month_mod
from layers.report import ReportError, build_pack, check_offline, monthly_report
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
def pack(conn: Connection, tmp_path: Path) -> tuple[Path, dict]:
    for i, n in enumerate((60, 25, 5)):
        scatter(conn, grid_in(conn, "330782001", i), n, tag=f"rep{i}",
                received_at="2026-10-12T09:00:00+08:00")
    return tmp_path, build_pack(conn, principal=Principal.system(), month="2026-10",
                                region="330782001", out_dir=tmp_path, pdf=True)


def _open(path: Path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium")
    return playwright


def test_pack_html_links_nothing_remote_and_names_not_codes(pack) -> None:
    out, summary = pack
    page = (out / "pack.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert [link for link in parser.links if "//" in link.split("=", 1)[1][:8]] == []
    assert "L.heatLayer" in page and "uPlot" in page
    # The fixture's answer: 90 incidents at seeded points (ST_GeneratePoints seed 7) in 3 grids.
    assert (summary["incidents"], summary["heat_cells"], summary["worst"]) == (90, 35, 3)
    assert "稠城街道" in page and "月度例会材料" in page and "<html lang='zh-CN'>" in page
    visible = re.sub(r"<script.*?</script>|<style.*?</style>", "", page, flags=re.S)
    assert not re.search(r"\b330782001\d{6}\b", visible)  # grid and community codes: names only
    # The test database holds no patrol fixes: the pack says so, rather than drawing zeros.
    assert summary["patrol_data"] is False and summary["coverage_days"] is None
    assert "本月无巡查数据" in visible
    # a street's pack ranks its communities, and states the scoring rules it applied
    assert "社区排名" in visible
    assert "评分规则：基础分 60" in visible and "超期案件 每件 -0.5 分（上限 -20 分）" in visible
    with pytest.raises(ReportError):
        check_offline('<script src="https://cdn.jsdelivr.net/npm/leaflet.js"></script>')


def test_pack_draws_offline_in_chromium_with_a_legend_on_every_map(pack) -> None:
    out, _ = pack
    playwright = _open(out)
    blocked: list[str] = []
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
            page = context.new_page()

            def route(r) -> None:
                if r.request.url.startswith(("file:", "data:", "about:")):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((out / "pack.html").as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=15_000)
            maps = page.locator(".leaflet-container").count()
            legends = page.locator(".leaflet-container .legend").count()
            heat = page.locator("#map-heat canvas.leaflet-heatmap-layer").count()
            paths = page.locator("#map-gi path.leaflet-interactive").count()
            chart = page.locator("#trend canvas").count()
            page.screenshot(path=str(out / "pack.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and blocked == []
    assert maps == 3 and legends == 3 and heat == 1 and paths > 0 and chart == 1


def test_pack_xlsx_totals_equal_the_api_and_pdf_has_pages(conn: Connection, pack) -> None:
    out, summary = pack
    wb = load_workbook(out / "pack.xlsx")
    assert {"汇总", "排名", "网格", "评分·街道", "评分·部门", "评分规则", "趋势", "研判",
            "口径"} <= set(wb.sheetnames)
    assert any(r[0] == "base" and r[1] == 60 for r in wb["评分规则"].iter_rows(values_only=True))
    # the 研判 sheet speaks the pack's language
    assert "热点 = Gi* z ≥ 1.96" in str(wb["研判"]["B1"].value)
    rows = {r[0]: r for r in wb["汇总"].iter_rows(min_row=3, values_only=True) if r[0]}
    api = month_mod.total(conn, principal=Principal.system(), month="2026-10",
                          region="330782001")
    for k in ("received", "due", "due_closed_on_time", "closed", "on_time_rate",
              "closure_rate"):
        assert rows[k][2] == api[k], k
    grid_sum = sum(r[3] for r in wb["网格"].iter_rows(min_row=2, values_only=True))
    assert grid_sum == api["received"] == 90
    pdf = (out / "pack.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2


def test_english_pack_and_coverage_days(conn: Connection, tmp_path: Path) -> None:
    from tests.layers.test_assessment import _patrol

    grid = grid_in(conn, "330782001", 0)
    scatter(conn, grid, 10, tag="repc", received_at="2026-10-12T09:00:00+08:00")
    _patrol(conn, grid)
    out = tmp_path / "r.html"
    summary = monthly_report(conn, month="2026-10", region="330782001", out_path=out, lang="en")
    page = out.read_text(encoding="utf-8")
    assert summary["patrol_data"] and "<html lang='en'>" in page
    assert "daily mean over the 1 day(s) of the month with patrol data" in page
    assert "Hot spot" in page and "Monthly meeting pack 2026-10" in page
    assert "Scoring rules: base 60" in page and "Ranking of communities" in page
