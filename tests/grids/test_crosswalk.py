"""The crosswalk on the tiny city: a split, then a merge, recorded and composed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text

from grids import plans
from grids.access import Principal, Scope
from grids.plans import crosswalk
from tests import plan_flow
from tests.tiny_city import C1, G1, G2, STREET, X0, Y0, U

PLANNER = Principal.make("user:planner", "planner", Scope.of(STREET))
OUTSIDER = Principal.make("user:other", "planner", Scope.of("990200001"))


def activate(conn: Connection, plan: dict[str, Any]) -> dict[str, Any]:
    """The one place these tests activate a plan: proposed, approved by an admin, activated."""
    approved = plan_flow.approve(conn, plan, PLANNER)
    return plans.activate(conn, plan["id"], principal=PLANNER, if_match=approved["etag"])


def edit(conn: Connection, plan: dict[str, Any], **e: Any) -> dict[str, Any]:
    return plans.apply_edit(conn, plan["id"], e, principal=PLANNER, if_match=plan["etag"])


def split_g1(conn: Connection, y: float = 0.25) -> dict[str, Any]:
    """Split G1 along y (drawing units): the larger part keeps G1, the other is C1 + '003'."""
    plan = plans.create_plan(conn, name="split", region_code=C1, principal=PLANNER)
    plan = edit(conn, plan, op="split", code=G1, line={"type": "LineString", "coordinates": [
        [X0 - 0.1 * U, Y0 + y * U], [X0 + 1.1 * U, Y0 + y * U]]})
    activate(conn, plan)
    return plan


def rows(conn: Connection, plan_id: int) -> dict[tuple[str, str | None], tuple[str, float]]:
    return {(r.old_code, r.new_code): (r.change, r.area_share) for r in conn.execute(text(
        "SELECT old_code, new_code, change, area_share FROM boundary_crosswalk "
        "WHERE plan_id = :p"), {"p": plan_id})}


def test_a_split_records_the_shares_of_area(tiny_city: Connection) -> None:
    plan = split_g1(tiny_city)
    got = rows(tiny_city, plan["id"])
    new = C1 + "003"
    assert set(got) == {(G1, G1), (G1, new)}
    assert got[(G1, G1)][0] == "split"
    assert got[(G1, G1)][1] == pytest.approx(0.75, abs=1e-4)
    assert got[(G1, new)][1] == pytest.approx(0.25, abs=1e-4)
    assert sum(s for _, s in got.values()) == pytest.approx(1.0, abs=1e-12)
    # the areas are measured in the city's metric CRS: G1 is 1 km x ~1.1 km
    old_area = tiny_city.execute(text(
        "SELECT DISTINCT old_area_m2 FROM boundary_crosswalk")).scalar_one()
    expect = tiny_city.execute(text(
        "SELECT ST_Area(ST_Transform(b.geom, citygrid_metric_srid())) FROM region_boundary b "
        "JOIN region r ON r.id = b.region_id WHERE r.code = :g ORDER BY b.valid_from LIMIT 1"),
        {"g": G1}).scalar_one()
    assert old_area == pytest.approx(expect)


def test_a_split_and_a_merge_in_one_plan(tiny_city: Connection) -> None:
    new = C1 + "003"
    plan = plans.create_plan(tiny_city, name="both", region_code=C1, principal=PLANNER)
    plan = edit(tiny_city, plan, op="split", code=G1, line={"type": "LineString", "coordinates": [
        [X0 - 0.1 * U, Y0 + 0.25 * U], [X0 + 1.1 * U, Y0 + 0.25 * U]]})
    plan = edit(tiny_city, plan, op="merge", codes=[G2, new], keep=G2)
    activate(tiny_city, plan)
    got = rows(tiny_city, plan["id"])
    assert set(got) == {(G1, G1), (G1, G2), (G2, G2)}
    assert got[(G1, G1)] == ("split", pytest.approx(0.75, abs=1e-4))
    assert got[(G1, G2)] == ("split", pytest.approx(0.25, abs=1e-4))
    assert got[(G2, G2)] == ("reshape", pytest.approx(1.0))
    out = crosswalk.of_plan(tiny_city, plan["id"], principal=PLANNER)
    assert out["today"][G1] == {G1: pytest.approx(0.75, abs=1e-4),
                                G2: pytest.approx(0.25, abs=1e-4)}
    assert all(r["household_share"] is None for r in out["rows"])
    with pytest.raises(plans.PlanNotFound):
        crosswalk.of_plan(tiny_city, plan["id"], principal=OUTSIDER)


def test_composition_multiplies_shares_in_order_and_keeps_the_remainder() -> None:
    t = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)]
    cw = crosswalk.Crosswalk(until=None, steps=[
        (t[1], 1, {"A": [("A", 0.6), ("B", 0.4)]}),
        (t[2], 2, {"B": [("C", 1.0)], "D": [("C", 1.0)]}),
        (t[3], 3, {"A": [("A", 0.5), (None, 0.5)]}),
    ])
    assert cw.compose("A", t[0]) == {"A": pytest.approx(0.3), None: pytest.approx(0.3),
                                     "C": pytest.approx(0.4)}
    assert cw.compose("A", t[1]) == {"A": pytest.approx(0.5), None: pytest.approx(0.5)}
    assert cw.compose("B", t[1]) == {"C": 1.0}  # B as it was after the first redraw
    assert cw.compose("B", t[2]) == {"B": 1.0}  # ... and a later B: untouched since
    assert cw.changed_since("D", t[1]) and not cw.changed_since("D", t[2])


def test_a_draft_has_no_crosswalk_yet(tiny_city: Connection) -> None:
    plan = plans.create_plan(tiny_city, name="draft", region_code=C1, principal=PLANNER)
    out = crosswalk.of_plan(tiny_city, plan["id"], principal=PLANNER)
    assert out["rows"] == [] and out["today"] == {} and out["status"] == "draft"
