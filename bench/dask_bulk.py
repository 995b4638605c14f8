"""Bulk work (layers/bulk): single process versus Dask with 1 and 2 workers, same rows, same run.

Set up once (a database of its own: the demo city, a year of incidents, a week of patrols)::

    python -m bench.dask_bulk setup [--incidents 100000] [--patrol-days 7]
    python -m bench.dask_bulk measure [--repeat 2]

Each job runs on the same rows in three ways: the single-process path, then Dask on a
``LocalCluster`` of 1 and of 2 worker processes (one thread each). Cluster start-up is timed
apart (it is paid once per CLI call, not per job). Every answer is compared with the
single-process one. Untimed preparation before each run makes the runs do the same work:

- **relocate**: 10 % of the incidents (``id % 10 = 0``) get a wrong region and grid (one SQL
  UPDATE, untimed), then each run places every incident again and writes the moves back
  (one transaction per month);
- **coverage**: the last ``--coverage-days`` (3) of the patrol week recomputed and written;
  single process is the existing ``layers.patrols.grid_cover.refresh_range`` (one transaction,
  its own 2-thread pool);
- **import**: a year of history (``--history`` rows, default 50,000) from GeoParquet files, one
  per month; the imported rows are deleted (untimed) before each run;
- **yearly**: twelve months of assessment figures per street (read only).

Prints the best of ``--repeat`` wall times per job and way, and writes
``bench/results/dask_bulk.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench.common import RESULTS

DBNAME = "citygrid_bench_dask"
PATROL_END = date(2026, 3, 8)
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)


def _url() -> str:
    from app import devdb

    override = os.environ.get("CITYGRID_BENCH_DASK_URL")
    return override or devdb.url(DBNAME)


def setup(incidents: int, patrol_days: int) -> None:
    from app import devdb
    from app.db import migrate
    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents
    from data.patrols import load_demo_patrols

    if not os.environ.get("CITYGRID_BENCH_DASK_URL"):
        devdb.up([DBNAME])  # the private cluster, and the database in it
    url = _url()
    migrate(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        if conn.execute(text("SELECT EXISTS (SELECT 1 FROM region)")).scalar_one():
            print("already set up")
            return
        t0 = time.perf_counter()
        print("city", load_demo(conn), f"{time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        print("incidents", load_demo_incidents(conn, n=incidents),
              f"{time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        print("patrols", load_demo_patrols(conn, days=patrol_days, end=PATROL_END),
              f"{time.perf_counter() - t0:.1f} s")
    with eng.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def _history_files(eng: Engine, folder: Path, n: int) -> list[str]:
    from data.history import history_frame
    from layers.bulk.history import write_files

    with eng.connect() as conn:
        frame = history_frame(conn, n, seed=2026, start="2025-01-01T00:00:00Z", days=365,
                              source="police_110", prefix="bench-hist", jitter_deg=0.0003)
    return write_files(frame, folder, fmt="parquet")


def _best(fn: Callable[[], Any], prepare: Callable[[], None] | None, repeat: int
          ) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        if prepare is not None:
            prepare()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(repeat: int, history_rows: int, coverage_days: int) -> dict[str, Any]:
    from layers.bulk import coverage, history, relocate, yearly
    from layers.bulk.runner import DaskRunner, InProcess, dask_client
    from layers.patrols import grid_cover

    url = _url()
    eng = create_engine(url)
    first, last = PATROL_END - timedelta(days=coverage_days), PATROL_END - timedelta(days=1)
    folder = Path(tempfile.mkdtemp(prefix="dask_bulk_"))
    files = _history_files(eng, folder, history_rows)

    def scramble() -> None:
        clear_history()  # the same rows for every run, whatever ran before
        with eng.begin() as conn:
            conn.execute(text("UPDATE incident SET region_code = 'x', grid_code = 'x' "
                              "WHERE id % 10 = 0 AND geom IS NOT NULL"))

    def clear_history() -> None:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM incident_event WHERE incident_id IN "
                              "(SELECT id FROM incident WHERE external_id LIKE 'bench-hist-%')"))
            conn.execute(text("DELETE FROM incident WHERE external_id LIKE 'bench-hist-%'"))

    def single_coverage() -> dict[str, Any]:
        with eng.begin() as conn:
            return grid_cover.refresh_range(conn, first, last)

    def cover_rows() -> dict[Any, Any]:
        with eng.connect() as conn:
            return {(r.span, r.t0, r.grid_code): (r.share, r.last_fix_at) for r in conn.execute(
                text("SELECT span, t0, grid_code, share, last_fix_at FROM patrol_grid_cover"))}

    jobs: dict[str, tuple[Callable[[Any], Any], Callable[[], None] | None,
                          Callable[[Any], Any]]] = {
        "relocate": (lambda r: relocate.relocate(url, r, write=True), scramble,
                     lambda out: out.moves),
        "coverage": (lambda r: (single_coverage() if r is None
                                else coverage.recompute(url, r, first, last)), None,
                     lambda _: cover_rows()),
        "import": (lambda r: history.import_files(url, r or InProcess(), files), clear_history,
                   lambda out: (out["imported"], out["duplicates"], out["bad_rows"])),
        "yearly": (lambda r: yearly.yearly(url, r or InProcess(), last="2026-11", as_of=AS_OF),
                   None, lambda out: out["rows"]),
    }
    clear_history()
    with eng.connect() as conn:
        counts = dict(conn.execute(text(
            "SELECT (SELECT count(*) FROM incident) AS incidents, "
            "(SELECT count(*) FROM patrol_fix) AS fixes, "
            "(SELECT count(*) FROM region_current WHERE level = 'grid') AS grids")).one()._mapping)
    settled = relocate.relocate(url, InProcess(), write=True)  # untimed: start from placed rows
    print(f"before the runs: {settled.moved} incidents were not where the locator puts them")
    times: dict[str, dict[str, float]] = {j: {} for j in jobs}
    same: dict[str, dict[str, bool]] = {j: {} for j in jobs}
    answers: dict[str, Any] = {}
    for job, (fn, prep, key) in jobs.items():
        here: Any = None if job == "coverage" else InProcess()
        t, out = _best(partial(fn, here), prep, repeat)
        times[job]["single"] = t
        answers[job] = key(out)
        print(f"{job:9s} single    {t:8.2f} s", flush=True)
    startup: dict[str, float] = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        with dask_client(n_workers=workers, memory_limit="1.5GiB") as client:
            startup[f"dask{workers}"] = time.perf_counter() - t0
            runner = DaskRunner(client)
            for job, (fn, prep, key) in jobs.items():
                t, out = _best(partial(fn, runner), prep, repeat)
                times[job][f"dask{workers}"] = t
                same[job][f"dask{workers}"] = key(out) == answers[job]
                print(f"{job:9s} dask {workers}w   {t:8.2f} s  "
                      f"({times[job]['single'] / t:.2f}x single; same answer: "
                      f"{same[job][f'dask{workers}']})", flush=True)
        print(f"cluster of {workers} start-up {startup[f'dask{workers}']:.2f} s", flush=True)
    clear_history()
    result = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "counts": counts,
              "history_rows": history_rows, "patrol_days": [str(first), str(last)],
              "repeat": repeat, "times_s": times, "same_answer": same, "startup_s": startup,
              "cpus": os.cpu_count(), "load": os.getloadavg(), "python": platform.python_version()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dask_bulk.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--incidents", type=int, default=100_000)
    s.add_argument("--patrol-days", type=int, default=7)
    m = sub.add_parser("measure")
    m.add_argument("--repeat", type=int, default=2)
    m.add_argument("--history", type=int, default=50_000)
    m.add_argument("--coverage-days", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "setup":
        setup(a.incidents, a.patrol_days)
    else:
        r = measure(a.repeat, a.history, a.coverage_days)
        print(json.dumps({"counts": r["counts"], "load": r["load"]}, default=str))


if __name__ == "__main__":
    main()
