"""Daily patrol coverage per grid (migration 0010): equal to the coverage API, kept by the fix
intake, summed over windows, and carried by the grid tiles."""

from __future__ import annotations

import struct
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from layers import maps
from layers.patrols import coverage, grid_cover, intake
from tests import tiny_city as tc
from tests.layers.test_maps import _fields, _varint, tile_xy
from tests.layers.test_patrols import DAY, LOCAL, SYSTEM, TRACK, _walk


@pytest.fixture
def tiny(empty_conn: Connection) -> Connection:
    tc.write_tiny_city(empty_conn)
    return empty_conn


def day_window() -> dict[str, datetime]:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=LOCAL)
    return {"since": start, "until": start + timedelta(days=1)}


def rows(conn: Connection, span: str) -> dict[str, tuple[float, datetime | None]]:
    return {r.grid_code: (r.share, r.last_fix_at) for r in conn.execute(text(
        "SELECT grid_code, share, last_fix_at FROM patrol_grid_cover WHERE span = :s"),
        {"s": span})}


def test_day_rows_equal_the_coverage_of_that_day_whatever_the_batches(tiny: Connection) -> None:
    walk = _walk("W1", TRACK)
    other = _walk("W2", [(2.1, 0.1), (2.9, 0.4)], start=30)
    # three batches, the last one late and out of order
    intake.ingest(tiny, walk[10:], principal=SYSTEM)
    assert grid_cover.refresh_stale(tiny)["notes"] == 1
    intake.ingest(tiny, other, principal=SYSTEM)
    intake.ingest(tiny, walk[:10][::-1], principal=SYSTEM)
    assert grid_cover.refresh_stale(tiny)["notes"] == 2
    assert grid_cover.refresh_stale(tiny)["notes"] == 0
    expected = {g["code"]: g for g in coverage.coverage(
        tiny, region=tc.STREET, buffer_m=grid_cover.BUFFER_M, principal=SYSTEM,
        **day_window())["grids"]}
    days = rows(tiny, "d")
    assert set(days) == {c for c, g in expected.items() if g["last_patrolled_at"] or g["share"]}
    assert {tc.G1, tc.G2, tc.G3} <= set(days)
    for code, (share, last) in days.items():
        assert share == pytest.approx(expected[code]["share"], rel=1e-5, abs=1e-6)
        assert last is not None and last.isoformat() == datetime.fromisoformat(
            expected[code]["last_patrolled_at"]).isoformat()
    months = rows(tiny, "m")
    assert months.keys() == days.keys()
    assert all(months[c][0] == pytest.approx(days[c][0]) for c in days)


def test_a_later_day_adds_up_in_the_month_row(tiny: Connection) -> None:
    intake.ingest(tiny, _walk("W1", TRACK), principal=SYSTEM)
    grid_cover.refresh_stale(tiny)
    first = rows(tiny, "d")[tc.G1][0]
    later = [{**f, "time": (datetime.fromisoformat(f["time"]) + timedelta(days=1)).isoformat()}
             for f in _walk("W1", TRACK[:3])]
    intake.ingest(tiny, later, principal=SYSTEM)
    grid_cover.refresh_stale(tiny)
    second = tiny.execute(text(
        "SELECT share FROM patrol_grid_cover WHERE span = 'd' AND grid_code = :g AND t0 = :d"),
        {"g": tc.G1, "d": DAY.date() + timedelta(days=1)}).scalar_one()
    assert 0 < second < first
    assert rows(tiny, "m")[tc.G1][0] == pytest.approx(first + second)
    # a recomputation over the range changes nothing
    before = tiny.execute(text("SELECT span, t0, grid_code, share FROM patrol_grid_cover "
                               "ORDER BY 1, 2, 3")).all()
    grid_cover.refresh_range(tiny, DAY.date() - timedelta(days=1), DAY.date() + timedelta(days=2))
    assert tiny.execute(text("SELECT span, t0, grid_code, share FROM patrol_grid_cover "
                             "ORDER BY 1, 2, 3")).all() == before


@pytest.mark.parametrize(("first", "last", "months", "day_ranges", "days"), [
    (date(2026, 10, 1), date(2026, 10, 31), [date(2026, 10, 1)], [], 31),
    (date(2026, 9, 28), date(2026, 11, 2), [date(2026, 10, 1)],
     [(date(2026, 9, 28), date(2026, 9, 30)), (date(2026, 11, 1), date(2026, 11, 2))], 36),
    (date(2026, 10, 3), date(2026, 10, 9), [], [(date(2026, 10, 3), date(2026, 10, 9))], 7),
    (date(2026, 1, 1), date(2026, 3, 31),
     [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)], [], 90),
])
def test_window_sql_reads_whole_months_from_month_rows(first, last, months, day_ranges,
                                                       days) -> None:
    params: dict = {}
    sql, n = grid_cover.window_sql(first, last, params)
    assert n == days
    assert params.get("cov_m", []) == months
    got = sorted((v, params[k.replace("cov_a", "cov_b")]) for k, v in params.items()
                 if k.startswith("cov_a"))
    assert got == day_ranges
    assert sql.count("span = 'd'") == len(day_ranges)


