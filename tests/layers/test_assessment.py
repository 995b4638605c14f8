"""Monthly assessment on a hand-made set of incidents with exact expected figures."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Connection, text

from grids.access import Principal
from layers import assessment
from tests.layers.test_maps import grid_in

# (tag, state, received, closed, on time, due, reworks). Times in the city's zone (+08:00).
CASES = [
    ("a1", "closed", "2026-10-05 08:00", "2026-10-06 08:00", True, "2026-10-08 08:00", 0),
    ("a2", "closed", "2026-10-10 08:00", "2026-10-20 08:00", False, "2026-10-15 08:00", 1),
    ("a3", "handling", "2026-10-12 08:00", None, None, "2026-10-25 08:00", 0),
    ("a4", "voided", "2026-10-14 08:00", None, None, "2026-10-20 08:00", 0),
    ("a5", "received", "2026-10-28 08:00", None, None, "2026-11-03 08:00", 0),
    # Received in September, due and closed in October.
    ("a6", "evaluated", "2026-09-25 08:00", "2026-10-02 08:00", True, "2026-10-01 08:00", 0),
]
# A second grid of the same street: the month's edges in local time.
EDGES = [("b1", "received", "2026-10-31 23:30", None, None, None, 0),
         ("b2", "received", "2026-11-01 00:10", None, None, None, 0)]


def _insert(conn: Connection, grid: str, cases, worker: str) -> None:
    for tag, state, rec, closed, on_time, due, reworks in cases:
        conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, department_id, state, "
            "region_code, grid_code, community_code, street_code, responsible_code, received_at,"
            " closed_at, closed_on_time, due_at, rework_count, geom) "
            "SELECT 'supervisor', 'assess-' || :tag, c.id, c.department_id, :state, :g, :g, "
            "left(:g, 12), left(:g, 9) || '000', :worker, "
            "CAST(:rec || '+08' AS timestamptz), CAST(:closed || '+08' AS timestamptz), :ot, "
            "CAST(:due || '+08' AS timestamptz), :rw, ST_PointOnSurface(r.geom) "
            "FROM category c, region_current r WHERE c.code = 'E0101' AND r.code = :g"),
            {"tag": tag, "state": state, "g": grid, "worker": worker, "rec": rec,
             "closed": closed, "ot": on_time, "due": due, "rw": reworks})


def insert_month(conn: Connection) -> tuple[str, str, str]:
    """The fixture's cases: CASES in a grid of street 001, EDGES in another, one closed case in
    street 002. Returns the three grids."""
    a, b = grid_in(conn, "330782001", 0), grid_in(conn, "330782001", 1)
    other = grid_in(conn, "330782002")
    _insert(conn, a, CASES, "W-A")
    _insert(conn, b, EDGES, "W-B")
    _insert(conn, other, [("c1", "closed", "2026-10-05 08:00", "2026-10-06 08:00", True,
                           "2026-10-08 08:00", 0)], "W-C")
    return a, b, other


@pytest.fixture
def grids(conn: Connection) -> tuple[str, str, str]:
    return insert_month(conn)


def test_formulas_on_a_hand_made_month(conn: Connection, grids) -> None:
    a, b, _ = grids
    out = assessment.monthly(conn, principal=Principal.system(), month="2026-10", level="grid",
                             region="330782001")
    rows = {r["code"]: r for r in out["rows"]}
    assert set(rows) == {a, b}
    ra = rows[a]
    assert {k: ra[k] for k in ("received", "registered", "closed", "closed_on_time", "reworked",
                               "due", "due_closed", "due_closed_on_time")} == {
        "received": 5, "registered": 3, "closed": 3, "closed_on_time": 2, "reworked": 1,
        "due": 4, "due_closed": 3, "due_closed_on_time": 2}
    assert ra["closure_rate"] == 0.75 and ra["on_time_rate"] == 0.5
    assert ra["rework_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert ra["mean_handling_h"] == 144.0  # (24 + 240 + 168) / 3
    assert ra["p90_handling_h"] == pytest.approx(225.6)  # 168 + 0.8 * (240 - 168)
    assert ra["patrol_coverage"] is None and any("patrol" in n for n in out["notes"])
    # 23:30 on 31 October (local) is October; 00:10 on 1 November is not.
    assert rows[b]["received"] == 1 and rows[b]["closure_rate"] is None
    nov = assessment.monthly(conn, principal=Principal.system(), month="2026-11", level="grid",
                             region=b)
    assert nov["rows"][0]["received"] == 1


def test_levels_and_jurisdiction_through_the_api(anonymous: TestClient, headers, grids) -> None:
    h = headers("t_supervisor")
    res = anonymous.get("/assessment", params={"month": "2026-10", "level": "street"}, headers=h)
    assert res.status_code == 200, res.text
    rows = res.json()["rows"]
    assert [r["code"] for r in rows] == ["330782001000"]  # not 江东街道's case
    assert rows[0]["received"] == 6 and rows[0]["name"] == "稠城街道"
    worker = anonymous.get("/assessment", params={"month": "2026-10", "level": "worker"},
                           headers=h).json()
    assert {r["code"]: r["received"] for r in worker["rows"]} == {"W-A": 5, "W-B": 1}
    dept = anonymous.get("/assessment", params={"month": "2026-10", "level": "department"},
                         headers=headers("t_admin")).json()
    assert sum(r["received"] for r in dept["rows"]) == 7
    assert anonymous.get("/assessment", params={"month": "2026-13"}, headers=h).status_code == 422
    # Dispatchers have no assessment permission.
    assert anonymous.get("/assessment", params={"month": "2026-10"},
                         headers=headers("t_dispatcher")).status_code == 403


def test_workbook_has_figures_and_formulas(anonymous: TestClient, headers, grids) -> None:
    res = anonymous.get("/assessment.xlsx", params={"month": "2026-10", "level": "community"},
                        headers=headers("t_supervisor"))
    assert res.status_code == 200, res.text
    wb = load_workbook(io.BytesIO(res.content))
    assert wb.sheetnames == ["考核", "口径"]
    sheet = list(wb["考核"].iter_rows(values_only=True))
    assert "结案率" in sheet[1] and sheet[2][0] == "code"
    col = sheet[2].index("closure_rate")
    assert sheet[3][col] == 0.75  # grid b adds nothing due, whether or not it shares a community
    formulas = {r[0]: r[2] for r in wb["口径"].iter_rows(min_row=2, values_only=True) if r[0]}
    assert formulas["closure_rate"].startswith("结案率 = due_closed / due")
    assert "按期结案率" in formulas["on_time_rate"] and "返工率" in formulas["rework_rate"]


def _patrol(conn: Connection, grid: str, *, refresh: bool = True) -> str:
    """A walk through three points inside ``grid`` on 12 October, by its primary worker."""
    from datetime import datetime, timedelta

    import shapely

    from gis.transform import transformer
    from layers.patrols import grid_cover, intake

    staff, pts = conn.execute(text(
        "SELECT s.code, ST_AsText(ST_GeneratePoints(r.geom, 3, 5)) FROM region_current r "
        "JOIN assignment a ON a.region_id = r.id AND a.duty = 'primary' AND a.valid_to IS NULL "
        "JOIN staff s ON s.id = a.staff_id WHERE r.code = :g LIMIT 1"), {"g": grid}).one()
    to_m, to_ll = transformer("EPSG:4490", "EPSG:4549"), transformer("EPSG:4549", "EPSG:4490")
    line = shapely.LineString([to_m.transform(p.x, p.y)
                               for p in shapely.get_parts(shapely.from_wkt(pts))])
    t0 = datetime.fromisoformat("2026-10-12T09:00:00+08:00")
    fixes = []
    for i in range(int(line.length // 20) + 1):
        p = line.interpolate(i * 20.0)
        lon, lat = to_ll.transform(p.x, p.y)
        fixes.append({"staff_code": staff, "lon": lon, "lat": lat, "accuracy_m": 8.0,
                      "time": (t0 + timedelta(seconds=30 * i)).isoformat()})
    assert intake.ingest(conn, fixes, principal=Principal.system())["accepted"] == len(fixes)
    if refresh:
        grid_cover.refresh_stale(conn)  # what the API's background worker does after the commit
    return staff


def test_patrol_coverage_per_grid_street_and_worker(conn: Connection, grids) -> None:
    from datetime import datetime

    from layers.patrols import coverage

    a, b, _ = grids
    staff = _patrol(conn, a)
    system = Principal.system()
    exact = coverage.coverage(conn, region="330782001", principal=system, buffer_m=50,
                              since=datetime.fromisoformat("2026-10-01T00:00:00+08:00"),
                              until=datetime.fromisoformat("2026-11-01T00:00:00+08:00"))
    share = {g["code"]: g["share"] for g in exact["grids"]}
    assert share[a] > 0.05
    grid_fig = assessment.monthly(conn, principal=system, month="2026-10", level="grid",
                                  region="330782001")
    by_grid = {r["code"]: r for r in grid_fig["rows"]}
    # the month's only day with patrol data (12 October): the mean over days with data, not over
    # October's 31 calendar days (which painted every grid red when data began late in a month)
    assert grid_fig["coverage_days"] == 1
    assert any("over the 1 day(s) of the month with patrol data" in n for n in grid_fig["notes"])
    assert by_grid[a]["patrol_coverage"] == pytest.approx(share[a], abs=1e-4)
    assert by_grid[a]["patrol_coverage"] > 0
    assert by_grid[a]["patrolled_grids"] == 1 == by_grid[a]["grids"]
    assert by_grid[b]["patrol_coverage"] == 0.0  # no case needed: every grid of the street is listed
    assert len(by_grid) == len(exact["grids"])
    street = assessment.monthly(conn, principal=system, month="2026-10", level="street",
                                region="330782001")
    total = next(t for t in exact["totals"] if t["code"] == "330782001000")
    assert street["rows"][0]["patrol_coverage"] == pytest.approx(total["share"], abs=1e-4)
    assert street["rows"][0]["patrolled_grids"] >= 1
    workers = {r["code"]: r for r in assessment.monthly(
        conn, principal=system, month="2026-10", level="worker", region="330782001")["rows"]}
    assert workers[staff]["patrol_coverage"] > 0 and workers[staff]["grids"] >= 1
    assert not any("still being" in n for n in street["notes"])
    # no fixes in September: null, with a note
    sept = assessment.monthly(conn, principal=system, month="2026-09", level="grid",
                              region="330782001")
    assert all(r["patrol_coverage"] is None for r in sept["rows"])
    assert any("no patrol fixes" in n for n in sept["notes"])
    book = assessment.to_xlsx(street)
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(book))
    header = [c.value for c in wb["考核"][3]]
    assert "patrol_coverage" in header and wb["考核"].cell(
        row=4, column=header.index("patrol_coverage") + 1).value == street["rows"][0][
            "patrol_coverage"]
    formulas = {r[0]: r[2] for r in wb["口径"].iter_rows(min_row=2, values_only=True) if r[0]}
    assert formulas["patrol_coverage"].startswith("巡查覆盖率(日均) = ")


def test_fixes_not_yet_taken_into_account_are_said(conn: Connection, grids) -> None:
    _patrol(conn, grids[0], refresh=False)
    out = assessment.monthly(conn, principal=Principal.system(), month="2026-10", level="street",
                             region="330782001")
    assert any("still being taken into account" in n for n in out["notes"])
