"""The supervisor's month: the assessment view, Gi* and the meeting pack, each beside a baseline
timed in the same run.

Run on a database with the demo city and incidents (e.g. ``citygrid demo load``, or the browser
tests' ``citygrid_test_ui``)::

    .venv/bin/python -m bench.month [--url postgresql://…] [--month 2026-11] [--street CODE]
        [--only-view] [--skip-pack] [--lattice 100]

    # the 5M scale database (bench.scale), November 2026, its first street:
    CITYGRID_PGPORT=54390 .venv/bin/python -m bench.month \
        --url postgresql+psycopg://citygrid@127.0.0.1:54390/citygrid_scale --month 2026-11

Lines (best of 3 unless said):

- **assessment view, whole city** (streets, and every grid):
  :func:`layers.analysis.month.compare` (the month, the month before, last year, ranks, totals:
  one statement, :func:`layers.assessment.figures`) beside the **old path** of the same run
  (:func:`old_compare`: one aggregate per month and level plus one per month for the total,
  each with its own coverage read, as ``compare`` did before) and the **naive** way (one
  ``count(*)`` query per street, month and count; streets only). Rows checked equal.
- **the view from the tallies** (migration 0028): ``compare`` as served (the counts and the
  mean summed from ``assessment_tally``) beside the same call reading the incidents (the one raw
  statement, ``tally=False``), whole answers checked equal; and ``/analysis/trend``'s twelve
  months (:func:`layers.analysis.trends.series`) for the city and the first street, tallies
  beside the raw statement.
- **every level at once**: the month's figures of all streets, communities, grids, workers and
  departments and the total, for the three months, in one statement, beside the old path's
  fifteen per-level aggregates and three totals (the 90th percentile of handling time for
  every month and unit in both; the view itself leaves it out, see
  :func:`layers.analysis.month.compare`).
- **Gi\\* on the database's grids** (10,000 on the scale database): :func:`layers.analysis.gi.
  hotspots` end to end (its first call computes the Queen adjacency in PostGIS, later calls use
  the adjacency kept for those boundaries), and its parts: the counts (SQL), the adjacency, then
  esda's ``G_Local`` on the libpysal ``Graph`` with the diagonal set (ours) beside esda on the
  plain ``W`` (how it ran before: esda rebuilds the W to set the diagonal) and the formula
  written out per grid (:func:`layers.analysis.gi.gi_star_z`), same weights and data (max |Δz|).
- **Gi\\* on a synthetic lattice** of ``--lattice``² grids (100 → 10,000): the same three.
- **pack for a street**: :func:`layers.report.build_pack` with the PDF (best of 1), beside its
  parts run one by one (each part of :func:`layers.report.collect`, the HTML, the XLSX, the PDF)
  and the plain month figures (``/assessment``) for the same street.

Nothing here assumes the demo's size: every query is bounded by the month's windows and the
grids of the area, so the same command runs on the 5M-row scale database.
Writes ``bench/results/month.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from bench.common import RESULTS, best_of
from grids.access import Principal, prefix_of
from grids.city import profile
from layers import assessment
from layers.analysis import gi, month, trends

SYSTEM = Principal.system("bench")
SCOPE = SYSTEM.locate_scope()
AS_OF = datetime(2027, 1, 1, tzinfo=UTC)  # fixed: the old and new paths see the same cases


def best(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs (bench.common.best_of) and the last answer."""
    t, _, out = best_of(fn, repeat)
    return t, out


def _old_where(m: str, tz: Any, region: str | None) -> tuple[str, dict[str, Any]]:
    s, e = assessment.month_window(m, tz)
    params: dict[str, Any] = {"s": s, "e": e, "as_of": AS_OF}
    if region:
        params["region"] = prefix_of(region) + "%"
        return "i.region_code LIKE :region", params
    return "TRUE", params


