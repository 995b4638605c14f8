"""Call-ups on the demo city (layers.dispatch.callup): area → grids, workers, heads; the nearest
available staff by their last fix (crafted fixes); sending, answers, and an event's
reinforcements, in force only inside their window (as the locator reads them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, text

from grids.access import Forbidden, Principal, Scope
from grids.errors import Conflict, RegionNotFound
from grids.locate import load_snapshot
from layers.dispatch import callup
from layers.dispatch.callup import CallupError

CITY = Principal.make("user:t_dispatcher", "dispatcher", Scope.of("330782000000"))
STREET1 = Principal.make("user:t_supervisor", "supervisor", Scope.of("330782001000"))
STREET2 = Principal.make("user:t_supervisor2", "supervisor", Scope.of("330782002000"))


@pytest.fixture
def place(conn: Connection) -> dict[str, Any]:
    """t_worker, the grid where they are primary, a point in it and a 5 m disc around it."""
    staff, grid = conn.execute(text(
        "SELECT s.code, r.code FROM app_user u JOIN staff s ON s.id = u.staff_id "
        "JOIN assignment a ON a.staff_id = s.id AND a.duty = 'primary' AND a.valid_to IS NULL "
        "JOIN region r ON r.id = a.region_id WHERE u.username = 't_worker' ORDER BY r.code "
        "LIMIT 1")).one()
    srid = conn.execute(text("SELECT citygrid_metric_srid()")).scalar_one()
    row = conn.execute(text(
        "WITH p AS (SELECT ST_PointOnSurface(geom) AS p FROM region_current WHERE code = :g) "
        "SELECT ST_X(p) AS lon, ST_Y(p) AS lat, ST_AsGeoJSON(ST_Transform(ST_Buffer("
        "ST_Transform(p, CAST(:srid AS integer)), 5, 8), 4490), 9) AS disc FROM p"),
        {"g": grid, "srid": srid}).one()
    worker = Principal.make("user:t_worker", "grid_worker", Scope.of(grid))
    return {"staff": staff, "grid": grid, "lon": row.lon, "lat": row.lat, "srid": srid,
            "area": orjson.loads(row.disc), "worker": worker}


def _duties(conn: Connection, codes: list[str], duties: tuple[str, ...]) -> set[str]:
    return set(conn.execute(text(
        "SELECT s.code FROM assignment a JOIN staff s ON s.id = a.staff_id JOIN region r "
        "ON r.id = a.region_id WHERE r.code = ANY(:c) AND a.duty = ANY(:d) "
        "AND a.valid_from <= now() AND (a.valid_to IS NULL OR a.valid_to > now())"),
        {"c": codes, "d": list(duties)}).scalars())


def _fix(conn: Connection, staff: str, place: dict[str, Any], east_m: float, age_min: float
         ) -> None:
    """A fix ``east_m`` metres east of the disc's centre, ``age_min`` minutes old."""
    conn.execute(text(
        "INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m) SELECT s.id, "
        "now() - make_interval(secs => :age * 60), ST_Transform(ST_Translate(ST_Transform("
        "ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), CAST(:srid AS integer)), :dx, 0), 4490), 5 "
        "FROM staff s WHERE s.code = :s"),
        {"s": staff, "age": age_min, "lon": place["lon"], "lat": place["lat"],
         "srid": place["srid"], "dx": east_m})


def _others(conn: Connection, place: dict[str, Any], n: int, status: str = "available"
            ) -> list[str]:
    """Staff of the same street, not on the place's grid or its chain."""
    return list(conn.execute(text(
        "SELECT s.code FROM staff s WHERE s.status = :st AND EXISTS (SELECT 1 FROM assignment a "
        "JOIN region r ON r.id = a.region_id WHERE a.staff_id = s.id AND a.valid_to IS NULL "
        "AND r.code LIKE :street AND r.code NOT LIKE :community AND a.duty = 'primary') "
        "ORDER BY s.code LIMIT :n"),
        {"st": status, "street": place["grid"][:9] + "%", "community": place["grid"][:12] + "%",
         "n": n}).scalars())


