"""A phone's batch of GPS fixes through the intake, beside the bare INSERT of the same rows.

Run after ``citygrid demo load`` (it needs the demo city's patrols and workers)::

    CITYGRID_DATABASE_URL=postgresql+psycopg://citygrid@127.0.0.1:54329/citygrid \\
        .venv/bin/python -m bench.fix_batches [--batch 20] [--rounds 30]

- **CityGrid**: :func:`layers.patrols.intake.ingest` (validation, CRS, jurisdiction, the insert
  and the trigger's note for the coverage worker), one batch of ``--batch`` fixes of one worker
  inside their grid, each round in its own transaction, rolled back.
- **baseline**: the same rows by one bare ``INSERT .. SELECT FROM unnest(..)`` into
  ``patrol_fix`` (the trigger's note included), same transactions.
- **coverage**: what the background worker then spends on those notes
  (:func:`layers.patrols.grid_cover.refresh_stale`), in the same rolled-back transaction.

Prints medians and p95 in ms and writes ``bench/results/fix_batches.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import RESULTS, percentiles


def _stats(runs: list[float]) -> dict[str, float]:
    p = percentiles(runs, scale=1000, digits=2)
    return {"median_ms": p["p50"], "p95_ms": p["p95"], "n": p["n"]}


def main() -> None:
    from grids.access import Principal
    from layers.patrols import grid_cover, intake

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    url = os.environ.get("CITYGRID_DATABASE_URL",
                         "postgresql+psycopg://citygrid@127.0.0.1:54329/citygrid")
    engine = create_engine(url)
    who = Principal.system("bench")
    with engine.connect() as conn:
        staff, staff_id, lon, lat = conn.execute(text(
            "SELECT s.code, s.id, ST_X(ST_PointOnSurface(r.geom)), "
            "ST_Y(ST_PointOnSurface(r.geom)) FROM assignment a JOIN staff s ON s.id = a.staff_id "
            "JOIN region_current r ON r.id = a.region_id WHERE a.duty = 'primary' "
            "AND r.level = 'grid' AND EXISTS (SELECT 1 FROM patrol_fix f "
            "WHERE f.staff_id = s.id) ORDER BY s.code LIMIT 1")).one()
        day = conn.execute(text("SELECT max(at) FROM patrol_fix")).scalar() or datetime.now(UTC)

    def batch(k: int) -> list[dict[str, Any]]:
        # 7 s off the demo's 30-s grid, so no fix is a duplicate of a stored one
        t0 = day - timedelta(hours=2) + timedelta(minutes=15 * k, seconds=7)
        return [{"staff_code": staff, "time": (t0 + timedelta(seconds=30 * i)).isoformat(),
                 "lon": lon + 0.00004 * i, "lat": lat + 0.00001 * (i % 5), "accuracy_m": 8.0}
                for i in range(args.batch)]

    ours: list[float] = []
    bare: list[float] = []
    cover: list[float] = []
    for k in range(args.rounds + 2):
        rows = batch(k)
        with engine.connect() as conn, conn.begin() as tx:
            t = time.perf_counter()
            got = intake.ingest(conn, rows, principal=who)
            took = time.perf_counter() - t
            assert got["accepted"] == args.batch, got
            t = time.perf_counter()
            grid_cover.refresh_stale(conn)
            refreshed = time.perf_counter() - t
            tx.rollback()
        with engine.connect() as conn, conn.begin() as tx:
            t = time.perf_counter()
            conn.execute(text(
                "INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m) SELECT :s, t, "
                "ST_SetSRID(ST_MakePoint(x, y), 4490), 8 FROM unnest(CAST(:t AS timestamptz[]), "
                "CAST(:x AS float8[]), CAST(:y AS float8[])) AS u(t, x, y)"),
                {"s": staff_id, "t": [datetime.fromisoformat(r["time"]) for r in rows],
                 "x": [r["lon"] for r in rows], "y": [r["lat"] for r in rows]})
            plain = time.perf_counter() - t
            tx.rollback()
        if k >= 2:  # the first two warm the connections and plans
            ours.append(took)
            bare.append(plain)
            cover.append(refreshed)
    out = {"batch": args.batch, "rounds": args.rounds, "staff": staff,
           "citygrid_ingest": _stats(ours), "baseline_bare_insert": _stats(bare),
           "background_coverage_refresh": _stats(cover)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fix_batches.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    engine.dispose()


if __name__ == "__main__":
    main()