def old_monthly(conn: Any, m: str, level: str, region: str | None = None) -> dict[Any, Any]:
    """The month's figures of one level as ``assessment.monthly`` computed them before the
    one-statement :func:`layers.assessment.figures`: its own aggregate (percentile included) and
    its own coverage read. Counts, mean and p90 per unit code."""
    tz = profile(conn).tz
    where, params = _old_where(m, tz, region)
    key = assessment.LEVELS[level][0]
    rec, clo, due = assessment.RECEIVED_SQL, assessment.CLOSED_SQL, assessment.DUE_SQL
    hours = "extract(epoch FROM i.closed_at - i.received_at) / 3600.0"
    rows = conn.execute(text(
        f"SELECT {key} AS code, "
        f"count(*) FILTER (WHERE {rec}) AS received, "
        f"count(*) FILTER (WHERE {rec} AND i.state NOT IN ('received', 'voided', 'merged')) "
        "AS registered, "
        f"count(*) FILTER (WHERE {clo}) AS closed, "
        f"count(*) FILTER (WHERE {clo} AND i.closed_on_time) AS closed_on_time, "
        f"count(*) FILTER (WHERE {clo} AND i.rework_count > 0) AS reworked, "
        f"count(*) FILTER (WHERE {due}) AS due, "
        f"count(*) FILTER (WHERE {due} AND i.closed_at <= :as_of) AS due_closed, "
        f"count(*) FILTER (WHERE {due} AND i.closed_at <= :as_of AND i.closed_on_time) "
        "AS due_closed_on_time, "
        f"avg({hours}) FILTER (WHERE {clo}) AS mean_h, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {hours}) FILTER (WHERE {clo}) AS p90_h "
        "FROM incident i LEFT JOIN department d ON d.id = i.department_id "
        f"WHERE ({rec} OR {clo} OR ({due})) AND {where} "
        "GROUP BY 1 ORDER BY 1 NULLS LAST"), params).mappings().all()
    names = conn.execute(text(assessment.LEVELS[level][1]),
                         {"codes": [r["code"] for r in rows if r["code"]]}).all()
    s, e = params["s"], params["e"]
    cover = (assessment._patrol_coverage(conn, level=level, start=s, end=e, scope=SCOPE,
                                         region=region) if level != "department" else None)
    if cover is not None:
        assessment.data_days(conn, s, e)
    return {"rows": {r["code"]: dict(r) for r in rows}, "names": len(names), "cover": cover}


def old_total(conn: Any, m: str, region: str | None = None) -> dict[str, Any]:
    """The month's total as ``month.total`` computed it before: its own aggregate and coverage."""
    tz = profile(conn).tz
    where, params = _old_where(m, tz, region)
    f = assessment.FIGURE_SQL
    hours = "extract(epoch FROM i.closed_at - i.received_at) / 3600.0"
    counts = ", ".join(f"count(*) FILTER (WHERE {f[k]}) AS {k}" for k in assessment.COLUMNS[2:10])
    r = conn.execute(text(
        f"SELECT {counts}, avg({hours}) FILTER (WHERE {f['closed']}) AS mean_h, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {hours}) FILTER (WHERE {f['closed']}) "
        f"AS p90_h FROM incident i WHERE ({f['received']} OR {f['closed']} OR ({f['due']})) "
        f"AND {where}"), params).mappings().one()
    assessment._patrol_coverage(conn, level="street", start=params["s"], end=params["e"],
                                scope=SCOPE, region=region)
    assessment.data_days(conn, params["s"], params["e"])
    return dict(r)


def old_compare(conn: Any, m: str, levels: tuple[str, ...] = ("street",),
                region: str | None = None) -> dict[tuple[str, str], Any]:
    """The view's data the old way: per month (this, before, last year) one aggregate per level
    and one for the total."""
    out: dict[tuple[str, str], Any] = {}
    for mm in (m, month.shift_month(m, -1), month.shift_month(m, -12)):
        for level in levels:
            out[(mm, level)] = old_monthly(conn, mm, level, region)
        out[(mm, "total")] = old_total(conn, mm, region)
    return out


def agree(new_rows: list[dict[str, Any]], old: dict[Any, Any], p90: bool = True) -> bool:
    """The new rows carry the old path's counts, mean and (``p90``) p90 for every unit with a
    case."""
    by = {r["code"]: r for r in new_rows}
    for code, o in old["rows"].items():
        n = by.get(code)
        if n is None or any(n[c] != o[c] for c in assessment.COLUMNS[2:10]):
            return False
        for a, b in (("mean_handling_h", "mean_h"), ("p90_handling_h", "p90_h"))[:1 + p90]:
            if (n[a] is None) != (o[b] is None) or (
                    o[b] is not None and abs(n[a] - round(float(o[b]), 2)) > 0.011):
                return False
    return True


