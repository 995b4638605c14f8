"""The supervisor's month in Chromium: the 考核 tab (figures ranked, with the month before and
last year), a drill from a figure to its cases, the grid summary on a map click, and the
monthly meeting pack from the button (HTML offline, PDF with pages, XLSX totals = the API).

Screenshots go to ``tests/ui/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import io
import re
from contextlib import closing
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, text

from layers.analysis.month import last_full_month
from tests.conftest import TEST_PASSWORD
from tests.ui.conftest import ARTIFACTS, login

STREET = "330782001"  # 稠城街道, t_supervisor's jurisdiction
MONTH = last_full_month(ZoneInfo("Asia/Shanghai"))  # the demo city's zone


@pytest.fixture(scope="module")
def month_patrols(engine: Engine) -> None:
    """Two days of patrols in 稠城街道 in the last full month (the UI database has yesterday's
    only), so the month's coverage has data; added once."""
    from data.patrols import load_demo_patrols
    from layers.patrols import grid_cover

    first = date.fromisoformat(MONTH + "-01")
    end = first + timedelta(days=12)
    with engine.begin() as conn:
        have = conn.execute(text(
            "SELECT EXISTS (SELECT 1 FROM patrol_grid_cover WHERE span = 'd' AND t0 >= :a "
            "AND t0 < :b)"), {"a": first, "b": end}).scalar_one()
        if not have:
            load_demo_patrols(conn, days=2, end=end, streets=(STREET,), step_s=60)
            grid_cover.refresh_stale(conn)


