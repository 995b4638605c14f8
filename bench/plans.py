"""Redraw plans in the 10,000-grid city: live validation of one edit, activation of 50 grids.

    python -m bench.plans            # needs citygrid_bench (python -m bench.city makes it)

1. **Validation of a single-grid edit** (target < 100 ms): ``grids.plans.apply_edit`` with
   ``dry_run=True`` on a plan over the community with the most grids: a reshape of one grid (one
   vertex moved 20 m, so the neighbours give way) and a split. Each call reads the plan from the
   database, snaps, applies and checks the community before and after: what the editor's live
   validation costs per request, minus HTTP.
2. **Activation of a 50-grid plan** (target < 2 s): a plan over a street in which 25 grids have
   been split (50 grids change: 25 reshaped by the cut, 25 new); ``layers.incidents.reroute.
   activate_plan`` (without re-routing) timed: validation of the touched communities, the check
   that the base boundaries are unchanged (locked), the new version, 25 boundaries closed and
   50 opened, assignments, the database guard checked at once (SET CONSTRAINTS ... IMMEDIATE).

Everything runs in transactions that are rolled back: the bench city is left as it was (the
commit itself, a WAL flush, is not timed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import shapely
from shapely.ops import split
from sqlalchemy import Connection, create_engine, text

from bench import city
from bench.common import percentiles
from grids import plans
from grids.access import Principal
from grids.plans import review
from layers.incidents import reroute

SYSTEM = Principal.system("bench:plans")
REPEAT = 30


def _geom(conn: Connection, code: str) -> Any:
    wkb = conn.execute(text("SELECT ST_AsBinary(geom) FROM region_current WHERE code = :c"),
                       {"c": code}).scalar_one()
    return shapely.from_wkb(bytes(wkb))


def _cut(geom: Any) -> dict[str, Any] | None:
    """A horizontal line cutting ``geom`` into two parts of at least a fifth each."""
    x0, y0, x1, y1 = geom.bounds
    for f in (0.5, 0.4, 0.6, 0.3, 0.7):
        y = y0 + f * (y1 - y0)
        blade = shapely.LineString([(x0 - 1e-3, y), (x1 + 1e-3, y)])
        pieces = list(split(geom, blade).geoms)
        if len(pieces) == 2 and min(p.area for p in pieces) > 0.2 * geom.area:
            return shapely.geometry.mapping(blade)
    return None


def split_grids(conn: Connection, plan: dict[str, Any], grids: Iterable[tuple[str, Any]],
                n: int, principal: Principal) -> tuple[dict[str, Any], int]:
    """Split up to ``n`` of ``grids`` ((code, geometry) in the drawing CRS) in ``plan`` along a
    :func:`_cut` each, skipping a grid the cut or the edit refuses (e.g. a part under the sliver
    size); the plan after the edits and the number of splits made."""
    done = 0
    for code, geom in grids:
        line = _cut(geom)
        if line is None:
            continue
        try:
            plan = plans.apply_edit(conn, plan["id"], {"op": "split", "code": code, "line": line},
                                    principal=principal, if_match=plan["etag"])
        except plans.InvalidEdit:
            continue
        done += 1
        if done == n:
            break
    return plan, done


def _moved_vertex(conn: Connection, grid: str, neighbour: str) -> dict[str, Any]:
    """``grid`` with the first vertex it shares with ``neighbour`` moved 20 m into it."""
    g, n = _geom(conn, grid), _geom(conn, neighbour)
    poly = max(g.geoms, key=lambda p: p.area) if g.geom_type == "MultiPolygon" else g
    ring = list(poly.exterior.coords)[:-1]
    shared = [i for i, xy in enumerate(ring) if n.boundary.distance(shapely.Point(xy)) < 1e-9]
    i = shared[len(shared) // 2] if shared else 0
    x, y = ring[i]
    c = n.centroid
    d = ((c.x - x) ** 2 + (c.y - y) ** 2) ** 0.5
    step = 20 / 111_320  # ~20 m
    ring[i] = (x + (c.x - x) / d * step, y + (c.y - y) / d * step)
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def bench_validation(conn: Connection) -> dict[str, Any]:
    community = conn.execute(text(
        "SELECT parent_code FROM region_current WHERE level = 'grid' GROUP BY parent_code "
        "ORDER BY count(*) DESC, parent_code LIMIT 1")).scalar_one()
    plan = plans.create_plan(conn, name="bench validation", region_code=community,
                             principal=SYSTEM)
    grid, neighbour = conn.execute(text(
        "SELECT a.code, b.code FROM region_current a JOIN region_current b "
        "ON a.parent_code = b.parent_code AND a.code < b.code AND a.geom && b.geom "
        "AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0 "
        "WHERE a.parent_code = :c ORDER BY a.code LIMIT 1"), {"c": community}).one()
    n_grids = conn.execute(text("SELECT count(*) FROM region_current WHERE parent_code = :c"),
                           {"c": community}).scalar_one()
    edits = {
        "reshape": {"op": "reshape", "code": grid, "geometry": _moved_vertex(conn, grid,
                                                                              neighbour)},
        "split": {"op": "split", "code": grid, "line": _cut(_geom(conn, grid))},
    }
    out: dict[str, Any] = {"community": community, "grids_in_community": n_grids, "grid": grid}
    for name, edit in edits.items():
        if edit.get("line", True) is None:
            continue
        times = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            res = plans.apply_edit(conn, plan["id"], edit, principal=SYSTEM,
                                   if_match=plan["etag"], dry_run=True)
            times.append((time.perf_counter() - t0) * 1000)
        assert res["problems"] == [], res["problems"]
        p = percentiles(times)
        out[name] = {"median_ms": p["p50"], "p95_ms": p["p95"], "max_ms": p["max"], "runs": REPEAT,
                     "summary": res["summary"]}
    return out


# Baseline: the same community checked by PostGIS alone, the way one would in SQL: pairwise
# overlaps above 1 m² and the gap left inside the parent, both measured in the city's metric CRS.
POSTGIS_CHECK = text("""
WITH g AS (SELECT code, geom FROM region_current WHERE level = 'grid' AND parent_code = :c)
SELECT (SELECT count(*) FROM g a JOIN g b ON a.code < b.code AND ST_Intersects(a.geom, b.geom)
        AND ST_Area(ST_Transform(ST_Intersection(a.geom, b.geom),
                                 (SELECT citygrid_metric_srid()))) > 1) AS overlaps,
       (SELECT ST_Area(ST_Transform(ST_Difference(p.geom, (SELECT ST_Union(geom) FROM g)),
                                    (SELECT citygrid_metric_srid())))
        FROM region_current p WHERE p.code = :c) AS gap_m2
