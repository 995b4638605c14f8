"""Idempotent intake under concurrent retries, on committed data in a scratch database."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, create_engine, text

from app.db import migrate
from grids.access import Principal
from grids.locate import load_snapshot
from layers.incidents import catalogue, intake
from tests.conftest import app_role_url, database_url
from tests.tiny_city import at, write_tiny_city


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    owner = database_url("citygrid_test_intake", fresh=True)
    migrate(owner)
    with create_engine(owner).begin() as conn:
        write_tiny_city(conn)
        catalogue.seed(conn)
    engine = create_engine(app_role_url(owner), pool_size=20, max_overflow=0)
    yield engine
    engine.dispose()


def test_200_concurrent_submissions_of_50_ids_make_50_incidents(scratch: Engine) -> None:
    with scratch.connect() as conn:
        snap = load_snapshot(conn)
    principal = Principal.system("test")
    lon, lat = at(0.5, 0.5)

    def submit(i: int) -> tuple[int, bool]:
        with scratch.begin() as conn:
            placed, created = intake.create(conn, snap, {
                "source": "citizen_app", "external_id": f"app-{i % 50}", "category": "E0101",
                "lon": lon, "lat": lat}, principal=principal)
            return placed["id"], created

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(submit, range(200)))
    with scratch.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM incident")).scalar()
        events = conn.execute(text("SELECT count(*) FROM incident_event")).scalar()
    assert count == 50 and events == 50
    assert sum(created for _, created in results) == 50
    by_id: dict[int, set[int]] = {}
    for i, (incident, _) in enumerate(results):
        by_id.setdefault(i % 50, set()).add(incident)
    assert all(len(ids) == 1 for ids in by_id.values())  # every retry got the same incident


def test_a_retry_from_another_jurisdiction_gets_a_bare_409(scratch: Engine) -> None:
    """Naming another community's (source, external id) must not reveal that incident's id,
    grid or responsible worker: a 409 without them (the owner's own retries still get the id)."""
    from grids.access import Scope
    from grids.errors import Conflict
    from tests.tiny_city import C1, C2

    with scratch.connect() as conn:
        snap = load_snapshot(conn)
    here = Principal.make("key:c2", "supervisor", Scope.of(C2))
    there = Principal.make("key:c1", "supervisor", Scope.of(C1))
    lon, lat = at(2.5, 0.25)  # G3, in C2
    report = {"source": "hotline_12345", "external_id": "leak-1", "category": "E0101",
              "lon": lon, "lat": lat}
    with scratch.begin() as conn:
        placed, created = intake.create(conn, snap, report, principal=here)
    assert created and placed["grid_code"] is not None
    with scratch.begin() as conn:
        again, created = intake.create(conn, snap, report, principal=here)
    assert not created and again["id"] == placed["id"]
    with scratch.begin() as conn, pytest.raises(Conflict) as caught:
        intake.create(conn, snap, {**report, "lon": at(0.5, 0.5)[0], "lat": at(0.5, 0.5)[1]},
                      principal=there)
    err = caught.value
    assert err.code == "duplicate_external_id"
    said = f"{err.message} {err.detail}"
    for secret in (str(placed["id"]), placed["grid_code"], placed["responsible_code"] or "W3",
                   C2):
        assert secret not in said
