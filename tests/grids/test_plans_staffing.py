"""Staffing inside a plan and its approval (issue 19), on the tiny city, rolled back.

G1 has W1 (primary) and B1 (backup); splitting G1 leaves its new part with nobody.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text

from grids import plans
from grids.access import Forbidden, Principal, Scope
from grids.city import update_profile
from grids.errors import GridError
from grids.locate import locate_at
from grids.plans import review, staffing
from tests import plan_flow
from tests.tiny_city import C1, G1, G2, STREET, X0, Y0, U, at

PLANNER = Principal.make("user:planner", "planner", Scope.of(STREET))
ADMIN = plan_flow.ADMIN
NEW = C1 + "003"
TOP = at(0.5, 0.8)  # in the part of G1 the split gives to NEW


def split_g1(conn: Connection) -> dict[str, Any]:
    plan = plans.create_plan(conn, name="split", region_code=C1, principal=PLANNER)
    line = {"type": "LineString", "coordinates": [[X0 - 0.1 * U, Y0 + 0.6 * U],
                                                  [X0 + 1.1 * U, Y0 + 0.6 * U]]}
    plan = plans.apply_edit(conn, plan["id"], {"op": "split", "code": G1, "line": line},
                            principal=PLANNER, if_match=plan["etag"])
    assert {pr for pr in conn.execute(text(
        "SELECT code FROM plan_region WHERE plan_id = :p AND change = 'new'"),
        {"p": plan["id"]}).scalars()} == {NEW}
    return plan


def staff(conn: Connection, plan: dict[str, Any], **change: Any) -> dict[str, Any]:
    return staffing.change_staffing(conn, plan["id"], change, principal=PLANNER,
                                    if_match=plan["etag"])


def in_force(conn: Connection, code: str, at_: Any) -> set[tuple[str, str]]:
    return set(tuple(r) for r in conn.execute(text(
        "SELECT s.code, a.duty FROM assignment a JOIN staff s ON s.id = a.staff_id "
        "JOIN region r ON r.id = a.region_id WHERE r.code = :c AND a.valid_from <= :at "
        "AND (a.valid_to IS NULL OR a.valid_to > :at)"), {"c": code, "at": at_}).all())


def test_a_split_grid_gets_its_worker_in_the_plan_and_activation_assigns_them(
        tiny_city: Connection) -> None:
    plan = split_g1(tiny_city)
    with pytest.raises(staffing.GridsWithoutWorker) as err:
        review.submit(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert err.value.detail["grids"] == [NEW]
    # B1 leaves G1's backup and becomes NEW's primary; H1 also backs NEW up
    plan = staff(tiny_city, plan, op="assign", staff_code="B1", grid_code=NEW, duty="primary")
    plan = staff(tiny_city, plan, op="end", staff_code="B1", grid_code=G1, duty="backup")
    with pytest.raises(staffing.InvalidStaffing):
        staff(tiny_city, plan, op="assign", staff_code="H1", grid_code=NEW, duty="head")
    assert [(c["action"], c["staff_code"], c["region_code"]) for c in plan["staffing"]] == [
        ("assign", "B1", NEW), ("end", "B1", G1)]
    assert staffing.unstaffed(tiny_city, plans.plan_row(tiny_city, plan["id"], PLANNER)) == []
    with pytest.raises(review.PlanNotApproved):
        plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    plan = review.submit(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert plan["status"] == "submitted" and plan["unstaffed_reason"] is None
    with pytest.raises(Forbidden):
        review.approve(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    with pytest.raises(plans.PlanNotDraft):  # a submitted plan does not change
        staff(tiny_city, plan, op="assign", staff_code="W2", grid_code=NEW, duty="backup")
    plan = review.approve(tiny_city, plan["id"], principal=ADMIN, if_match=plan["etag"])
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert result["staffing"] == {"ended": 1, "assigned": 1, "restored": 0}
    when = result["effective_at"]
    answer = locate_at(tiny_city, *TOP, at=when)
    assert answer["grid"]["code"] == NEW and answer["responsible"]["code"] == "B1"
    assert in_force(tiny_city, G1, when) == {("W1", "primary")}
    assert [r["action"] for r in result["plan"]["reviews"]] == ["submit", "approve", "activate"]
    audited = tiny_city.execute(text(
        "SELECT entity, count(*) FROM audit_log WHERE entity IN ('plan_staff', 'plan_review') "
        "GROUP BY entity")).all()
    assert dict(audited) == {"plan_staff": 2, "plan_review": 3}


def test_a_returned_plan_is_editable_again_and_an_override_is_recorded(
        tiny_city: Connection) -> None:
    plan = split_g1(tiny_city)
    plan = review.submit(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"],
                         unstaffed_reason="新网格员下月到岗")
    assert plan["unstaffed_grids"] == [NEW] and plan["unstaffed_reason"] == "新网格员下月到岗"
    with pytest.raises(GridError) as err:
        review.return_plan(tiny_city, plan["id"], principal=ADMIN, if_match=plan["etag"],
                           comment=" ")
    assert err.value.code == "comment_required"
    plan = review.return_plan(tiny_city, plan["id"], principal=ADMIN, if_match=plan["etag"],
                              comment="请先配齐网格员")
    assert plan["status"] == "returned" and plan["reviews"][-1]["comment"] == "请先配齐网格员"
    plan = staff(tiny_city, plan, op="move", staff_code="B1", grid_code=G1, to_code=NEW,
                 duty="backup")
    plan = staff(tiny_city, plan, op="assign", staff_code="W2", grid_code=NEW, duty="primary")
    plan = review.submit(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert plan["unstaffed_grids"] == [] and plan["unstaffed_reason"] is None
    plan = review.approve(tiny_city, plan["id"], principal=ADMIN, if_match=plan["etag"])
    result = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert in_force(tiny_city, NEW, result["effective_at"]) == {("B1", "backup"),
                                                                ("W2", "primary")}


def test_the_city_chooses_who_approves(tiny_city: Connection) -> None:
    plan = split_g1(tiny_city)
    plan = plan_flow.submit(tiny_city, plan, PLANNER)
    with pytest.raises(Forbidden):
        review.approve(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    update_profile(tiny_city, plan_approver_role="planner")
    plan = review.approve(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert plan["status"] == "approved" and plan["approved_by"] == PLANNER.name


def test_a_planned_assignment_to_a_grid_the_plan_no_longer_has_is_refused(
        tiny_city: Connection) -> None:
    plan = split_g1(tiny_city)
    plan = staff(tiny_city, plan, op="assign", staff_code="B1", grid_code=NEW, duty="primary")
    plan = plans.apply_edit(tiny_city, plan["id"], {"op": "recode", "code": NEW,
                                                    "new_code": C1 + "009"},
                            principal=PLANNER, if_match=plan["etag"])
    with pytest.raises(staffing.InvalidStaffing) as err:
        plan_flow.submit(tiny_city, plan, PLANNER)
    assert err.value.detail["grid_code"] == NEW
    change = plan["staffing"][0]["id"]
    plan = staffing.withdraw_staffing(tiny_city, plan["id"], change, principal=PLANNER,
                                      if_match=plan["etag"])
    assert plan["staffing"] == []


def test_restore_brings_back_the_assignments_that_ended_with_its_boundaries(
        tiny_city: Connection) -> None:
    original = tiny_city.execute(text("SELECT max(id) FROM boundary_version")).scalar_one()
    plan = plans.create_plan(tiny_city, name="merge", region_code=C1, principal=PLANNER)
    plan = plans.apply_edit(tiny_city, plan["id"], {"op": "merge", "codes": [G1, G2],
                                                    "keep": G2},
                            principal=PLANNER, if_match=plan["etag"])
    plan = plan_flow.approve(tiny_city, plan, PLANNER)
    merged = plans.activate(tiny_city, plan["id"], principal=PLANNER, if_match=plan["etag"])
    assert in_force(tiny_city, G1, merged["effective_at"]) == set()
    restore = plans.create_plan(tiny_city, name="undo", region_code=C1, principal=PLANNER,
                                restore_version=original)
    row = plans.plan_row(tiny_city, restore["id"], PLANNER)
    assert {(r["staff_code"], r["region_code"]) for r in staffing.restorable(tiny_city, row)} \
        == {("W1", G1), ("B1", G1)}
    # W1 comes back with G1, so the restore needs no override
    restore = plan_flow.approve(tiny_city, restore, PLANNER, reason=None)
    # one transaction has one now(): the restore takes effect an hour after the merge
    later = merged["effective_at"] + timedelta(hours=1)
    result = plans.activate(tiny_city, restore["id"], principal=PLANNER,
                            if_match=restore["etag"], effective_at=later)
    assert result["staffing"]["restored"] == 2
    assert in_force(tiny_city, G1, result["effective_at"]) == {("W1", "primary"),
                                                               ("B1", "backup")}
    answer = locate_at(tiny_city, *at(0.5, 0.5), at=result["effective_at"])
    assert answer["grid"]["code"] == G1 and answer["responsible"]["code"] == "W1"
