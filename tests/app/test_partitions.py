"""Month partitions of patrol_fix and incident_event (migration 0027, app/partitions.py):
pruning by EXPLAIN, the default partition, privileges, the composite event keys, archive → attach
row for row, a failed archive changing nothing, and the closed loop and patrol coverage across a
month boundary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import partitions
from layers.patrols import coverage, grid_cover, intake
from tests import tiny_city as tc
from tests.conftest import tiny_city_engine
from tests.layers.test_patrols import DAY, SYSTEM, TRACK, _walk


def _month(k: int) -> date:
    """The first day of the UTC month ``k`` months from now."""
    return partitions._add_months(datetime.now(UTC).date().replace(day=1), k)


def _relations(plan: object) -> set[str]:
    """Every table a JSON plan scans."""
    out: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            out.add(plan["Relation Name"])
        for v in plan.values():
            out |= _relations(v)
    elif isinstance(plan, list):
        for v in plan:
            out |= _relations(v)
    return out


def _explain(conn: Connection, sql: str, params: dict) -> tuple[set[str], list]:
    plan = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql), params).scalar_one()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _relations(plan), plan


# -- pruning ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("table", partitions.TABLES)
def test_a_time_window_touches_only_its_months(conn: Connection, table: str) -> None:
    last, this = _month(-1), _month(0)
    lo = datetime(this.year, this.month, 3, tzinfo=UTC)
    at = partitions.key_column(table)
    one, _ = _explain(conn, f"SELECT count(*) FROM {table} WHERE {at} >= :a AND {at} < :b",
                      {"a": lo, "b": lo + timedelta(days=10)})
    assert one == {partitions.part_name(table, this)}
    # across the boundary: both months, nothing else (not the default partition either)
    start = datetime(this.year, this.month, 1, tzinfo=UTC)
    two, _ = _explain(conn, f"SELECT count(*) FROM {table} WHERE {at} >= :a AND {at} < :b",
                      {"a": start - timedelta(hours=8), "b": start + timedelta(hours=16)})
    assert two == {partitions.part_name(table, last), partitions.part_name(table, this)}
    # no window: every month and the default (what the pruning saves)
    every, _ = _explain(conn, f"SELECT count(*) FROM {table}", {})
    assert len(every) >= 28 and f"{table}_default" in every


def test_a_generic_plan_prunes_at_run_time(conn: Connection) -> None:
    """A prepared statement with a generic plan (parameters unknown at planning) still reads one
    month: the executor removes the other partitions ("Subplans Removed")."""
    this = _month(0)
    lo = datetime(this.year, this.month, 2, tzinfo=UTC)
    conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    conn.execute(text("PREPARE fixes_window (timestamptz, timestamptz) AS "
                      "SELECT count(*) FROM patrol_fix WHERE at >= $1 AND at < $2"))
    try:
        plan = json.loads(json.dumps(conn.execute(text(
            f"EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) EXECUTE fixes_window("
            f"'{lo.isoformat()}', '{(lo + timedelta(days=5)).isoformat()}')")).scalar_one()))
    finally:
        conn.execute(text("DEALLOCATE fixes_window"))
    assert _relations(plan) == {partitions.part_name("patrol_fix", this)}
    assert '"Subplans Removed"' in json.dumps(plan)


# -- the default partition, ensure, privileges, keys -----------------------------------------------

def test_rows_outside_the_months_wait_in_default_until_ensure(conn: Connection) -> None:
    staff = conn.execute(text("SELECT id FROM staff ORDER BY id LIMIT 1")).scalar_one()
    old = datetime(2001, 5, 10, 3, 0, tzinfo=UTC)
    conn.execute(text("INSERT INTO patrol_fix (staff_id, at, geom) VALUES "
                      "(:s, :t, ST_SetSRID(ST_MakePoint(120.1, 29.3), 4490))"),
                 {"s": staff, "t": old})
    where = text("SELECT tableoid::regclass::text FROM patrol_fix WHERE staff_id = :s AND at = :t")
    assert conn.execute(where, {"s": staff, "t": old}).scalar_one() == "patrol_fix_default"
    names = partitions.ensure(conn, back=0, ahead=1, today=date(2001, 5, 20))
    assert "patrol_fix_p2001_05" in names and "incident_event_p2001_06" in names
    assert conn.execute(where, {"s": staff, "t": old}).scalar_one() == "patrol_fix_p2001_05"
    assert partitions.ensure(conn, back=0, ahead=1, today=date(2001, 5, 20)) == names  # idempotent
    listed = {p.name: p for p in partitions.list_partitions(conn, "patrol_fix")}
    assert listed["patrol_fix_p2001_05"].attached and listed["patrol_fix_p2001_05"].month == "2001-05"
    # the 0005 REVOKE holds for the partition addressed by name too
    conn.execute(text("SAVEPOINT app_role"))
    conn.execute(text("SET LOCAL ROLE citygrid_app"))
    with pytest.raises(DBAPIError, match="permission denied"):
        conn.execute(text("DELETE FROM patrol_fix_p2001_05"))
    conn.execute(text("ROLLBACK TO SAVEPOINT app_role"))
    conn.execute(text("SET LOCAL ROLE citygrid_app"))
    assert conn.execute(text("SELECT count(*) FROM patrol_fix WHERE at = :t"),
                        {"t": old}).scalar_one() == 1  # through the parent it reads
    conn.execute(text("RESET ROLE"))


def test_event_references_are_composite_keys(conn: Connection) -> None:
    inc = conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id) SELECT 'other_centre', 'pk-1', id "
        "FROM category WHERE parent_id IS NOT NULL LIMIT 1 RETURNING id")).scalar_one()
    at = datetime.now(UTC) - timedelta(days=45)
    ev = conn.execute(text(
        "INSERT INTO incident_event (incident_id, at, actor, action, to_state) "
        "VALUES (:i, :at, 'test', 'receive', 'received') RETURNING id"),
        {"i": inc, "at": at}).scalar_one()
    sha = "ab" * 32
    conn.execute(text("INSERT INTO field_photo (sha256, content_type, bytes, width, height, "
                      "uploaded_by) VALUES (:s, 'image/jpeg', 10, 1, 1, 'test')"), {"s": sha})
    conn.execute(text("INSERT INTO field_photo_use (sha256, incident_id, event_id) "
                      "VALUES (:s, :i, :e)"), {"s": sha, "i": inc, "e": ev})
    assert conn.execute(text("SELECT event_at FROM field_photo_use WHERE event_id = :e"),
                        {"e": ev}).scalar_one() == at
    conn.execute(text("SAVEPOINT bad"))
    with pytest.raises(IntegrityError, match="foreign key"):
        conn.execute(text("INSERT INTO field_photo_use (sha256, incident_id, event_id) "
                          "VALUES (:s, :i, -1)"), {"s": sha, "i": inc})
    conn.execute(text("ROLLBACK TO SAVEPOINT bad"))
    with pytest.raises(IntegrityError, match="foreign key"):
        conn.execute(text("DELETE FROM incident_event WHERE id = :e"), {"e": ev})


# -- archive and attach ----------------------------------------------------------------------------

ARCHIVED = date(2025, 3, 1)


@pytest.fixture(scope="module")
def history() -> Iterator[Engine]:
    """A database of its own (archive commits), with fixes and events in March 2025 and a few
    around it."""
    eng = tiny_city_engine("citygrid_test_partitions", catalogue=True)
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        conn.execute(text(
            "INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m, crs_in) "
            "SELECT s.id, timestamptz '2025-02-28 20:00Z' + make_interval(secs => g * 97.3), "
            "ST_SetSRID(ST_MakePoint(120.0 + g * 1.234567890123e-5, 29.0 + sqrt(g) * 1e-4), "
            "4490), CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 50) / 3.0 END, "
            "CASE WHEN g % 3 = 0 THEN 'gcj02' END "
            "FROM staff s, generate_series(1, 30000) g"))
        inc = conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, received_at) "
            "SELECT 'other_centre', 'arch-' || g, (SELECT id FROM category WHERE parent_id IS NOT NULL "
            "ORDER BY id LIMIT 1), timestamptz '2025-03-01Z' + make_interval(hours => g) "
            "FROM generate_series(1, 50) g RETURNING id")).scalars().all()
        conn.execute(text(
            "INSERT INTO incident_event (incident_id, at, actor, action, from_state, to_state, "
            "note, photos) SELECT i, timestamptz '2025-02-27Z' + make_interval(hours => k * 13), "
            "'user:测试', 'dispatch', 'registered', 'dispatched', "
            "E'多行\\n\\t\"引号\" ' || k, jsonb_build_array('https://x/' || k || '.jpg') "
            "FROM unnest(CAST(:ids AS bigint[])) i, generate_series(1, 80) k"), {"ids": inc})
        conn.execute(text("DELETE FROM patrol_cover_stale"))
    yield eng
    eng.dispose()


def _month_rows(conn: Connection, table: str, month: date) -> list[tuple]:
    lo, hi = partitions.month_bounds(month)
    cols = ("staff_id, at, ST_AsEWKB(geom), accuracy_m, crs_in, received_at"
            if table == "patrol_fix" else "*")
    order = "staff_id, at" if table == "patrol_fix" else "id"
    return [tuple(r) for r in conn.execute(text(
        f"SELECT {cols} FROM {table} WHERE at >= :lo AND at < :hi ORDER BY {order}"),
        {"lo": lo, "hi": hi})]


@pytest.mark.parametrize("table", ["patrol_fix", "incident_event"])  # incident: its own file
def test_archive_then_attach_gives_back_every_row(history: Engine, tmp_path: Path,
                                                  table: str) -> None:
    import geopandas as gpd
    import pyarrow.parquet as pq

    name = partitions.part_name(table, ARCHIVED)
    with history.connect() as conn:
        before = _month_rows(conn, table, ARCHIVED)
        total = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    assert len(before) > 1000
    manifest = partitions.archive(history, table, "2025-03", tmp_path)
    assert manifest["rows"] == len(before)
    folder = tmp_path / table / "2025-03"
    assert json.loads((folder / "manifest.json").read_text())["sha256"] == manifest["sha256"]
    assert pq.read_metadata(folder / "data.parquet").num_rows == len(before)
    with history.connect() as conn:
        assert _month_rows(conn, table, ARCHIVED) == []
        assert conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == \
            total - len(before)
    if table == "patrol_fix":  # GeoParquet that GeoPandas reads, in CGCS2000
        frame = gpd.read_parquet(folder / "data.parquet")
        assert frame.crs.to_epsg() == 4490 and len(frame) == len(before)
        assert frame.geometry.geom_type.unique().tolist() == ["Point"]
    # ensure recreates the month empty; attach replaces the empty partition
    with history.begin() as conn:
        partitions.ensure(conn, back=(datetime.now(UTC).year - 2025) * 12 + 12, ahead=0)
    assert partitions.attach(history, table, "2025-03", tmp_path) == len(before)
    with history.connect() as conn:
        assert _month_rows(conn, table, ARCHIVED) == before
        assert conn.execute(text(
            "SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = to_regclass(:n)"),
            {"n": name}).scalar_one() == table
        # the app role's rights come from the parent only, as for every partition
        assert conn.execute(text(
            "SELECT has_table_privilege('citygrid_app', :n, 'SELECT')"), {"n": name}).scalar() \
            is False
    # attaching over a month that holds rows is refused and changes nothing
    with pytest.raises(partitions.PartitionError) as err:
        partitions.attach(history, table, "2025-03", tmp_path)
    assert err.value.code == "partition_conflict"


def test_a_failed_archive_leaves_the_month_attached(history: Engine, tmp_path: Path) -> None:
    """April's events are referenced by an evidence check: PostgreSQL refuses to detach them;
    the files are removed and the month stays as it was."""
    month = date(2025, 4, 1)
    with history.begin() as conn:
        inc, ev = conn.execute(text(
            "SELECT incident_id, id FROM incident_event WHERE at >= '2025-04-01Z' "
            "AND at < '2025-05-01Z' ORDER BY id LIMIT 1")).one()
        conn.execute(text("INSERT INTO evidence_check (incident_id, event_id, stage, actor, "
                          "findings, suspicious) VALUES (:i, :e, 'report', 'test', '{}', false)"),
                     {"i": inc, "e": ev})
    with history.connect() as conn:
        before = _month_rows(conn, "incident_event", month)
    assert before
    with pytest.raises(partitions.PartitionError) as err:
        partitions.archive(history, "incident_event", month, tmp_path)
    assert err.value.code == "archive_failed"
    assert not (tmp_path / "incident_event" / "2025-04").exists()
    assert list((tmp_path / "incident_event").iterdir()) == []
    with history.connect() as conn:
        assert _month_rows(conn, "incident_event", month) == before
        assert any(p.name == "incident_event_p2025_04" and p.attached
                   for p in partitions.list_partitions(conn, "incident_event"))


def test_attach_refuses_a_tampered_file(history: Engine, tmp_path: Path) -> None:
    partitions.archive(history, "patrol_fix", "2025-02", tmp_path)
    data = tmp_path / "patrol_fix" / "2025-02" / "data.parquet"
    good = data.read_bytes()
    data.write_bytes(good[:-9] + bytes([good[-9] ^ 1]) + good[-8:])
    with pytest.raises(partitions.PartitionError) as err:
        partitions.attach(history, "patrol_fix", "2025-02", tmp_path)
    assert err.value.code == "archive_invalid"
    data.write_bytes(good)
    assert partitions.attach(history, "patrol_fix", "2025-02", tmp_path) > 0


# -- across a month boundary -----------------------------------------------------------------------

def test_patrol_coverage_across_a_month_boundary(empty_conn: Connection) -> None:
    tc.write_tiny_city(empty_conn)
    boundary = datetime(2025, 7, 1, tzinfo=UTC)  # 08:00 on 1 July in the city
    start = (boundary - DAY).total_seconds() / 60 - 12
    walk = _walk("W1", TRACK, start=start)
    out = intake.ingest(empty_conn, walk, principal=SYSTEM)
    assert out["accepted"] == len(walk)
    parts = {r[0]: r[1] for r in empty_conn.execute(text(
        "SELECT tableoid::regclass::text, count(*) FROM patrol_fix GROUP BY 1"))}
    assert set(parts) == {"patrol_fix_p2025_06", "patrol_fix_p2025_07"}
    refreshed = grid_cover.refresh_stale(empty_conn)
    assert refreshed is not None and refreshed["notes"] == 1  # one city day
    local = datetime(2025, 7, 1, tzinfo=DAY.tzinfo)
    expected = {g["code"]: g["share"] for g in coverage.coverage(
        empty_conn, region=tc.STREET, buffer_m=grid_cover.BUFFER_M, principal=SYSTEM,
        since=local, until=local + timedelta(days=1))["grids"] if g["share"]}
    rows = empty_conn.execute(text(
        "SELECT grid_code, share, last_fix_at FROM patrol_grid_cover "
        "WHERE span = 'd' AND t0 = '2025-07-01'")).all()
    days = {r.grid_code: r.share for r in rows}
    assert tc.G1 in days and len(days) >= 2
    assert days.keys() == expected.keys()
    for code, share in days.items():
        assert share == pytest.approx(expected[code], rel=1e-5, abs=1e-6)
    # the day's coverage read both months: fixes before the boundary and the last one after it
    assert max(r.last_fix_at for r in rows) > boundary
    assert empty_conn.execute(text(
        "SELECT count(*) FROM patrol_fix WHERE at >= :a AND at < :b"),
        {"a": local, "b": local + timedelta(days=1)}).scalar_one() == len(walk)


def test_closed_loop_idempotency_tally_and_audit_across_months(
    anonymous: TestClient, headers, conn: Connection, api
) -> None:
    grid = api[0].state.directory.by_name["t_worker"].grid_codes[0]
    lon, lat = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE code = :g"), {"g": grid}).one()
    received = datetime.now(UTC) - timedelta(days=40)
    body = {"source": "hotline_12345", "external_id": "part-0001", "category": "E0101",
            "lon": lon, "lat": lat, "received_at": received.isoformat()}
    month_t0 = conn.execute(text(
        "SELECT date_trunc('month', CAST(:r AS timestamptz) AT TIME ZONE citygrid_tz())::date"),
        {"r": received}).scalar_one()
    tally = text("SELECT coalesce(sum(n), 0) FROM incident_grid_tally WHERE span = 'm' "
                 "AND t0 = :t0 AND grid_code = :g AND state = :s")
    closed_before = conn.execute(tally, {"t0": month_t0, "g": grid, "s": "closed"}).scalar_one()
    anonymous.headers.update(headers("t_dispatcher"))
    first = anonymous.post("/incidents", json=body)
    assert first.status_code == 201, first.text
    inc = first.json()["id"]
    again = anonymous.post("/incidents", json={**body, "description": "retry"})
    assert again.status_code == 200 and again.json()["id"] == inc
    for who, action in [("t_dispatcher", "register"), ("t_dispatcher", "dispatch"),
                        ("t_worker", "accept"), ("t_worker", "report"),
                        ("t_supervisor", "verify"), ("t_supervisor", "close")]:
        res = anonymous.post(f"/incidents/{inc}/actions", json={"action": action},
                             headers=headers(who))
        assert res.status_code == 200, (action, res.text)
    detail = res.json()
    assert detail["state"] == "closed"
    assert [h["action"] for h in detail["history"]] == [
        "receive", "register", "dispatch", "accept", "report", "verify", "close"]
    parts = conn.execute(text(
        "SELECT DISTINCT tableoid::regclass::text FROM incident_event WHERE incident_id = :i"),
        {"i": inc}).scalars().all()
    assert len(parts) == 2 and all(p.startswith("incident_event_p") for p in parts)
    assert conn.execute(text("SELECT count(*) FROM incident WHERE external_id = 'part-0001'")
                        ).scalar_one() == 1
    assert conn.execute(tally, {"t0": month_t0, "g": grid, "s": "closed"}).scalar_one() == \
        closed_before + 1
    assert conn.execute(text(
        "SELECT count(*) FROM audit_log WHERE entity = 'incident' AND entity_key = :k "
        "AND action = 'update'"), {"k": str(inc)}).scalar_one() == 6


def test_detach_keeps_the_table_and_reattach_puts_it_back(history: Engine) -> None:
    month = date(2025, 4, 1)
    with history.connect() as conn:
        before = _month_rows(conn, "patrol_fix", month)
    assert before
    with history.begin() as conn:
        assert partitions.detach(conn, "patrol_fix", "2025-04") == "patrol_fix_p2025_04"
    with history.begin() as conn:
        assert _month_rows(conn, "patrol_fix", month) == []
        listed = {p.name: p for p in partitions.list_partitions(conn, "patrol_fix")}
        assert listed["patrol_fix_p2025_04"].attached is False
        assert conn.execute(text("SELECT count(*) FROM patrol_fix_p2025_04")).scalar_one() == \
            len(before)
        with pytest.raises(partitions.PartitionError):
            partitions.detach(conn, "patrol_fix", "2025-04")
    with history.begin() as conn:
        partitions.reattach(conn, "patrol_fix", "2025-04")
    with history.connect() as conn:
        assert _month_rows(conn, "patrol_fix", month) == before


def test_the_migration_moves_the_rows_and_goes_back() -> None:
    """On a database holding fixes, events and references before 0027: every row is moved (a
    month outside the window gets its partition), the keys, grants and trigger hold, and the
    downgrade gives the same rows back unpartitioned."""
    import importlib.util

    from alembic import command

    from app.db import alembic_config, migrate

    path = Path(partitions.__file__).parent / "migrations" / "versions" / "0027_month_partitions.py"
    spec = importlib.util.spec_from_file_location("m0027", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    eng = tiny_city_engine("citygrid_test_partitions_migration", catalogue=True)
    url = eng.url.render_as_string(hide_password=False)
    command.downgrade(alembic_config(url), mod.down_revision)
    sums = {t: f"SELECT count(*), sum(hashtextextended(x::text, 0)) FROM {t} x"
            for t in ("patrol_fix", "incident_event", "field_photo_use", "evidence_check")}
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        conn.execute(text(
            "INSERT INTO patrol_fix (staff_id, at, geom) SELECT s.id, "
            "timestamptz '2025-05-31 22:00Z' + make_interval(mins => g), "
            "ST_SetSRID(ST_MakePoint(120 + g * 1e-5, 29), 4490) "
            "FROM staff s, generate_series(1, 300) g"))
        conn.execute(text("INSERT INTO patrol_fix (staff_id, at, geom) SELECT id, "
                          "'1999-01-05 00:00Z', ST_SetSRID(ST_MakePoint(120, 29), 4490) "
                          "FROM staff ORDER BY id LIMIT 1"))
        inc = conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id) SELECT 'other_centre', "
            "'mig-1', id FROM category WHERE parent_id IS NOT NULL LIMIT 1 RETURNING id")
        ).scalar_one()
        ev = conn.execute(text(
            "INSERT INTO incident_event (incident_id, at, actor, action, to_state) VALUES "
            "(:i, '2025-06-01 01:00Z', 'test', 'receive', 'received') RETURNING id"),
            {"i": inc}).scalar_one()
        conn.execute(text("INSERT INTO field_photo (sha256, content_type, bytes, width, height, "
                          "uploaded_by) VALUES (:s, 'image/png', 1, 1, 1, 't')"), {"s": "cd" * 32})
        conn.execute(text("INSERT INTO field_photo_use VALUES (:s, :i, :e)"),
                     {"s": "cd" * 32, "i": inc, "e": ev})
        conn.execute(text("INSERT INTO evidence_check (incident_id, event_id, stage, actor, "
                          "findings, suspicious) VALUES (:i, :e, 'verify', 't', '{}', true)"),
                     {"i": inc, "e": ev})
        conn.execute(text("DELETE FROM patrol_cover_stale"))
        before = {t: tuple(conn.execute(text(q)).one()) for t, q in sums.items()
                  if t in ("patrol_fix", "incident_event")}
    migrate(url)
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        assert {t: tuple(conn.execute(text(sums[t])).one()) for t in before} == before
        assert conn.execute(text(
            "SELECT string_agg(relkind::text, '' ORDER BY relname) FROM pg_class WHERE relname "
            "IN ('patrol_fix', 'incident_event')")).scalar_one() == "pp"
        assert conn.execute(text("SELECT tableoid::regclass::text FROM patrol_fix "
                                 "WHERE at < '2000-01-01'")).scalar_one() == "patrol_fix_p1999_01"
        assert conn.execute(text("SELECT count(DISTINCT tableoid) FROM patrol_fix "
                                 "WHERE at >= '2025-01-01'")).scalar_one() == 2
        assert conn.execute(text("SELECT u.event_at = e.at AND c.event_at = e.at FROM "
                                 "field_photo_use u JOIN incident_event e ON e.id = u.event_id "
                                 "JOIN evidence_check c ON c.event_id = e.id")).scalar_one()
        assert conn.execute(text(
            "SELECT has_table_privilege('citygrid_app', 'patrol_fix', 'INSERT') "
            "AND NOT has_table_privilege('citygrid_app', 'patrol_fix', 'UPDATE') "
            "AND NOT has_table_privilege('citygrid_app', 'patrol_fix', 'DELETE') "
            "AND has_table_privilege('citygrid_app', 'incident_event', 'INSERT')")).scalar_one()
        assert conn.execute(text("SELECT count(*) FROM pg_trigger WHERE tgname = "
                                 "'patrol_fix_cover_stale' AND tgrelid = 'patrol_fix'::regclass")
                            ).scalar_one() == 1
        with_refs = {t: tuple(conn.execute(text(q)).one()) for t, q in sums.items()}
        conn.execute(text("INSERT INTO patrol_fix (staff_id, at, geom) SELECT id, now(), "
                          "ST_SetSRID(ST_MakePoint(120, 29), 4490) FROM staff ORDER BY id LIMIT 1"))
        assert conn.execute(text("SELECT count(*) FROM patrol_cover_stale")).scalar_one() == 1
        conn.execute(text("DELETE FROM patrol_cover_stale"))
        conn.execute(text("DELETE FROM patrol_fix WHERE at > '2026-01-01'"))
    command.downgrade(alembic_config(url), mod.down_revision)
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        assert {t: tuple(conn.execute(text(sums[t])).one()) for t in before} == before
        assert conn.execute(text(
            "SELECT string_agg(relkind::text, '' ORDER BY relname) FROM pg_class WHERE relname "
            "IN ('patrol_fix', 'incident_event')")).scalar_one() == "rr"
    migrate(url)
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        assert {t: tuple(conn.execute(text(q)).one()) for t, q in sums.items()} == with_refs
    eng.dispose()
