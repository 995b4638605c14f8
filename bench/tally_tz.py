"""The incident tally triggers with the city's time zone from the profile (migration 0014) beside
the same triggers with the zone as a literal (migration 0011), in the same run.

    .venv/bin/python -m bench.tally_tz [--db citygrid_test_city2] [--repeat 5]

Each round updates every incident once (``UPDATE incident SET version = version``: the update
trigger subtracts the old rows and adds the new ones through both upserts) and rolls back; the
literal variant is installed inside its own transaction, so nothing is changed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from app import devdb

MIGRATIONS = Path(__file__).resolve().parent.parent / "app" / "migrations" / "versions"


def _literal_functions() -> str:
    spec = importlib.util.spec_from_file_location("rev0011", MIGRATIONS / "0011_intake_tally.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.UPGRADE


def _round(engine, literal: bool) -> float:
    with engine.connect() as conn:
        tx = conn.begin()
        if literal:
            conn.exec_driver_sql(_literal_functions())
        t0 = time.perf_counter()
        conn.execute(text("UPDATE incident SET version = version"))
        elapsed = time.perf_counter() - t0
        tx.rollback()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="citygrid_test_city2")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    engine = create_engine(devdb.url(args.db))
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
    _round(engine, False)  # warm up
    profile = min(_round(engine, False) for _ in range(args.repeat))
    literal = min(_round(engine, True) for _ in range(args.repeat))
    print(json.dumps({"db": args.db, "incidents": n, "profile_tz_s": round(profile, 4),
                      "literal_tz_s": round(literal, 4),
                      "ratio": round(profile / literal, 3)}))


if __name__ == "__main__":
    main()
