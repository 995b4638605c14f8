"""Redraw plans on the tiny city (tests/tiny_city.py): edits, refusals, activation, history.

Everything runs in the test's transaction (rolled back). Activation asks the database guard to
check at once (SET CONSTRAINTS ... IMMEDIATE), so the guard is exercised without a commit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import shapely
from shapely import box
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from grids import plans
from grids.access import Principal, Scope
from grids.errors import GridError
from grids.locate import locate_at
from grids.plans import history as plan_history
from grids.plans.draft import TOLERANCE_M2, area_m2
from tests import plan_flow
from tests.tiny_city import C1, C2, G1, G2, G3, STREET, T0, X0, Y0, U, at, cell

PLANNER = Principal.make("user:planner", "planner", Scope.of(STREET))
OUTSIDER = Principal.make("user:other", "planner", Scope.of("990200001"))


def gj(geom: Any) -> dict[str, Any]:
    return shapely.geometry.mapping(geom)


def line(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [[X0 + x0 * U, Y0 + y0 * U],
                                                  [X0 + x1 * U, Y0 + y1 * U]]}


def open_plan(conn: Connection, region: str = C1, name: str = "p") -> dict[str, Any]:
    return plans.create_plan(conn, name=name, region_code=region, principal=PLANNER)


def approved(conn: Connection, plan: dict[str, Any]) -> str:
    """Submit and approve the plan (tests/plan_flow.py): the ETag activation needs."""
    return str(plan_flow.approve(conn, plan, PLANNER)["etag"])


def edit(conn: Connection, plan: dict[str, Any], **e: Any) -> dict[str, Any]:
    return plans.apply_edit(conn, plan["id"], e, principal=PLANNER, if_match=plan["etag"])


def state(conn: Connection) -> list[Any]:
    """Everything a refused edit must leave alone."""
    return [
        conn.execute(text("SELECT pr.id, pr.code, pr.change, ST_AsText(pr.geom), p.revision "
                          "FROM plan_region pr JOIN plan p ON p.id = pr.plan_id "
                          "ORDER BY pr.id")).all(),
        conn.execute(text("SELECT count(*) FROM plan_edit")).scalar(),
        conn.execute(text("SELECT count(*), max(id) FROM region_boundary")).one(),
    ]


def current(conn: Connection, code: str) -> Any:
    return conn.execute(text("SELECT ST_AsBinary(geom) AS wkb, version_id FROM region_current "
                             "WHERE code = :c"), {"c": code}).first()


def test_opening_a_plan_copies_the_region_and_changes_nothing_else(tiny_city: Connection) -> None:
    before = state(tiny_city)[2]
    plan = open_plan(tiny_city)
    assert plan["status"] == "draft" and plan["problems"] == [] and plan["edits"] == []
    fc = plans.features(tiny_city, plan["id"], principal=PLANNER)
    by = {f["properties"]["code"]: f["properties"]["change"] for f in fc["features"]}
    assert by == {G1: "unchanged", G2: "unchanged", G3: "context"}
    assert state(tiny_city)[2] == before
    with pytest.raises(plans.PlanNotFound):
        plans.get_plan(tiny_city, plan["id"], principal=OUTSIDER)


def test_split_then_activate_switches_now_and_keeps_history(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="split", code=G1, line=line(-0.1, 0.5, 1.1, 0.5))
    assert plan["problems"] == [] and plan["edits"][0]["op"] == "split"
    new = C1 + "003"
    assert current(tiny_city, new) is None  # nothing changes before activation
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan))
    assert result["changed"] == 2 and result["plan"]["status"] == "activated"
    top, bottom = at(0.5, 0.75), at(0.5, 0.25)
    codes = {locate_at(tiny_city, *p, at=result["effective_at"])["grid"]["code"]
             for p in (top, bottom)}
    assert codes == {G1, new}
    before = locate_at(tiny_city, *top, at=T0 + timedelta(days=1))
    assert before["grid"]["code"] == G1 and before["boundary_version"] < result["boundary_version"]
    # the old boundary of G1 is closed, not deleted
    periods = tiny_city.execute(text(
        "SELECT valid_to IS NULL FROM region_boundary b JOIN region r ON r.id = b.region_id "
        "WHERE r.code = :c ORDER BY valid_from"), {"c": G1}).scalars().all()
    assert periods == [False, True]
    versions = plan_history.versions(tiny_city, principal=PLANNER)
    assert versions[0]["plan_id"] == plan["id"]


@pytest.mark.parametrize(("kind", "payload"), [
    ("invalid_geometry", {"op": "reshape", "code": G1, "geometry": {
        "type": "Polygon", "coordinates": [[[X0, Y0], [X0 + U, Y0 + U], [X0 + U, Y0],
                                             [X0, Y0 + U], [X0, Y0]]]}}),
    ("outside_parent", {"op": "reshape", "code": G1, "geometry": gj(cell(0, 0, 1, 1.2))}),
    ("gap", {"op": "reshape", "code": G2, "geometry": gj(cell(1, 0, 1.8, 1))}),
    # a corner triangle of ~45 m² (the line passes ~7 m from the corner: not snapped)
    ("sliver", {"op": "split", "code": G1, "line": line(-0.05, 0.0596, 0.0596, -0.05)}),
    ("unsupported", {"op": "move", "code": G1, "parent_code": C2}),  # needs a street plan
    ("code_collision", {"op": "recode", "code": G1, "new_code": G2}),
    ("code_format", {"op": "recode", "code": G1, "new_code": C2 + "001"}),
    ("not_neighbours", {"op": "retire", "code": G1, "into": G1}),
    ("bad_split", {"op": "split", "code": G1, "line": line(0.2, 0.2, 0.4, 0.4)}),
    ("unknown_code", {"op": "merge", "codes": [G1, C1 + "009"], "keep": G1}),
])
def test_each_invalid_edit_is_refused_with_its_reason_and_nothing_written(
        tiny_city: Connection, kind: str, payload: dict[str, Any]) -> None:
    plan = open_plan(tiny_city)
    before = state(tiny_city)
    with pytest.raises(plans.InvalidEdit) as err:
        edit(tiny_city, plan, **payload)
    problems = err.value.detail["problems"]
    assert kind in [p["kind"] for p in problems], problems
    assert all(p["message"] for p in problems)
    assert state(tiny_city) == before


def test_gap_refusal_points_at_the_gap(tiny_city: Connection) -> None:
    """Shrinking G2 away from the community's edge releases a strip touching no other grid."""
    plan = open_plan(tiny_city)
    with pytest.raises(plans.InvalidEdit) as err:
        edit(tiny_city, plan, op="reshape", code=G2, geometry=gj(cell(1, 0, 1.8, 1)))
    gap = next(p for p in err.value.detail["problems"] if p["kind"] == "gap")
    assert gap["codes"] == [C1] and gap["area_m2"] > 1000
    assert shapely.geometry.shape(gap["location"]).within(cell(1.79, -0.01, 2.01, 1.01))


