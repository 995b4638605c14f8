"""The monthly meeting pack (每月例会材料): one offline HTML page, an XLSX and a PDF.

``citygrid report`` and the portal's 生成例会材料 button both call :func:`build_pack`, so they
produce the same pack:

* **HTML** (``pack.html``): opens offline (Leaflet, Leaflet.heat and uPlot are vendored under
  ``map_ui/vendor/`` and inlined; the written page is checked to link no ``http(s)://`` script,
  stylesheet or image). Three maps, each with its legend: incident heat (server-side bins of
  :data:`HEAT_CELL_M` metres, weighted by count: never every point), Gi* hot and cold spots, and
  patrol coverage per grid (saying over how many days with data it is computed). Then the
  figures with the month before and the same month last year, the ranking of the units, the
  scores, the 12-month trend (a chart), and the 研判 findings: emerging and persistent hot spots,
  recurring places, category spikes and hot topics. Names, not codes; zh-CN by default, English
  with ``lang='en'``.
* **XLSX** (``pack.xlsx``): the same figures, one sheet each, totals on the first sheet.
* **PDF** (``pack.pdf``): the HTML printed by Debian's Chromium through Playwright
  ``page.pdf`` (A4 landscape), once its maps and chart have drawn.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Principal, prefix_of
from grids.city import profile
from grids.codes import normalise
from layers import assessment
from layers.analysis import crosswalk, scoring, topics, trends
from layers.analysis import gi as gi_mod
from layers.analysis import month as month_mod
from layers.analysis import recurring as recurring_mod
from layers.analysis.crosswalk import Boundaries

VENDOR = Path(__file__).resolve().parents[1] / "map_ui" / "vendor"
LEAFLET = VENDOR / "leaflet-1.9.4"
LEAFLET_HEAT = VENDOR / "leaflet-heat" / "leaflet_heat.min.js"
UPLOT = VENDOR / "uplot-1.6.32"
PACK_JS = Path(__file__).with_name("report_pack.js")
CHROMIUM = "/usr/bin/chromium"
# Heat cell side in metres (metric CRS): fine enough for a city map, far fewer cells than points.
HEAT_CELL_M = 100
WORST = 15
_REMOTE = re.compile(r"<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?\s*"
                     r"(?:https?:)?//", re.IGNORECASE)
COVER_RAMP = ["#a50f15", "#ef3b2c", "#fc9272", "#c7e9c0", "#74c476", "#238b45"]
COUNT_RAMP = ["#fff5eb", "#fdd0a2", "#fd8d3c", "#e6550d", "#a63603"]
GI_COLOURS = {("hot", 99): "#b2182b", ("hot", 95): "#ef8a62", ("hot", 90): "#fddbc7",
              ("cold", 90): "#d1e5f0", ("cold", 95): "#67a9cf", ("cold", 99): "#2166ac"}

TEXT: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "{month} 月度例会材料 · {area}", "city": "全市", "generated": "生成于 {t}（{tz}）",
        "kpi": "本月主要指标", "figure": "指标", "this": "本月", "prev": "上月 {m}",
        "ly": "去年同月 {m}", "closure_rate": "结案率", "on_time_rate": "按期结案率",
        "rework_rate": "返工率", "mean_handling_h": "平均处置时长（小时）",
        "patrol_coverage": "巡查覆盖率", "received": "受理数", "due": "应结案数",
        "closed": "结案数", "map_heat": "事件热力图", "map_gi": "热点与冷点（Gi*）",
        "map_cover": "巡查覆盖率（网格）", "legend_heat": "事件密度（{c} 米格网加权）",
        "legend_low": "低", "legend_high": "高", "hot": "热点", "cold": "冷点",
        "not_sig": "不显著", "cover_days": "覆盖率按本月 {n} 个有巡查数据的日子计算（日均）",
        "no_patrol": "本月无巡查数据，不显示覆盖率。", "no_data": "无数据",
        "ranking": "{level}排名", "rank": "名次", "name": "名称", "score": "得分",
        "scores": "考核评分（{base} 分基础，规则见下，XLSX“评分规则”表同）",
        "rules": "评分规则：基础分 {base}，总分限定在 {min}–{max} 分", "rule_rate": "{label} × {p} 分",
        "rule_case": "{label} 每件 {p} 分", "rule_cap": "（上限 {cap} 分）", "street": "街道",
        "community": "社区", "department": "部门", "trend": "近 12 个月趋势",
        "findings": "研判", "emerging": "新出现与持续热点（近 {n} 个月，95% 置信）",
        "kind_new": "新热点", "kind_persistent": "持续热点", "kind_consecutive": "连续热点",
        "kind_sporadic": "间歇热点", "kind_diminished": "消退热点", "grid": "网格",
        "hot_months": "热点月数", "recurring": "反复发生的地点（{rule}）", "cases": "案件数",
        "category": "类别", "first": "首次", "last": "最近", "spikes": "类别异常增长（{rule}）",
        "count": "本月", "baseline": "以往月均", "topics": "热点话题（描述分词）",
        "word": "词", "none": "无", "worst": "按期未结最多的网格", "incidents": "事件数",
        "month_cases": "本月受理 {n} 件", "gi_rule": "Gi* 按网格事件数，权重为网格 Queen 邻接",
        "z": "z 值", "rising": "上升", "kind": "类型", "x_month": "月份",
        "recurring_rule": "同类案件 {k} 件及以上、相距 {eps} 米以内（DBSCAN 聚类），{days} 天内",
        "spikes_rule": "本月 ≥ {n} 件、≥ 该类以往 {h} 个月月均的 {r} 倍，且泊松 P(X ≥ 本月数) < {p}",
        "bounds_then": "按当月边界统计：案件计入受理时所在的网格、社区和街道。",
        "bounds_today": "按今日边界统计：此后重划的网格的案件按所在位置（无位置则按面积比例）计入今日的"
                        "网格；上月和去年同月按各自当时的边界。",
        "boundaries": "统计边界",
    },
    "en": {
        "title": "Monthly meeting pack {month} · {area}", "city": "Whole city",
        "generated": "Generated {t} ({tz})", "kpi": "Key figures", "figure": "Figure",
        "this": "This month", "prev": "Month before {m}", "ly": "Same month last year {m}",
        "closure_rate": "Closure rate", "on_time_rate": "On-time closure rate",
        "rework_rate": "Rework rate", "mean_handling_h": "Mean handling time (h)",
        "patrol_coverage": "Patrol coverage", "received": "Received", "due": "Due",
        "closed": "Closed", "map_heat": "Incident heat", "map_gi": "Hot and cold spots (Gi*)",
        "map_cover": "Patrol coverage per grid",
        "legend_heat": "Incident density ({c} m cells, weighted)", "legend_low": "low",
        "legend_high": "high", "hot": "Hot spot", "cold": "Cold spot",
        "not_sig": "Not significant",
        "cover_days": "Coverage: daily mean over the {n} day(s) of the month with patrol data",
        "no_patrol": "No patrol data this month: coverage not shown.", "no_data": "no data",
        "ranking": "Ranking of {level}", "rank": "Rank", "name": "Name", "score": "Score",
        "scores": "Scores (base {base}; the rules below, and on the XLSX sheet of rules)",
        "rules": "Scoring rules: base {base}, the total kept within {min}–{max}",
        "rule_rate": "{label} × {p} points", "rule_case": "{label}: {p} per case",
        "rule_cap": " (cap {cap})", "street": "streets",
        "community": "communities", "department": "departments", "trend": "Last 12 months",
        "findings": "Findings", "emerging": "New and persistent hot spots (last {n} months, 95 %)",
        "kind_new": "new", "kind_persistent": "persistent", "kind_consecutive": "consecutive",
        "kind_sporadic": "sporadic", "kind_diminished": "diminished", "grid": "Grid",
        "hot_months": "Hot months", "recurring": "Recurring places ({rule})", "cases": "Cases",
        "category": "Category", "first": "First", "last": "Latest",
        "spikes": "Category spikes ({rule})", "count": "This month", "baseline": "Past mean",
        "topics": "Hot topics (words of the descriptions)", "word": "Word", "none": "none",
        "worst": "Grids with the most cases not closed on time", "incidents": "Incidents",
        "month_cases": "{n} cases received this month",
        "gi_rule": "Gi* over incidents per grid, Queen contiguity of the grids", "z": "z",
        "rising": "rising", "kind": "Kind", "x_month": "Month",
        "recurring_rule": "≥ {k} cases of one category within {eps} m (DBSCAN), in {days} days",
        "spikes_rule": "≥ {n} cases, ≥ {r}× the category's mean of the previous {h} months, "
                       "Poisson P(X ≥ count) < {p}",
        "bounds_then": "By the month's boundaries: cases count for the grid, community and "
                       "street they were given at intake.",
        "bounds_today": "By today's boundaries: cases of grids redrawn since are placed in "
                        "today's grids by their point (by area shares without one); the month "
                        "before and last year by their own boundaries.",
        "boundaries": "Boundaries",
    },
}

GI_RULE = {"zh-CN": "热点 = Gi* z ≥ 1.96（95% 置信）。新热点：仅本月为热点；持续热点：每月都是；"
                    "连续热点：本月和上月都是；间歇热点：本月及此前某月是；消退热点：此前是、本月不是",
           "en": "hot = Gi* z ≥ 1.96 (95 %); new: hot now only; persistent: hot every month; "
                 "consecutive: hot now and last month; sporadic: hot now and some earlier month; "
                 "diminished: hot earlier, not now"}
TOPIC_RULE = {"zh-CN": "jieba 精确模式分词；每件案件每词计一次；去掉单字、数字和停用词；"
                       "上升：≥ 5 且 ≥ 上月 2 倍",
              "en": "jieba precise mode; a word once per case; 1-character words, numbers and "
                    "stop words dropped; rising: ≥ 5 and ≥ 2× last month"}


class ReportError(Exception):
    """The report would depend on the network, or has nothing to show."""


def check_offline(page: str) -> None:
    """Raise :class:`ReportError` if ``page`` would fetch anything over the network."""
    hit = _REMOTE.search(page)
    if hit:
        raise ReportError(f"the report links a remote resource: {hit.group(0)[:120]}")


def _script(body: str) -> str:
    if "</script" in body.lower():
        raise ReportError("a vendored script contains </script>")
    return f"<script>{body}</script>"


def _leaflet_css() -> str:
    css = (LEAFLET / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match[str]) -> str:
        path = LEAFLET / m.group(1)
        if not path.exists():  # marker images: the report draws no markers
            return "url()"
        return "url(data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() + ")"

    return re.sub(r"url\((images/[^)]+)\)", inline, css)


# ---- the data ------------------------------------------------------------------------------
def _heat_cells(conn: Connection, window: tuple[datetime, datetime], prefix: str,
                patterns: list[str]) -> list[list[float]]:
    rows = conn.execute(text(
        "WITH p AS (SELECT ST_Transform(geom, CAST(:srid AS integer)) AS g FROM incident "
        "WHERE geom IS NOT NULL AND received_at >= :s AND received_at < :e "
        "AND region_code LIKE :p AND region_code LIKE ANY(:patterns)), "
        "b AS (SELECT floor(ST_X(g) / :c) AS ix, floor(ST_Y(g) / :c) AS iy, count(*) AS n "
        "FROM p GROUP BY 1, 2) "
        "SELECT ST_Y(q), ST_X(q), n FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint("
        "(ix + 0.5) * :c, (iy + 0.5) * :c), CAST(:srid AS integer)), 4490) AS q, n FROM b) s"),
        {"s": window[0], "e": window[1], "p": prefix + "%", "c": HEAT_CELL_M,
         "srid": profile(conn).metric_srid, "patterns": patterns}).all()
    return [[round(lat, 6), round(lon, 6), int(n)] for lat, lon, n in rows]


def _grid_shapes(conn: Connection, prefix: str, patterns: list[str]) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT r.code, r.name, c.name AS community, "
        "ST_AsGeoJSON(ST_SimplifyPreserveTopology(r.geom, 0.00005), 6) AS geom "
        "FROM region_current r LEFT JOIN region c ON c.code = left(r.code, 12) "
        "WHERE r.level = 'grid' AND r.code LIKE :p AND r.code LIKE ANY(:patterns) "
        "ORDER BY r.code"), {"p": prefix + "%", "patterns": patterns}).all()
    return [{"code": c, "name": n, "community": cm, "geom": json.loads(g)}
            for c, n, cm, g in rows]


def collect(conn: Connection, *, principal: Principal, month: str,
            region: str | None = None, boundaries: Boundaries = "then") -> dict[str, Any]:
    """Everything the pack shows, as data (the HTML, the XLSX and the tests read this).

    ``boundaries`` as for ``/analysis/month`` (:mod:`layers.analysis.crosswalk`): ``then``,
    each case for the units it was given at intake; ``today``, the month's figures, grid
    figures (maps, grid sheet, worst grids) and trend by today's grids.
    """
    if boundaries not in ("then", "today"):
        raise ReportError("boundaries is then or today")
    tz = profile(conn).tz
    window = assessment.month_window(month, tz)
    scope = principal.locate_scope()
    patterns = scope.like_patterns()
    prefix = prefix_of(region) if region else ""
    area_name = None
    if region:
        code = normalise(region)
        area_name = conn.execute(text("SELECT name FROM region WHERE code = :c"),
                                 {"c": code}).scalar()
        if area_name is None or not scope.covers(code):
            raise ReportError(f"no region {region!r} in the jurisdiction")
    elif not scope.covers(None) and len(scope.prefixes) == 1:
        # the caller's jurisdiction is one region: the pack is about it, by name
        p = scope.prefixes[0]
        area_name = conn.execute(text("SELECT name FROM region WHERE code = :c"),
                                 {"c": p + "0" * (12 - len(p)) if len(p) < 12 else p}).scalar()
    shapes = _grid_shapes(conn, prefix, patterns)
    if not shapes:
        raise ReportError(f"no grids under {region or 'the jurisdiction'!r}")
    # A street's pack ranks its communities: the street asked for, or a jurisdiction that is one
    # street (or community); a wider area ranks its streets.
    one = prefix if region else (scope.prefixes[0] if not scope.covers(None)
                                 and len(scope.prefixes) == 1 else "")
    level = "community" if len(one) >= 9 else "street"
    compared = month_mod.compare(conn, principal=principal, month=month, level=level,
                                 region=region, p90_all=True, boundaries=boundaries)
    grid_fig = crosswalk.monthly(conn, principal=principal, month=month, level="grid",
                                 region=region, boundaries=boundaries)
    by_grid = {r["code"]: r for r in grid_fig["rows"] if r["code"]}
    hot = gi_mod.hotspots(conn, principal=principal, month=month, region=region)
    emerging = gi_mod.trend(conn, principal=principal, month=month, months=6, region=region)
    gi_by = {g["code"]: g for g in hot["grids"]}
    names = {s["code"]: s["name"] for s in shapes}
    for s in shapes:
        f = by_grid.get(s["code"], {})
        g = gi_by.get(s["code"], {})
        s.update({"incidents": f.get("received", 0), "coverage": f.get("patrol_coverage"),
                  "z": g.get("z"), "kind": g.get("kind"), "confidence": g.get("confidence")})
    for g in emerging["grids"]:
        g["name"] = names.get(g["code"], g["code"])
    worst = sorted((r for r in grid_fig["rows"] if r["code"] and r["due"]),
                   key=lambda r: (-(r["due"] - r["due_closed_on_time"]), -r["received"]))[:WORST]
    return {
        "month": month, "region": region, "area_name": area_name, "level": level,
        "boundaries": boundaries,
        "generated": datetime.now(tz).replace(microsecond=0).isoformat(),
        "timezone": tz.key, "compare": compared, "total": compared["total"],
        "scores": scoring.scores(conn, principal=principal, month=month, region=region),
        "trend": crosswalk.series(conn, principal=principal, month=month, region=region,
                                  boundaries=boundaries),
        "grids": shapes, "heat": _heat_cells(conn, window, prefix, patterns),
        "hotspots": {k: v for k, v in hot.items() if k != "grids"},
        "emerging": emerging,
        "recurring": recurring_mod.recurring(conn, principal=principal, month=month,
                                             region=region, limit=20),
        "spikes": trends.spikes(conn, principal=principal, month=month, region=region),
        "topics": topics.topics(conn, principal=principal, month=month, region=region),
        "worst": worst, "coverage_days": compared["total"]["current"]["coverage_days"],
        "formulas": assessment.FORMULAS,
    }


# ---- HTML ----------------------------------------------------------------------------------
def _pct(v: Any) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


def _val(v: Any, fig: str) -> str:
    if v is None:
        return "–"
    if fig == "mean_handling_h":
        return f"{v:.1f}"
    if fig.endswith("_rate") or fig == "patrol_coverage":
        return _pct(v)
    return str(v)


def _table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    e = html.escape
    return (f"<table class='{cls}'><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(
                "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            + "</tbody></table>")


def render_html(data: dict[str, Any], lang: str = "zh-CN") -> str:
    """The pack's page (offline, self-contained)."""
    T = TEXT["en" if lang == "en" else "zh-CN"]
    e = html.escape
    month = data["month"]
    area = data["area_name"] or T["city"]
    tot = data["total"]
    comp = data["compare"]
    figs = list(month_mod.KEY_FIGURES)
    kpi_rows = [[T[f], _val(tot["current"][f], f), _val(tot["prev"][f], f),
                 _val(tot["last_year"][f], f)] for f in figs]
    kpi_rows += [[T[k], tot["current"][k], tot["prev"][k], tot["last_year"][k]]
                 for k in ("received", "due", "closed")]
    kpi = _table([T["figure"], T["this"], T["prev"].format(m=comp["prev_month"]),
                  T["ly"].format(m=comp["last_year_month"])], kpi_rows, "kpi")
    cover_note = (T["cover_days"].format(n=data["coverage_days"]) if data["coverage_days"]
                  else T["no_patrol"])
    ranked = sorted((r for r in comp["rows"] if r["code"]),
                    key=lambda r: (r["rank"]["on_time_rate"] or 10**6, r["name"]))
    ranking = _table([T["rank"], T["name"], *[T[f] for f in figs], T["due"]],
                     [[r["rank"]["on_time_rate"] or "–", r["name"],
                       *[_val(r[f], f) for f in figs], r["due"]] for r in ranked], "rank")
    sc = data["scores"]
    rule_head = [r["label_en"] if lang == "en" else r["label_zh"] for r in sc["rules"]]
    scores = "".join(
        f"<h3>{e(T[level])}</h3>" + _table(
            [T["rank"], T["name"], T["score"], *rule_head],
            [[r["rank"], r["name"], f"{r['score']:.1f}",
              *[f"{_pct(r['counts'][x['key']]) if x['kind'] == 'rate' else r['counts'][x['key']]}"
                f" ({r['points'][x['key']]:+.1f})" for x in sc["rules"]]]
             for r in sc[level]], "rank")
        for level in ("street", "department"))
    rules_head = T["rules"].format(base=sc["base"], min=sc["min"], max=sc["max"])
    scores += (f"<p class='note' id='rules'>{e(rules_head)}: "
               + "; ".join(e(T["rule_" + ("rate" if x["kind"] == "rate" else "case")].format(
                   label=x["label_en"] if lang == "en" else x["label_zh"],
                   p=f"{x['points']:+g}")) + (e(T["rule_cap"].format(cap=f"{x['cap']:g}"))
                                               if x.get("cap") is not None else "")
                           for x in sc["rules"]) + "</p>")
    em = data["emerging"]
    emerging = _table([T["grid"], T["kind"], T["hot_months"], T["z"]],
                      [[g["name"], T["kind_" + g["kind"]], g["hot_months"],
                        f"{g['z'][-1]:.2f}"] for g in em["grids"][:20]]) if em["grids"] \
        else f"<p>{e(T['none'])}</p>"
    rec = data["recurring"]
    recurring = _table([T["rank"], T["category"], T["grid"], T["cases"], T["first"], T["last"]],
                       [[p["rank"], p["category_name"] or "", p["grid_name"] or "", p["cases"],
                         p["first_at"][:10], p["last_at"][:10]] for p in rec["places"][:15]]) \
        if rec["places"] else f"<p>{e(T['none'])}</p>"
    sp = data["spikes"]
    spikes = _table([T["category"], T["count"], T["baseline"], "p"],
                    [[s["category_name"], s["count"], s["baseline"], s["p"]]
                     for s in sp["spikes"]]) if sp["spikes"] else f"<p>{e(T['none'])}</p>"
    tp = data["topics"]
    topic_tbl = _table([T["word"], T["count"], T["prev"].format(m=comp["prev_month"]), ""],
                       [[w["word"], w["count"], w["prev"], T["rising"] if w["rising"] else ""]
                        for w in tp["overall"]]) if tp["overall"] else f"<p>{e(T['none'])}</p>"
    worst = _table([T["grid"], T["received"], T["due"], T["on_time_rate"], T["closure_rate"]],
                   [[r["name"], r["received"], r["due"], _pct(r["on_time_rate"]),
                     _pct(r["closure_rate"])] for r in data["worst"]])
    grids_geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": g["geom"], "properties": {
            "name": g["name"], "community": g["community"], "incidents": g["incidents"],
            "coverage": g["coverage"], "z": g["z"], "kind": g["kind"],
            "confidence": g["confidence"]}} for g in data["grids"]]}
    payload = {"grids": grids_geo, "heat": data["heat"],
               "trend": {"months": data["trend"]["months"],
                         "closure": [r["closure_rate"] for r in data["trend"]["rows"]],
                         "on_time": [r["on_time_rate"] for r in data["trend"]["rows"]],
                         "rework": [r["rework_rate"] for r in data["trend"]["rows"]],
                         "received": [r["received"] for r in data["trend"]["rows"]]},
               "T": T, "cover_ramp": COVER_RAMP, "count_ramp": COUNT_RAMP,
               "gi": {f"{k}_{c}": v for (k, c), v in GI_COLOURS.items()},
               "cover": bool(data["coverage_days"]), "cover_note": cover_note,
               "heat_cell_m": HEAT_CELL_M}
    blob = json.dumps(payload, ensure_ascii=False).replace("</", "<\\/")
    assets = (f"<style>{_leaflet_css()}</style>"
              f"<style>{(UPLOT / 'uPlot.min.css').read_text(encoding='utf-8')}</style>"
              + _script((LEAFLET / "leaflet.js").read_text(encoding="utf-8"))
              + _script(LEAFLET_HEAT.read_text(encoding="utf-8"))
              + _script((UPLOT / "uPlot.iife.min.js").read_text(encoding="utf-8")))
    title = T["title"].format(month=month, area=area)
    rec_rule = T["recurring_rule"].format(k=rec["min_cases"], eps=f"{rec['eps_m']:g}",
                                          days=rec["days"])
    sp_rule = T["spikes_rule"].format(n=trends.SPIKE_MIN_CASES, r=trends.SPIKE_MIN_RATIO,
                                      h=trends.SPIKE_HISTORY, p=trends.SPIKE_P)
    hs = data["hotspots"].get("summary", {})
    gi_line = " · ".join(f"{T[k.split('_')[0]]} {k.split('_')[1]}%: {v}"
                         for k, v in sorted(hs.items()) if v)
    body = f"""
<header><h1>{e(title)}</h1><p class='meta'>{e(T['generated'].format(t=data['generated'],
 tz=data['timezone']))} · {e(T['month_cases'].format(n=tot['current']['received']))}</p></header>
<section><h2>{e(T['kpi'])}</h2>{kpi}<p class='note' id='cover-note'>{e(cover_note)}</p>
<p class='note' id='boundaries-note'>{e(T['bounds_' + data.get('boundaries', 'then')])}</p></section>
<section class='maps'>
 <div class='mapbox'><h2>{e(T['map_heat'])}</h2><div id='map-heat' class='map'></div></div>
 <div class='mapbox'><h2>{e(T['map_gi'])}</h2><div id='map-gi' class='map'></div>
  <p class='note'>{e(T['gi_rule'])}. {e(gi_line)}</p></div>
 <div class='mapbox'><h2>{e(T['map_cover'])}</h2><div id='map-cover' class='map'></div>
  <p class='note'>{e(cover_note)}</p></div>
</section>
<section><h2>{e(T['trend'])}</h2><div id='trend'></div></section>
<section><h2>{e(T['ranking'].format(level=T[data['level']]))}</h2>{ranking}</section>
<section><h2>{e(T['scores'].format(base=sc['base']))}</h2>{scores}</section>
<section><h2>{e(T['worst'])}</h2>{worst}</section>
<section id='findings'><h2>{e(T['findings'])}</h2>
 <h3>{e(T['emerging'].format(n=len(em['months'])))}</h3>{emerging}
 <h3>{e(T['recurring'].format(rule=rec_rule))}</h3>{recurring}
 <h3>{e(T['spikes'].format(rule=sp_rule))}</h3>{spikes}
 <h3>{e(T['topics'])}</h3>{topic_tbl}
</section>"""
    script = PACK_JS.read_text(encoding="utf-8")
    style = """<style>
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:0;
padding:12px 20px;color:#1f2933;font-size:13px}h1{font-size:20px;margin:0}h2{font-size:16px;
margin:18px 0 6px;border-bottom:2px solid #1d3557}h3{font-size:14px;margin:12px 0 4px}
.meta,.note{color:#52606d}table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid
#ccd;padding:2px 6px;text-align:right}td:nth-child(2),td:first-child,th{text-align:left}
thead th{background:#eef2f6}.maps{display:grid;grid-template-columns:repeat(3,1fr);gap:10px}
.map{height:340px;border:1px solid #ccd;background:#fafafa}.legend{background:#fffe;
padding:4px 8px;border-radius:4px;box-shadow:0 1px 4px #0003;line-height:1.5;font-size:11px;
max-width:220px}.legend i{display:inline-block;width:16px;height:10px;margin-right:4px;
vertical-align:middle;border:1px solid #999}.legend .bar{display:inline-block;width:160px;
height:10px}.legend .bar.heat{background:linear-gradient(90deg,blue,cyan,lime,yellow,red)}
@media print{.maps{grid-template-columns:1fr 1fr}.map{height:300px}section{break-inside:avoid}
#findings{break-before:page}}</style>"""
    page = (f"<!doctype html><html lang='{'en' if lang == 'en' else 'zh-CN'}'><head>"
            f"<meta charset='utf-8'><title>{e(title)}</title>{assets}{style}</head><body>"
            f"{body}<script type='application/json' id='pack-data'>{blob}</script>"
            f"{_script(script)}</body></html>")
    check_offline(page)
    return page


