"""Property: over random sequences of splits and merges, the crosswalk carries area and counts.

Hypothesis draws sequences of two to five redraws of community C1 of the tiny city
(tests/tiny_city.py: two 1 km grids): each a split of a random grid along a random horizontal or
vertical line, or a merge of two grids sharing a border; each is a plan activated on its own
(through :func:`activate`, the one place the test activates), committed, so each redraw takes
effect at its own moment (a database of its own, ``citygrid_test_crosswalk``, reset to the tiny
city for every example). Refused edits are skipped. Random
points in C1 are incidents received before the first redraw, each given the grid that held it
then. After the sequence, an oracle written here with plain shapely checks:

- every old grid's shares in every version sum to 1, and so do the shares of G1 and G2 composed
  onto today's grids;
- **area-exact counting**: a uniform density of cases carried through the composed shares gives
  each of today's grids its own area: Σ over the old grids of area(old) × share(old → g) =
  area(g), within 1e-4 relative (areas are measured in a projected CRS, where a straight lon/lat
  edge cut by new vertices moves a 1 km² grid's measured area by up to tens of m²). A share
  measured against the wrong area, a missed version or a wrong composition order makes this
  fail (tried: composing in reverse order fails it by half a grid);
- **points**: the month by today's boundaries (:mod:`layers.analysis.crosswalk`) counts for
  each of today's grids exactly the points the oracle finds in that grid's shape, and its total
  equals the number of points (nothing lost or doubled);
- the same incidents without their points (carried by area share) keep the total and give each
  grid Σ n(old) × share(old → g).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from grids import plans
from grids.access import Principal, Scope
from grids.errors import GridError
from grids.plans import crosswalk
from grids.plans.draft import area_m2
from layers.analysis import crosswalk as by_today
from tests import plan_flow, tiny_city
from tests.conftest import tiny_city_engine
from tests.tiny_city import C1, G1, G2, STREET, T0, X0, Y0, U, write_tiny_city

PLANNER = Principal.make("user:planner", "planner", Scope.of(STREET))
SYSTEM = Principal.system()
RECEIVED = T0 + timedelta(days=40)  # 2025-02-10: before every redraw (they happen now)


def activate(conn: Connection, plan: dict[str, Any]) -> dict[str, Any]:
    """The one place these tests activate a plan: proposed, approved by an admin, activated."""
    approved = plan_flow.approve(conn, plan, PLANNER)
    return plans.activate(conn, plan["id"], principal=PLANNER, if_match=approved["etag"])


def grids_now(conn: Connection) -> dict[str, shapely.Geometry]:
    return {c: shapely.from_wkb(bytes(w)) for c, w in conn.execute(text(
        "SELECT code, ST_AsBinary(geom) FROM region_current WHERE level = 'grid' "
        "AND code LIKE :p ORDER BY code"), {"p": C1 + "%"}).all()}


def line(a: tuple[float, float], b: tuple[float, float]) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [list(a), list(b)]}


def redraw(conn: Connection, op: tuple[Any, ...]) -> bool:
    """Apply one drawn redraw as a plan and activate it; False if refused."""
    now = grids_now(conn)
    codes = sorted(now)
    plan = plans.create_plan(conn, name="cw", region_code=C1, principal=PLANNER)
    try:
        if op[0] == "split":
            _, pick, vertical, frac = op
            g = now[codes[pick % len(codes)]]
            x0, y0, x1, y1 = g.bounds
            if vertical:
                x = x0 + (x1 - x0) * frac
                cut = line((x, y0 - U / 10), (x, y1 + U / 10))
            else:
                y = y0 + (y1 - y0) * frac
                cut = line((x0 - U / 10, y), (x1 + U / 10, y))
            plan = plans.apply_edit(conn, plan["id"], {"op": "split",
                                                       "code": codes[pick % len(codes)],
                                                       "line": cut},
                                    principal=PLANNER, if_match=plan["etag"])
        else:
            _, pick, other = op
            a = codes[pick % len(codes)]
            touching = [c for c in codes if c != a
                        and now[a].intersection(now[c]).length > 0]
            if not touching:
                return False
            b = touching[other % len(touching)]
            plan = plans.apply_edit(conn, plan["id"], {"op": "merge", "codes": [a, b], "keep": a},
                                    principal=PLANNER, if_match=plan["etag"])
        activate(conn, plan)
        return True
    except GridError:
        return False


OPS = st.one_of(
    st.tuples(st.just("split"), st.integers(0, 20), st.booleans(),
              st.floats(0.25, 0.75, allow_nan=False)),
    st.tuples(st.just("merge"), st.integers(0, 20), st.integers(0, 20)))
# points of C1 ([0, 2] × [0, 1] in the drawing's units), kept off the x = 1 edge of G1/G2
POINTS = st.lists(st.tuples(st.floats(0.01, 1.99).filter(lambda x: abs(x - 1) > 1e-3),
                            st.floats(0.01, 0.99)), min_size=1, max_size=25)


def _incidents(conn: Connection, pts: list[tuple[float, float]], with_points: bool) -> None:
    conn.execute(text("INSERT INTO category (code, name, family) VALUES ('CW01', '测试', 'event') "
                      "ON CONFLICT (code) DO NOTHING"))
    for n, (x, y) in enumerate(pts):
        grid = G1 if x < 1 else G2
        conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, state, region_code, "
            "grid_code, community_code, street_code, received_at, geom) "
            "SELECT 'supervisor', :ext, c.id, 'received', :g, :g, left(:g, 12), "
            "left(:g, 9) || '000', :at, CASE WHEN :wp THEN ST_SetSRID(ST_MakePoint(:x, :y), 4490)"
            " END FROM category c WHERE c.code = 'CW01'"),
            {"ext": f"cw-{n}", "g": grid, "at": RECEIVED, "wp": with_points,
             "x": X0 + x * U, "y": Y0 + y * U})


RESET = ("TRUNCATE boundary_crosswalk, incident, plan, plan_edit, plan_region, assignment, "
         "region_boundary, region_boundary_suspect, boundary_version, region, staff "
         "RESTART IDENTITY CASCADE")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    engine = tiny_city_engine("citygrid_test_crosswalk")
    yield engine
    engine.dispose()


@pytest.mark.slow
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=2, max_size=5), pts=POINTS, with_points=st.booleans())
def test_crosswalk_shares_sum_to_one_and_carry_counts(
        scratch: Engine, ops: list[tuple[Any, ...]], pts: list[tuple[float, float]],
        with_points: bool) -> None:
    with scratch.begin() as conn:
        conn.execute(text(RESET))
        write_tiny_city(conn)
        _incidents(conn, pts, with_points)
    done = 0
    for op in ops:  # each redraw in a transaction of its own: committed, or rolled back whole
        with scratch.connect() as conn:
            trans = conn.begin()
            ok = redraw(conn, op)
            (trans.commit if ok else trans.rollback)()
            done += ok
    event(f"redraws activated: {done}")
    with scratch.connect() as conn, conn.begin() as trans:
        old = {G1: tiny_city.cell(0, 0, 1, 1), G2: tiny_city.cell(1, 0, 2, 1)}
        assert conn.execute(text("SELECT count(*) FROM incident")).scalar() == len(pts)
        rows = conn.execute(text(
            "SELECT version_id, old_code, sum(area_share) FROM boundary_crosswalk "
            "GROUP BY 1, 2")).all()
        for v, code, total in rows:
            assert total == pytest.approx(1.0, abs=1e-9), (v, code)
        if done:
            assert rows, "an activation that changed grids recorded nothing"
        today = grids_now(conn)
        cw = crosswalk.load(conn)
        composed = {c: cw.compose(c, RECEIVED) for c in (G1, G2)}
        for c, shares in composed.items():
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-9), c
            assert None not in shares, "C1 stays tiled: no remainder"
            assert set(shares) <= set(today)
        # area-exact: a uniform density carried through the shares fills today's grids exactly
        for g, geom in today.items():
            carried = sum(area_m2(old[c]) * composed[c].get(g, 0.0) for c in (G1, G2))
            assert carried == pytest.approx(area_m2(geom), rel=1e-4), g
        # points: by today's boundaries, each of today's grids counts the points inside it
        month = RECEIVED.strftime("%Y-%m")
        got = by_today.monthly(conn, principal=SYSTEM, month=month, level="grid",
                               region=C1, boundaries="today")
        counts = {r["code"]: r["received"] for r in got["rows"] if r["received"]}
        assert sum(counts.values()) == pytest.approx(len(pts), abs=1e-3 * len(counts))
        if with_points:
            oracle = Counter(next(g for g, geom in today.items()
                                  if geom.covers(shapely.Point(X0 + x * U, Y0 + y * U)))
                             for x, y in pts)
            assert counts == dict(oracle)
        else:
            n_old = Counter(G1 if x < 1 else G2 for x, _ in pts)
            want = Counter[str]()
            for c, n in n_old.items():
                for g, s in composed[c].items():
                    assert g is not None
                    want[g] += n * s
            assert counts == {g: pytest.approx(v, abs=1e-3) for g, v in want.items()
                              if round(v, 3)}
        then = by_today.monthly(conn, principal=SYSTEM, month=month, level="grid", region=C1)
        assert {r["code"]: r["received"] for r in then["rows"]} == dict(
            Counter(G1 if x < 1 else G2 for x, _ in pts))
        trans.rollback()