def test_reshape_snaps_to_the_neighbour_and_neighbours_give_way(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    # G1 grows east to x=1.3 (taking from G2), drawn 0.5 m off the community's south edge
    off = 0.5 / 111_320
    shape = shapely.Polygon([(X0, Y0 - off), (X0 + 1.3 * U, Y0 - off), (X0 + 1.3 * U, Y0 + U),
                             (X0, Y0 + U)])
    plan = edit(tiny_city, plan, op="reshape", code=G1, geometry=gj(shape))
    assert plan["problems"] == []
    rows = dict(tiny_city.execute(text(
        "SELECT code, ST_AsBinary(geom) FROM plan_region WHERE plan_id = :p"),
        {"p": plan["id"]}).all())
    g1, g2 = shapely.from_wkb(bytes(rows[G1])), shapely.from_wkb(bytes(rows[G2]))
    assert abs(area_m2(g1) - 1.3 * area_m2(cell(0, 0, 1, 1))) < 50
    assert area_m2(shapely.intersection(g1, g2)) <= TOLERANCE_M2
    assert area_m2(shapely.symmetric_difference(shapely.union(g1, g2), cell(0, 0, 2, 1))) \
        <= TOLERANCE_M2


def test_stale_etag_is_a_conflict_naming_the_other_edit(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    edit(tiny_city, plan, op="recode", code=G2, new_code=C1 + "009")
    with pytest.raises(plans.PlanConflict) as err:
        edit(tiny_city, plan, op="recode", code=G1, new_code=C1 + "008")  # the old ETag
    assert err.value.detail["last_edit"]["op"] == "recode"
    assert err.value.detail["current_etag"] != plan["etag"]


def test_two_plans_on_one_grid_the_second_activation_is_refused(tiny_city: Connection) -> None:
    first, second = open_plan(tiny_city, name="a"), open_plan(tiny_city, name="b")
    first = edit(tiny_city, first, op="split", code=G1, line=line(-0.1, 0.5, 1.1, 0.5))
    second = edit(tiny_city, second, op="retire", code=G2, into=G1)
    e1, e2 = approved(tiny_city, first), approved(tiny_city, second)
    done = plans.activate(tiny_city, first["id"], principal=PLANNER, if_match=e1)
    assert plans.get_plan(tiny_city, second["id"], principal=PLANNER)["stale"] is True
    assert second["stale"] is False
    with pytest.raises(plans.PlanConflict) as err:
        plans.activate(tiny_city, second["id"], principal=PLANNER, if_match=e2)
    assert err.value.detail["other_changes"][0]["plan_id"] == first["id"]
    assert err.value.detail["other_changes"][0]["boundary_version"] == done["boundary_version"]


def test_raw_sql_overlapping_sibling_is_refused_by_the_database(tiny_city: Connection) -> None:
    tiny_city.execute(text("INSERT INTO region (code, level, name) VALUES (:c, 'grid', 'x')"),
                      {"c": C1 + "007"})
    tiny_city.execute(text(
        "INSERT INTO region_boundary (region_id, parent_id, version_id, geom, area_m2, valid_from) "
        "SELECT r.id, p.id, (SELECT max(id) FROM boundary_version), "
        "ST_Multi(ST_GeomFromText(:wkt, 4490)), 0, now() FROM region r, region p "
        "WHERE r.code = :c AND p.code = :parent"),
        {"wkt": cell(0.5, 0, 1.5, 1).wkt, "c": C1 + "007", "parent": C1})
    with pytest.raises(DBAPIError) as err:
        tiny_city.execute(text("SET CONSTRAINTS region_boundary_no_overlapping_siblings IMMEDIATE"))
    assert err.value.orig.sqlstate == "23P01"
    assert "overlaps its sibling" in str(err.value.orig)


def test_an_import_that_overlaps_a_sibling_is_rejected_with_the_reason(tiny_city: Connection
                                                                        ) -> None:
    import geopandas as gpd

    from grids.errors import ImportRejected
    from grids.io import import_regions

    frame = gpd.GeoDataFrame({"code": [C1 + "007"], "name": ["新网格"], "level": ["grid"],
                              "parent_code": [C1]}, geometry=[cell(0.5, 0, 1.5, 1)],
                             crs="EPSG:4490")
    with pytest.raises(ImportRejected) as err:
        import_regions(tiny_city, frame, label="overlapping")
    assert "overlaps its sibling" in err.value.detail["errors"][0]["reason"]


def test_raw_sql_may_pass_through_an_overlap_within_one_transaction(tiny_city: Connection
                                                                     ) -> None:
    """The guard is deferred: moving a shared edge takes two UPDATEs, the first overlaps."""
    move = ("UPDATE region_boundary b SET geom = ST_Multi(ST_GeomFromText(:wkt, 4490)) "
            "FROM region r WHERE r.id = b.region_id AND r.code = :c")
    tiny_city.execute(text(move), {"wkt": cell(0, 0, 1.5, 1).wkt, "c": G1})
    tiny_city.execute(text(move), {"wkt": cell(1.5, 0, 2, 1).wkt, "c": G2})
    tiny_city.execute(text("SET CONSTRAINTS region_boundary_no_overlapping_siblings IMMEDIATE"))
    assert tiny_city.execute(text("SELECT count(*) FROM region_boundary_suspect")).scalar() == 0


def test_touching_siblings_and_successive_periods_pass_the_guard(tiny_city: Connection) -> None:
    """Siblings sharing an edge, and one region's old and new boundary, are not overlaps."""
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="reshape", code=G1, geometry=gj(cell(0, 0, 1.5, 1)))
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan))
    # Checking the deferred guard now raises if either pair was taken for an overlap.
    tiny_city.execute(text("SET CONSTRAINTS region_boundary_no_overlapping_siblings IMMEDIATE"))
    assert tiny_city.execute(text("SELECT count(*) FROM region_boundary_suspect")).scalar() == 0
    assert area_m2(shapely.from_wkb(current(tiny_city, G1).wkb)) == pytest.approx(
        area_m2(cell(0, 0, 1.5, 1)), rel=1e-6)
    assert locate_at(tiny_city, *at(1.25, 0.5), at=result["effective_at"])["grid"]["code"] == G1