def test_area_names_grids_workers_and_heads(conn: Connection, place) -> None:
    out = callup.who(conn, principal=CITY, area=place["area"], limit=0)
    assert [g["code"] for g in out["grids"]] == [place["grid"]]
    grid = place["grid"]
    assert {p["staff_code"] for p in out["responsible"]} == _duties(conn, [grid],
                                                                    ("primary", "backup"))
    assert place["staff"] in {p["staff_code"] for p in out["responsible"]}
    heads = {p["staff_code"]: p["region_code"] for p in out["heads"]}
    # the grid chief, the community head, the street officer: the chain above the grid
    for level_code in (grid, grid[:12], grid[:9] + "000"):
        want = _duties(conn, [level_code], ("head",)) - {p["staff_code"]
                                                          for p in out["responsible"]}
        assert want <= set(heads), level_code
    assert {grid[:12], grid[:9] + "000"} <= set(heads.values())
    assert out["nearest"] == [] and out["outside_jurisdiction"] == 0
    # a dispatcher sees masked phones
    assert all("*" in (p["phone"] or "*") for p in out["responsible"])


def test_region_code_takes_every_grid_under_it(conn: Connection, place) -> None:
    community = place["grid"][:12]
    out = callup.who(conn, principal=STREET1, region_code=community, limit=0)
    want = conn.execute(text("SELECT code FROM region_current WHERE level = 'grid' AND code "
                             "LIKE :p ORDER BY code"), {"p": community + "%"}).scalars().all()
    assert [g["code"] for g in out["grids"]] == want
    assert out["to_call"] == sum(p["will_call"] for p in out["responsible"] + out["heads"])


def test_nearest_by_last_fix(conn: Connection, place) -> None:
    a, b, c, old = _others(conn, place, 4)
    away = _others(conn, place, 1, status="on_leave")
    _fix(conn, a, place, 105, 3)       # 100 m from the disc's edge, 3 minutes ago
    _fix(conn, b, place, 305, 1)       # 300 m
    _fix(conn, c, place, 55, 20)       # 50 m, but an older fix...
    _fix(conn, c, place, 2005, 2)      # ...and its last one is 2 km away
    _fix(conn, old, place, 10, 90)     # close, but older than the limit
    for s in away:
        _fix(conn, s, place, 15, 1)    # on leave: never called
    out = callup.who(conn, principal=CITY, area=place["area"], limit=3, max_fix_age_min=60)
    got = [(p["staff_code"], p["distance_m"]) for p in out["nearest"]]
    assert [s for s, _ in got] == [a, b, c]
    for (_, d), want in zip(got, (100, 300, 2000), strict=True):
        assert d == pytest.approx(want, abs=1.0)  # metres in the city's metric CRS
    ages = [p["fix_age_s"] for p in out["nearest"]]
    assert ages[0] == pytest.approx(180, abs=30) and ages[1] == pytest.approx(60, abs=30)
    # limit
    assert len(callup.who(conn, principal=CITY, area=place["area"], limit=1,
                          max_fix_age_min=60)["nearest"]) == 1
    # a supervisor of another street does not take this street's staff as nearest
    far = callup.who(conn, principal=STREET2, region_code="330782002", limit=5,
                     max_fix_age_min=60)
    assert not {a, b, c} & {p["staff_code"] for p in far["nearest"]}


def test_jurisdiction_and_errors(conn: Connection, place) -> None:
    with pytest.raises(CallupError) as e:
        callup.who(conn, principal=STREET2, area=place["area"])
    assert e.value.code == "no_grids_in_area"
    assert e.value.detail["outside_jurisdiction"] == 1
    with pytest.raises(RegionNotFound):
        callup.who(conn, principal=STREET2, region_code=place["grid"])
    with pytest.raises(Forbidden):
        callup.who(conn, principal=place["worker"], region_code=place["grid"])
    with pytest.raises(CallupError) as e:
        callup.who(conn, principal=CITY)
    assert e.value.code == "area_required"
    with pytest.raises(CallupError) as e:
        callup.who(conn, principal=CITY, area={"type": "Polygon", "coordinates": [[[0, 0]]]})
    assert e.value.code == "invalid_area"
    with pytest.raises(CallupError) as e:
        callup.who(conn, principal=CITY, region_code="330782")
    assert e.value.code == "area_too_large"