def test_window_days() -> None:
    oct1 = datetime(2026, 10, 1, tzinfo=LOCAL)
    assert grid_cover.window_days(oct1, oct1 + timedelta(days=31), tz=LOCAL) == (
        date(2026, 10, 1), date(2026, 10, 31))
    assert grid_cover.window_days(None, None, tz=LOCAL, today=date(2026, 11, 29)) == (
        date(2026, 11, 1), date(2026, 11, 29))


def _attrs(tile: bytes) -> dict[str, dict[str, object]]:
    """code -> attributes of each feature of a one-layer tile."""
    layer = next(v for f, v in _fields(tile) if f == 3)
    keys = [v.decode() for f, v in _fields(layer) if f == 3]
    values = []
    for f, v in _fields(layer):
        if f != 4:
            continue
        field, raw = next(_fields(v))
        values.append(raw.decode() if field == 1 else struct.unpack("<f", raw)[0]
                      if field == 2 else struct.unpack("<d", raw)[0] if field == 3 else raw)
    out = {}
    for f, feature in _fields(layer):
        if f != 2:
            continue
        packed, i, tags = dict(_fields(feature)).get(2, b""), 0, {}
        while i < len(packed):
            k, i = _varint(packed, i)
            v, i = _varint(packed, i)
            tags[keys[k]] = values[v]
        out[str(tags["code"])] = tags
    return out


def test_grid_tiles_carry_the_windows_mean_daily_coverage(tiny: Connection) -> None:
    cache = maps.TileCache()
    x, y = tile_xy(tiny, tc.G1, 14)
    f = maps.IncidentFilter(**day_window())
    before = maps.tile(tiny, "grids", 14, x, y, principal=SYSTEM, filters=f, cache=cache)
    assert _attrs(before)[tc.G1]["patrolled"] == 0 and "last_patrol" not in _attrs(before)[tc.G1]
    intake.ingest(tiny, _walk("W1", TRACK), principal=SYSTEM)
    grid_cover.refresh_stale(tiny)
    share, last = rows(tiny, "d")[tc.G1]
    after = _attrs(maps.tile(tiny, "grids", 14, x, y, principal=SYSTEM, filters=f, cache=cache))
    assert after[tc.G1]["patrolled"] == pytest.approx(share, abs=1e-4) and share > 0.2
    assert after[tc.G1]["last_patrol"] == int(last.timestamp())
    # over a week holding that one day, the mean is a seventh
    week = maps.IncidentFilter(since=f.since - timedelta(days=3), until=f.until + timedelta(days=3))
    attrs = _attrs(maps.tile(tiny, "grids", 14, x, y, principal=SYSTEM, filters=week, cache=cache))
    assert attrs[tc.G1]["patrolled"] == pytest.approx(share / 7, abs=1e-4)
    # pre-cut and cut on the fly agree (z12 holds the whole tiny city)
    x12, y12 = tile_xy(tiny, tc.G1, 12)
    cut = _attrs(maps.tile(tiny, "grids", 12, x12, y12, principal=SYSTEM, filters=f, cache=None))
    live = _attrs(maps.tile(tiny, "grids", 12, x12, y12, principal=SYSTEM, filters=f, cache=None,
                            pretiled=False))
    assert cut == live and cut[tc.G1]["patrolled"] == after[tc.G1]["patrolled"]


def test_the_api_worker_recomputes_coverage_after_fixes_are_committed() -> None:
    """End to end on a database of its own: fixes posted through the API (committed) are noted by
    the trigger; the app's background worker recomputes their grids' day and the grid tile shows
    it, without anyone asking."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import ApiSettings, DatabaseSettings, Settings
    from tests.conftest import app_role_url, tiny_city_engine, token_for, wait_for
    from tests.layers.test_maps import tile_xy as xy

    engine = tiny_city_engine("citygrid_test_cover", users=(("cover_admin", "admin"),))
    owner = engine.url.render_as_string(hide_password=False)
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(owner),
                                                  migration_url=owner),
                              api=ApiSettings(coverage_refresh_s=0.2)))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            h = {"Authorization": f"Bearer {token_for(app, 'cover_admin')}"}
            r = client.post("/patrols/fixes", json={"fixes": _walk("W1", TRACK)}, headers=h)
            assert r.status_code == 200 and r.json()["accepted"] > 20, r.text
            with engine.connect() as conn:
                x, y = xy(conn, tc.G1, 14)

            def recomputed() -> bool:
                with engine.connect() as conn:
                    pending = conn.execute(text("SELECT count(*) FROM patrol_cover_stale")).scalar()
                    return not pending and tc.G1 in rows(conn, "d")

            assert wait_for(recomputed, 20, every=0.1) is not None
            with engine.connect() as conn:
                got = rows(conn, "d")
            assert got[tc.G1][0] > 0.2, got
            since, until = (v.isoformat() for v in day_window().values())
            tile = client.get(f"/tiles/grids/14/{x}/{y}.mvt", headers=h,
                              params={"since": since, "until": until})
            assert _attrs(tile.content)[tc.G1]["patrolled"] == pytest.approx(got[tc.G1][0],
                                                                             abs=1e-4)
            assert app.state.coverage_worker.rounds > 0
    finally:
        engine.dispose()