def test_scheduled_activation_takes_effect_at_its_time(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="retire", code=G2, into=G1)
    now = tiny_city.execute(text("SELECT now()")).scalar_one()
    when = now + timedelta(hours=1)
    plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan),
                   effective_at=when)
    assert current(tiny_city, G2) is not None  # still in force until then
    p = at(1.5, 0.5)
    assert locate_at(tiny_city, *p, at=when - timedelta(seconds=1))["grid"]["code"] == G2
    assert locate_at(tiny_city, *p, at=when)["grid"]["code"] == G1
    again = edit(tiny_city, open_plan(tiny_city), op="recode", code=G1, new_code=C1 + "011")
    with pytest.raises(GridError, match="past") as err:
        plans.activate(tiny_city, again["id"], principal=PLANNER,
                       if_match=approved(tiny_city, again),
                       effective_at=now - timedelta(hours=1))
    assert err.value.code == "invalid_effective_at"


def test_merge_retires_and_workers_without_grid_are_listed(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="merge", codes=[G1, G2], keep=G2)
    impact = plans.impact(tiny_city, plan["id"], principal=PLANNER)
    changes = {g["code"]: g for g in impact["grids"]}
    assert changes[G1]["change"] == "retired" and changes[G1]["new_area_m2"] == 0
    assert changes[G2]["delta_pct"] == pytest.approx(100.0, abs=0.1)
    assert {w["staff_code"] for w in impact["workers"]["without_grid"]} == {"W1", "B1"}
    # G1's team ends with it; G2 keeps its code, so its team (W2, B2) is not listed as moving
    # (it was once listed as G2 -> G2, issue 19)
    assert {(w["staff_code"], w["to_grid"]) for w in impact["workers"]["moving"]} == {
        ("W1", None), ("B1", None)}
    assert impact["households"]["available"] is False
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan))
    ended = tiny_city.execute(text(
        "SELECT count(*) FROM assignment a JOIN region r ON r.id = a.region_id WHERE r.code = :c "
        "AND a.valid_to = :at"), {"c": G1, "at": result["effective_at"]}).scalar()
    assert ended == 2