# ---- XLSX and PDF --------------------------------------------------------------------------
def to_xlsx(data: dict[str, Any], lang: str = "zh-CN") -> bytes:
    """The pack's figures: 汇总 (the totals), 排名, 网格, 评分·街道, 评分·部门, 趋势, 研判, 口径."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    lang_key = "en" if lang == "en" else "zh-CN"
    T = TEXT[lang_key]
    wb = Workbook()
    ws = wb.active
    ws.title = "汇总"
    ws.append([T["title"].format(month=data["month"], area=data["area_name"] or T["city"])])
    ws.append(["key", T["figure"], T["this"], T["prev"].format(m=data["compare"]["prev_month"]),
               T["ly"].format(m=data["compare"]["last_year_month"])])
    tot = data["total"]
    for k in (*assessment.COLUMNS[2:], "coverage_days"):
        label = T.get(k) or assessment.LABELS_ZH.get(k, k)
        ws.append([k, label, tot["current"].get(k), tot["prev"].get(k), tot["last_year"].get(k)])
    bounds = data.get("boundaries", "then")
    ws.append(["boundaries", T["boundaries"], bounds, T["bounds_" + bounds]])
    for c in ws[2]:
        c.font = Font(bold=True)
    rk = wb.create_sheet("排名")
    cols = list(assessment.COLUMNS)
    rk.append([*[assessment.LABELS_ZH[c] for c in cols],
               *[f"{assessment.LABELS_ZH[f]}名次" for f in month_mod.KEY_FIGURES]])
    rk.append([*cols, *[f"rank_{f}" for f in month_mod.KEY_FIGURES]])
    for r in data["compare"]["rows"]:
        rk.append([*[r[c] for c in cols], *[r["rank"][f] for f in month_mod.KEY_FIGURES]])
    gs = wb.create_sheet("网格")
    gs.append(["编码 code", "名称 name", "社区 community", "事件数 incidents",
               "巡查覆盖率 coverage", "Gi* z", "热点类型 kind", "置信度 confidence"])
    for g in data["grids"]:
        gs.append([g["code"], g["name"], g["community"], g["incidents"], g["coverage"], g["z"],
                   T[g["kind"]] if g["kind"] else None, g["confidence"]])
    for level, title in (("street", "评分·街道"), ("department", "评分·部门")):
        sh = wb.create_sheet(title)
        rules = data["scores"]["rules"]
        sh.append(["名次", "编码", "名称", "得分", *[r["label_zh"] for r in rules],
                   *[f"{r['label_zh']}得分" for r in rules]])
        for r in data["scores"][level]:
            sh.append([r["rank"], r["code"], r["name"], r["score"],
                       *[r["counts"][x["key"]] for x in rules],
                       *[r["points"][x["key"]] for x in rules]])
    rs = wb.create_sheet("评分规则")
    rs.append(["key", "measure", "kind", "points", "cap", "规则", "rule"])
    for x in data["scores"]["rules"]:
        rs.append([x["key"], x["measure"], x["kind"], x["points"], x.get("cap"), x["label_zh"],
                   x["label_en"]])
    for k in ("base", "min", "max"):
        rs.append([k, data["scores"][k]])
    tr = wb.create_sheet("趋势")
    keys = list(data["trend"]["rows"][0]) if data["trend"]["rows"] else []
    tr.append(keys)
    for r in data["trend"]["rows"]:
        tr.append([r[k] for k in keys])
    fd = wb.create_sheet("研判")
    rec = data["recurring"]
    # the rules in the pack's language (the API's ``rule`` strings are English)
    fd.append([T["emerging"].format(n=len(data["emerging"]["months"])), GI_RULE[lang_key]])
    fd.append(["编码 code", T["grid"], T["kind"], T["hot_months"], T["z"]])
    for g in data["emerging"]["grids"]:
        fd.append([g["code"], g["name"], T["kind_" + g["kind"]], g["hot_months"], g["z"][-1]])
    fd.append([])
    fd.append([T["recurring"].format(rule=T["recurring_rule"].format(
        k=rec["min_cases"], eps=f"{rec['eps_m']:g}", days=rec["days"]))])
    fd.append([T["rank"], T["category"], T["grid"], T["cases"], "ids"])
    for p in rec["places"]:
        fd.append([p["rank"], p["category_name"], p["grid_name"], p["cases"],
                   ",".join(map(str, p["ids"]))])
    fd.append([])
    fd.append([T["spikes"].format(rule=T["spikes_rule"].format(
        n=trends.SPIKE_MIN_CASES, r=trends.SPIKE_MIN_RATIO, h=trends.SPIKE_HISTORY,
        p=trends.SPIKE_P))])
    fd.append(["编码 code", T["category"], T["count"], T["baseline"], "p"])
    for s in data["spikes"]["spikes"]:
        fd.append([s["category"], s["category_name"], s["count"], s["baseline"], s["p"]])
    fd.append([])
    fd.append([T["topics"], TOPIC_RULE[lang_key]])
    fd.append([T["word"], T["count"], T["prev"].format(m=data["compare"]["prev_month"])])
    for w in data["topics"]["overall"]:
        fd.append([w["word"], w["count"], w["prev"]])
    kj = wb.create_sheet("口径")
    for k, v in assessment.FORMULAS.items():
        kj.append([k, assessment.LABELS_ZH.get(k, k), v])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_pdf(html_path: Path, pdf_path: Path, *, chromium: str = CHROMIUM) -> int:
    """Print ``html_path`` to ``pdf_path`` with Chromium (Playwright ``page.pdf``); returns the
    PDF's size. The page is opened offline and waits for its maps and chart."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(html_path.resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.emulate_media(media="print")
            page.pdf(path=str(pdf_path), format="A4", landscape=True, print_background=True,
                     margin={"top": "10mm", "bottom": "10mm", "left": "8mm", "right": "8mm"})
        finally:
            browser.close()
    return pdf_path.stat().st_size


