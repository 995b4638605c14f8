"""``incident`` partitioned by month on ``received_at`` (migration 0029): pruning by EXPLAIN, the
registry ``incident_key`` (idempotent intake single, bulk and its conflict path, across months),
tallies equal to their rebuild after writes across months, the audit entity, archive → attach
row for row (refused while referenced), and downgrade → upgrade."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from app import partitions
from grids.access import Principal
from grids.errors import Conflict
from grids.locate import load_snapshot
from layers.incidents import intake
from tests.app.test_partitions import _explain
from tests.conftest import tiny_city_engine
from tests.tiny_city import at

SYSTEM = Principal.system("test")


def _month(k: int) -> date:
    return partitions._add_months(datetime.now(UTC).date().replace(day=1), k)


def _where(conn: Connection, inc: int) -> str:
    return conn.execute(text("SELECT tableoid::regclass::text FROM incident WHERE id = :i"),
                        {"i": inc}).scalar_one()


def test_the_months_list_reads_only_its_month(conn: Connection) -> None:
    this = _month(0)
    lo = datetime(this.year, this.month, 1, tzinfo=UTC)
    hi = datetime(*partitions._add_months(this, 1).timetuple()[:3], tzinfo=UTC)
    touched, _ = _explain(conn, (
        "SELECT id, state, grid_code FROM incident WHERE received_at >= :a AND received_at < :b "
        "AND grid_code LIKE :g ORDER BY received_at DESC LIMIT 50"), {"a": lo, "b": hi, "g": "3%"})
    assert touched == {partitions.part_name("incident", this)}
    # intake's look-up of a replay (layers/incidents/intake.py _existing) reads one incident
    # partition: the registry's received_at prunes the others at executor start
    conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, received_at) SELECT "
        "'other_centre', 'prune-1', id, now() - interval '100 days' FROM category "
        "WHERE parent_id IS NOT NULL LIMIT 1"))
    plan = conn.execute(text(
        "EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) SELECT i.id FROM incident i "
        "WHERE i.received_at = (SELECT received_at FROM incident_key WHERE source = :s "
        "AND external_id = :e) AND i.id = (SELECT id FROM incident_key WHERE source = :s "
        "AND external_id = :e)"), {"s": "other_centre", "e": "prune-1"}).scalar_one()
    assert len(_run(plan)) == 1  # of ~29 months planned, the executor opened one
    # by id alone every month is probed (what the registry join avoids)
    plan = conn.execute(text(
        "EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) SELECT id FROM incident WHERE id = "
        "(SELECT id FROM incident_key WHERE external_id = 'prune-1')")).scalar_one()
    assert len(_run(plan)) > 20


def _run(plan: object) -> set[str]:
    """The incident partitions an EXPLAIN ANALYZE plan actually scanned (loops > 0)."""
    out: set[str] = set()
    if isinstance(plan, dict):
        name = plan.get("Relation Name", "")
        if (name.startswith("incident_p") or name == "incident_default") \
                and plan.get("Actual Loops", 0) > 0:
            out.add(name)
        for v in plan.values():
            out |= _run(v)
    elif isinstance(plan, list):
        for v in plan:
            out |= _run(v)
    return out


def test_single_intake_replay_across_months(conn: Connection) -> None:
    snap = load_snapshot(conn)
    lon, lat = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE level = 'grid' ORDER BY code LIMIT 1")).one()
    ids = []
    for k, back in enumerate((0, 40, 400)):
        data = {"source": "hotline_12345", "external_id": f"ip-{k}", "category": "E0101",
                "lon": lon, "lat": lat, "received_at": datetime.now(UTC) - timedelta(days=back)}
        placed, created = intake.create(conn, snap, data, principal=SYSTEM)
        again, created2 = intake.create(conn, snap, {**data, "description": "retry"},
                                        principal=SYSTEM)
        assert created and not created2 and again["id"] == placed["id"]
        ids.append(placed["id"])
    assert len({_where(conn, i) for i in ids}) == 3
    assert conn.execute(text(
        "SELECT count(*) FROM incident_key k JOIN incident i USING (id, received_at) "
        "WHERE k.external_id LIKE 'ip-%'")).scalar_one() == 3
    # a plain duplicate INSERT raises the same constraint as before the partitioning
    conn.execute(text("SAVEPOINT dup"))
    with pytest.raises(IntegrityError, match="incident_once_per_source"):
        conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, received_at) SELECT "
            "'hotline_12345', 'ip-2', category_id, now() FROM incident WHERE id = :i"),
            {"i": ids[0]})
    conn.execute(text("ROLLBACK TO SAVEPOINT dup"))


def test_bulk_replay_and_its_conflict_path_across_months(conn: Connection) -> None:
    snap = load_snapshot(conn)
    lon, lat = at(0.5, 0.5)
    lon, lat = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE level = 'grid' ORDER BY code LIMIT 1")).one()
    lines = ["source,external_id,category,lon,lat,received_at"]
    for n in range(30):
        when = (datetime.now(UTC) - timedelta(days=17 * n)).isoformat()
        lines.append(f"police_110,bp-{n},E0101,{lon},{lat},{when}")
    body = ("\n".join(lines) + "\n").encode()
    first = intake.bulk(conn, snap, intake.read_bulk(body), principal=SYSTEM)
    assert first["imported"] == 30
    again = intake.bulk(conn, snap, intake.read_bulk(body), principal=SYSTEM)
    assert again["imported"] == 0 and again["duplicates"] == 30
    months = conn.execute(text("SELECT count(DISTINCT tableoid) FROM incident "
                               "WHERE external_id LIKE 'bp-%'")).scalar_one()
    assert months >= 15
    # the COPY path meets a key taken meanwhile (as a concurrent intake would): the staging
    # path writes only the new rows, once, with their first event
    cat, dept = conn.execute(text("SELECT category_id, department_id FROM incident "
                                  "WHERE external_id = 'bp-0'")).one()
    now = datetime.now(UTC)

    def rec(ext: str, when: datetime) -> tuple:
        t = when.isoformat()
        return ("police_110", ext, cat, "", "", None, None, None, None, None, None, None, None,
                None, None, "city", dept, t, t, t)

    wrote = intake._write(conn, [rec("bp-3", now), rec("bp-new-1", now - timedelta(days=70)),
                                 rec("bp-new-2", now)], "test")
    assert wrote == 2
    assert conn.execute(text(
        "SELECT count(*), count(DISTINCT e.id) FROM incident i JOIN incident_event e "
        "ON e.incident_id = i.id WHERE i.external_id LIKE 'bp-new-%'")).one() == (2, 2)
    assert conn.execute(text("SELECT count(*) FROM incident WHERE external_id = 'bp-3'")
                        ).scalar_one() == 1


def _tallies(conn: Connection) -> dict[str, list[str]]:
    return {t: [str(v) for v in conn.execute(text(
        f"SELECT x::text FROM {t} x WHERE {cond} ORDER BY 1")).scalars()]
        for t, cond in (("incident_grid_tally", "n <> 0"), ("incident_cell_tally", "n <> 0"),
                        ("assessment_tally", "(received, closed, due) <> (0, 0, 0)"))}


def test_a_row_takes_its_claimed_key_and_refuses_another(conn: Connection) -> None:
    cat = conn.execute(text("SELECT id FROM category WHERE parent_id IS NOT NULL LIMIT 1")).scalar()
    old = datetime.now(UTC) - timedelta(days=70)
    # intake's path: the key claimed first, then the row with the same key (one key row)
    iid = conn.execute(text(
        "INSERT INTO incident_key (id, received_at, source, external_id) VALUES "
        "(nextval(pg_get_serial_sequence('incident', 'id')), :t, 'other_centre', 'claim-1') "
        "RETURNING id"), {"t": old}).scalar_one()
    conn.execute(text("INSERT INTO incident (id, source, external_id, category_id, received_at) "
                      "VALUES (:i, 'other_centre', 'claim-1', :c, :t)"),
                 {"i": iid, "c": cat, "t": old})
    assert conn.execute(text("SELECT count(*) FROM incident_key WHERE id = :i"),
                        {"i": iid}).scalar_one() == 1
    assert _where(conn, iid) == partitions.part_name("incident", old.date().replace(day=1))
    # a row with an id registered under another key is refused, not registered twice
    iid2 = conn.execute(text(
        "INSERT INTO incident_key (id, received_at, source, external_id) VALUES "
        "(nextval(pg_get_serial_sequence('incident', 'id')), :t, 'other_centre', 'claim-2') "
        "RETURNING id"), {"t": old}).scalar_one()
    with pytest.raises(IntegrityError) as err, conn.begin_nested():
        conn.execute(text("INSERT INTO incident (id, source, external_id, category_id, "
                          "received_at) VALUES (:i, 'other_centre', 'not-claim-2', :c, :t)"),
                     {"i": iid2, "c": cat, "t": old})
    assert "registered with another key" in str(err.value)
    assert conn.execute(text("SELECT external_id FROM incident_key WHERE id = :i"),
                        {"i": iid2}).scalar_one() == "claim-2"
    # a bulk statement registers each of its rows once
    n = conn.execute(text("SELECT count(*) FROM incident_key")).scalar_one()
    conn.execute(text("INSERT INTO incident (source, external_id, category_id, received_at) "
                      "SELECT 'other_centre', 'bulk-' || g, :c, :t FROM generate_series(1, 50) g"),
                 {"c": cat, "t": old})
    assert conn.execute(text("SELECT count(*) FROM incident_key")).scalar_one() == n + 50


def test_tallies_keys_and_audit_follow_moves_across_months(conn: Connection) -> None:
    grid = conn.execute(text("SELECT code FROM region_current WHERE level = 'grid' "
                             "ORDER BY code LIMIT 1")).scalar_one()
    ids = conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, geom, state, region_code, "
        "grid_code, community_code, street_code, received_at, due_at) "
        "SELECT 'supervisor', 'mv-' || g, c.id, ST_PointOnSurface(r.geom), 'received', r.code, "
        "r.code, left(r.code, 12), left(r.code, 9), now() - make_interval(days => 20 * g), "
        "now() - make_interval(days => 20 * g - 3) FROM generate_series(1, 12) g, "
        "(SELECT id FROM category WHERE code = 'E0101') c, region_current r "
        "WHERE r.code = :g RETURNING id"), {"g": grid}).scalars().all()
    before = {i: _where(conn, i) for i in ids}
    conn.execute(text("INSERT INTO incident_event (incident_id, actor, action, to_state) "
                      "SELECT unnest(CAST(:i AS bigint[])), 'test', 'receive', 'received'"),
                 {"i": ids})
    conn.execute(text("UPDATE incident SET received_at = received_at - interval '45 days', "
                      "state = 'closed', closed_at = now() WHERE id = ANY(:i)"), {"i": ids[:6]})
    moved = {i: _where(conn, i) for i in ids[:6]}
    assert all(moved[i] != before[i] for i in ids[:6])  # rows changed partition
    assert conn.execute(text(
        "SELECT count(*) FROM incident_key k JOIN incident i USING (id, received_at) "
        "WHERE k.id = ANY(:i)"), {"i": ids}).scalar_one() == 12  # keys mirrored, none lost
    # the move is audited as the update it was (PostgreSQL hands row triggers a DELETE for it)
    audited = conn.execute(text(
        "SELECT action, CAST(before ->> 'received_at' AS timestamptz) < "
        "CAST(after ->> 'received_at' AS timestamptz) + interval '44 days' FROM audit_log "
        "WHERE entity = 'incident' AND entity_key = :k"), {"k": str(ids[0])}).all()
    assert [tuple(r) for r in audited] == [("update", False)]
    conn.execute(text("DELETE FROM incident_event WHERE incident_id = ANY(:i)"), {"i": ids[6:]})
    conn.execute(text("DELETE FROM incident WHERE id = ANY(:i)"), {"i": ids[6:]})
    assert conn.execute(text("SELECT count(*) FROM incident_key WHERE id = ANY(:i)"),
                        {"i": ids[6:]}).scalar_one() == 0
    # the tallies kept by the triggers equal the tallies rebuilt from the raw rows
    kept = _tallies(conn)
    conn.execute(text("SELECT citygrid_tally_rebuild()"))
    conn.execute(text("SELECT citygrid_assessment_tally_rebuild()"))
    assert _tallies(conn) == kept
    # a referenced incident cannot be deleted (its key is referenced), as before
    conn.execute(text("SAVEPOINT ref"))
    with pytest.raises(IntegrityError, match="foreign key"):
        conn.execute(text("DELETE FROM incident WHERE id = :i"), {"i": ids[0]})
    conn.execute(text("ROLLBACK TO SAVEPOINT ref"))


def test_truncate_cascade_empties_the_keys_and_their_dependants(conn: Connection) -> None:
    """A test reset (``TRUNCATE .. incident .. CASCADE``, as tests/grids/test_crosswalk_property
    does, with staff and regions in the same statement) leaves no key behind: the same external
    id can be taken in again."""
    inc = conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id) SELECT 'other_centre', 'tr-1', "
        "id FROM category WHERE parent_id IS NOT NULL LIMIT 1 RETURNING id")).scalar_one()
    conn.execute(text("INSERT INTO incident_event (incident_id, actor, action, to_state) "
                      "VALUES (:i, 'test', 'receive', 'received')"), {"i": inc})
    conn.execute(text("TRUNCATE incident, staff CASCADE"))
    assert conn.execute(text(
        "SELECT (SELECT count(*) FROM incident_key) + (SELECT count(*) FROM incident_event) "
        "+ (SELECT count(*) FROM incident)")).scalar_one() == 0
    conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id) SELECT 'other_centre', 'tr-1', "
        "id FROM category WHERE parent_id IS NOT NULL LIMIT 1"))
    assert conn.execute(text("SELECT count(*) FROM incident_key")).scalar_one() == 1


# -- archive / attach ------------------------------------------------------------------------------

MONTH = date(2025, 3, 1)


@pytest.fixture(scope="module")
def history() -> Iterator[Engine]:
    eng = tiny_city_engine("citygrid_test_incident_partitions", catalogue=True)
    with eng.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        x, y = at(0.5, 0.5)
        ids = conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, received_at, geom, "
            "description, attachments, state) "
            "SELECT 'other_centre', 'ar-' || g, (SELECT id FROM category WHERE code = 'E0101'), "
            "timestamptz '2025-02-27Z' + make_interval(hours => g * 7), "
            "ST_SetSRID(ST_MakePoint(:x + g * 1e-6, :y), 4490), E'多行\\n\"引号\" ' || g, "
            "jsonb_build_array('https://x/' || g || '.jpg'), 'received' "
            "FROM generate_series(1, 400) g RETURNING id"), {"x": x, "y": y}).scalars().all()
        conn.execute(text(
            "INSERT INTO incident_event (incident_id, at, actor, action, to_state) "
            "SELECT id, received_at, 'test', 'receive', 'received' FROM incident "
            "WHERE id = ANY(:i)"), {"i": ids})
    yield eng
    eng.dispose()


def _rows(conn: Connection, month: date) -> list[tuple]:
    lo, hi = partitions.month_bounds(month)
    return [tuple(r) for r in conn.execute(text(
        "SELECT *, ST_AsEWKB(geom) FROM incident WHERE received_at >= :lo AND received_at < :hi "
        "ORDER BY id"), {"lo": lo, "hi": hi})]


def test_archive_refused_while_referenced_then_archive_attach_row_for_row(
        history: Engine, tmp_path: Path) -> None:
    with history.connect() as conn:
        before = _rows(conn, MONTH)
        tally = conn.execute(text("SELECT sum(n) FROM incident_grid_tally")).scalar()
    assert len(before) > 50
    with pytest.raises(partitions.PartitionError) as err:
        partitions.archive(history, "incident", "2025-03", tmp_path)
    assert err.value.code == "partition_referenced"
    assert "incident_event.incident_id" in err.value.detail["referenced_by"]
    assert not (tmp_path / "incident" / "2025-03").exists()
    with history.begin() as conn, pytest.raises(partitions.PartitionError):
        partitions.detach(conn, "incident", "2025-03")
    # the events' months first, then the incidents' month
    for m in ("2025-02", "2025-03", "2025-04"):
        partitions.archive(history, "incident_event", m, tmp_path)
    manifest = partitions.archive(history, "incident", "2025-03", tmp_path)
    assert manifest["rows"] == len(before) and manifest["format"].startswith("GeoParquet")
    with history.connect() as conn:
        assert _rows(conn, MONTH) == []
        # the keys stay: a replay of an archived incident is a clear 409, not a second one
        snap = load_snapshot(conn)
    with history.begin() as conn, pytest.raises(Conflict) as caught:
        intake.create(conn, snap, {"source": "other_centre", "external_id": "ar-100",
                                   "category": "E0101", "lon": at(0.5, 0.5)[0],
                                   "lat": at(0.5, 0.5)[1]}, principal=SYSTEM)
    assert caught.value.code == "duplicate_external_id"
    with history.begin() as conn:
        partitions.ensure(conn, back=(datetime.now(UTC).year - 2025) * 12 + 12, ahead=0)
    assert partitions.attach(history, "incident", "2025-03", tmp_path) == len(before)
    for m in ("2025-02", "2025-03", "2025-04"):
        partitions.attach(history, "incident_event", m, tmp_path)
    with history.connect() as conn:
        assert _rows(conn, MONTH) == before
        # archived months stay counted in the tallies; attaching does not count them twice
        assert conn.execute(text("SELECT sum(n) FROM incident_grid_tally")).scalar() == tally
        assert conn.execute(text(
            "SELECT has_table_privilege('citygrid_app', 'incident_p2025_03', 'SELECT')")
        ).scalar() is False


def test_the_closed_loop_on_an_incident_of_an_old_month(anonymous, headers, conn: Connection,
                                                        api) -> None:
    grid = api[0].state.directory.by_name["t_worker"].grid_codes[0]
    lon, lat = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE code = :g"), {"g": grid}).one()
    received = datetime.now(UTC) - timedelta(days=400)
    body = {"source": "hotline_12345", "external_id": "old-0001", "category": "E0101",
            "lon": lon, "lat": lat, "received_at": received.isoformat()}
    anonymous.headers.update(headers("t_dispatcher"))
    first = anonymous.post("/incidents", json=body)
    assert first.status_code == 201, first.text
    inc = first.json()["id"]
    assert _where(conn, inc) == partitions.part_name("incident", received.date())
    for who, action in [("t_dispatcher", "register"), ("t_dispatcher", "dispatch"),
                        ("t_worker", "accept"), ("t_worker", "report"),
                        ("t_supervisor", "verify"), ("t_supervisor", "close")]:
        res = anonymous.post(f"/incidents/{inc}/actions", json={"action": action},
                             headers=headers(who))
        assert res.status_code == 200, (action, res.text)
    assert res.json()["state"] == "closed"
    got = anonymous.get(f"/incidents/{inc}", headers=headers("t_dispatcher"))
    assert got.status_code == 200 and got.json()["state"] == "closed"
    assert _where(conn, inc) == partitions.part_name("incident", received.date())
    assert conn.execute(text(
        "SELECT count(*) FROM audit_log WHERE entity = 'incident' AND entity_key = :k "
        "AND action = 'update'"), {"k": str(inc)}).scalar_one() == 6


def test_concurrent_duplicates_in_an_old_month_make_one_incident(history: Engine) -> None:
    """Committed data, 10 connections: 60 submissions of 12 keys received 14 months ago (an
    import of history) make 12 incidents in that month's partition, every retry the same id."""
    from sqlalchemy import create_engine

    from tests.conftest import app_role_url

    url = app_role_url(history.url.render_as_string(hide_password=False))
    engine = create_engine(url, pool_size=10, max_overflow=0)
    with engine.connect() as conn:
        snap = load_snapshot(conn)
    lon, lat = at(0.5, 0.5)
    received = datetime.now(UTC) - timedelta(days=425)

    def submit(i: int) -> tuple[int, bool]:
        with engine.begin() as conn:
            placed, created = intake.create(conn, snap, {
                "source": "citizen_app", "external_id": f"cc-{i % 12}", "category": "E0101",
                "lon": lon, "lat": lat, "received_at": received}, principal=SYSTEM)
            return placed["id"], created

    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(submit, range(60)))
    finally:
        engine.dispose()
    assert sum(created for _, created in results) == 12
    by_key: dict[int, set[int]] = {}
    for i, (inc, _) in enumerate(results):
        by_key.setdefault(i % 12, set()).add(inc)
    assert all(len(ids) == 1 for ids in by_key.values())
    with history.connect() as conn:
        where = conn.execute(text(
            "SELECT tableoid::regclass::text, count(*) FROM incident "
            "WHERE external_id LIKE 'cc-%' GROUP BY 1")).all()
        assert where == [(partitions.part_name("incident", received.date()), 12)]
        assert conn.execute(text("SELECT count(*) FROM incident_event e JOIN incident i "
                                 "ON i.id = e.incident_id WHERE i.external_id LIKE 'cc-%'")
                            ).scalar_one() == 12


