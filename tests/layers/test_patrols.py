"""Patrols: intake, the track filter, coverage against an exact shapely computation, alerts, API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import shapely
from sqlalchemy import Connection, text

from gis.transform import transformer
from grids.access import ROLE_PERMISSIONS, Forbidden, Permission, Principal, Scope
from grids.staffing import StaffNotFound
from layers.patrols import alerts, coverage, daily, intake
from layers.patrols.fixes import read_fixes
from layers.patrols.tracks import ACCURACY, JITTER, KEPT, SPEED, filter_fixes, shifts_of
from tests import tiny_city as tc

LOCAL = timezone(timedelta(hours=8))
DAY = datetime(2025, 6, 2, 8, 30, tzinfo=LOCAL)
SYSTEM = Principal.system("test")
TO_M = transformer("EPSG:4490", "EPSG:4549")


def fix(staff: str, minutes: float, x: float, y: float, **extra) -> dict:
    """A fix at drawing units (x, y) of the tiny city, ``minutes`` after 08:30 local."""
    lon, lat = tc.at(x, y)
    return {"staff_code": staff, "time": (DAY + timedelta(minutes=minutes)).isoformat(),
            "lon": lon, "lat": lat, "accuracy_m": 10.0, **extra}


@pytest.fixture
def tiny(empty_conn: Connection) -> Connection:
    tc.write_tiny_city(empty_conn)
    return empty_conn


def window() -> dict:
    return {"since": DAY - timedelta(hours=1), "until": DAY + timedelta(hours=10)}


# -- the filter ------------------------------------------------------------------------------------
def test_filter_jitter_speed_accuracy() -> None:
    t = np.arange(7) * 30.0
    x = np.array([0.0, 3, 40, 3000, 80, 120, 160])
    acc = np.array([10, 10, 10, 10, 500, 10, np.nan])
    status, shift = filter_fixes(t, x, np.zeros(7), acc)
    assert status.tolist() == [KEPT, JITTER, KEPT, SPEED, ACCURACY, KEPT, KEPT]
    assert shift.tolist() == [0] * 7


def test_filter_outlier_at_shift_start_does_not_lock_the_track() -> None:
    t = np.arange(6) * 30.0
    x = np.array([5000.0, 0, 30, 60, 90, 120])
    status, _ = filter_fixes(t, x, np.zeros(6))
    assert status.tolist() == [SPEED, KEPT, KEPT, KEPT, KEPT, KEPT]


def test_shift_split_at_gaps_over_30_minutes() -> None:
    assert shifts_of(np.array([0.0, 1800, 3601, 3631])).tolist() == [0, 0, 1, 1]


# -- intake --------------------------------------------------------------------------------------
def test_duplicates_dropped_and_late_fixes_ordered(tiny: Connection) -> None:
    batch = [fix("W1", m, 0.2 + m / 100, 0.5) for m in (3, 1, 2, 0)]
    out = intake.ingest(tiny, batch + [batch[0]], principal=SYSTEM)
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (4, 1, 0)
    again = intake.ingest(tiny, batch[:2] + [fix("W1", 4, 0.3, 0.5)], principal=SYSTEM)
    assert (again["accepted"], again["duplicates"]) == (1, 2)
    fx = read_fixes(tiny, **window())
    assert np.all(np.diff(fx.t) > 0) and len(fx) == 5


def test_bad_rows_are_reported_the_rest_stored(tiny: Connection) -> None:
    lon, lat = tc.at(0.5, 0.5)
    rows = [fix("W1", 0, 0.5, 0.5),
            {**fix("W1", 1, 0.5, 0.5), "time": "2025-06-02T08:31:00"},
            {**fix("W1", 2, 0.5, 0.5), "time": "yesterday"},
            {**fix("W1", 3, 0.5, 0.5), "lon": lat, "lat": lon},
            {**fix("W1", 4, 0.5, 0.5), "lon": None},
            {**fix("W1", 5, 0.5, 0.5), "lon": 10.0},
            {**fix("W1", 6, 0.5, 0.5), "crs": "EPSG:999999"},
            {**fix("W1", 7, 0.5, 0.5), "accuracy_m": -1},
            {**fix("W1", 8, 0.5, 0.5), "time": (datetime.now(UTC) + timedelta(days=1)).isoformat()}]
    out = intake.ingest(tiny, rows, principal=SYSTEM)
    assert out["accepted"] == 1 and out["rejected"] == 8
    assert [(e["row"], e["reason"]) for e in out["errors"]] == [
        (1, "time_without_offset"), (2, "bad_time"), (3, "swapped_coordinate"),
        (4, "bad_coordinate"), (5, "far_from_city"), (6, "unknown_crs"), (7, "bad_accuracy"),
        (8, "future_time")]


def test_gcj02_fixes_are_stored_in_cgcs2000(tiny: Connection) -> None:
    from gis.crs import from_lonlat

    lon, lat = tc.at(0.5, 0.5)
    gx, gy = from_lonlat(lon, lat, "gcj02")
    out = intake.ingest(tiny, [{"staff_code": "W1", "time": DAY.isoformat(), "lon": float(gx),
                                "lat": float(gy)}], crs="gcj02", principal=SYSTEM)
    assert out["accepted"] == 1
    x, y = tiny.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM patrol_fix")).one()
    assert abs(x - lon) < 1e-6 and abs(y - lat) < 1e-6


def test_jurisdiction_of_writes(tiny: Connection) -> None:
    other_street = Principal.make("user:x", "admin", Scope.of("990100002000"))
    with pytest.raises(StaffNotFound):
        intake.ingest(tiny, [fix("W1", 0, 0.5, 0.5)], principal=other_street)
    viewer = Principal.make("user:v", "viewer", Scope.of(tc.STREET))
    with pytest.raises(Forbidden):
        intake.ingest(tiny, [fix("W1", 0, 0.5, 0.5)], principal=viewer)


# -- coverage ------------------------------------------------------------------------------------
TRACK = [(0.1, 0.1), (0.1, 0.9), (0.5, 0.9), (0.5, 0.1), (0.9, 0.1), (0.9, 0.5), (1.3, 0.5)]


def _to_m(geom):
    """A geometry in the city's metric CRS."""
    return shapely.transform(geom, lambda c: np.column_stack(TO_M.transform(c[:, 0], c[:, 1])))


