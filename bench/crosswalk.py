"""The boundary crosswalk: its cost at activation, and the month by today's boundaries.

    python -m bench.crosswalk [--url postgresql://…] [--splits 25] [--cases 20000]

Runs on a database with a city (default: the tests' ``citygrid_test``, the demo city), in
transactions that are rolled back. In the street with the most grids it writes ``--cases``
incidents for November 2026 (points drawn inside the grids with ``ST_GeneratePoints``, 5 %
without a point; half closed), splits ``--splits`` grids in one plan and activates it. Lines:

1. **activation with the crosswalk** (``grids.plans.crosswalk.record`` timed inside it) beside
   **the same activation with recording switched off**, same plan built the same way in another
   rolled-back transaction, same run.
2. **assessment of the street by grid**, ``boundaries=then`` (today's behaviour, the baseline)
   beside ``boundaries=today`` (re-placing the moved cases by their points, the rest through the
   crosswalk), best of 3, after that activation; and the same for the city's streets.
3. **the twelve-month trend** of the street, then vs today, best of 3.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import shapely
from sqlalchemy import Connection, create_engine, text

from bench.plans import split_grids
from grids import plans
from grids.access import Principal
from grids.plans import activation, review
from grids.plans import crosswalk as cw_record
from layers.analysis import crosswalk
from layers.incidents import reroute

SYSTEM = Principal.system("bench:crosswalk")
MONTH = "2026-11"


def _best(f: Callable[[], Any], n: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _cases(conn: Connection, street: str, n: int) -> int:
    grids = conn.execute(text("SELECT count(*) FROM region_current WHERE level = 'grid' "
                              "AND code LIKE :p"), {"p": street[:9] + "%"}).scalar_one()
    per = max(1, n // grids)
    return conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, state, region_code, grid_code, "
        "community_code, street_code, received_at, closed_at, closed_on_time, due_at, geom) "
        "SELECT 'supervisor', 'bench-cw-' || g.code || '-' || k, c.id, "
        "CASE WHEN k % 2 = 0 THEN 'closed' ELSE 'handling' END, g.code, g.code, "
        "left(g.code, 12), left(g.code, 9) || '000', t, "
        "CASE WHEN k % 2 = 0 THEN t + interval '30 hours' END, k % 4 = 0, "
        "t + interval '3 days', CASE WHEN k % 20 = 0 THEN NULL ELSE "
        "ST_GeometryN(ST_GeneratePoints(g.geom, 1, k), 1) END "
        "FROM region_current g CROSS JOIN generate_series(1, :per) k "
        "CROSS JOIN LATERAL (SELECT timestamptz '2026-11-01 08:00+08' "
        "  + (k * 7919 % 600) * interval '1 hour' AS t) tt, "
        "(SELECT id FROM category ORDER BY id LIMIT 1) c "
        "WHERE g.level = 'grid' AND g.code LIKE :p"),
        {"p": street[:9] + "%", "per": per}).rowcount


def _approved(conn: Connection, plan: dict[str, Any]) -> dict[str, Any]:
    """Issue 19: only an approved plan is activated (not timed; no staffing: a reason instead)."""
    plan = review.submit(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"],
                         unstaffed_reason="bench: boundaries only")
    return review.approve(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"])


def _plan(conn: Connection, street: str, splits: int) -> tuple[dict[str, Any], int]:
    plan = plans.create_plan(conn, name="bench crosswalk", region_code=street, principal=SYSTEM)
    grids = conn.execute(text(
        "SELECT g.code, ST_AsBinary(g.geom) FROM region_current g WHERE g.level = 'grid' "
        "AND g.code LIKE :p ORDER BY g.code"), {"p": street[:9] + "%"}).all()
    plan, done = split_grids(conn, plan, ((c, shapely.from_wkb(bytes(w))) for c, w in grids),
                             splits, SYSTEM)
    return plan, done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None)
    ap.add_argument("--splits", type=int, default=25)
    ap.add_argument("--cases", type=int, default=20000)
    args = ap.parse_args()
    if args.url is None:
        from tests.conftest import database_url

        args.url = database_url("citygrid_test")
    engine = create_engine(args.url)
    timed: dict[str, float] = {}
    real_record = cw_record.record

    def timed_record(conn: Connection, **kw: Any) -> int:
        t0 = time.perf_counter()
        n = real_record(conn, **kw)
        timed["record_s"] = time.perf_counter() - t0
        timed["rows"] = n
        return n

    try:
        with engine.connect() as conn:
            street = conn.execute(text(
                "SELECT left(code, 9) || '000' FROM region_current WHERE level = 'grid' "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")).scalar_one()
            conn.rollback()
            # the baseline: the same activation without the crosswalk
            tx = conn.begin()
            plan, done = _plan(conn, street, args.splits)
            plan = _approved(conn, plan)
            activation.crosswalk.record = lambda conn, **kw: 0  # type: ignore[assignment]
            try:
                t0 = time.perf_counter()
                reroute.activate_plan(conn, plan["id"], principal=SYSTEM,
                                             if_match=plan["etag"])
                bare_s = time.perf_counter() - t0
            finally:
                activation.crosswalk.record = real_record  # type: ignore[assignment]
            tx.rollback()

            tx = conn.begin()
            n_cases = _cases(conn, street, args.cases)
            plan, done = _plan(conn, street, args.splits)
            plan = _approved(conn, plan)
            activation.crosswalk.record = timed_record  # type: ignore[assignment]
            try:
                t0 = time.perf_counter()
                res = reroute.activate_plan(conn, plan["id"], principal=SYSTEM,
                                            if_match=plan["etag"])
                with_s = time.perf_counter() - t0
            finally:
                activation.crosswalk.record = real_record  # type: ignore[assignment]
            print(f"activation of {res['changed']} grids ({done} splits, street {street}): "
                  f"{with_s:.3f} s with the crosswalk (record {timed['record_s'] * 1000:.1f} ms, "
                  f"{timed['rows']} rows); baseline without recording {bare_s:.3f} s")
            t_moved, pieces = _best(lambda: crosswalk.moved(
                conn, start=datetime.fromisoformat("2026-11-01T00:00:00+08:00"),
                end=datetime.fromisoformat("2026-12-01T00:00:00+08:00"),
                as_of=datetime.now(UTC)))
            print(f"{n_cases} cases in {MONTH} in the street; {len(pieces)} (case, grid) pieces "
                  f"moved, found in {t_moved * 1000:.1f} ms (best of 3)")
            for label, kw in (("street by grid", {"level": "grid", "region": street}),
                              ("city by street", {"level": "street", "region": None})):
                t_then, a = _best(lambda kw=kw: crosswalk.monthly(
                    conn, principal=SYSTEM, month=MONTH, boundaries="then", **kw))
                t_today, b = _best(lambda kw=kw: crosswalk.monthly(
                    conn, principal=SYSTEM, month=MONTH, boundaries="today", **kw))
                tot_a = sum(r["received"] for r in a["rows"])
                tot_b = sum(r["received"] for r in b["rows"])
                print(f"assessment {label}: then {t_then * 1000:.1f} ms ({len(a['rows'])} rows), "
                      f"today {t_today * 1000:.1f} ms ({len(b['rows'])} rows); received "
                      f"{tot_a} vs {round(tot_b, 3)}")
            t_then, _ = _best(lambda: crosswalk.series(conn, principal=SYSTEM, month=MONTH,
                                                       region=street, boundaries="then"))
            t_today, _ = _best(lambda: crosswalk.series(conn, principal=SYSTEM, month=MONTH,
                                                        region=street, boundaries="today"))
            print(f"trend (12 months, street): then {t_then * 1000:.1f} ms, today "
                  f"{t_today * 1000:.1f} ms")
            tx.rollback()
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
