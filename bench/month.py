"""The supervisor's month: the assessment view, Gi* and the meeting pack, each beside a baseline
timed in the same run.

Run on a database with the demo city and incidents (e.g. ``citygrid demo load``, or the browser
tests' ``citygrid_test_ui``)::

    .venv/bin/python -m bench.month [--url postgresql://…] [--month 2026-11] [--street CODE]
        [--skip-pack] [--lattice 100]

Lines (best of 3 unless said):

- **assessment view, whole city**: :func:`layers.analysis.month.compare` per street (the month,
  the month before, last year, ranks, totals) against the **naive** way: one ``count(*)`` query
  per street, month and count.
- **Gi\\* on the demo's grids**: esda's ``G_Local`` (ours) against the formula written out per
  grid (:func:`layers.analysis.gi.gi_star_z`), and the Queen adjacency from PostGIS timed apart.
- **Gi\\* on a synthetic lattice** of ``--lattice``² grids (100 → 10,000): the same two.
- **pack for a street**: :func:`layers.report.build_pack` with the PDF (best of 1), beside the
  data collection alone and the plain month figures (``/assessment``) for the same street.

Nothing here assumes the demo's size: every query is bounded by the month's windows and the
grids of the area, so the same command runs on the 5M-row scale database.
Writes ``bench/results/month.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from bench.common import RESULTS
from grids.access import Principal
from grids.city import profile
from layers import assessment
from layers.analysis import gi, month

SYSTEM = Principal.system("bench")


def best(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None, help="database URL (default: the settings' owner)")
    ap.add_argument("--month", default=None, help="default: the last full month")
    ap.add_argument("--street", default=None, help="default: the first street of the city")
    ap.add_argument("--lattice", type=int, default=100)
    ap.add_argument("--skip-pack", action="store_true")
    args = ap.parse_args()
    if args.url is None:
        from app.settings import get_settings

        args.url = get_settings().db.owner_url
    eng = create_engine(args.url)
    with eng.connect() as conn:
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

        t_ours, view = best(lambda: month.compare(conn, principal=SYSTEM, month=args.month,
                                                  level="street"))
        t_naive, naive = best(lambda: naive_view(conn, args.month), repeat=1)
        ok = all(naive[(args.month, r["code"], "due")] == r["due"]
                 for r in view["rows"] if r["code"])
        res["view"] = {"ours_s": t_ours, "naive_s": t_naive, "rows": len(view["rows"]),
                       "queries_naive": len(naive), "agree": ok}
        print(f"assessment view, whole city ({len(view['rows'])} streets, 3 months): "
              f"ours {t_ours * 1000:.0f} ms · naive per-count queries ({len(naive)}) "
              f"{t_naive * 1000:.0f} ms · ×{t_naive / t_ours:.1f} · agree {ok}")

        t_adj, nb = best(lambda: gi.grid_neighbours(conn, [r[0] for r in conn.execute(text(
            "SELECT code FROM region_current WHERE level = 'grid' ORDER BY code"))]), repeat=1)
        counts = gi.grid_counts(conn, principal=SYSTEM, month=args.month)
        codes = list(counts)
        y = np.array([counts[c] for c in codes], dtype=float)
        w = gi.weights(nb, codes)
        idx = {c: i for i, c in enumerate(codes)}
        lists = [[idx[x] for x in nb[c]] for c in codes]
        t_esda, z1 = best(lambda: gi.gi_star(y, w))
        t_form, z2 = best(lambda: gi.gi_star_z(y, lists))
        res["gi_demo"] = {"grids": len(codes), "adjacency_s": t_adj, "esda_s": t_esda,
                          "formula_s": t_form, "max_abs_diff": float(np.abs(z1 - z2).max())}
        print(f"Gi* demo grids ({len(codes):,}): esda {t_esda * 1000:.0f} ms · formula loop "
              f"{t_form * 1000:.0f} ms · Queen adjacency (PostGIS, once) {t_adj * 1000:.0f} ms · "
              f"max |Δz| {np.abs(z1 - z2).max():.1e}")

        from libpysal.weights import lat2W

        k = args.lattice
        t_w, lw = best(lambda: lat2W(k, k, rook=False), repeat=1)
        ly = np.random.default_rng(7).poisson(3, k * k).astype(float)
        llists = [list(lw.neighbors[i]) for i in range(k * k)]
        t_le, lz1 = best(lambda: gi.gi_star(ly, lw))
        t_lf, lz2 = best(lambda: gi.gi_star_z(ly, llists))
        res["gi_lattice"] = {"grids": k * k, "weights_s": t_w, "esda_s": t_le,
                             "formula_s": t_lf, "max_abs_diff": float(np.abs(lz1 - lz2).max())}
        print(f"Gi* synthetic lattice ({k * k:,} grids, queen): esda {t_le * 1000:.0f} ms · "
              f"formula loop {t_lf * 1000:.0f} ms · weights {t_w * 1000:.0f} ms")

        if not args.skip_pack:
            from layers.report import build_pack, collect

            with tempfile.TemporaryDirectory() as tmp:
                t_pack, summary = best(lambda: build_pack(
                    conn, principal=SYSTEM, month=args.month, region=args.street, out_dir=tmp),
                    repeat=1)
            t_collect, _ = best(lambda: collect(conn, principal=SYSTEM, month=args.month,
                                                region=args.street), repeat=1)
            t_plain, _ = best(lambda: assessment.monthly(conn, principal=SYSTEM,
                                                         month=args.month, level="community",
                                                         region=args.street))
            res["pack"] = {"total_s": t_pack, "collect_s": t_collect, "plain_month_s": t_plain,
                           "bytes": summary["bytes"]}
            print(f"pack for street {args.street} (HTML+XLSX+PDF): {t_pack:.1f} s · its data "
                  f"alone {t_collect:.1f} s · plain month figures {t_plain * 1000:.0f} ms · "
                  f"sizes {summary['bytes']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "month.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
