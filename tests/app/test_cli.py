"""The citygrid CLI against a scratch database (it commits, as an operator would)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from app.cli import app as cli
from app.db import migrate
from app.settings import get_settings
from tests.conftest import app_role_url, database_url
from tests.tiny_city import write_tiny_city


@pytest.fixture(scope="module")
def scratch_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    owner = database_url("citygrid_test_cli", fresh=True)
    migrate(owner)
    engine = create_engine(owner)
    with engine.begin() as conn:
        write_tiny_city(conn)
    engine.dispose()
    env = {"CITYGRID_DATABASE_URL": app_role_url(owner), "CITYGRID_MIGRATION_URL": owner}
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def run(env: dict[str, str], *args: str, stdin: str | None = None):
    get_settings.cache_clear()
    return CliRunner().invoke(cli, list(args), env=env, input=stdin)


def test_user_lifecycle(scratch_env: dict[str, str]) -> None:
    added = run(scratch_env, "user", "add", "ops_admin", "--role", "admin", "--region",
                "990100", "--password-stdin", stdin="a-long-admin-password\n")
    assert added.exit_code == 0, added.output
    weak = run(scratch_env, "user", "add", "weak", "--role", "viewer", "--region", "990100",
               "--password-stdin", stdin="short\n")
    assert weak.exit_code == 2 and "weak_password" in weak.output
    dup = run(scratch_env, "user", "add", "ops_admin", "--role", "viewer", "--region", "990100",
              "--password-stdin", stdin="another-long-password\n")
    assert dup.exit_code != 0
    short = run(scratch_env, "user", "add", "w1", "--role", "viewer", "--region", "990100",
                "--password-stdin", stdin="worker-long-password\n")
    assert short.exit_code == 2 and "invalid_username" in short.output
    worker = run(scratch_env, "user", "add", "worker1", "--role", "grid_worker", "--region", "990100",
                 "--staff", "W1", "--password-stdin", stdin="worker-long-password\n")
    assert worker.exit_code == 0, worker.output
    listed = run(scratch_env, "user", "list")
    assert "ops_admin" in listed.output and "worker1" in listed.output
    assert run(scratch_env, "user", "reset-password", "worker1", "--password-stdin",
               stdin="new-worker-password\n").exit_code == 0
    assert run(scratch_env, "user", "disable", "worker1").exit_code == 0
    assert "disabled" in run(scratch_env, "user", "list").output
    engine = create_engine(scratch_env["CITYGRID_MIGRATION_URL"])
    with engine.connect() as conn:
        actors = conn.execute(text("SELECT DISTINCT actor FROM audit_log "
                                   "WHERE entity = 'app_user'")).scalars().all()
        token_version = conn.execute(text("SELECT token_version FROM app_user "
                                          "WHERE username = 'worker1'")).scalar()
    engine.dispose()
    assert all(a.startswith("cli:") for a in actors)
    assert token_version == 3  # reset and disable both ended the old tokens


def test_check_reports_the_tiny_citys_gap(scratch_env: dict[str, str]) -> None:
    res = run(scratch_env, "check")
    assert res.exit_code == 1
    assert "gap" in res.output and "990100001002" in res.output


def test_locate_and_locate_file(scratch_env: dict[str, str], tmp_path) -> None:
    import csv
    import json

    from tests.tiny_city import G1, G2, at

    lon, lat = at(0.5, 0.5)
    res = run(scratch_env, "locate", str(lon), str(lat))
    assert res.exit_code == 0, res.output
    answer = json.loads(res.output)
    assert answer["grid"]["code"] == G1 and answer["responsible"]["code"] == "W1"
    past = run(scratch_env, "locate", str(lon), str(lat), "--at", "2024-06-01T00:00:00+00:00")
    assert json.loads(past.output)["status"] == "outside"  # the tiny city starts in 2025
    swapped = run(scratch_env, "locate", str(lat), str(lon))
    assert swapped.exit_code == 2 and "swapped_coordinate" in swapped.output
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    x2, y2 = at(1.5, 0.5)
    src.write_text(f"ref,lon,lat\na,{lon},{lat}\nb,{x2},{y2}\nc,oops,{lat}\n")
    done = run(scratch_env, "locate-file", str(src), str(dst))
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(dst.open()))
    assert [r["ref"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["grid_code"] == G1 and rows[1]["grid_code"] == G2
    assert rows[1]["fallback"] == "community_head" and rows[2]["status"] == "error"
