"""Activation of a redraw that takes the work with it (issue 19), beside the bare boundary one.

    python -m bench.plan_activation          # needs citygrid_bench (python -m bench.city makes it)

The same plan is built twice in the 10,000-grid city, each time in a transaction that is rolled
back: a street in which 25 grids are split (50 grids change), submitted and approved.

1. **bare** (baseline): :func:`grids.plans.activate`: boundaries only (the planner's recorded
   reason stands in for the new grids' workers), as measured by ``bench.plans``.
2. **with the work** (target < 2 s): the plan also stores 50 staffing changes (a primary and a
   backup for each new grid) and 1,000 open cases lie in the new grids' area;
   :func:`layers.redraw.activate_plan` with ``reroute_open_incidents``: boundaries, staffing
   (assignments ended / started), call-ups, duty tasks and address book entries looked up and
   moved, and the 1,000 cases re-routed with their events, in one transaction.

Only the activation call is timed (the commit, a WAL flush, is not: both roll back). Five runs,
each bare then with the work; the medians are printed last.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import shapely
from sqlalchemy import Connection, create_engine, text

from bench import city
from bench.plans import _geom, split_grids
from grids import plans
from grids.access import Principal
from grids.plans import review, staffing
from layers import redraw

SYSTEM = Principal.system("bench:plan_activation")
SPLITS = 25
CASES = 1000
RUNS = 5


def _street(conn: Connection) -> str:
    street: str = conn.execute(text(
        "SELECT c.parent_code FROM region_current g JOIN region_current c "
        "ON c.code = g.parent_code WHERE g.level = 'grid' GROUP BY c.parent_code "
        "HAVING count(*) >= :n ORDER BY count(*), c.parent_code LIMIT 1"),
        {"n": 2 * SPLITS}).scalar_one()
    return street


def _split_plan(conn: Connection, street: str) -> dict[str, Any]:
    plan = plans.create_plan(conn, name="bench redraw", region_code=street, principal=SYSTEM)
    grids = conn.execute(text(
        "SELECT g.code FROM region_current g JOIN region_current c ON c.code = g.parent_code "
        "WHERE c.parent_code = :s AND g.level = 'grid' ORDER BY g.code"),
        {"s": street}).scalars().all()
    plan, done = split_grids(conn, plan, ((c, _geom(conn, c)) for c in grids), SPLITS, SYSTEM)
    plan["splits"] = done
    return plan


def _staff(conn: Connection, plan: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A primary and a backup for each new grid (staff of the street, round robin)."""
    new = conn.execute(text("SELECT code FROM plan_region WHERE plan_id = :p AND change = 'new' "
                            "ORDER BY code"), {"p": plan["id"]}).scalars().all()
    people = [c["staff_code"] for c in staffing.candidates(conn, plan["region_code"])]
    n = 0
    for i, code in enumerate(new):
        for k, duty in enumerate(("primary", "backup")):
            who = people[(2 * i + k) % len(people)]
            try:
                plan = staffing.change_staffing(
                    conn, plan["id"], {"op": "assign", "staff_code": who, "grid_code": code,
                                       "duty": duty}, principal=SYSTEM, if_match=plan["etag"])
                n += 1
            except Exception:  # noqa: BLE001 - e.g. already on that grid: the next one
                continue
    return plan, n


def _cases(conn: Connection, plan_id: int, n: int = CASES) -> int:
    """``n`` open cases at random points of the new grids, placed in the old grids (as intake
    placed them before the plan)."""
    rng = random.Random(19)
    parts = conn.execute(text(
        "SELECT code, ST_AsBinary(geom) AS wkb FROM plan_region WHERE plan_id = :p "
        "AND change = 'new' ORDER BY code"), {"p": plan_id}).all()
    cat = conn.execute(text(
        "INSERT INTO category (code, name, family) VALUES ('BR19', '基准', 'event') "
        "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id")).scalar_one()
    rows = []
    for i in range(n):
        _, wkb = parts[i % len(parts)]
        geom = shapely.from_wkb(bytes(wkb))
        x0, y0, x1, y1 = geom.bounds
        while True:
            p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
            if geom.contains(p):
                break
        rows.append({"e": f"bench-redraw-{i}", "cat": cat, "x": p.x, "y": p.y})
    conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, state, region_code, grid_code, "
        "community_code, geom) SELECT 'hotline_12345', :e, :cat, 'dispatched', g.code, g.code, "
        "g.parent_code, pt FROM (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 4490) AS pt) q "
        "JOIN LATERAL (SELECT code, parent_code FROM region_current WHERE level = 'grid' "
        "AND geom && q.pt AND ST_Covers(geom, q.pt) ORDER BY code LIMIT 1) g ON true"), rows)
    return n


def _approve(conn: Connection, plan: dict[str, Any], reason: str | None) -> dict[str, Any]:
    plan = review.submit(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"],
                         unstaffed_reason=reason, reroute_open_incidents=True)
    return review.approve(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"])


def bench_bare(conn: Connection, street: str) -> dict[str, Any]:
    plan = _split_plan(conn, street)
    splits = plan["splits"]
    plan = _approve(conn, plan, "bench: boundaries only")
    t0 = time.perf_counter()
    result = plans.activate(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"])
    took = time.perf_counter() - t0
    return {"changed": result["changed"], "splits": splits, "activation_s": took}


def bench_with_work(conn: Connection, street: str) -> dict[str, Any]:
    plan = _split_plan(conn, street)
    splits = plan["splits"]
    plan, staffed = _staff(conn, plan)
    cases = _cases(conn, plan["id"])
    moving = len(redraw.plan_impact(conn, plan["id"], principal=SYSTEM)["incidents"]["items"])
    plan = _approve(conn, plan, None)
    t0 = time.perf_counter()
    result = redraw.activate_plan(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"],
                                  reroute_open_incidents=True)
    took = time.perf_counter() - t0
    return {"changed": result["changed"], "splits": splits, "staffing_changes": staffed,
            "staffing": result["staffing"], "cases": cases, "moving": moving,
            "rerouted": result["rerouted"], "work": result["work"], "activation_s": took}


def main() -> None:
    print(city.ensure())
    engine = create_engine(city.url())
    try:
        with engine.connect() as conn:
            street = _street(conn)
            n = conn.execute(text(
                "SELECT count(*) FROM region_current g JOIN region_current c "
                "ON c.code = g.parent_code WHERE c.parent_code = :s AND g.level = 'grid'"),
                {"s": street}).scalar_one()
        bares: list[float] = []
        fulls: list[float] = []
        for run in range(1, RUNS + 1):
            with engine.connect() as conn:
                tx = conn.begin()
                bare = bench_bare(conn, street)
                tx.rollback()
            with engine.connect() as conn:
                tx = conn.begin()
                full = bench_with_work(conn, street)
                tx.rollback()
            print(f"run {run}: street {street} ({n} grids), {bare['splits']} splits, "
                  f"{bare['changed']} grids changed")
            print(f"  bare boundary activation (baseline): {bare['activation_s']:.3f} s")
            print(f"  with {full['staffing_changes']} staffing changes ({full['staffing']}) and "
                  f"{full['cases']} open cases ({full['moving']} moving, {full['rerouted']} "
                  f"re-routed; work {full['work']}): {full['activation_s']:.3f} s")
            bares.append(bare["activation_s"])
            fulls.append(full["activation_s"])
        print(f"median of {RUNS} runs: bare {statistics.median(bares):.3f} s, with the work "
              f"{statistics.median(fulls):.3f} s (runs: bare {[round(b, 3) for b in bares]}, "
              f"with the work {[round(f, 3) for f in fulls]})")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