@pytest.fixture(scope="module")
def street_grid(engine: Engine) -> tuple[str, float, float]:
    """The 稠城街道 grid with the most open cases, and a point inside it."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT r.code, ST_X(ST_PointOnSurface(r.geom)), ST_Y(ST_PointOnSurface(r.geom)) "
            "FROM region_current r LEFT JOIN incident i ON i.grid_code = r.code AND i.state IN "
            "('received', 'registered', 'dispatched', 'handling', 'reported', 'verified') "
            "WHERE r.level = 'grid' AND r.code LIKE :p GROUP BY r.code, r.geom "
            "ORDER BY count(i.id) DESC, r.code LIMIT 1"), {"p": STREET + "%"}).one())


def _api(server: str, username: str = "t_supervisor") -> httpx.Client:
    c = httpx.Client(base_url=server, timeout=120)
    c.post("/auth/session", json={"username": username, "password": TEST_PASSWORD}
           ).raise_for_status()
    return c


def _open_month(page) -> None:
    page.click("[data-tab=tab-month]")
    page.wait_for_selector("#m-table:not([hidden]) tbody tr")
    page.wait_for_function("document.querySelector('#loading').hidden")


def test_assessment_view_ranks_the_month(page, server: str, month_patrols) -> None:
    login(page, "t_supervisor")
    _open_month(page)
    with closing(_api(server)) as c:
        api = c.get("/analysis/month", params={"month": MONTH, "level": "street"}).json()
    assert page.input_value("#m-month") == MONTH
    kpis = page.locator("#m-total .m-kpi")
    assert kpis.count() == 5
    total = page.inner_text("#m-total")
    assert "结案率" in total and "按期结案率" in total and "巡查覆盖率" in total
    on_time = api["total"]["current"]["on_time_rate"]
    assert f"{on_time * 100:.1f}%" in total
    days = api["total"]["current"]["coverage_days"]
    assert days and f"{days} 个有巡查数据的日子" in total
    assert page.locator("#m-table tbody tr").count() == len(api["rows"])
    # the units of the grid level, ranked on the chosen figure
    page.select_option("#m-level", "grid")
    page.wait_for_function(
        "window.citygridMonth.state.data && window.citygridMonth.state.data.level === 'grid'")
    page.select_option("#m-sort", "on_time_rate")
    ranks = [int(x) for x in page.locator("#m-table tbody tr td:first-child").all_inner_texts()
             if x.strip().isdigit()]
    assert ranks == sorted(ranks) and ranks[0] == 1
    page.wait_for_selector("#m-trend:not([hidden]) canvas")
    legend = page.inner_text("#m-trend .u-legend")
    assert "月份" in legend and "Time" not in legend, legend  # uPlot's own English label
    page.wait_for_selector("#m-scores:not([hidden]) table")
    page.screenshot(path=str(ARTIFACTS / "month_view.png"))
    page.click("#lang")
    assert "On-time closure rate" in page.inner_text("#m-total")
    page.screenshot(path=str(ARTIFACTS / "month_view_en.png"))


def test_a_figure_opens_its_cases(page, server: str) -> None:
    login(page, "t_supervisor")
    _open_month(page)
    link = page.locator("#m-table tbody tr a.m-fig[data-fig=on_time_rate]").first
    code = link.get_attribute("data-code")
    link.click()
    page.wait_for_selector("#m-drill:not([hidden]) tbody tr")
    with closing(_api(server)) as c:
        api = c.get("/analysis/cases", params={"month": MONTH, "level": "street", "code": code,
                                               "figure": "on_time_rate", "limit": 500}).json()
    title = page.inner_text("#m-drill h3")
    assert f"{api['total']} 件" in title
    assert page.locator("#m-drill tbody tr").count() == len(api["rows"])
    assert f"{api['hits']} 件" in page.inner_text("#m-drill")
    page.screenshot(path=str(ARTIFACTS / "month_drill.png"))
    # a case of the list opens in the cases tab
    first = page.locator("#m-drill a.m-case").first
    case_id = int(first.get_attribute("data-id"))
    first.click()
    page.wait_for_selector(f"#case-detail:not([hidden]) h3:text('#{case_id}')")
    assert page.evaluate("window.citygrid.state.selectedCase") == case_id


def test_grid_click_shows_its_summary(page, server: str, street_grid) -> None:
    code, lon, lat = street_grid
    login(page, "t_supervisor")
    page.evaluate(f"window.citygrid.locate({lon}, {lat}, 'EPSG:4326')")
    page.wait_for_selector("#grid-summary:not([hidden])")
    with closing(_api(server)) as c:
        api = c.get(f"/analysis/grids/{code}").json()
    box = page.inner_text("#grid-summary")
    assert api["name"] in box
    assert page.inner_text("#gs-open").startswith(str(api["open"]["total"]))
    if api["primary"]:
        assert api["primary"]["name"] in page.inner_text("#gs-primary")
    assert "最近巡查" in box and "备岗" in box
    page.screenshot(path=str(ARTIFACTS / "month_grid_summary.png"))


def test_pack_button_builds_html_pdf_and_xlsx(page, browser, server: str, tmp_path,
                                              month_patrols) -> None:
    login(page, "t_supervisor")
    _open_month(page)
    page.click("#m-pack")
    page.wait_for_selector("#m-pack-out a[data-kind=pdf]", timeout=180_000)
    urls = {a.get_attribute("data-kind"): a.get_attribute("href")
            for a in page.locator("#m-pack-out a").all()}
    assert set(urls) == {"html", "xlsx", "pdf"}
    with closing(_api(server)) as c:
        files = {k: c.get(u) for k, u in urls.items()}
        api = c.get("/analysis/month", params={"month": MONTH, "level": "street"}).json()
        other = _api(server, "t_supervisor2")
        assert other.get(urls["pdf"]).status_code == 404  # a pack is its builder's
    assert all(r.status_code == 200 for r in files.values())
    pdf = files["pdf"].content
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2
    wb = load_workbook(io.BytesIO(files["xlsx"].content))
    rows = {r[0]: r for r in wb["汇总"].iter_rows(min_row=3, values_only=True) if r[0]}
    tot = api["total"]["current"]
    for k in ("received", "due", "closed", "due_closed_on_time", "on_time_rate",
              "closure_rate", "patrol_coverage", "coverage_days"):
        assert rows[k][2] == tot[k], k
    (tmp_path / "pack.html").write_bytes(files["html"].content)
    (ARTIFACTS / "month_pack.pdf").write_bytes(pdf)
    # the HTML opens offline, from a file, and draws its three maps with legends
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
    blocked: list[str] = []
    try:
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
            ("file:", "data:", "about:")) else (blocked.append(r.request.url), r.abort()))
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto((tmp_path / "pack.html").as_uri())
        pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert pg.locator(".leaflet-container .legend").count() == 3
        assert "稠城街道" in pg.inner_text("h1")
        pg.screenshot(path=str(ARTIFACTS / "month_pack.png"), full_page=True)
    finally:
        context.close()
    assert errors == [] and blocked == []


def _judge(page, months: str = "1", category: str = "") -> None:
    page.wait_for_selector("#m-judge #m-gi-show")
    page.select_option("#m-gi-months", months)
    page.select_option("#m-gi-cat", category)
    page.click("#m-gi-show")
    page.wait_for_function(
        "(() => { const s = window.citygridMonth.state; return s.judge && s.giLegend && "
        f"s.judge.months === {int(months)} && (s.judge.category || '') === '{category}'; }})()")
    page.wait_for_function("document.querySelector('#loading').hidden")


def test_judge_panel_draws_hot_spots_with_a_legend(page, server: str) -> None:
    """研判: Gi* hot and cold spots on the portal map with their legend, per category; the
    emerging hot spots of 6 months; recurring places → their cases listed and on the map;
    spikes and topics with their rules; English with the switch."""
    login(page, "t_supervisor")
    _open_month(page)
    _judge(page)
    with closing(_api(server)) as c:
        api = c.get("/analysis/hotspots", params={"month": MONTH, "geometry": "true"}).json()
        rec = c.get("/analysis/recurring", params={"month": MONTH}).json()
    sig = [g for g in api["grids"] if g["kind"]]
    assert sig, "no hot or cold spot in the month: the panel has nothing to draw"
    assert page.input_value("#theme") == "none"  # the 事件数 colours do not show through
    assert all("geometry" in g and g["name"] for g in sig)
    drawn = page.evaluate("window.citygridMonth.state.giLayer.getLayers().length")
    assert drawn == len(sig)
    legend = page.inner_text(".m-gi-legend")
    for word in ("热点 99%", "热点 95%", "热点 90%", "冷点 90%", "冷点 99%", MONTH):
        assert word in legend, word
    # the polygons are on the map (SVG or canvas renderer: Leaflet's own count of drawn layers)
    assert page.locator("#m-gi-table tbody tr").count() == min(30, len(sig))
    summary = page.inner_text("#m-gi-summary")
    hot99 = api["summary"]["hot_99"]
    assert f"热点 99%: {hot99}" in summary
    judge = page.inner_text("#m-judge")
    assert "反复发生的地点" in judge and "类别异常增长" in judge and "热点话题" in judge
    assert "泊松" in judge and "DBSCAN" in judge  # the rules are stated
    page.screenshot(path=str(ARTIFACTS / "month_judge_gi.png"))

    # a category: the counts of that category only, the legend names it
    with closing(_api(server)) as c:
        cats = c.get("/categories").json()
        best = None
        for g in (x for x in cats if not x.get("parent_code")):
            r = c.get("/analysis/hotspots", params={"month": MONTH, "category": g["code"]}).json()
            n = sum(1 for x in r["grids"] if x["kind"])
            if n and (best is None or n > best[1]):
                best = (g, n, r)
    assert best, "no category has a hot or cold spot"
    group, n_sig, by_cat = best
    _judge(page, category=group["code"])
    assert page.evaluate("window.citygridMonth.state.giLayer.getLayers().length") == n_sig
    assert group["name"] in page.inner_text(".m-gi-legend")
    assert sum(g["count"] for g in by_cat["grids"]) < sum(g["count"] for g in api["grids"])
    page.screenshot(path=str(ARTIFACTS / "month_judge_category.png"))

    # a recurring place: its cases listed and drawn on the map
    assert rec["places"], "no recurring place in the 90 days"
    place = rec["places"][0]
    page.click("#m-rec-table tr.m-place >> nth=0")
    page.wait_for_selector("#m-place-cases tbody tr")
    assert page.locator("#m-place-cases tbody tr").count() == place["cases"]
    listed = {int(x) for x in page.locator("#m-place-cases a.m-case").evaluate_all(
        "els => els.map(e => e.dataset.id)")}
    assert listed == set(place["ids"])
    assert page.evaluate("window.citygridMonth.state.placeLayer.getLayers().length") \
        == place["cases"]
    page.screenshot(path=str(ARTIFACTS / "month_judge_place.png"))

    # emerging hot spots over 6 months: every grid of the list drawn, the kinds in the legend
    _judge(page, months="6")
    with closing(_api(server)) as c:
        em = c.get("/analysis/hotspots", params={"month": MONTH, "months": 6}).json()
    assert page.evaluate("window.citygridMonth.state.giLayer.getLayers().length") \
        == len(em["grids"])
    legend = page.inner_text(".m-gi-legend")
    assert "新热点" in legend and "持续热点" in legend and "消退热点" in legend
    page.screenshot(path=str(ARTIFACTS / "month_judge_emerging.png"))
    page.click("#lang")
    assert "Hot spots over the last 6 months" in page.inner_text(".m-gi-legend")
    assert "Recurring places" in page.inner_text("#m-judge")
    page.screenshot(path=str(ARTIFACTS / "month_judge_en.png"))
    page.click("#m-gi-clear")
    assert page.locator(".m-gi-legend").count() == 0
    assert page.input_value("#theme") == "incidents"  # the user's theme is back
    # a case of the place opens in the cases tab
    page.click("#lang")
    page.click("#m-rec-table tr.m-place >> nth=0")
    first = page.locator("#m-place-cases a.m-case").first
    case_id = int(first.get_attribute("data-id"))
    first.click()
    page.wait_for_selector(f"#case-detail:not([hidden]) h3:text('#{case_id}')")


def test_judge_errors_are_in_the_pages_language(page, server: str) -> None:
    login(page, "t_supervisor")
    _open_month(page)
    page.wait_for_selector("#m-judge #m-gi-show")
    # a street outside the supervisor's jurisdiction, as if chosen on the map tab
    page.evaluate("""() => { const s = document.getElementById('street');
        const o = document.createElement('option'); o.value = '330782002'; o.textContent = 'x';
        s.appendChild(o); s.value = '330782002'; }""")
    page.click("#m-gi-show")
    page.wait_for_selector("#error:not([hidden])")
    assert "辖区内没有该区域" in page.inner_text("#error")
    page.click("#lang")
    page.click("#m-gi-show")
    page.wait_for_function(
        "document.querySelector('#error').textContent.includes('No such region')")


def test_scores_show_their_rules_and_export(page, server: str) -> None:
    login(page, "t_supervisor")
    _open_month(page)
    page.wait_for_selector("#m-scores:not([hidden]) .m-rules li")
    with closing(_api(server)) as c:
        api = c.get("/analysis/scores", params={"month": MONTH}).json()
        href = page.get_attribute("#m-scores-xlsx2", "href")
        xlsx = c.get(href)
    rules = page.locator("#m-scores .m-rules li")
    assert rules.count() == len(api["rules"])
    text_ = page.inner_text("#m-scores .m-rules-box")
    assert f"基础分 {api['base']}" in text_
    for r in api["rules"]:
        assert r["label_zh"] in text_
        if r.get("cap") is not None:
            assert f"上限 {r['cap']:g}" in text_ or f"上限 {r['cap']}" in text_
    assert xlsx.status_code == 200
    wb = load_workbook(io.BytesIO(xlsx.content))
    sheet = wb.worksheets[0]
    scores = [row for row in sheet.iter_rows(values_only=True)]
    want = {r["name"]: r["score"] for r in api["street"]}
    got = {row[2]: row[3] for row in scores if row and row[2] in want}
    assert got and all(abs(float(got[k]) - float(want[k])) < 1e-6 for k in got)
    page.locator("#m-scores").screenshot(path=str(ARTIFACTS / "month_scores_rules.png"))
    page.click("#lang")
    assert "Scoring rules" in page.inner_text("#m-scores")


def test_judge_and_grid_summary_follow_a_month_change(page, server: str, street_grid) -> None:
    """Picking another month redraws what was shown for the old one: the figures, the 研判 layer
    (its legend names the new month) and the grid summary; the boundaries switch goes with the
    figures' and the trend's requests."""
    from layers.analysis.month import shift_month

    prev = shift_month(MONTH, -1)
    code, lon, lat = street_grid
    login(page, "t_supervisor")
    _open_month(page)
    _judge(page)
    page.evaluate(f"window.citygrid.locate({lon}, {lat}, 'EPSG:4326')")
    page.wait_for_function(
        f"(() => {{ const s = window.citygridMonth.state; return s.grid && s.grid.code === "
        f"'{code}' && s.grid.month === '{MONTH}'; }})()")
    assert MONTH in page.inner_text(".m-gi-legend")
    # the month picked in the input (as a user does: its change event), nothing else clicked
    page.evaluate(f"""() => {{ const m = document.getElementById('m-month');
        m.value = '{prev}'; m.dispatchEvent(new Event('change', {{ bubbles: true }})); }}""")
    page.wait_for_function(
        f"(() => {{ const s = window.citygridMonth.state; return s.data.month === '{prev}' && "
        f"s.judge.month === '{prev}' && s.grid.month === '{prev}' && s.giLegend && "
        f"document.querySelector('.m-gi-legend').textContent.includes('{prev}'); }})()")
    page.wait_for_function("document.querySelector('#loading').hidden")
    with closing(_api(server)) as c:
        api = c.get("/analysis/hotspots", params={"month": prev, "geometry": "true"}).json()
        grid = c.get(f"/analysis/grids/{code}", params={"month": prev}).json()
    assert page.evaluate("window.citygridMonth.state.giLayer.getLayers().length") \
        == sum(1 for g in api["grids"] if g["kind"])
    assert MONTH not in page.inner_text(".m-gi-legend")
    assert page.evaluate("window.citygridMonth.state.grid.figures") == grid["figures"]
    assert prev in page.inner_text("#m-total h3")
    page.screenshot(path=str(ARTIFACTS / "month_follows_month.png"))
    # the boundaries switch: of that month by default, today's when chosen
    page.click("[data-tab=tab-month]")  # the located grid showed the map tab
    assert page.input_value("#m-bounds") == "then"
    assert "当月的" in page.inner_text("#m-bounds")
    with page.expect_request(lambda r: "/analysis/month?" in r.url) as month_req, \
            page.expect_request(lambda r: "/analysis/trend?" in r.url) as trend_req:
        page.select_option("#m-bounds", "today")
    assert "boundaries=today" in month_req.value.url
    assert "boundaries=today" in trend_req.value.url
    page.click("#lang")
    assert "today's" in page.inner_text("#m-bounds")