def _walk(staff: str, points, *, step_min: float = 2.0, start: float = 0) -> list[dict]:
    """Fixes every 20 m or so along a polyline of drawing points (one per ``step_min`` minute...)."""
    line = shapely.LineString([tc.at(*p) for p in points])
    line_m = _to_m(line)
    n = int(line_m.length // 60) + 1
    to_ll = transformer("EPSG:4549", "EPSG:4490")
    out = []
    for i in range(n + 1):
        p = line_m.interpolate(min(i * 60.0, line_m.length))
        lon, lat = to_ll.transform(p.x, p.y)
        out.append({"staff_code": staff, "lon": lon, "lat": lat, "accuracy_m": 8.0,
                    "time": (DAY + timedelta(minutes=start + i * step_min / 2)).isoformat()})
    return out


def test_coverage_matches_exact_shapely(tiny: Connection) -> None:
    fixes = _walk("W1", TRACK)
    noisy = [*fixes, {**fixes[5], "time": (DAY + timedelta(minutes=2.5, seconds=1)).isoformat(),
                      "lon": fixes[5]["lon"] + 0.05}]  # a gross outlier: 5 km away
    intake.ingest(tiny, noisy, principal=SYSTEM)
    got = coverage.coverage(tiny, region=tc.STREET, buffer_m=50, principal=SYSTEM, **window())
    # Exact: the same track (outlier removed), buffered in EPSG:4549, intersected with each grid.
    line = shapely.LineString([TO_M.transform(f["lon"], f["lat"]) for f in fixes])
    cover = line.buffer(50)
    by_code = {g["code"]: g for g in got["grids"]}
    for code, shape in ((tc.G1, tc.cell(0, 0, 1, 1)), (tc.G2, tc.cell(1, 0, 2, 1)),
                        (tc.G3, tc.cell(2, 0, 3, 0.5))):
        grid_m = _to_m(shape)
        share = cover.intersection(grid_m).area / grid_m.area
        assert by_code[code]["share"] == pytest.approx(share, rel=1e-3, abs=1e-6)
    assert by_code[tc.G1]["share"] > 0.2 and by_code[tc.G3]["share"] == 0
    assert by_code[tc.G3]["last_patrolled_at"] is None
    assert by_code[tc.G2]["last_patrolled_at"] is not None
    totals = {t["code"]: t for t in got["totals"]}
    c1 = by_code[tc.G1]["patrolled_m2"] + by_code[tc.G2]["patrolled_m2"]
    assert totals[tc.C1]["patrolled_m2"] == pytest.approx(c1, abs=0.2)
    assert totals[tc.CITY]["share"] == pytest.approx(
        c1 / sum(g["area_m2"] for g in got["grids"]), rel=1e-4)
    hole = coverage.unpatrolled(tiny, tc.G1, buffer_m=50, principal=SYSTEM, **window())
    assert hole["properties"]["unpatrolled_m2"] == pytest.approx(
        by_code[tc.G1]["area_m2"] - by_code[tc.G1]["patrolled_m2"], rel=1e-3)
    assert all(f["geometry"]["type"] == "Polygon" for f in hole["features"])


def test_coverage_of_overlapping_workers_and_shifts_matches_exact_union(tiny: Connection) -> None:
    a = _walk("W1", TRACK[:4])
    b = _walk("W1", [(0.2, 0.2), (0.8, 0.8), (1.6, 0.3)], start=300)  # a second shift
    c = _walk("W2", [(0.05, 0.5), (1.9, 0.5), (1.9, 0.95)], start=10)  # crosses both
    intake.ingest(tiny, a + b + c, principal=SYSTEM)
    got = {g["code"]: g for g in coverage.coverage(tiny, region=tc.STREET, buffer_m=40,
                                                   principal=SYSTEM, **window())["grids"]}
    cover = shapely.union_all([
        shapely.LineString([TO_M.transform(f["lon"], f["lat"]) for f in w]).buffer(40)
        for w in (a, b, c)])
    for code, shape in ((tc.G1, tc.cell(0, 0, 1, 1)), (tc.G2, tc.cell(1, 0, 2, 1))):
        grid_m = _to_m(shape)
        share = cover.intersection(grid_m).area / grid_m.area
        assert 0 < share < 1
        assert got[code]["share"] == pytest.approx(share, rel=1e-3)


def test_coverage_outside_jurisdiction_is_not_found(tiny: Connection) -> None:
    elsewhere = Principal.make("user:x", "supervisor", Scope.of("990100002000"))
    with pytest.raises(StaffNotFound.__mro__[1]):  # RegionNotFound
        coverage.coverage(tiny, region=tc.STREET, principal=elsewhere, **window())


def test_day_tracks_split_into_shifts(tiny: Connection) -> None:
    morning = _walk("W1", TRACK[:3])
    afternoon = _walk("W1", TRACK[3:], start=300)
    intake.ingest(tiny, morning + afternoon, principal=SYSTEM)
    out = daily.day_tracks(tiny, "W1", DAY.date(), principal=SYSTEM)
    assert [f["geometry"]["type"] for f in out["features"]] == ["LineString", "LineString"]
    assert out["features"][0]["properties"]["fixes"] == len(morning)


# -- alerts --------------------------------------------------------------------------------------
def test_alert_for_a_long_stay_outside_own_grids(tiny: Connection) -> None:
    inside = [fix("W1", m, 0.5, 0.5 + m / 1000) for m in range(0, 10)]
    away = [fix("W1", 10 + m, 1.5, 0.5 + m / 1000) for m in range(0, 26)]  # in G2, 25 min
    back = [fix("W1", 36 + m, 0.5, 0.5 + m / 1000) for m in range(0, 5)]
    intake.ingest(tiny, inside + away + back, principal=SYSTEM)
    got = alerts.alerts(tiny, minutes=20, principal=SYSTEM, **window())["alerts"]
    assert [(a["staff"], a["minutes"], a["fixes"]) for a in got] == [("W1", 25.0, 26)]
    assert got[0]["max_distance_m"] > 400
    assert alerts.alerts(tiny, minutes=30, principal=SYSTEM, **window())["alerts"] == []


# -- the API on the demo city ----------------------------------------------------------------------
@pytest.fixture
def patrol_client(api, client):
    from app.routers import patrols

    app, _ = api
    if not any(getattr(r, "path", "").startswith("/patrols") for r in app.routes):
        app.include_router(patrols.router)
    return client


def _worker_staff(conn: Connection, api) -> tuple[str, str, tuple[float, float]]:
    entry = api[0].state.directory.by_name["t_worker"]
    staff = conn.execute(text(
        "SELECT s.code FROM app_user u JOIN staff s ON s.id = u.staff_id WHERE u.username = "
        "'t_worker'")).scalar_one()
    x, y = conn.execute(text("SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
                             "FROM region_current WHERE code = :g"),
                        {"g": entry.grid_codes[0]}).one()
    return staff, entry.grid_codes[0], (x, y)


def test_api_worker_posts_own_fixes_only(patrol_client, headers, conn, api) -> None:
    staff, grid, (x, y) = _worker_staff(conn, api)
    t = "2025-06-02T09:00:00+08:00"
    own = {"fixes": [{"staff_code": staff, "time": t, "lon": x, "lat": y, "accuracy_m": 5}]}
    r = patrol_client.post("/patrols/fixes", json=own, headers=headers("t_worker"))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    r = patrol_client.post("/patrols/fixes", json=own, headers=headers("t_worker"))
    assert r.json()["duplicates"] == 1
    colleague = conn.execute(text(
        "SELECT s.code FROM assignment a JOIN staff s ON s.id = a.staff_id JOIN region r "
        "ON r.id = a.region_id WHERE r.code LIKE '330782001%' AND s.code <> :s "
        "AND r.code <> :g AND a.duty = 'primary' LIMIT 1"), {"s": staff, "g": grid}).scalar_one()
    other = {"fixes": [{**own["fixes"][0], "staff_code": colleague}]}
    assert patrol_client.post("/patrols/fixes", json=other,
                              headers=headers("t_worker")).status_code == 404
    same_grid = conn.execute(text(
        "SELECT s.code FROM assignment a JOIN staff s ON s.id = a.staff_id JOIN region r "
        "ON r.id = a.region_id WHERE r.code = :g AND s.code <> :s LIMIT 1"),
        {"g": grid, "s": staff}).scalar()
    if same_grid:  # a colleague of the same grid is in scope, but not theirs to post
        r = patrol_client.post("/patrols/fixes", headers=headers("t_worker"),
                               json={"fixes": [{**own["fixes"][0], "staff_code": same_grid}]})
        assert r.status_code == 403
    # Supervisors post for workers in their street once the role has patrols:write.
    can = Permission.PATROLS_WRITE in ROLE_PERMISSIONS["supervisor"]
    assert patrol_client.post("/patrols/fixes", json=other,
                              headers=headers("t_supervisor")).status_code == (200 if can else 403)
    assert patrol_client.post("/patrols/fixes", json=other,
                              headers=headers("t_supervisor2")).status_code == (404 if can else 403)
    assert patrol_client.post("/patrols/fixes", json=own,
                              headers=headers("t_viewer")).status_code == 403


def test_api_reads_are_scoped(patrol_client, headers, conn, api) -> None:
    staff, grid, (x, y) = _worker_staff(conn, api)
    fixes = [{"staff_code": staff, "time": f"2025-06-02T09:{m:02d}:00+08:00",
              "lon": x + m * 1e-4, "lat": y, "accuracy_m": 5} for m in range(10)]
    assert patrol_client.post("/patrols/fixes", json={"fixes": fixes}).status_code == 200
    r = patrol_client.get("/patrols/tracks", params={"staff": staff, "date": "2025-06-02"},
                          headers=headers("t_supervisor"))
    assert r.status_code == 200 and r.json()["features"][0]["geometry"]["type"] == "LineString"
    assert patrol_client.get("/patrols/tracks", params={"staff": staff, "date": "2025-06-02"},
                             headers=headers("t_supervisor2")).status_code == 404
    win = {"since": "2025-06-02T00:00:00+08:00", "until": "2025-06-03T00:00:00+08:00"}
    r = patrol_client.get("/patrols/coverage", params={**win, "region": grid[:12]},
                          headers=headers("t_supervisor"))
    assert r.status_code == 200, r.text
    mine = next(g for g in r.json()["grids"] if g["code"] == grid)
    assert mine["share"] > 0 and mine["last_patrolled_at"] is not None
    assert patrol_client.get("/patrols/coverage", params={**win, "region": grid[:12]},
                             headers=headers("t_supervisor2")).status_code == 404
    r = patrol_client.get(f"/patrols/coverage/{grid}/unpatrolled", params=win,
                          headers=headers("t_worker"))
    assert r.status_code == 200 and r.json()["features"]
    assert patrol_client.get(f"/patrols/coverage/{grid}/unpatrolled", params=win,
                             headers=headers("t_supervisor2")).status_code == 404
    r = patrol_client.get("/patrols/alerts", params={**win, "minutes": 5},
                          headers=headers("t_supervisor"))
    assert r.status_code == 200 and r.json()["alerts"] == []
    assert patrol_client.get("/patrols/alerts", params=win).status_code == 200