def test_send_answer_and_audit(conn: Connection, place) -> None:
    sent = callup.send(conn, principal=CITY, kind="emergency", title="积水抢险",
                       area=place["area"], limit=0)
    plan = callup.who(conn, principal=CITY, area=place["area"], limit=0)
    assert len(sent["tasks"]) == plan["to_call"] and sent["answers"]["sent"] == plan["to_call"]
    assert sent["region_code"] == place["grid"][:9] + "000"
    mine = callup.mine(conn, principal=place["worker"])
    assert [i["callup_id"] for i in mine["items"]] == [sent["id"]]
    with pytest.raises(CallupError) as e:
        callup.answer(conn, sent["id"], principal=place["worker"], answer="decline")
    assert e.value.code == "note_required"
    other = next(t["staff_code"] for t in sent["tasks"] if t["staff_code"] != place["staff"])
    with pytest.raises(Forbidden):
        callup.answer(conn, sent["id"], principal=place["worker"], answer="acknowledge",
                      staff_code=other)
    got = callup.answer(conn, sent["id"], principal=place["worker"], answer="acknowledge")
    mine_task = next(t for t in got["tasks"] if t["staff_code"] == place["staff"])
    assert mine_task["state"] == "acknowledged" and mine_task["answered_by"] == "user:t_worker"
    got = callup.answer(conn, sent["id"], principal=place["worker"], answer="arrive")
    assert next(t for t in got["tasks"] if t["staff_code"] == place["staff"])["arrived_at"]
    # the desk records a phoned answer for someone else
    got = callup.answer(conn, sent["id"], principal=CITY, answer="decline", note="在医院",
                        staff_code=other)
    assert got["answers"]["declined"] == 1 and got["answers"]["arrived"] == 1
    # another street's supervisor cannot see it
    with pytest.raises(RegionNotFound):
        callup.get(conn, sent["id"], principal=STREET2)
    audited = conn.execute(text(
        "SELECT entity, action, count(*) FROM audit_log WHERE entity IN ('callup', "
        "'callup_task') AND at >= now() GROUP BY 1, 2 ORDER BY 1, 2")).all()
    assert ("callup", "insert", 1) in audited
    assert ("callup_task", "insert", len(sent["tasks"])) in audited
    assert ("callup_task", "update", 3) in audited
    closed = callup.close(conn, sent["id"], principal=CITY)
    assert closed["closed_at"] is not None
    assert callup.mine(conn, principal=place["worker"])["items"] == []
    with pytest.raises(Conflict):
        callup.answer(conn, sent["id"], principal=place["worker"], answer="acknowledge")


def _staff_on(conn: Connection, grid: str, at: datetime) -> set[str]:
    snap = load_snapshot(conn, at=at)
    region = next(r for r in snap.regions if r.code == grid)
    return {s["code"] for s in region.staff}


def test_event_reinforcement_only_inside_its_window(conn: Connection, place) -> None:
    (helper,) = _others(conn, place, 1)
    _fix(conn, helper, place, 205, 2)
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=1), now + timedelta(hours=3)
    with pytest.raises(Forbidden):  # a dispatcher may not add assignments
        callup.send(conn, principal=CITY, kind="event", title="灯光节", area=place["area"],
                    limit=1, max_fix_age_min=60, window_from=start, window_to=end)
    with pytest.raises(CallupError) as e:
        callup.send(conn, principal=STREET1, kind="event", title="灯光节", area=place["area"])
    assert e.value.code == "invalid_window"
    sent = callup.send(conn, principal=STREET1, kind="event", title="灯光节", area=place["area"],
                       limit=1, max_fix_age_min=60, window_from=start, window_to=end)
    task = next(t for t in sent["tasks"] if t["staff_code"] == helper)
    assert task["reason"] == "nearest"
    assert [r["grid_code"] for r in task["reinforcements"]] == [place["grid"]]
    grid = place["grid"]
    assert helper not in _staff_on(conn, grid, now + timedelta(minutes=30))
    assert helper in _staff_on(conn, grid, now + timedelta(hours=2))
    assert helper not in _staff_on(conn, grid, end + timedelta(minutes=1))
    duty = conn.execute(text(
        "SELECT a.duty, a.valid_to FROM callup_reinforcement cr JOIN assignment a "
        "ON a.id = cr.assignment_id WHERE cr.callup_id = :c"), {"c": sent["id"]}).one()
    assert duty.duty == "backup" and duty.valid_to == end
    # a decline ends what is still to run
    callup.answer(conn, sent["id"], principal=STREET1, answer="decline", note="请假",
                  staff_code=helper)
    assert helper not in _staff_on(conn, grid, now + timedelta(hours=2))
