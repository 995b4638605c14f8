"""A redraw takes the open work with it (layers/redraw.py, issue 19), on the tiny city.

G2 is retired into G1: an open case, an open call-up with its duty task and an event's
reinforcement on G2, and an address book entry in G2 must all end up on G1; a closed case and a
closed call-up stay where they were. A scheduled activation moves the work when its time comes
(committed scratch city: the plan worker's query needs real time to pass).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from app.plan_worker import PlanWorker
from grids import plans
from grids.access import Principal, Scope
from layers import redraw
from tests import plan_flow
from tests.tiny_city import C1, G1, G2, STREET, at, write_tiny_city

PLANNER = Principal.make("user:planner", "planner", Scope.of(STREET))


@pytest.fixture
def city(empty_conn: Connection) -> Connection:
    write_tiny_city(empty_conn)
    return empty_conn


def _work(conn: Connection) -> dict[str, Any]:
    """Open and closed work on G2 (a point in G2 at 1.5, 0.5)."""
    x, y = at(1.5, 0.5)
    cat = conn.execute(text(
        "INSERT INTO category (code, name, family) VALUES ('RD01', '测试', 'event') "
        "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id")).scalar_one()
    ids: dict[str, Any] = {}
    for state in ("dispatched", "closed"):
        ids[state] = conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, state, region_code, "
            "grid_code, community_code, geom) VALUES ('hotline_12345', :e, :cat, :s, :g, :g, :c, "
            "ST_SetSRID(ST_MakePoint(:x, :y), 4490)) RETURNING id"),
            {"e": f"redraw-{state}", "cat": cat, "s": state, "g": G2, "c": C1, "x": x, "y": y}
        ).scalar_one()
    for name, closed in (("open", None), ("closed", "now()")):
        ids[f"callup_{name}"] = conn.execute(text(
            "INSERT INTO callup (kind, title, grid_codes, created_by, closed_at, window_from, "
            f"window_to) VALUES ('event', :t, :g, 'test', {closed or 'NULL'}, now(), "
            "now() + interval '3 hours') RETURNING id"),
            {"t": name, "g": [G1, G2]}).scalar_one()
    w2 = conn.execute(text("SELECT id FROM staff WHERE code = 'W2'")).scalar_one()
    ids["task"] = conn.execute(text(
        "INSERT INTO callup_task (callup_id, staff_id, region_code, reason) VALUES "
        "(:c, :s, :g, 'primary') RETURNING id"),
        {"c": ids["callup_open"], "s": w2, "g": G2}).scalar_one()
    h1 = conn.execute(text("SELECT id FROM staff WHERE code = 'H1'")).scalar_one()
    reinforcement = conn.execute(text(
        "INSERT INTO assignment (staff_id, region_id, duty, valid_from, valid_to) SELECT :s, id, "
        "'backup', now() - interval '1 hour', now() + interval '3 hours' FROM region "
        "WHERE code = :g RETURNING id"), {"s": h1, "g": G2}).scalar_one()
    conn.execute(text("INSERT INTO callup_reinforcement (callup_id, assignment_id) "
                      "VALUES (:c, :a)"), {"c": ids["callup_open"], "a": reinforcement})
    ids["address"] = conn.execute(text(
        "INSERT INTO address (key, text, norm, geom, grid_code, valid_from) VALUES "
        "('k-1', '一社区2号', '一社区2号', ST_SetSRID(ST_MakePoint(:x, :y), 4490), :g, "
        "now() - interval '1 day') RETURNING id"), {"x": x, "y": y, "g": G2}).scalar_one()
    return ids


def _retire_g2(conn: Connection) -> dict[str, Any]:
    plan = plans.create_plan(conn, name="retire", region_code=C1, principal=PLANNER)
    plan = plans.apply_edit(conn, plan["id"], {"op": "retire", "code": G2, "into": G1},
                            principal=PLANNER, if_match=plan["etag"])
    return plan


def test_retiring_a_grid_moves_its_open_work_to_the_grid_that_took_it(city: Connection
                                                                       ) -> None:
    ids = _work(city)
    plan = _retire_g2(city)
    impact = redraw.plan_impact(city, plan["id"], principal=PLANNER)
    assert impact["work"]["tasks"] == [{"id": ids["task"], "from_grid": G2, "to_grid": G1}]
    assert [c["id"] for c in impact["work"]["callups"]] == [ids["callup_open"]]
    assert impact["work"]["addresses"] == 1
    plan = plan_flow.approve(city, plan, PLANNER)
    result = redraw.activate_plan(city, plan["id"], principal=PLANNER, if_match=plan["etag"],
                                  reroute_open_incidents=True)
    assert result["work"] | {"at": None} == {"cases": 1, "callups": 1, "tasks": 1,
                                             "addresses": 1, "reinforcements": 1, "at": None}
    grids = dict(city.execute(text("SELECT state, grid_code FROM incident WHERE id = ANY(:i)"),
                              {"i": [ids["dispatched"], ids["closed"]]}).all())
    assert grids == {"dispatched": G1, "closed": G2}
    codes = dict(city.execute(text("SELECT title, grid_codes FROM callup")).all())
    assert codes == {"open": [G1], "closed": [G1, G2]}
    assert city.execute(text("SELECT region_code FROM callup_task WHERE id = :i"),
                        {"i": ids["task"]}).scalar_one() == G1
    book = city.execute(text("SELECT grid_code, valid_to IS NULL FROM address WHERE key = 'k-1' "
                             "ORDER BY id")).all()
    assert [tuple(r) for r in book] == [(G2, False), (G1, True)]  # history kept
    carried = city.execute(text(
        "SELECT r.code, a.valid_to > now() + interval '2 hours' FROM callup_reinforcement cr "
        "JOIN assignment a ON a.id = cr.assignment_id JOIN region r ON r.id = a.region_id "
        "WHERE a.valid_from <= now() AND a.valid_to > now() AND cr.callup_id = :c"),
        {"c": ids["callup_open"]}).all()
    assert [tuple(r) for r in carried] == [(G1, True)]
    assert result["plan"]["work_moved"]["cases"] == 1 and result["plan"]["work_moved_at"]


def test_a_scheduled_activation_waits_for_approval_and_moves_the_work_when_it_comes(
        ) -> None:
    from tests.conftest import tiny_city_engine

    engine: Engine = tiny_city_engine("citygrid_test_redraw", catalogue=True)
    try:
        with engine.begin() as conn:
            ids = _work(conn)
            plan = _retire_g2(conn)
            now = conn.execute(text("SELECT now()")).scalar_one()
            plan = plan_flow.submit(conn, plan, PLANNER, effective_at=now + timedelta(seconds=2),
                                    reroute=True)
            assert plan["status"] == "submitted"  # nothing scheduled before the approval
            assert conn.execute(text("SELECT count(*) FROM boundary_version WHERE plan_id = :p"),
                                {"p": plan["id"]}).scalar_one() == 0
            approved = redraw.approve_plan(conn, plan["id"], principal=plan_flow.ADMIN,
                                           if_match=plan["etag"])
            assert approved["plan"]["status"] == "activated"
            assert approved["activation"]["work"]["pending"] is True
        worker = PlanWorker(engine, interval_s=0)
        assert worker.run_once() == []  # not yet due
        with engine.connect() as conn:
            assert conn.execute(text("SELECT grid_code FROM incident WHERE id = :i"),
                                {"i": ids["dispatched"]}).scalar_one() == G2
        time.sleep(2.2)
        done = worker.run_once()
        assert [(d["plan_id"], d["cases"], d["tasks"], d["addresses"]) for d in done] == [
            (plan["id"], 1, 1, 1)]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT grid_code FROM incident WHERE id = :i"),
                                {"i": ids["dispatched"]}).scalar_one() == G1
            assert conn.execute(text("SELECT work_moved_at IS NOT NULL FROM plan WHERE id = :p"),
                                {"p": plan["id"]}).scalar_one()
        assert worker.run_once() == []  # moved once
    finally:
        engine.dispose()