def naive_view(conn: Any, m: str) -> dict[tuple[str, str, str], int]:
    streets = [r[0] for r in conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'street' ORDER BY code"))]
    out = {}
    for mm in (m, month.shift_month(m, -1), month.shift_month(m, -12)):
        s, e = assessment.month_window(mm, profile(conn).tz)
        for st in streets:
            for fig in ("received", "registered", "closed", "closed_on_time", "reworked", "due",
                        "due_closed", "due_closed_on_time"):
                out[(mm, st, fig)] = conn.execute(text(
                    f"SELECT count(*) FROM incident i WHERE i.street_code = :st AND "
                    f"{assessment.FIGURE_SQL[fig]}"),
                    {"st": st, "s": s, "e": e, "as_of": e}).scalar_one()
    return out


def _ms(t: float) -> str:
    return f"{t * 1000:.0f} ms"


def bench_view(conn: Any, m: str, res: dict[str, Any]) -> None:
    """The assessment view (streets, every grid) and every level at once, beside the old path."""
    for level in ("street", "grid"):
        t_ours, view = best(functools.partial(month.compare, conn, principal=SYSTEM, month=m,
                                              level=level, as_of=AS_OF))
        t_raw, raw = best(functools.partial(month.compare, conn, principal=SYSTEM, month=m,
                                            level=level, as_of=AS_OF, tally=False))
        t_old, old = best(functools.partial(old_compare, conn, m, (level,)))
        ok = view == raw and agree(view["rows"], old[(m, level)], p90=False) and all(
            view["total"]["current"][c] == old[(m, "total")][c]
            for c in assessment.COLUMNS[2:10])
        line: dict[str, Any] = {"ours_s": t_ours, "raw_statement_s": t_raw,
                                "old_path_s": t_old, "rows": len(view["rows"]),
                                "old_statements": 2 * 3, "agree": ok}
        msg = (f"assessment view, whole city by {level} ({len(view['rows']):,} rows, 3 months, "
               f"totals): ours (tallies, 0028) {_ms(t_ours)} · raw statement (1 statement over "
               f"the incidents) {_ms(t_raw)} · ×{t_raw / t_ours:.1f} · old path (6 aggregates) "
               f"{_ms(t_old)}")
        if level == "street":
            t_naive, naive = best(lambda: naive_view(conn, m), repeat=1)
            line.update(naive_s=t_naive, queries_naive=len(naive))
            ok = ok and all(naive[(m, r["code"], "due")] == r["due"]
                            for r in view["rows"] if r["code"])
            msg += f" · naive per-count queries ({len(naive):,}) {_ms(t_naive)}"
        line["agree"] = ok
        res[f"view_{level}"] = line
        print(msg + f" · agree {ok}")
    street = conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'street' ORDER BY code LIMIT 1")
    ).scalar_one()
    for region in (None, street):
        t_ours, got_t = best(functools.partial(trends.series, conn, principal=SYSTEM, month=m,
                                               region=region, as_of=AS_OF))
        t_raw, want_t = best(functools.partial(trends.series, conn, principal=SYSTEM,
                                               month=m, region=region, as_of=AS_OF,
                                               tally=False))
        ok = got_t == want_t
        res[f"trend_{region or 'city'}"] = {"ours_s": t_ours, "raw_statement_s": t_raw,
                                            "agree": ok}
        print(f"/analysis/trend, 12 months, {region or 'whole city'}: ours (tallies) "
              f"{_ms(t_ours)} · raw statement {_ms(t_raw)} · ×{t_raw / t_ours:.1f} · "
              f"agree {ok}")
    levels = tuple(assessment.LEVELS)
    tz = profile(conn).tz
    wins = [assessment.month_window(mm, tz)
            for mm in (m, month.shift_month(m, -1), month.shift_month(m, -12))]

    def all_levels() -> list[dict[str, Any]]:
        return assessment.figures(conn, where="TRUE", params={"as_of": AS_OF}, windows=wins,
                                  levels=levels, region=None, scope=SCOPE)

    t_all, got = best(all_levels)
    t_old, old = best(lambda: old_compare(conn, m, levels))
    ok = all(agree(got[0]["levels"][lv], old[(m, lv)]) for lv in levels)
    n = sum(len(v) for v in got[0]["levels"].values())
    res["all_levels"] = {"ours_s": t_all, "old_path_s": t_old, "units": n, "agree": ok}
    print(f"every level of 3 months ({n:,} units this month: streets, communities, grids, "
          f"workers, departments, total): ours (1 statement) {_ms(t_all)} · old path "
          f"({3 * (len(levels) + 1)} aggregates) {_ms(t_old)} · ×{t_old / t_all:.1f} · "
          f"agree {ok}")

    def every_level(tally: bool) -> list[dict[str, Any]]:  # no p90: the tallies do not keep it
        return assessment.figures(conn, where="TRUE", params={"as_of": AS_OF}, windows=wins,
                                  levels=levels, region=None, scope=SCOPE, p90=[], tally=tally)

    t_tally, got_t = best(lambda: every_level(True))
    t_raw, want_t = best(lambda: every_level(False))
    ok = got_t == want_t
    res["all_levels_no_p90"] = {"ours_s": t_tally, "raw_statement_s": t_raw, "agree": ok}
    print(f"every level of 3 months without p90: ours (tallies) {_ms(t_tally)} · raw statement "
          f"{_ms(t_raw)} · ×{t_raw / t_tally:.1f} · agree {ok}")


