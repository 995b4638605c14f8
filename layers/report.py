"""The monthly meeting's map report (每月例会): one HTML file that opens offline.

Folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs. A meeting-room laptop may have
no network, so the report links nothing: the map needs only Leaflet and Leaflet.heat, vendored
under ``map_ui/vendor/`` (versions and licences there) and inlined; Folium's other defaults are
dropped, and the written file is checked to load no ``http(s)://`` script, stylesheet or image.

What it shows: a heat layer (server-side bins weighted by count: never every point), incidents per
grid as a choropleth, patrol coverage per grid (or a note that the month has no fixes) and a table of
the worst grids by cases missed on time.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, text

from grids.access import Principal, prefix_of
from grids.city import profile
from layers import assessment

VENDOR = Path(__file__).resolve().parents[1] / "map_ui" / "vendor"
LEAFLET = VENDOR / "leaflet-1.9.4"
LEAFLET_HEAT = VENDOR / "leaflet-heat" / "leaflet_heat.min.js"
# Heat cell side in metres (the city's metric CRS): fine enough for a city map, far fewer cells than points.
HEAT_CELL_M = 100
WORST = 15
_REMOTE = re.compile(r"<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?\s*"
                     r"(?:https?:)?//", re.IGNORECASE)


class ReportError(Exception):
    """The report would depend on the network."""


def _leaflet_css() -> str:
    css = (LEAFLET / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match[str]) -> str:
        path = LEAFLET / m.group(1)
        if not path.exists():  # marker images: the report draws no markers
            return "url()"
        return "url(data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() + ")"

    return re.sub(r"url\((images/[^)]+)\)", inline, css)


def _inline_assets() -> str:
    # "</script" cannot appear inside an inline script; the vendored files do not contain it.
    js = (LEAFLET / "leaflet.js").read_text(encoding="utf-8")
    heat = LEAFLET_HEAT.read_text(encoding="utf-8")
    for body in (js, heat):
        if "</script" in body.lower():
            raise ReportError("a vendored script contains </script>")
    return (f"<style>{_leaflet_css()}</style>\n<script>{js}</script>\n<script>{heat}</script>\n"
            "<style>body{font-family:sans-serif;margin:0}#report{padding:8px 16px}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
            "padding:2px 6px;text-align:right}td:nth-child(-n+2){text-align:left}"
            ".folium-map{height:70vh!important}</style>")


def check_offline(page: str) -> None:
    """Raise :class:`ReportError` if ``page`` would fetch anything over the network."""
    hit = _REMOTE.search(page)
    if hit:
        raise ReportError(f"the report links a remote resource: {hit.group(0)[:120]}")


def _heat_cells(conn: Connection, window: tuple[datetime, datetime], prefix: str
                ) -> list[list[float]]:
    rows = conn.execute(text(
        "WITH p AS (SELECT ST_Transform(geom, (SELECT citygrid_metric_srid())) AS g "
        "FROM incident WHERE geom IS NOT NULL "
        "AND received_at >= :s AND received_at < :e AND region_code LIKE :p), "
        "b AS (SELECT floor(ST_X(g) / :c) AS ix, floor(ST_Y(g) / :c) AS iy, count(*) AS n "
        "FROM p GROUP BY 1, 2) "
        "SELECT ST_Y(q), ST_X(q), n FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint("
        "(ix + 0.5) * :c, (iy + 0.5) * :c), (SELECT citygrid_metric_srid())), 4490) AS q, n "
        "FROM b) s"),
        {"s": window[0], "e": window[1], "p": prefix + "%", "c": HEAT_CELL_M}).all()
    return [[round(lat, 6), round(lon, 6), int(n)] for lat, lon, n in rows]


def _grids(conn: Connection, window: tuple[datetime, datetime], prefix: str) -> dict[str, Any]:
    import orjson

    rows = conn.execute(text(
        "WITH n AS (SELECT grid_code AS code, count(*) AS n FROM incident "
        "WHERE received_at >= :s AND received_at < :e AND region_code LIKE :p GROUP BY 1) "
        "SELECT r.code, r.name, coalesce(n.n, 0) AS n, "
        "ST_AsGeoJSON(ST_SimplifyPreserveTopology(r.geom, 0.00005), 6) AS geom "
        "FROM region_current r LEFT JOIN n USING (code) "
        "WHERE r.level = 'grid' AND r.code LIKE :p ORDER BY r.code"),
        {"s": window[0], "e": window[1], "p": prefix + "%"}).all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": orjson.loads(g),
         "properties": {"code": code, "name": name, "incidents": n}}
        for code, name, n, g in rows]}


def _colour(n: int, top: int) -> str:
    ramp = ["#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c",
            "#b10026"]
    if n <= 0 or top <= 0:
        return "#f7f7f7"
    return ramp[min(len(ramp) - 1, int(len(ramp) * n / (top + 1)))]


def _coverage_colour(share: float | None) -> str:
    if share is None:
        return "#f7f7f7"
    ramp = ["#d73027", "#fc8d59", "#fee08b", "#d9ef8b", "#91cf60", "#1a9850"]
    return ramp[min(len(ramp) - 1, int(share * len(ramp)))]


def monthly_report(conn: Connection, *, month: str, region: str | None = None,
                   out_path: str | Path) -> dict[str, Any]:
    """Write the month's map report for ``region`` (default: the whole city) to ``out_path``.

    Returns a summary (counts, sizes) of what was written.
    """
    import folium
    from folium.plugins import HeatMap

    window = assessment.month_window(month, profile(conn).tz)
    prefix = prefix_of(region) if region else ""
    cells = _heat_cells(conn, window, prefix)
    grids = _grids(conn, window, prefix)
    figures = assessment.monthly(conn, principal=Principal.system("report"), month=month,
                                 level="grid", region=region)
    cover = {r["code"]: r["patrol_coverage"] for r in figures["rows"] if r["code"]}
    patrols = any(v is not None for v in cover.values())
    for f in grids["features"]:
        f["properties"]["coverage"] = cover.get(f["properties"]["code"])
    bounds = conn.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e"
        " FROM region_current WHERE level = 'grid' AND code LIKE :p) s"),
        {"p": prefix + "%"}).one()
    if bounds[0] is None:
        raise ReportError(f"no grids under {region!r}")

    fmap = folium.Map(location=[(bounds[1] + bounds[3]) / 2, (bounds[0] + bounds[2]) / 2],
                      zoom_start=12, tiles=None, control_scale=True)
    fmap.default_js, fmap.default_css = [], []  # inlined below instead
    top = max((f["properties"]["incidents"] for f in grids["features"]), default=0)
    folium.GeoJson(
        grids, name="每网格事件数 incidents per grid",
        style_function=lambda f: {"fillColor": _colour(f["properties"]["incidents"], top),
                                  "color": "#666", "weight": 0.5, "fillOpacity": 0.7},
        tooltip=folium.GeoJsonTooltip(fields=["code", "name", "incidents"],
                                      aliases=["网格", "名称", "事件"]),
    ).add_to(fmap)
    if patrols:
        folium.GeoJson(
            grids, name="巡查覆盖率 patrol coverage", show=False,
            style_function=lambda f: {"fillColor": _coverage_colour(f["properties"]["coverage"]),
                                      "color": "#666", "weight": 0.5, "fillOpacity": 0.7},
            tooltip=folium.GeoJsonTooltip(fields=["code", "name", "coverage"],
                                          aliases=["网格", "名称", "覆盖率"]),
        ).add_to(fmap)
    heat = HeatMap(cells, name="热力 heat", radius=14, blur=18, min_opacity=0.3,
                   max_val=max((c[2] for c in cells), default=1))
    heat.default_js = []
    heat.add_to(fmap)
    folium.LayerControl(collapsed=False).add_to(fmap)
    fmap.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])

    worst = sorted((r for r in figures["rows"] if r["code"]),
                   key=lambda r: (-(r["due"] - r["due_closed_on_time"]), -r["received"]))[:WORST]
    cols = ("code", "name", "received", "due", "due_closed", "due_closed_on_time",
            "closure_rate", "on_time_rate", "rework_rate", "p90_handling_h", "patrol_coverage")

    def cell(v: Any) -> str:
        return "" if v is None else html.escape(f"{v:.1%}" if isinstance(v, float) and v <= 1
                                                and not isinstance(v, bool) else str(v))

    table = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>"
                    for r in worst)
    if patrols:
        shares = [v for v in cover.values() if v is not None]
        coverage = (f"巡查覆盖率 (日均, mean daily patrol coverage, layer off by default): grids "
                    f"patrolled {sum(v > 0 for v in shares)} of {len(shares)}; mean of the "
                    f"grids' daily shares {sum(shares) / len(shares):.1%} (50 m of each day's "
                    "filtered tracks).")
    else:
        coverage = "巡查覆盖: no patrol data in the month, so coverage is not shown."
    total = sum(f["properties"]["incidents"] for f in grids["features"])
    head = (f"<div id='report'><h2>{html.escape(month)} 月度网格事件报告 · "
            f"{html.escape(region or '全市')}</h2><p>事件 {total} 件 · 网格 "
            f"{len(grids['features'])} 个 · 热力格 {len(cells)} 个 ({HEAT_CELL_M} m)</p>"
            f"<p id='coverage'>{html.escape(coverage)}</p></div>")
    foot = ("<div id='worst' style='padding:8px 16px'><h3>按期未结最多的网格 (worst grids: due "
            "minus closed on time)</h3><table><tr>"
            + "".join(f"<th>{assessment.LABELS_ZH.get(c, c)}</th>" for c in cols)
            + f"</tr>{table}</table><p style='font-size:12px'>"
            + "<br>".join(html.escape(f"{k}: {v}") for k, v in assessment.FORMULAS.items()
                          if k in cols) + "</p></div>")
    root = cast(folium.Figure, fmap.get_root())  # a Map's root is always its Figure
    root.header.add_child(folium.Element(_inline_assets()), name="inline_assets", index=0)
    root.html.add_child(folium.Element(head), name="report_head", index=0)
    root.html.add_child(folium.Element(foot), name="report_foot")
    page = root.render()
    check_offline(page)
    out = Path(out_path)
    out.write_text(page, encoding="utf-8")
    return {"path": str(out), "bytes": out.stat().st_size, "incidents": total,
            "grids": len(grids["features"]), "heat_cells": len(cells), "worst": len(worst),
            "patrol_data": bool(patrols)}
