"""The monthly assessment tallies of migration 0028 against the raw statement: on the demo's
incidents, every level (street, community, grid, worker, department) and the total, the whole
city, a street's jurisdiction and a street region, then after the state changes a case goes
through (dispatch, close, rework, void, extension, reroute, merge, delete) and with an ``as_of``
in the past; and the trend's twelve months from the tallies equal to the raw ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text

from app.seed_incidents import load_demo_incidents
from grids.access import Principal, Scope, prefix_of
from grids.city import profile
from grids.sql import in_scope
from layers import assessment
from layers.analysis import month, trends
from layers.dispatch.merge import merge
from layers.dispatch.roles import DeskUser
from layers.incidents.handling import act
from layers.maps.tally import street_wide

LEVELS = ["grid", "community", "street", "worker", "department"]
SYSTEM = Principal.system()


def _months(conn: Connection) -> list[str]:
    """Every month with a case received, closed or due (the city's zone)."""
    tz = profile(conn).tz.key
    return list(conn.execute(text(
        "SELECT DISTINCT to_char(t AT TIME ZONE :tz, 'YYYY-MM') FROM incident, "
        "unnest(ARRAY[received_at, closed_at, due_at]) t WHERE t IS NOT NULL ORDER BY 1"),
        {"tz": tz}).scalars())


def _figures(conn: Connection, months: list[str], *, tally: bool, scope: Scope | None = None,
             region: str | None = None, as_of: datetime | None = None) -> list[dict[str, Any]]:
    tz = profile(conn).tz
    scope = scope or Scope.everything()
    cond, params = in_scope(scope, "i.region_code")
    where = [cond]
    params["as_of"] = as_of or datetime.now(tz)
    if region:
        where.append("i.region_code LIKE :region")
        params["region"] = prefix_of(region) + "%"
    return assessment.figures(conn, where=" AND ".join(where), params=params,
                              windows=[assessment.month_window(m, tz) for m in months],
                              levels=LEVELS, region=region, scope=scope, total=True, p90=[],
                              tally=tally)


def assert_tally_equals_raw(conn: Connection, *, scope: Scope | None = None,
                            region: str | None = None, as_of: datetime | None = None) -> int:
    """Tally and raw figures equal for every month with data, level and unit; returns how many
    cases the months received (so a caller can see the comparison was not empty)."""
    assert street_wide(scope or Scope.everything(), region)  # else both sides would be raw
    months = _months(conn)
    got = _figures(conn, months, tally=True, scope=scope, region=region, as_of=as_of)
    want = _figures(conn, months, tally=False, scope=scope, region=region, as_of=as_of)
    for m, g, w in zip(months, got, want, strict=True):
        assert g["total"] == w["total"], m
        for lv in LEVELS:
            assert g["levels"][lv] == w["levels"][lv], (m, lv)
    return sum(w["total"]["received"] for w in want)


@pytest.fixture
def demo(conn: Connection) -> Connection:
    """The demo year of incidents (a sample), loaded by COPY through the insert triggers."""
    if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one():
        load_demo_incidents(conn, n=3000)
    return conn


def test_tally_equals_raw_on_the_demo(demo: Connection) -> None:
    conn = demo
    n = assert_tally_equals_raw(conn)
    assert n == conn.execute(text("SELECT count(*) FROM incident")).scalar_one() > 1000
    # the tally holds what it should: every case once in the month it was received
    assert conn.execute(text(
        "SELECT sum(received) FROM assessment_tally WHERE level = 'g'")).scalar_one() == n
    street = conn.execute(text(
        "SELECT left(region_code, 9) FROM incident WHERE region_code IS NOT NULL "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar_one()
    assert assert_tally_equals_raw(conn, scope=Scope.of(street + "000")) > 0
    assert assert_tally_equals_raw(conn, region=street + "000") > 0
    # the demo city's worst case for the mean: cases closed in a later month than received
    assert conn.execute(text(
        "SELECT count(*) FROM incident WHERE date_trunc('month', closed_at) "
        "<> date_trunc('month', received_at)")).scalar_one() > 0


def test_tally_follows_state_changes(demo: Connection) -> None:
    conn = demo

    def ids(state: str, n: int, offset: int = 0) -> list[int]:
        return list(conn.execute(text(
            "SELECT id FROM incident WHERE state = :s ORDER BY id OFFSET :o LIMIT :n"),
            {"s": state, "n": n, "o": offset}).scalars())

    h = ids("handling", 12)
    assert len(h) == 12
    for i in h[0:2]:  # report, rework (back to dispatched, rework_count + 1), accept again
        for step in ("report", "rework", "accept"):
            act(conn, i, step, principal=SYSTEM)
    for i in h[2:4]:  # closed now, in this month
        for step in ("report", "verify", "close"):
            act(conn, i, step, principal=SYSTEM)
    for i in h[4:6]:  # returned twice, then voided: no longer registered nor due
        for step in ("return", "return", "void"):
            act(conn, i, step, principal=SYSTEM)
    for i in h[6:8]:
        act(conn, i, "extend", principal=SYSTEM, hours=24 * 20)  # due_at moves on
    for i in ids("received", 1):
        act(conn, i, "register", principal=SYSTEM)
        act(conn, i, "dispatch", principal=SYSTEM)
    assert assert_tally_equals_raw(conn) > 0
    # reroute: the case placed again (grid, region, community, street, worker), and another
    # department
    other = conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' ORDER BY code DESC LIMIT 1")
    ).scalar_one()
    conn.execute(text(
        "UPDATE incident SET grid_code = :g, region_code = :g, community_code = left(:g, 12), "
        "street_code = left(:g, 9) || '000', responsible_code = 'W-REROUTED', "
        "department_id = (SELECT min(id) FROM department), version = version + 1 "
        "WHERE id = ANY(:ids)"), {"g": other, "ids": ids("closed", 5) + h[8:10]})
    # merge two open cases into a third (the duplicates become 'merged': no longer due)
    lead, *dups = h[9:12]
    merge(conn, lead, dups, user=DeskUser(SYSTEM, None))
    assert conn.execute(text("SELECT count(*) FROM incident WHERE state = 'merged'")
                        ).scalar_one() == 2
    conn.execute(text("DELETE FROM incident_event WHERE incident_id = ANY(:i)"),
                 {"i": ids("evaluated", 3)})
    conn.execute(text("DELETE FROM incident_merge WHERE lead_id = ANY(:i) "
                      "OR duplicate_id = ANY(:i)"), {"i": ids("evaluated", 3)})
    conn.execute(text("DELETE FROM incident WHERE id = ANY(:i)"), {"i": ids("evaluated", 3)})
    assert assert_tally_equals_raw(conn) > 0
    # a bulk update of every row (as a redraw's or a migration's would be)
    conn.execute(text("UPDATE incident SET rework_count = rework_count + 1 "
                      "WHERE id % 7 = 0"))
    assert assert_tally_equals_raw(conn) > 0


def test_as_of_in_the_past(demo: Connection) -> None:
    """"Due and closed by as_of": the tally takes off the due cases closed after as_of."""
    conn = demo
    tz = profile(conn).tz
    last = conn.execute(text("SELECT max(closed_at) FROM incident")).scalar_one()
    as_of = last - timedelta(days=20)
    months = _months(conn)
    later = _figures(conn, months, tally=False, as_of=as_of)
    now = _figures(conn, months, tally=False, as_of=datetime.now(tz))
    # the past as_of does change the raw answer (so the correction is exercised) ...
    assert [w["total"]["due_closed"] for w in later] != [w["total"]["due_closed"] for w in now]
    # ... and the tallied one the same way
    assert_tally_equals_raw(conn, as_of=as_of)


def test_rebuild_gives_the_trigger_rows(demo: Connection) -> None:
    conn = demo
    one = conn.execute(text("SELECT id FROM incident WHERE state = 'verified' LIMIT 1")
                       ).scalar_one()
    act(conn, one, "close", principal=SYSTEM)
    q = ("SELECT t0, level, rkey, unit, received, registered, closed, closed_on_time, "
         "reworked, due, due_closed, due_closed_on_time, handling_s FROM assessment_tally "
         "WHERE received <> 0 OR closed <> 0 OR due <> 0 OR registered <> 0 ORDER BY 1, 2, 3, 4")
    kept = conn.execute(text(q)).all()
    conn.execute(text("SELECT citygrid_assessment_tally_rebuild()"))
    assert conn.execute(text(q)).all() == kept and len(kept) > 100


@pytest.mark.parametrize("region", [None, "street"])
def test_trend_from_the_tallies_equals_raw(demo: Connection, region: str | None) -> None:
    conn = demo
    if region:
        region = conn.execute(text(
            "SELECT left(region_code, 9) || '000' FROM incident WHERE region_code IS NOT NULL "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar_one()
    m = _months(conn)[-1]
    got = trends.series(conn, principal=SYSTEM, month=m, region=region)
    want = trends.series(conn, principal=SYSTEM, month=m, region=region, tally=False)
    assert got == want
    assert sum(r["received"] for r in want["rows"]) > 100
    assert want["months"][0] == month.shift_month(m, -11)


@pytest.mark.parametrize("boundaries", ["then", "today"])
def test_the_views_p90_when_asked(demo: Connection, boundaries: str) -> None:
    """/analysis/month's p90 handling time: asked, the month's for every unit with a closed
    case and for the total, equal to /assessment's; not asked, null everywhere by either
    boundaries (it was null by the month's boundaries only, set by today's)."""
    conn = demo
    m = conn.execute(text(
        "SELECT to_char(max(closed_at) AT TIME ZONE :tz, 'YYYY-MM') FROM incident"),
        {"tz": profile(conn).tz.key}).scalar_one()
    for level in LEVELS:
        view = month.compare(conn, principal=SYSTEM, month=m, level=level,
                             boundaries=boundaries, p90=True)
        plain = {r["code"]: r for r in assessment.monthly(conn, principal=SYSTEM, month=m,
                                                          level=level)["rows"]}
        assert view["p90"] and [r for r in view["rows"] if r["closed"]], level
        for r in view["rows"]:
            assert (r["p90_handling_h"] is None) == (not r["closed"]), (level, r["code"])
            assert r["p90_handling_h"] == plain[r["code"]]["p90_handling_h"], (level, r["code"])
        tot = view["total"]["current"]
        assert tot["p90_handling_h"] is not None
        assert tot["p90_handling_h"] == month.total(conn, principal=SYSTEM,
                                                    month=m)["p90_handling_h"]
        bare = month.compare(conn, principal=SYSTEM, month=m, level=level,
                             boundaries=boundaries)
        assert not bare["p90"] and any("p90=true" in n for n in bare["notes"])
        assert all(r["p90_handling_h"] is None for r in bare["rows"])
        assert bare["total"]["current"]["p90_handling_h"] is None
        # everything else as asked with p90
        strip = [{**r, "p90_handling_h": None} for r in view["rows"]]
        assert bare["rows"] == strip


def test_the_month_api_asks_for_p90(client, conn: Connection) -> None:
    from tests.layers.test_assessment import insert_month

    insert_month(conn)
    got = client.get("/analysis/month", params={"month": "2026-10", "level": "grid",
                                                "region": "330782001000", "p90": "true"})
    assert got.status_code == 200, got.text
    rows = [r for r in got.json()["rows"] if r["closed"]]
    assert rows and all(r["p90_handling_h"] is not None for r in rows)
    bare = client.get("/analysis/month", params={"month": "2026-10", "level": "grid",
                                                 "region": "330782001000"}).json()
    assert all(r["p90_handling_h"] is None for r in bare["rows"]) and bare["p90"] is False