def test_recode_carries_the_workers(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="recode", code=G1, new_code=C1 + "011")
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan))
    answer = locate_at(tiny_city, *at(0.5, 0.5), at=result["effective_at"])
    assert answer["grid"]["code"] == C1 + "011" and answer["responsible"]["code"] == "W1"


def test_create_and_move_in_a_street_plan(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city, region=STREET)
    assert [p["kind"] for p in plan["problems"]] == ["gap"]  # the tiny city's gap in C2
    plan = edit(tiny_city, plan, op="create", parent_code=C2, geometry=gj(cell(2, 0.5, 3, 1)))
    assert plan["problems"] == []
    plan = edit(tiny_city, plan, op="move", code=G2, parent_code=C2)
    assert plan["problems"] == []
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan))
    answer = locate_at(tiny_city, *at(1.5, 0.5), at=result["effective_at"])
    assert answer["grid"]["code"].startswith(C2)
    assert [c["code"] for c in answer["chain"]][1] == C2
    # G2's primary (W2) is on leave and its backup (B2) seconded; its new community's head (H2)
    # is on leave too, so the street officer answers, and the answer says so.
    assert answer["responsible"]["code"] == "SO" and answer["fallback"] == "street_officer"


def test_restore_a_past_version_through_a_new_plan(tiny_city: Connection) -> None:
    original = current(tiny_city, G1)
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="reshape", code=G1, geometry=gj(cell(0, 0, 1.5, 1)))
    plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=approved(tiny_city, plan))
    diff = plan_history.diff(tiny_city, region=C1, from_version=original.version_id,
                             principal=PLANNER)
    assert {(f["properties"]["code"], f["properties"]["side"]) for f in diff["features"]} == {
        (G1, "from"), (G1, "to"), (G2, "from"), (G2, "to")}
    # a second transaction-time is needed for a new version: restore inside a savepoint'd plan
    restore = plans.create_plan(tiny_city, name="undo", region_code=C1, principal=PLANNER,
                                restore_version=original.version_id)
    assert restore["restored_from"] == original.version_id and restore["problems"] == []
    rows = dict(tiny_city.execute(text(
        "SELECT code, ST_AsBinary(geom) FROM plan_region WHERE plan_id = :p"),
        {"p": restore["id"]}).all())
    assert shapely.equals_exact(shapely.from_wkb(bytes(rows[G1])),
                                shapely.from_wkb(bytes(original.wkb)), 1e-9)


def test_a_second_gap_in_a_community_that_already_has_one_is_refused(tiny_city: Connection
                                                                        ) -> None:
    plan = open_plan(tiny_city, region=STREET)
    assert [p["kind"] for p in plan["problems"]] == ["gap"]  # C2's, in the data
    with pytest.raises(plans.InvalidEdit) as err:
        edit(tiny_city, plan, op="reshape", code=G3, geometry=gj(cell(2.2, 0, 3, 0.5)))
    assert [p["kind"] for p in err.value.detail["problems"]] == ["gap"]
    # a change elsewhere in the plan is fine: the old gap is not the edit's doing
    plan = edit(tiny_city, plan, op="recode", code=G1, new_code=C1 + "005")
    assert [p["kind"] for p in plan["problems"]] == ["gap"]


def test_discarded_plan_cannot_change(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plans.discard(tiny_city, plan["id"], principal=PLANNER)
    with pytest.raises(plans.PlanNotDraft):
        edit(tiny_city, plans.get_plan(tiny_city, plan["id"], principal=PLANNER),
             op="recode", code=G1, new_code=C1 + "011")


def test_box_helper_matches_tiny_city() -> None:
    assert cell(0, 0, 1, 1).equals(box(X0, Y0, X0 + U, Y0 + U))