""")


def bench_postgis_check(conn: Connection, community: str) -> dict[str, Any]:
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        row = conn.execute(POSTGIS_CHECK, {"c": community}).one()
        times.append((time.perf_counter() - t0) * 1000)
    p = percentiles(times)
    return {"median_ms": p["p50"], "p95_ms": p["p95"], "runs": REPEAT,
            "overlaps": row.overlaps, "gap_m2": round(row.gap_m2 or 0.0, 1)}


def bench_activation(conn: Connection, n_splits: int = 25) -> dict[str, Any]:
    street = conn.execute(text(
        "SELECT c.parent_code FROM region_current g JOIN region_current c "
        "ON c.code = g.parent_code WHERE g.level = 'grid' GROUP BY c.parent_code "
        "HAVING count(*) >= :n ORDER BY count(*), c.parent_code LIMIT 1"),
        {"n": 2 * n_splits}).scalar_one()
    t0 = time.perf_counter()
    plan = plans.create_plan(conn, name="bench activation", region_code=street,
                             principal=SYSTEM)
    opened_s = time.perf_counter() - t0
    grids = conn.execute(text(
        "SELECT g.code FROM region_current g JOIN region_current c ON c.code = g.parent_code "
        "WHERE c.parent_code = :s AND g.level = 'grid' ORDER BY g.code"),
        {"s": street}).scalars().all()
    t0 = time.perf_counter()
    plan, done = split_grids(conn, plan, ((c, _geom(conn, c)) for c in grids), n_splits, SYSTEM)
    edits_s = time.perf_counter() - t0
    # issue 19: only an approved plan is activated (not timed; no staffing: a reason instead)
    plan = review.submit(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"],
                         unstaffed_reason="bench: boundaries only")
    plan = review.approve(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"])
    t0 = time.perf_counter()
    result = reroute.activate_plan(conn, plan["id"], principal=SYSTEM, if_match=plan["etag"])
    took = time.perf_counter() - t0
    return {"street": street, "grids_in_street": len(grids), "splits": done,
            "changed": result["changed"], "activation_s": round(took, 3),
            "open_plan_s": round(opened_s, 3),
            "edit_s_each": round(edits_s / max(done, 1), 3)}


def main() -> None:
    print(city.ensure())
    engine = create_engine(city.url())
    try:
        with engine.connect() as conn:
            tx = conn.begin()
            v = bench_validation(conn)
            tx.rollback()
            base = bench_postgis_check(conn, v["community"])
            print(f"validation (dry-run edit, {v['grids_in_community']}-grid community "
                  f"{v['community']}):")
            for name in ("reshape", "split"):
                if name in v:
                    r = v[name]
                    print(f"  {name:8s} median {r['median_ms']} ms, p95 {r['p95_ms']} ms, "
                          f"max {r['max_ms']} ms over {r['runs']} runs ({r['summary']})")
            print(f"  baseline: PostGIS alone checking the whole community (overlaps > 1 m², gap "
                  f"in the parent) median {base['median_ms']} ms, p95 {base['p95_ms']} ms "
                  f"(found {base['overlaps']} overlaps, gap {base['gap_m2']} m²)")
        with engine.connect() as conn:
            tx = conn.begin()
            a = bench_activation(conn)
            tx.rollback()
            print(f"activation of a {a['changed']}-grid plan ({a['splits']} splits in street "
                  f"{a['street']}, {a['grids_in_street']} grids): {a['activation_s']} s "
                  f"(opening the plan {a['open_plan_s']} s, each split edit "
                  f"{a['edit_s_each']} s)")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