PACK_ID = re.compile(r"[0-9a-f]{32}")


def prune_packs(root: Path, max_age_s: float, now: float | None = None,
                keep: int | None = None) -> int:
    """Remove the packs under ``root`` older than ``max_age_s`` seconds (by the time their
    directory was last written), then, with ``keep``, the oldest beyond the ``keep`` newest;
    returns how many. Only directories named like a pack id are touched. A pack being built is
    younger than any sensible age (and the newest), and one removed meanwhile by another worker
    is skipped."""
    if not root.is_dir():
        return 0
    limit = (time.time() if now is None else now) - max_age_s
    packs: list[tuple[float, Path]] = []
    for d in root.iterdir():
        try:
            if d.is_dir() and PACK_ID.fullmatch(d.name):
                packs.append((d.stat().st_mtime, d))
        except FileNotFoundError:
            continue
    packs.sort(key=lambda md: md[0], reverse=True)
    gone = 0
    for i, (mtime, d) in enumerate(packs):
        if mtime < limit or (keep is not None and i >= keep):
            shutil.rmtree(d, ignore_errors=True)
            gone += not d.exists()
    return gone


def build_pack(conn: Connection, *, principal: Principal, month: str, region: str | None,
               out_dir: str | Path, lang: str = "zh-CN", pdf: bool = True,
               stem: str = "pack", boundaries: Boundaries = "then") -> dict[str, Any]:
    """Write ``stem``.html, .xlsx and (``pdf``) .pdf into ``out_dir``; a summary back.
    ``boundaries``: see :func:`collect`."""
    data = collect(conn, principal=principal, month=month, region=region,
                   boundaries=boundaries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(data, lang)
    files = {"html": out / f"{stem}.html", "xlsx": out / f"{stem}.xlsx"}
    files["html"].write_text(page, encoding="utf-8")
    files["xlsx"].write_bytes(to_xlsx(data, lang))
    if pdf:
        files["pdf"] = out / f"{stem}.pdf"
        to_pdf(files["html"], files["pdf"])
    cur = data["total"]["current"]
    return {"month": month, "region": region, "area": data["area_name"], "lang": lang,
            "boundaries": boundaries,
            "files": {k: str(v) for k, v in files.items()},
            "bytes": {k: v.stat().st_size for k, v in files.items()},
            "incidents": cur["received"], "grids": len(data["grids"]),
            "heat_cells": len(data["heat"]), "worst": len(data["worst"]),
            "patrol_data": bool(data["coverage_days"]), "coverage_days": data["coverage_days"]}


def monthly_report(conn: Connection, *, month: str, region: str | None = None,
                   out_path: str | Path, lang: str = "zh-CN",
                   principal: Principal | None = None,
                   boundaries: Boundaries = "then") -> dict[str, Any]:
    """The pack's HTML page alone, written to ``out_path`` (kept for callers of the old report)."""
    data = collect(conn, principal=principal or Principal.system("report"), month=month,
                   region=region, boundaries=boundaries)
    Path(out_path).write_text(render_html(data, lang), encoding="utf-8")
    return {"path": str(out_path), "bytes": Path(out_path).stat().st_size,
            "incidents": data["total"]["current"]["received"], "grids": len(data["grids"]),
            "heat_cells": len(data["heat"]), "worst": len(data["worst"]),
            "patrol_data": bool(data["coverage_days"])}