def bench_gi(conn: Any, m: str, lattice: int, res: dict[str, Any]) -> None:
    """Gi* on the database's grids, end to end (adjacency computed, then kept) and in parts:
    esda on the Graph (ours) beside esda on the plain W (before) and the formula, same data."""
    gi._NEIGHBOURS.clear()
    t_cold, _ = best(lambda: gi.hotspots(conn, principal=SYSTEM, month=m), repeat=1)
    t_hot, hot = best(lambda: gi.hotspots(conn, principal=SYSTEM, month=m))
    t_counts, counts = best(lambda: gi.grid_counts(conn, principal=SYSTEM, month=m))
    codes = list(counts)
    t_adj, nb = best(lambda: gi.grid_neighbours(conn, codes, cache=False), repeat=1)
    t_kept, _ = best(lambda: gi.grid_neighbours(conn, codes))
    y = np.array([counts[c] for c in codes], dtype=float)
    t_g, g = best(lambda: gi.graph(nb, codes))
    t_esda, z0 = best(lambda: gi.gi_star(y, g))
    t_w, w = best(lambda: gi.weights(nb, codes))
    t_esda_w, z1 = best(lambda: gi.gi_star(y, w))
    idx = {c: i for i, c in enumerate(codes)}
    lists = [[idx[x] for x in nb[c]] for c in codes]
    t_form, z2 = best(lambda: gi.gi_star_z(y, lists))
    diff = float(max(np.abs(z0 - z1).max(), np.abs(z0 - z2).max()))
    hot_n = sum(g["kind"] == "hot" for g in hot["grids"])
    res["gi_db"] = {"grids": len(codes), "incidents": int(y.sum()), "hot": hot_n,
                    "hotspots_first_s": t_cold, "hotspots_s": t_hot, "counts_s": t_counts,
                    "adjacency_postgis_s": t_adj, "adjacency_kept_s": t_kept,
                    "graph_s": t_g, "esda_graph_s": t_esda, "w_s": t_w, "esda_w_s": t_esda_w,
                    "formula_s": t_form, "max_abs_diff": diff}
    print(f"Gi* on the database's grids ({len(codes):,}, {int(y.sum()):,} incidents in {m}): "
          f"hotspots() {_ms(t_hot)} (first call, adjacency from PostGIS: {_ms(t_cold)}) · "
          f"parts: counts {_ms(t_counts)}, adjacency PostGIS {_ms(t_adj)} / kept "
          f"{_ms(t_kept)}, Graph {_ms(t_g)} + esda {_ms(t_esda)} = "
          f"{_ms(t_g + t_esda)} · before: W {_ms(t_w)} + esda on the W {_ms(t_esda_w)} = "
          f"{_ms(t_w + t_esda_w)} · formula loop {_ms(t_form)} · max |Δz| {diff:.1e} · "
          f"{hot_n} hot grids")

    from libpysal.weights import lat2W

    k = lattice
    t_w, lw = best(lambda: lat2W(k, k, rook=False), repeat=1)
    lnb = {str(i): [str(j) for j in lw.neighbors[i]] for i in range(k * k)}
    lcodes = [str(i) for i in range(k * k)]
    ly = np.random.default_rng(7).poisson(3, k * k).astype(float)
    t_lg, lg = best(lambda: gi.graph(lnb, lcodes))
    t_lge, lz0 = best(lambda: gi.gi_star(ly, lg))
    t_le, lz1 = best(lambda: gi.gi_star(ly, lw))
    t_lf, lz2 = best(lambda: gi.gi_star_z(ly, [list(lw.neighbors[i]) for i in range(k * k)]))
    ldiff = float(max(np.abs(lz0 - lz1).max(), np.abs(lz0 - lz2).max()))
    res["gi_lattice"] = {"grids": k * k, "graph_s": t_lg, "esda_graph_s": t_lge,
                         "w_s": t_w, "esda_w_s": t_le, "formula_s": t_lf,
                         "max_abs_diff": ldiff}
    print(f"Gi* synthetic lattice ({k * k:,} grids, queen): Graph {_ms(t_lg)} + esda "
          f"{_ms(t_lge)} · esda on the W {_ms(t_le)} (W {_ms(t_w)}) · formula loop "
          f"{_ms(t_lf)} · max |Δz| {ldiff:.1e}")


