"""The workday calendar over HTTP (GET/PUT /calendar/{year}) and on the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.routers.calendar import CalendarPublic
from app.settings import get_settings
from tests.app.test_cli import run
from tests.conftest import app_role_url, database_url

HOLIDAYS = Path(__file__).resolve().parents[2] / "data" / "holidays"


def test_a_year_reads_for_anyone_who_sees_cases(anonymous: TestClient, headers) -> None:
    res = anonymous.get("/calendar/2025", headers=headers("t_worker"))
    assert res.status_code == 200, res.text
    year = CalendarPublic.model_validate(res.json())
    assert year.workdays == 248 and year.office_hours == [["08:30", "12:00"], ["13:30", "17:30"]]
    kinds = {d.date.isoformat(): (d.kind, d.name) for d in year.days}
    assert kinds["2025-10-11"] == ("workday", "国庆节、中秋节调休上班")
    assert kinds["2025-10-08"] == ("holiday", "国庆节、中秋节")
    assert anonymous.get("/calendar/2025").status_code == 401
    assert anonymous.get("/calendar/1999", headers=headers("t_worker")).status_code == 422


def test_put_replaces_a_year_all_or_nothing(anonymous: TestClient, headers) -> None:
    admin = headers("t_admin")
    before = anonymous.get("/calendar/2026", headers=admin).json()
    bad = anonymous.put("/calendar/2026", headers=admin, json={"days": [
        {"date": "2026-10-01", "kind": "holiday", "name": "国庆节"},
        {"date": "2026-02-30", "kind": "holiday"},
        {"date": "2027-01-01", "kind": "holiday"},
        {"date": "2026-10-10", "kind": "rest"}]})
    assert bad.status_code == 422
    body = bad.json()
    assert body["code"] == "import_rejected"
    assert [(e["row"], e["field"]) for e in body["detail"]["errors"]] == [
        (2, "date"), (3, "date"), (4, "kind")]
    assert anonymous.get("/calendar/2026", headers=admin).json() == before

    hours = anonymous.put("/calendar/2026", headers=admin, json={
        "days": [], "office_hours": [["13:30", "17:30"], ["08:30", "12:00"]]})
    assert hours.status_code == 422 and hours.json()["detail"]["field"] == "office_hours"

    ok = anonymous.put("/calendar/2026", headers=admin, json={
        "days": [{"date": "2026-10-01", "kind": "holiday", "name": "国庆节"}],
        "office_hours": [["09:00", "12:00"], ["14:00", "18:00"]]})
    assert ok.status_code == 200, ok.text
    out = CalendarPublic.model_validate(ok.json())
    assert out.workdays == 261 - 1 and [d.date.isoformat() for d in out.days] == ["2026-10-01"]
    assert out.office_hours == [["09:00", "12:00"], ["14:00", "18:00"]]
    assert anonymous.put("/calendar/2026", headers=headers("t_dispatcher"),
                         json={"days": []}).status_code == 403


def test_categories_carry_their_unit(anonymous: TestClient, headers) -> None:
    admin = headers("t_admin")
    cat = next(c for c in anonymous.get("/categories", headers=admin).json()
               if c["code"] == "E0101")
    assert cat["limit_unit"] == "hours"
    body = {k: cat[k] for k in ("parent_code", "name", "name_en", "family", "department",
                                "routing", "active")}
    partial = anonymous.put("/categories/E0101", headers=admin, json={
        **body, "limits": {"handle": 3}, "limit_unit": "work_days"})
    assert partial.status_code == 422 and partial.json()["code"] == "invalid_limit_unit"
    days = dict.fromkeys(("register", "dispatch", "accept", "verify", "close"), 0.25)
    saved = anonymous.put("/categories/E0101", headers=admin, json={
        **body, "limits": {**days, "handle": 1.75}, "limit_unit": "work_days"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["limit_unit"] == "work_days"


@pytest.fixture(scope="module")
def scratch_env() -> Iterator[dict[str, str]]:
    owner = database_url("citygrid_test_cli_calendar", fresh=True)
    from app.db import migrate

    migrate(owner)
    env = {"CITYGRID_DATABASE_URL": app_role_url(owner), "CITYGRID_MIGRATION_URL": owner}
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def test_cli_import_and_show(scratch_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,kind,name\n2027-01-01,holiday,元旦\n2027-01-32,holiday,x\n",
                   encoding="utf-8")
    res = run(scratch_env, "calendar", "import", str(bad))
    assert res.exit_code != 0 and "import_rejected" in res.output and "row 3" in res.output
    good = tmp_path / "cn-2027.csv"
    good.write_text("date,kind,name\n2027-01-01,holiday,元旦\n", encoding="utf-8")
    res = run(scratch_env, "calendar", "import", str(good))
    assert res.exit_code == 0, res.output
    assert "imported 1 rows for 2027" in res.output
    res = run(scratch_env, "calendar", "import", str(HOLIDAYS / "cn-2026.csv"))
    assert res.exit_code == 0 and "39 rows for 2026" in res.output
    shown = run(scratch_env, "calendar", "show", "2026")
    assert shown.exit_code == 0, shown.output
    assert "248 workdays" in shown.output and "2026-10-10  workday" in shown.output
    assert run(scratch_env, "calendar", "hours", "08:00-12:00", "14:00-18:00").exit_code == 0
    engine = create_engine(scratch_env["CITYGRID_MIGRATION_URL"])
    with engine.connect() as conn:
        hours = conn.execute(text("SELECT office_hours FROM work_calendar_setting")).scalar()
        n2027 = conn.execute(text("SELECT count(*) FROM work_calendar_day "
                                  "WHERE day >= '2027-01-01'")).scalar()
    engine.dispose()
    assert hours == [["08:00", "12:00"], ["14:00", "18:00"]] and n2027 == 1