def test_downgrade_then_upgrade_keeps_every_row(history: Engine) -> None:
    from alembic import command

    from app.db import alembic_config, migrate

    url = history.url.render_as_string(hide_password=False)
    sums = {t: f"SELECT count(*), sum(hashtextextended(x::text, 0)) FROM {t} x"
            for t in ("incident", "incident_event")}
    with history.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        before = {t: tuple(conn.execute(text(q)).one()) for t, q in sums.items()}
    history.dispose()
    command.downgrade(alembic_config(url), "0028")
    with history.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        assert {t: tuple(conn.execute(text(q)).one()) for t, q in sums.items()} == before
        assert conn.execute(text("SELECT relkind::text FROM pg_class WHERE relname = 'incident'")
                            ).scalar_one() == "r"
        assert conn.execute(text("SELECT to_regclass('incident_key')")).scalar() is None
        refs = conn.execute(text(
            "SELECT count(*) FROM pg_constraint WHERE confrelid = 'incident'::regclass "
            "AND contype = 'f' AND conparentid = 0")).scalar_one()
        assert refs == 9
        assert "UNIQUE (source, external_id)" in conn.execute(text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'incident_once_per_source'")).scalar_one()
    history.dispose()
    migrate(url)
    with history.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        assert {t: tuple(conn.execute(text(q)).one()) for t, q in sums.items()} == before
        assert conn.execute(text("SELECT relkind::text FROM pg_class WHERE relname = 'incident'")
                            ).scalar_one() == "p"
        assert conn.execute(text("SELECT count(*) FROM incident_key")).scalar_one() == \
            before["incident"][0]
