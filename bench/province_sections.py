"""The province bench's sections beyond the locator (registered in :mod:`bench.province`).

``growth`` — the same city at three sizes, so the growth is visible (issue 20's "at least 20M
incidents, measured at three sizes"). The databases are drawn by :mod:`bench.scale` in the scale
cluster (the 10,000-grid bench city; 5M patrol fixes in each)::

    export CITYGRID_PGPORT=54390 CITYGRID_PGDATA=/work/scale/.pgdata   # a cluster of its own
    python -m bench.scale setup --db citygrid_scale_1m  --incidents 1000000
    python -m bench.scale setup                                   # citygrid_scale, 5M
    python -m bench.scale setup --db citygrid_scale_20m --incidents 20000000
    python -m bench.province measure --section growth

For each size, in one run, every figure beside its baseline:

* city-wide heat for one month at z12 (``layers.maps.heat``, the tallies) beside raw SQL binning
  of the same rows, checked equal bin by bin;
* the assessment view for the whole city by street (``layers.analysis.month.compare``, the 0028
  tallies) beside the raw statement over the incidents, checked equal;
* bulk intake of 20,000 rows through ``layers.incidents.intake.bulk`` with the tally triggers on,
  beside the same rows with them off (:func:`bench.scale.intake_cost`; rows deleted after).

``partitions``, ``replicas``, ``dask`` — the benches of those parts, run as they are documented
(each prints its own figures beside its own baseline) in a child process against the default
private cluster; their output is kept in the results. ``setup`` of ``dask`` draws its city.
"""

from __future__ import annotations

import functools
import os
import subprocess
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import PYTHON, percentiles, timed

SIZES = ("citygrid_scale_1m", "citygrid_scale", "citygrid_scale_20m")
MONTH = "2026-10"


def _exists(db: str) -> bool:
    from bench import city

    try:
        engine = create_engine(city.url(db))
        with engine.connect() as conn:
            ok = conn.execute(text("SELECT to_regclass('assessment_tally') IS NOT NULL")).scalar()
        engine.dispose()
        return bool(ok)
    except Exception:  # noqa: BLE001 — a size not drawn (or not migrated) is skipped, said so
        return False


def growth_one(db: str, repeat: int = 5) -> dict[str, Any]:
    from bench import city, scale
    from grids.access import Principal
    from layers import maps
    from layers.analysis import month
    from layers.maps import tally as map_tally

    who = Principal.system("bench")
    as_of = datetime(2027, 1, 1, tzinfo=UTC)
    flt = maps.IncidentFilter(since=datetime.fromisoformat(f"{MONTH}-01T00:00:00+08:00"),
                              until=datetime.fromisoformat("2026-11-01T00:00:00+08:00"))
    out: dict[str, Any] = {"database": db}
    engine = create_engine(city.url(db))
    bbox = city.city_bbox(db)
    with engine.connect() as conn:
        conn.execute(text("SET default_transaction_read_only = on"))
        conn.commit()
        out["incidents"] = conn.execute(text("SELECT count(*) FROM incident")).scalar()
        out["month_incidents"] = conn.execute(text(
            "SELECT count(*) FROM incident WHERE received_at >= :s AND received_at < :u"),
            {"s": flt.since, "u": flt.until}).scalar()
        runs, fast = timed(functools.partial(maps.heat, conn, principal=who, zoom=12,
                                             bbox=bbox, filters=flt), repeat, warm=True)
        raw_runs, raw = timed(functools.partial(map_tally.raw_heat_bins, conn, zoom=12,
                                                pixels=32, bbox=bbox, filters=flt), 3, warm=False)
        got = {tuple(f["properties"]["ix_iy"]): f["properties"]["count"]
               for f in fast["features"]}
        out["heat_z12_month"] = {"tallied_ms": percentiles(runs),
                                 "raw_sql_ms": percentiles(raw_runs), "equal": got == raw}
        runs, view = timed(functools.partial(month.compare, conn, principal=who, month=MONTH,
                                             level="street", as_of=as_of), repeat, warm=True)
        raw_runs, raw_view = timed(functools.partial(
            month.compare, conn, principal=who, month=MONTH, level="street", as_of=as_of,
            tally=False), 2, warm=False)
        out["assessment_city_by_street"] = {"tallied_ms": percentiles(runs),
                                            "raw_statement_ms": percentiles(raw_runs),
                                            "equal": view == raw_view}
    engine.dispose()
    scale.DBNAME = db
    out["intake_20k"] = scale.intake_cost(rows=20_000)
    return out


def growth_setup() -> dict[str, Any]:
    return {"how": "python -m bench.scale setup --db NAME --incidents N (see this module)",
            "present": [db for db in SIZES if _exists(db)]}


def growth_measure() -> dict[str, Any]:
    res: dict[str, Any] = {"port": os.environ.get("CITYGRID_PGPORT")}
    for db in SIZES:
        if not _exists(db):
            res[db] = {"skipped": "not drawn or not at migration 0028"}
            continue
        print(f"  growth: {db}", flush=True)
        res[db] = growth_one(db)
        print(f"  {res[db]}", flush=True)
    return res


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([PYTHON, "-m", *args], capture_output=True, text=True, check=False)
    return {"command": "python -m " + " ".join(args), "rc": proc.returncode,
            "output": proc.stdout[-6000:], "stderr_tail": proc.stderr[-1500:]}


def nothing() -> dict[str, Any]:
    return {}


def partitions_measure() -> dict[str, Any]:
    return _child("bench.partitions", "--fixes", "3000000", "--events", "1000000")


def replicas_measure() -> dict[str, Any]:
    return _child("bench.replicas")


def dask_setup() -> dict[str, Any]:
    return _child("bench.dask_bulk", "setup")


def dask_measure() -> dict[str, Any]:
    return _child("bench.dask_bulk", "measure", "--repeat", "2", "--history", "20000")
