"""Bulk work on Dask (layers/bulk, issue 20): each job on a LocalCluster of two workers gives the
single-process answer, on a committed demo city of its own (Dask workers are other processes:
they see only committed rows).

The city: the demo generator at 600 grids, 3,000 incidents over a year, two days of patrols.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, text

from app.db import is_empty, migrate
from data.history import history_frame
from grids import plans
from grids.access import Principal, Scope
from grids.city import profile
from layers import assessment
from layers.bulk import coverage, history, relocate, yearly
from layers.bulk.runner import DaskRunner, Db, InProcess, dask_client
from layers.patrols import grid_cover
from tests import plan_flow
from tests.conftest import database_url

PATROL_END = date(2026, 3, 3)  # patrols on 1 and 2 March 2026
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)


TEMPLATE = "citygrid_test_bulk_tpl"


@pytest.fixture(scope="module")
def city() -> Iterator[tuple[str, Engine]]:
    """A fresh copy (``CREATE DATABASE ... TEMPLATE``, about a second) of a template database
    loaded once and kept, as the second demo city is: the tests commit, and loading costs ~12 s."""
    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents
    from data.patrols import load_demo_patrols

    tpl = database_url(TEMPLATE)
    migrate(tpl)
    eng = create_engine(tpl)
    with eng.begin() as conn:
        if is_empty(conn):
            load_demo(conn, grids=600)
            load_demo_incidents(conn, n=3000)
            load_demo_patrols(conn, days=2, end=PATROL_END)
    eng.dispose()
    url = tpl.rsplit("/", 1)[0] + "/citygrid_test_bulk"
    admin = create_engine(tpl.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "citygrid_test_bulk" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "citygrid_test_bulk" TEMPLATE "{TEMPLATE}"'))
    admin.dispose()
    eng = create_engine(url)
    yield url, eng
    eng.dispose()


@pytest.fixture(scope="module")
def dask2() -> Iterator[DaskRunner]:
    with dask_client(n_workers=2, memory_limit="1GiB") as client:
        runner = DaskRunner(client)
        assert len(client.scheduler_info()["workers"]) == 2
        yield runner


def test_yearly_analysis_on_dask_is_the_single_process_one(city, dask2) -> None:
    url, eng = city
    one = yearly.yearly(url, InProcess(), last="2026-11", as_of=AS_OF)
    two = yearly.yearly(url, dask2, last="2026-11", as_of=AS_OF)
    assert two == one
    assert len(one["months"]) == 12 and one["rows"]
    # the per-street counts add up to the incidents received in each month (city time)
    with eng.connect() as conn:
        tz = profile(conn).tz
        for m in one["months"]:
            start, end = assessment.month_window(m, tz)
            n = conn.execute(text("SELECT count(*) FROM incident WHERE received_at >= :s "
                                  "AND received_at < :e"), {"s": start, "e": end}).scalar_one()
            assert sum(r["received"] for r in one["rows"] if r["month"] == m) == n


def _cover(eng: Engine) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with eng.connect() as conn:
        return {(r.span, r.t0, r.grid_code): (r.share, r.last_fix_at) for r in conn.execute(text(
            "SELECT span, t0, grid_code, share, last_fix_at FROM patrol_grid_cover"))}


def test_coverage_on_dask_writes_what_refresh_range_writes(city, dask2) -> None:
    url, eng = city
    first, last = date(2026, 2, 28), date(2026, 3, 2)  # a day without patrols, two with
    with eng.begin() as conn:  # the existing single-process path, one transaction
        grid_cover.refresh_range(conn, first, last)
    single = _cover(eng)
    assert any(k[0] == "d" for k in single) and any(k[0] == "m" for k in single)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM patrol_grid_cover"))
    got = coverage.recompute(url, dask2, first, last)
    assert _cover(eng) == single
    assert got["rows"] == sum(1 for k in single if k[0] == "d")


def _history_frame(eng: Engine, n: int = 300) -> pd.DataFrame:
    """``n`` incidents at points inside random grids over three months, as a file would hold."""
    with eng.connect() as conn:
        return history_frame(conn, n, seed=20, start="2025-06-01T00:00:00Z", days=90)


def _imported(eng: Engine) -> dict[str, tuple[Any, ...]]:
    with eng.connect() as conn:
        return {r.external_id: tuple(r)[1:] for r in conn.execute(text(
            "SELECT external_id, region_code, grid_code, street_code, responsible_code, "
            "received_at, due_at, category_id, ST_AsText(geom) AS g, "
            "(SELECT count(*) FROM incident_event e WHERE e.incident_id = i.id) AS events "
            "FROM incident i WHERE external_id LIKE 'hist-%'"))}


def test_history_import_on_dask_is_the_single_process_one_and_idempotent(
        city, dask2, tmp_path: Path) -> None:
    url, eng = city
    frame = _history_frame(eng)
    month = pd.to_datetime(frame["received_at"]).dt.month
    files = (history.write_files(frame[month != 7], tmp_path / "pq", fmt="parquet")
             + history.write_files(frame[month == 7], tmp_path / "csv", fmt="csv"))
    assert any(f.endswith(".csv") for f in files) and any(f.endswith(".parquet") for f in files)

    got = history.import_files(url, InProcess(), files)
    assert got["imported"] == len(frame) and got["bad_rows"] == 0
    single = _imported(eng)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM incident_event WHERE incident_id IN "
                          "(SELECT id FROM incident WHERE external_id LIKE 'hist-%')"))
        conn.execute(text("DELETE FROM incident WHERE external_id LIKE 'hist-%'"))
    got = history.import_files(url, dask2, files)
    assert got["imported"] == len(frame)
    assert _imported(eng) == single
    # placed where PostGIS puts them, whatever the runner
    with eng.connect() as conn:
        wrong = conn.execute(text(
            "SELECT count(*) FROM incident i JOIN region_current g ON g.level = 'grid' "
            "AND ST_Covers(g.geom, i.geom) WHERE i.external_id LIKE 'hist-%' "
            "AND i.grid_code IS DISTINCT FROM g.code")).scalar_one()
    assert wrong == 0
    again = history.import_files(url, dask2, files)
    assert again["imported"] == 0 and again["duplicates"] == len(frame)
    # on Dask the GeoParquet files went through dask-geopandas, a partition per file
    parquet = [f for f in files if f.endswith(".parquet")]
    direct = history._parquet_on_dask(dask2, Db(url), "again", False, parquet)
    assert direct is not None and [g["file"] for g in direct] == parquet
    assert sum(g["duplicates"] for g in direct) == int((month != 7).sum())


def _retire_busiest_grid(eng: Engine) -> tuple[str, str, int]:
    """Retire the grid with the most incidents that has a neighbour in its community into that
    neighbour, through the plan flow, committed. Returns (retired, neighbour, its incidents)."""
    with eng.begin() as conn:
        g, into, community = conn.execute(text(
            "SELECT a.code, b.code, a.parent_code FROM region_current a "
            "JOIN region_current b ON b.level = 'grid' AND b.parent_code = a.parent_code "
            "AND b.code <> a.code AND ST_Length(ST_CollectionExtract(ST_Intersection("
            "ST_Boundary(a.geom), ST_Boundary(b.geom)), 2)) > 0 "
            "WHERE a.level = 'grid' ORDER BY (SELECT count(*) FROM incident i "
            "WHERE i.grid_code = a.code) DESC, a.code, b.code LIMIT 1")).one()
        n = conn.execute(text("SELECT count(*) FROM incident WHERE grid_code = :g "
                              "AND geom IS NOT NULL"), {"g": g}).scalar_one()
        planner = Principal.make("user:planner", "planner", Scope.of(community))
        plan = plans.create_plan(conn, name="bulk relocate", region_code=community,
                                 principal=planner)
        plan = plans.apply_edit(conn, plan["id"], {"op": "retire", "code": g, "into": into},
                                principal=planner, if_match=plan["etag"])
        plan = plan_flow.approve(conn, plan, planner)
        plans.activate(conn, plan["id"], principal=planner, if_match=plan["etag"])
    return g, into, n


def test_relocate_after_a_redraw_moves_the_incidents_of_the_retired_grid(city, dask2) -> None:
    url, eng = city
    assert relocate.relocate(url, dask2).moved == 0  # placed under these boundaries at intake
    retired, into, n = _retire_busiest_grid(eng)
    assert n > 0
    dry_one = relocate.relocate(url, InProcess())
    dry_two = relocate.relocate(url, dask2)
    assert dry_two.moves == dry_one.moves
    assert dry_one.moved == n
    assert {(f, t) for _, f, t in dry_one.moves} == {(retired, into)}

    before = {r.id: r for r in eng.connect().execute(text(
        "SELECT id, grid_code, version FROM incident ORDER BY id"))}
    got = relocate.relocate(Db(url), dask2, write=True)
    assert got.moved == n
    with eng.connect() as conn:
        after = {r.id: r for r in conn.execute(text(
            "SELECT id, grid_code, version FROM incident ORDER BY id"))}
        events = conn.execute(text(
            "SELECT count(*) FROM incident_event WHERE action = 'reroute' "
            "AND actor = 'bulk:relocate'")).scalar_one()
    moved_ids = {i for i, _, _ in dry_one.moves}
    for i, r in after.items():
        if i in moved_ids:
            assert (r.grid_code, r.version) == (into, before[i].version + 1)
        else:
            assert (r.grid_code, r.version) == (before[i].grid_code, before[i].version)
    assert events == n
    assert relocate.relocate(url, dask2).moved == 0  # nothing left to move


@pytest.mark.parametrize("way", ["single", "dask"])
def test_a_month_that_fails_is_rolled_back_whole_and_the_others_are_written(
        city, dask2, way: str) -> None:
    """An event insert fails (a trigger refuses one incident's event) after the month's UPDATE
    ran: none of that month's moves stay; every other month is written; a rerun finishes."""
    url, eng = city
    runner = dask2 if way == "dask" else InProcess()
    assert relocate.relocate(url, runner).moved == 0
    with eng.begin() as conn:
        conn.execute(text("UPDATE incident SET region_code = 'x', grid_code = 'x' "
                          "WHERE id % 40 = 0 AND geom IS NOT NULL"))
        victim, month = conn.execute(text(
            "SELECT max(id), date_trunc('month', min(received_at) AT TIME ZONE 'UTC') "
            "FROM incident WHERE grid_code = 'x' GROUP BY date_trunc('month', received_at "
            "AT TIME ZONE 'UTC') HAVING count(*) > 2 ORDER BY 2 LIMIT 1")).one()
        conn.execute(text(
            "CREATE FUNCTION bulk_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.incident_id = {int(victim)} THEN RAISE EXCEPTION 'injected failure'; "
            "END IF; RETURN NEW; END $$"))
        conn.execute(text("CREATE TRIGGER bulk_test_refuse BEFORE INSERT ON incident_event "
                          "FOR EACH ROW EXECUTE FUNCTION bulk_test_refuse()"))
    in_month = ("date_trunc('month', received_at AT TIME ZONE 'UTC') = :m")
    try:
        with pytest.raises(Exception, match="injected failure"):
            relocate.relocate(url, runner, write=True)
        with eng.connect() as conn:
            left = conn.execute(text(
                f"SELECT {in_month} AS same, count(*) AS n FROM incident WHERE grid_code = 'x' "
                "GROUP BY 1"), {"m": month}).all()
        assert [tuple(r) for r in left] == [(True, left[0].n)] and left[0].n > 2
    finally:
        with eng.begin() as conn:
            conn.execute(text("DROP TRIGGER bulk_test_refuse ON incident_event"))
            conn.execute(text("DROP FUNCTION bulk_test_refuse()"))
    again = relocate.relocate(url, runner, write=True)
    assert again.moved == left[0].n
    assert relocate.relocate(url, runner).moved == 0