def bench_pack(conn: Any, m: str, street: str, res: dict[str, Any]) -> None:
    """The pack for a street, beside its parts run one by one."""
    from layers import report
    from layers.analysis import recurring, scoring, topics

    with tempfile.TemporaryDirectory() as tmp:
        t_pack, summary = best(lambda: report.build_pack(
            conn, principal=SYSTEM, month=m, region=street, out_dir=tmp), repeat=1)
        p: dict[str, Any] = {"principal": SYSTEM, "month": m, "region": street}
        parts: dict[str, float] = {}
        for name, fn in (
                ("compare", lambda: month.compare(conn, level="community", **p)),
                ("grid figures", lambda: assessment.monthly(conn, level="grid", **p)),
                ("Gi*", lambda: gi.hotspots(conn, **p)),
                ("Gi* 6 months", lambda: gi.trend(conn, months=6, **p)),
                ("scores", lambda: scoring.scores(conn, **p)),
                ("trend 12 months", lambda: trends.series(conn, **p)),
                ("recurring", lambda: recurring.recurring(conn, limit=20, **p)),
                ("spikes", lambda: trends.spikes(conn, **p)),
                ("topics", lambda: topics.topics(conn, **p))):
            parts[name], _ = best(fn, repeat=1)
        parts["collect (all)"], data = best(lambda: report.collect(conn, **p), repeat=1)
        parts["HTML"], page = best(lambda: report.render_html(data), repeat=1)
        parts["XLSX"], _ = best(lambda: report.to_xlsx(data), repeat=1)
        html = Path(tmp) / "p.html"
        html.write_text(page, encoding="utf-8")
        parts["PDF"], _ = best(lambda: report.to_pdf(html, Path(tmp) / "p.pdf"), repeat=1)
    t_plain, _ = best(lambda: assessment.monthly(conn, principal=SYSTEM, month=m,
                                                 level="community", region=street))
    sep = parts["collect (all)"] + parts["HTML"] + parts["XLSX"] + parts["PDF"]
    res["pack"] = {"total_s": t_pack, "parts_s": parts, "collect_html_xlsx_pdf_s": sep,
                   "plain_month_s": t_plain, "bytes": summary["bytes"]}
    print(f"pack for street {street} (HTML+XLSX+PDF): build_pack {t_pack:.1f} s · the same run "
          f"as separate steps (collect + HTML + XLSX + PDF) {sep:.1f} s · plain month figures "
          f"{_ms(t_plain)} · sizes {summary['bytes']}")
    print("  parts: " + " · ".join(f"{k} {v:.2f} s" for k, v in parts.items()))


