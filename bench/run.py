"""Run every benchmark, write ``bench/results/latest.json`` and print a markdown table.

    python -m bench.run            # or: make bench
    python -m bench.run --quick    # shorter runs, for trying the harness (figures not comparable)

Each part also runs alone: ``python -m bench.http_single`` / ``batch_inprocess`` / ``batch_http``
/ ``freshness``. The machine is shared and timings are noisy: every figure sits beside a baseline
measured in the same run, and the load average is recorded before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from bench import batch_http, batch_inprocess, city, freshness, http_single
from bench.common import ROOT, machine, save, server


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()

    return {"commit": run("rev-parse", "--short", "HEAD"),
            "dirty_files": len([ln for ln in run("status", "--porcelain").splitlines() if ln])}


def timed(name: str, fn, results: dict[str, Any]) -> None:
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    print(f"== {name} ...", flush=True)
    res = fn()
    res["section_wall_s"] = round(time.perf_counter() - t0, 1)
    res["loadavg_1m_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    results[name] = res
    print(f"   done in {res['section_wall_s']} s", flush=True)


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    h = r.get("http_single")
    if h:
        ep = h["endpoints"]
        pg = h["postgis_best"]
        rows += [
            ("Single lookup, HTTP, req/s (wrk, 16 conn)", f"{ep['locate']['rps']:,.0f}",
             f"trivial async def {ep['trivial']['rps']:,.0f}",
             f"{h['ratios']['locate_vs_trivial']:.2f}", ">= 0.85",
             _ok(h["targets"]["locate >= 0.85 x trivial"])),
            ("Single lookup, HTTP, req/s", f"{ep['locate']['rps']:,.0f}",
             f"one PostGIS query/request ({pg}) {ep[pg]['rps']:,.0f}",
             f"{h['ratios']['locate_vs_postgis']:.2f}", ">= 2",
             _ok(h["targets"]["locate >= 2 x postgis"])),
            ("Single lookup, p50 / p99 latency (ms)",
             f"{ep['locate']['p50_ms']} / {ep['locate']['p99_ms']}",
             f"trivial {ep['trivial']['p50_ms']} / {ep['trivial']['p99_ms']}; "
             f"PostGIS {ep[pg]['p50_ms']} / {ep[pg]['p99_ms']}", "", "reported", ""),
            ("Single lookup, server CPU per request (µs)",
             f"{ep['locate']['server_cpu_us_per_req']}",
             f"trivial {ep['trivial']['server_cpu_us_per_req']}",
             f"{h['ratios']['locate_vs_trivial_by_cpu']:.2f}", "", ""),
            ("(diag) framework only: same 3 params + 1.6 KB body, req/s",
             f"{ep['diag_params']['rps']:,.0f}", f"trivial {ep['trivial']['rps']:,.0f}",
             f"{h['ratios']['diag_params_vs_trivial']:.2f}", "", ""),
            ("(diag) the same + the /locate auth dependency (API key), req/s",
             f"{ep['diag_params_auth']['rps']:,.0f}", f"trivial {ep['trivial']['rps']:,.0f}",
             f"{h['ratios']['diag_params_auth_vs_trivial']:.2f}", "", ""),
            ("(diag) /locate's work as a plain Starlette route, req/s",
             f"{ep['diag_locate_raw']['rps']:,.0f}", f"trivial {ep['trivial']['rps']:,.0f}; "
             f"PostGIS {ep[pg]['rps']:,.0f}",
             f"{h['ratios']['diag_locate_raw_vs_trivial']:.2f}; "
             f"{h['ratios']['diag_locate_raw_vs_postgis']:.2f}", "", ""),
            ("(diag) PostGIS per request in a def route (threadpool, SQLAlchemy), req/s",
             f"{ep['postgis_sync']['rps']:,.0f}", f"async pool {ep['postgis']['rps']:,.0f}",
             "", "", ""),
        ]
        us = h.get("asgi_inprocess_us_per_request")
        if us:
            rows.append(("(diag) in process, no network, µs per request",
                         f"/locate {us['locate']}",
                         "; ".join(f"{k} {v}" for k, v in us.items() if k != "locate"),
                         f"{us['trivial'] / us['locate']:.2f}", "", ""))
    b = r.get("batch_inprocess")
    if b:
        t, p = b["times_s"], b["proposals"]
        rows += [
            ("Batch in process, 1M pts, Snapshot.locate_many (s)", f"{t['locate_many']}",
             f"geopandas.sjoin within {t['sjoin_within']}",
             f"{b['ratios_vs_sjoin']['locate_many']:.2f}x", ">= 2x",
             _ok(b["targets"]["locate_many >= 2 x sjoin"])),
            ("Batch in process, points/s (locate_many)", f"{b['points_per_s']['locate_many']:,}",
             f"sjoin {b['points_per_s']['sjoin_within']:,}", "", "aim 1,000,000",
             _ok(b["targets"]["locate_many >= 1M points/s"])),
            ("Batch in process, grids only, raster query (s)", f"{t['query_raster_grids']}",
             f"sjoin {t['sjoin_within']}", f"{b['ratios_vs_sjoin']['query_raster_grids']:.2f}x",
             "", ""),
            ("Batch in process, grids only, exact query (s)", f"{t['query_exact_grids']}",
             f"sjoin {t['sjoin_within']}", f"{b['ratios_vs_sjoin']['query_exact_grids']:.2f}x",
             "", ""),
            ("(proposal) exact area fallback with prepared covers (s)",
             f"{p['P1_exact_prepared_area_fallback_s']}",
             f"query_exact {t['area_fallback_query_exact']}",
             f"{p['P1_exact_prepared_area_fallback_vs_query_exact']:.2f}x", "", ""),
            ("Rasters built by the service (s) / grid border cells", f"{b['raster']['build_s']}",
             f"border share {b['raster']['grids']['border_share']:.3f}", "", "", ""),
            ("Agreement raster vs exact (1M + 10k vertices)",
             f"{b['agreement']['raster_vs_exact_grids']:.2%} / "
             f"{b['edge_points']['raster_vs_exact']:.2%}", "", "", "100 %",
             _ok(b["targets"]["raster == exact on every point"])),
        ]
        pg = b.get("postgis_st_covers")
        if pg:
            rows.append(("Agreement with PostGIS ST_Covers (1M / 10k vertices)",
                         f"{pg['agreement']:.4%} / {pg['edge_points_agreement']:.2%}",
                         f"PostGIS LATERAL join {pg['join_s']} s (+{pg['load_index_s']} s load)",
                         "", "report", _ok(b["targets"][
                             "agrees with PostGIS ST_Covers on every point"])))
    bh = r.get("batch_http")
    if bh:
        for name, v in bh["bodies"].items():
            rows.append((f"Batch HTTP, 1M pts CSV ({name}, {v['mb_in']} MB in, {v['mb_out']} MB"
                         " out) (s)", f"{v['wall_s']}",
                         f"transport floor {v['sink_baseline_s']}; in-process "
                         f"{v['in_process_locate_csv_s']}",
                         f"in-process share {v['in_process_share']:.2f}", "< 5 s",
                         _ok(v["under_target"])))
    f = r.get("freshness")
    if f:
        rows.append((f"Freshness, 2 workers, psql commit -> both answer (s), "
                     f"{len(f['samples'])} changes", f"median {f['all_workers_s']['median']}, "
                     f"max {f['all_workers_s']['max']}",
                     f"full reload in process {f['reload_cost_in_process']['load_snapshot_s']}; "
                     f"server busy after a change {f['busy_after_change_s_median']}",
                     "", "< 1 s", _ok(next(iter(f["targets"].values())))))
    notes = [f"note: the snapshot was reloaded during {k} (another process changed "
             "citygrid_bench); its figures are disturbed" for k in ("http_single", "batch_http")
             if (r.get(k) or {}).get("snapshot_reloaded_during_run")]
    out = ["| measure | CityGrid | baseline (same run) | ratio | target | met |",
           "| --- | --- | --- | --- | --- | --- |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out + notes)


def _ok(v: bool) -> str:
    return "yes" if v else "**no**"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["http_single", "batch_inprocess", "batch_http", "freshness"])
    args = ap.parse_args()
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "git": _git(), "quick": args.quick,
    }
    results["city"] = city.ensure()
    seconds, rounds, repeat, fresh_rounds = (2, 1, 1, 2) if args.quick else (5, 2, 3, 5)
    if "http_single" not in args.skip or "batch_http" not in args.skip:
        with server(workers=1) as base:
            if "http_single" not in args.skip:
                timed("http_single", lambda: http_single.bench(base, seconds, rounds), results)
                results["http_single"].pop("wrk_sample", None)
            if "batch_http" not in args.skip:
                timed("batch_http", lambda: batch_http.bench(base, repeat=min(repeat, 2)), results)
    if "batch_inprocess" not in args.skip:
        timed("batch_inprocess", lambda: batch_inprocess.bench(repeat), results)
    if "freshness" not in args.skip:
        def fresh() -> dict[str, Any]:
            with server(workers=2) as base:
                return freshness.bench(base, fresh_rounds)
        timed("freshness", fresh, results)
    results["total_wall_s"] = round(time.perf_counter() - t0, 1)
    results["table_md"] = table(results)
    path = save("latest", results)
    print()
    print(results["table_md"])
    print(f"\ntotal {results['total_wall_s']} s; results in {path.relative_to(ROOT)}")
    print(json.dumps({k: v.get("targets") for k, v in results.items()
                      if isinstance(v, dict) and "targets" in v}, indent=2))


if __name__ == "__main__":
    main()
