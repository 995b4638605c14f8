"""Undo and redo of plan edits, structured edit facts, rename, naming and the impact's workers
(issue 19), on the tiny city (tests/tiny_city.py), rolled back after each test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import shapely
from sqlalchemy import Connection, text

from grids import plans
from grids.access import Principal, Scope
from grids.plans import io as plan_io
from grids.plans import undo
from grids.plans.edits import name_pattern
from tests import plan_flow
from tests.tiny_city import C1, C2, G1, G2, STREET, X0, Y0, U, cell

PLANNER = Principal.make("user:planner", "planner", Scope.of(STREET))


def line(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [[X0 + x0 * U, Y0 + y0 * U],
                                                  [X0 + x1 * U, Y0 + y1 * U]]}


def open_plan(conn: Connection, region: str = C1) -> dict[str, Any]:
    return plans.create_plan(conn, name="p", region_code=region, principal=PLANNER)


def edit(conn: Connection, plan: dict[str, Any], **e: Any) -> dict[str, Any]:
    return plans.apply_edit(conn, plan["id"], e, principal=PLANNER, if_match=plan["etag"])


def draft_rows(conn: Connection, plan_id: int) -> list[Any]:
    """The draft as stored: every row, geometry included."""
    return conn.execute(text(
        "SELECT id, code, level, name, parent_code, origin_code, change, area_m2, "
        "ST_AsBinary(geom) FROM plan_region WHERE plan_id = :p ORDER BY id"),
        {"p": plan_id}).all()


def features(conn: Connection, plan_id: int) -> dict[str, str]:
    fc = plans.features(conn, plan_id, principal=PLANNER)
    return {f["properties"]["code"]: f["properties"]["change"] for f in fc["features"]
            if f["properties"]["change"] != "context"}


def test_undo_and_redo_put_back_the_very_draft(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    opened = draft_rows(tiny_city, plan["id"])
    plan = edit(tiny_city, plan, op="split", code=G1, line=line(-0.1, 0.5, 1.1, 0.5))
    split = draft_rows(tiny_city, plan["id"])
    plan = edit(tiny_city, plan, op="merge", codes=[G1, G2], keep=G2)
    merged = draft_rows(tiny_city, plan["id"])
    assert len({str(opened), str(split), str(merged)}) == 3

    plan = undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert draft_rows(tiny_city, plan["id"]) == split
    assert [e["state"] for e in plan["edits"]] == ["done", "undone"]
    plan = undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert draft_rows(tiny_city, plan["id"]) == opened
    assert features(tiny_city, plan["id"]) == {G1: "unchanged", G2: "unchanged"}
    with pytest.raises(undo.NothingToUndo):
        undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])

    plan = undo.redo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert draft_rows(tiny_city, plan["id"]) == split
    plan = undo.redo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert draft_rows(tiny_city, plan["id"]) == merged
    assert [e["state"] for e in plan["edits"]] == ["done", "done"]
    with pytest.raises(undo.NothingToRedo):
        undo.redo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    # the plan can still be activated as redone
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER,
                         if_match=plan_flow.approve(tiny_city, plan, PLANNER)["etag"])
    assert result["plan"]["status"] == "activated"


def test_a_new_edit_clears_the_redo_stack(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="recode", code=G1, new_code=C1 + "011")
    plan = undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    plan = edit(tiny_city, plan, op="rename", code=G2, name="一社区北片")
    assert [(e["op"], e["state"]) for e in plan["edits"]] == [("recode", "dropped"),
                                                             ("rename", "done")]
    with pytest.raises(undo.NothingToRedo):
        undo.redo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    # the log keeps every edit; only the rename is in force
    assert features(tiny_city, plan["id"]) == {G1: "unchanged", G2: "changed"}
    # snapshots of the dropped edit are gone
    assert tiny_city.execute(text("SELECT count(*) FROM plan_snapshot WHERE plan_id = :p "
                                  "AND seq = 1"), {"p": plan["id"]}).scalar() == 0


def test_undo_needs_the_current_etag_and_a_draft(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    old = plan["etag"]
    plan = edit(tiny_city, plan, op="recode", code=G1, new_code=C1 + "011")
    with pytest.raises(plans.PlanConflict):
        undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=old)
    plans.discard(tiny_city, plan["id"], principal=PLANNER)
    with pytest.raises(plans.PlanNotDraft):
        undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])


def test_undo_of_a_street_move_puts_both_communities_back(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city, region=STREET)
    before = draft_rows(tiny_city, plan["id"])
    plan = edit(tiny_city, plan, op="create", parent_code=C2, geometry=shapely.geometry.mapping(
        cell(2, 0.5, 3, 1)))
    plan = edit(tiny_city, plan, op="move", code=G2, parent_code=C2)
    assert plan["problems"] == []
    facts = plan["edits"][-1]["facts"]
    assert facts["op"] == "move" and facts["parent_name"] == "二社区"
    plan = undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    plan = undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert draft_rows(tiny_city, plan["id"]) == before
    assert [p["kind"] for p in plan["problems"]] == ["gap"]  # the problems come back too


def test_edits_store_their_facts(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="split", code=G1, line=line(-0.1, 0.5, 1.1, 0.5))
    plan = edit(tiny_city, plan, op="rename", code=G2, name="  一社区  北片 ")
    split, rename = (e["facts"] for e in plan["edits"])
    assert split["op"] == "split" and split["code"] == G1 and split["name"] == "一社区第1网格"
    assert split["new_code"] == C1 + "003" and split["new_name"] == "一社区第3网格"
    assert split["area_m2"] > 0
    assert rename == {"op": "rename", "code": G2, "old_name": "一社区第2网格", "name": "一社区 北片"}
    dry = plans.apply_edit(tiny_city, plan["id"], {"op": "retire", "code": G2, "into": G1},
                           principal=PLANNER, if_match=plan["etag"], dry_run=True)
    assert dry["facts"] == {"op": "retire", "code": G2, "name": "一社区 北片", "into": G1,
                            "into_name": "一社区第1网格"}


def test_rename_is_an_edit_that_activation_applies(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    with pytest.raises(plans.InvalidEdit) as err:
        edit(tiny_city, plan, op="rename", code=G1, name="   ")
    assert err.value.detail["problems"][0]["kind"] == "invalid_name"
    plan = edit(tiny_city, plan, op="rename", code=G1, name="一社区东片")
    impact = plans.impact(tiny_city, plan["id"], principal=PLANNER)
    assert impact["workers"]["moving"] == []  # a renamed grid keeps its team
    plans.activate(tiny_city, plan["id"], principal=PLANNER,
                         if_match=plan_flow.approve(tiny_city, plan, PLANNER)["etag"])
    assert tiny_city.execute(text("SELECT name FROM region_current WHERE code = :c"),
                             {"c": G1}).scalar() == "一社区东片"


def test_new_grids_follow_the_communitys_naming_pattern(tiny_city: Connection) -> None:
    # the community is called "一社区居民委员会", its grids "一社区第N网格"
    tiny_city.execute(text("UPDATE region SET name = '一社区居民委员会' WHERE code = :c"), {"c": C1})
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="split", code=G1, line=line(-0.1, 0.5, 1.1, 0.5))
    names = {f["properties"]["code"]: f["properties"]["name"] for f in
             plans.features(tiny_city, plan["id"], principal=PLANNER)["features"]}
    assert names[C1 + "003"] == "一社区第3网格"  # not 一社区居民委员会第3网格
    # a community whose grids follow no pattern: the community's own name
    assert name_pattern([("东片", C1 + "001"), ("西片", C1 + "002")]) is None
    assert name_pattern([("A区1号", C1 + "001"), ("A区12号", C1 + "012"),
                         ("第3网格B", C1 + "003")]) == "A区{n}号"


def test_reshape_does_not_list_its_team_as_moving(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="reshape", code=G1,
                geometry=shapely.geometry.mapping(cell(0, 0, 1.2, 1)))
    impact = plans.impact(tiny_city, plan["id"], principal=PLANNER)
    assert {g["code"] for g in impact["grids"]} == {G1, G2}
    assert impact["workers"]["moving"] == []
    plan = edit(tiny_city, plan, op="recode", code=G1, new_code=C1 + "011")
    moving = plans.impact(tiny_city, plan["id"], principal=PLANNER)["workers"]["moving"]
    assert {(w["staff_code"], w["from_grid"], w["to_grid"]) for w in moving} == {
        ("W1", G1, C1 + "011"), ("B1", G1, C1 + "011")}


def test_import_into_a_draft_is_one_undoable_edit(tiny_city: Connection, tmp_path: Path
                                                  ) -> None:
    import geopandas as gpd

    plan = open_plan(tiny_city)
    opened = draft_rows(tiny_city, plan["id"])
    path = tmp_path / "plan.gpkg"
    plan_io.export_plan(tiny_city, plan["id"], path, principal=PLANNER)
    frame = gpd.read_file(path, layer="plan_grids")
    frame.loc[frame.code == G1, "geometry"] = cell(0, 0, 2, 1)  # G1 takes G2's area
    frame = frame[frame.code != G2]
    edited = tmp_path / "edited.gpkg"
    frame.to_file(edited, layer="plan_grids", driver="GPKG")
    with pytest.raises(plans.PlanConflict):
        plan_io.import_into(tiny_city, plan["id"], edited, principal=PLANNER, if_match="1-0")
    plan = plan_io.import_into(tiny_city, plan["id"], edited, principal=PLANNER,
                               if_match=plan["etag"])
    assert plan["edits"][-1]["facts"] == {"op": "import", "file": "edited.gpkg",
                                          "changed": [G1], "new": [], "retired": [G2]}
    assert features(tiny_city, plan["id"]) == {G1: "changed", G2: "retired"}
    assert plan["problems"] == []
    plan = undo.undo(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert draft_rows(tiny_city, plan["id"]) == opened


def test_a_restore_can_be_undone_to_the_region_as_it_is(tiny_city: Connection) -> None:
    plan = open_plan(tiny_city)
    plan = edit(tiny_city, plan, op="merge", codes=[G1, G2], keep=G1)
    first = plans.activate(tiny_city, plan["id"], principal=PLANNER,
                         if_match=plan_flow.approve(tiny_city, plan, PLANNER)["etag"])
    # the tiny city's version before the merge
    before = tiny_city.execute(text("SELECT max(id) FROM boundary_version WHERE id < :v"),
                               {"v": first["boundary_version"]}).scalar()
    restored = plans.create_plan(tiny_city, name="r", region_code=C1, principal=PLANNER,
                                 restore_version=before)
    assert features(tiny_city, restored["id"]) == {G1: "changed", G2: "new"}
    assert restored["edits"][0]["facts"] == {"op": "restore", "version": before}
    back = undo.undo(tiny_city, restored["id"], principal=PLANNER, if_match=restored["etag"])
    assert features(tiny_city, back["id"]) == {G1: "unchanged"}
    assert back["problems"] == []