def bench_http(url: str, m: str, res: dict[str, Any], repeat: int = 5) -> None:
    """The view as the portal asks for it: ``GET /analysis/month`` over HTTP (uvicorn, asking for
    gzip — the app leaves JSON compression to the proxy, so the answer says which it got —, a
    city-wide supervisor's API key), beside :func:`layers.analysis.month.compare` in process on
    the same database in the same run (the same work without HTTP, auth and JSON)."""
    import time
    import urllib.request

    from bench.common import percentiles, server, timed
    from bench.tiles_http import bench_key

    key = bench_key(url, role="supervisor")  # the month's user: a city-wide supervisor
    import bench.access  # server() makes the bench's key in citygrid_bench; this database has its own

    bench.access.api_key = lambda: key  # type: ignore[assignment]

    encodings: set[str] = set()

    def get(path: str) -> tuple[float, int]:
        req = urllib.request.Request(path, headers={"Accept-Encoding": "gzip", "X-API-Key": key})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            encodings.add(resp.headers.get("Content-Encoding") or "identity")
            size = len(resp.read())
        return time.perf_counter() - t0, size

    out: dict[str, Any] = {}
    with server(workers=1, extra_env={"CITYGRID_BENCH_DATABASE_URL": url}) as base:
        get(f"{base}/analysis/month?month={m}&level=street")  # the worker's first queries
        for level in ("street", "grid"):
            runs, wire = [], 0
            for _ in range(repeat):
                s, wire = get(f"{base}/analysis/month?month={m}&level={level}")
                runs.append(s)
            out[f"http_{level}"] = {"ms": percentiles(runs, scale=1000), "wire_bytes": wire}
    eng = create_engine(url)
    with eng.connect() as conn:
        for level in ("street", "grid"):
            runs_ms, _ = timed(functools.partial(month.compare, conn, principal=SYSTEM, month=m,
                                                 level=level), repeat, warm=True)
            out[f"inprocess_{level}"] = {"ms": percentiles(runs_ms)}
    eng.dispose()
    out["content_encoding"] = sorted(encodings)  # JSON is compressed by the proxy, not the app
    res["http"] = out
    for level in ("street", "grid"):
        h, i = out[f"http_{level}"], out[f"inprocess_{level}"]["ms"]
        print(f"GET /analysis/month level={level} over HTTP (API key, {out['content_encoding']}): p50 "
              f"{h['ms']['p50']:.0f} / p95 {h['ms']['p95']:.0f} ms ({h['wire_bytes']:,} B) · "
              f"in process p50 {i['p50']:.0f} / p95 {i['p95']:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None, help="database URL (default: the settings' owner)")
    ap.add_argument("--month", default=None, help="default: the last full month")
    ap.add_argument("--street", default=None, help="default: the first street of the city")
    ap.add_argument("--lattice", type=int, default=100)
    ap.add_argument("--only-view", action="store_true", help="the assessment view lines only")
    ap.add_argument("--http", action="store_true",
                    help="also GET /analysis/month over HTTP beside the in-process view")
    ap.add_argument("--skip-gi", action="store_true")
    ap.add_argument("--skip-pack", action="store_true")
    ap.add_argument("--out", default="month.json", help="file name under bench/results")
    args = ap.parse_args()
    if args.url is None:
        from app.settings import get_settings

        args.url = get_settings().db.owner_url
    eng = create_engine(args.url)
    with eng.connect() as conn:
        conn.execute(text("SET default_transaction_read_only = on"))
        args.month = args.month or month.last_full_month(profile(conn).tz)
        args.street = args.street or conn.execute(text(
            "SELECT code FROM region_current WHERE level = 'street' ORDER BY code LIMIT 1")
        ).scalar_one()
        res: dict[str, Any] = {"month": args.month, "street": args.street}
        n_inc = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
        n_grid = conn.execute(text(
            "SELECT count(*) FROM region_current WHERE level = 'grid'")).scalar_one()
        res.update(incidents=n_inc, grids=n_grid)
        print(f"database: {n_inc:,} incidents, {n_grid:,} grids; month {args.month}")
        bench_view(conn, args.month, res)
        if not (args.only_view or args.skip_gi):
            bench_gi(conn, args.month, args.lattice, res)
        if not (args.only_view or args.skip_pack):
            bench_pack(conn, args.month, args.street, res)
        conn.rollback()
    if args.http:
        bench_http(args.url, args.month, res)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
