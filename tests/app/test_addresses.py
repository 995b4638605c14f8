"""The address book's API: search with confidence and grid, import (file, CRS, errors), one
address, and the jurisdiction each route keeps."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text

from app.routers.addresses import AddressDetail, ImportSummary, SearchPublic
from data.addresses import generate
from gis.crs import from_lonlat
from tests.address_book import ensure_demo_book


@pytest.fixture(scope="module")
def book(engine: Engine) -> int:
    return ensure_demo_book(engine)


def _entry(conn: Connection, street: str):
    return next(e for e in generate(conn) if e.key.startswith(street) and e.unit is not None)


def test_search_finds_a_noisy_address_with_grid_and_confidence(book, anonymous: TestClient,
                                                               headers, conn: Connection) -> None:
    entry = _entry(conn, "330782001")
    typed = entry.render(prefix=False, hao="號", building="座", unit="").replace("1", "１")
    res = anonymous.get("/addresses/search", params={"q": typed, "limit": 3},
                        headers=headers("t_dispatcher"))
    assert res.status_code == 200, res.text
    body = SearchPublic.model_validate(res.json())
    top = body.candidates[0]
    assert top.code == entry.key and top.confidence == 1.0
    assert top.grid_code and top.grid_code.startswith(entry.key[:12]) and top.grid_name
    assert len(body.candidates) <= 3 and body.normalised.endswith("单元")
    one = anonymous.get(f"/addresses/{top.id}", headers=headers("t_dispatcher"))
    detail = AddressDetail.model_validate(one.json())
    assert detail.text == entry.text and detail.valid_to is None


def test_results_outside_the_jurisdiction_are_not_shown(book, anonymous: TestClient, headers,
                                                        conn: Connection) -> None:
    elsewhere = _entry(conn, "330782002")  # 江东街道; t_supervisor holds 稠城街道
    for who, sees in (("t_supervisor", False), ("t_supervisor2", True), ("t_dispatcher", True)):
        res = anonymous.get("/addresses/search", params={"q": elsewhere.text},
                            headers=headers(who))
        assert res.status_code == 200
        codes = [c["code"] for c in res.json()["candidates"]]
        assert (elsewhere.key in codes) is sees, who
    found = anonymous.get("/addresses/search", params={"q": elsewhere.text},
                          headers=headers("t_dispatcher")).json()["candidates"][0]["id"]
    hidden = anonymous.get(f"/addresses/{found}", headers=headers("t_supervisor"))
    assert hidden.status_code == 404 and hidden.json()["code"] == "address_not_found"


def test_errors_have_code_message_detail(anonymous: TestClient, headers) -> None:
    h = headers("t_dispatcher")
    for res, status, code in (
        (anonymous.get("/addresses/search", params={"q": "，。"}, headers=h), 422, "empty_query"),
        (anonymous.get("/addresses/search", headers=h), 422, None),
        (anonymous.get("/addresses/999999999999", headers=h), 404, "address_not_found"),
        (anonymous.get("/addresses/search", params={"q": "江滨路"}), 401, None),
        (anonymous.post("/addresses/import", files={"file": ("a.csv", b"address,lon,lat\n")},
                        headers=h), 403, "forbidden"),
    ):
        assert res.status_code == status, res.text
        assert {"code", "message", "detail"} <= set(res.json())
        if code:
            assert res.json()["code"] == code


def _grid_point(conn: Connection, prefix: str) -> tuple[str, float, float]:
    return conn.execute(text(
        "SELECT code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE level = 'grid' AND code LIKE :p ORDER BY code LIMIT 1"),
        {"p": prefix + "%"}).one()


def test_import_in_bd09_then_search_it(anonymous: TestClient, headers, conn: Connection) -> None:
    grid, lon, lat = _grid_point(conn, "330782001")
    bx, by = from_lonlat(lon, lat, "bd09")
    csv = (f"地址编码,地址,经度,纬度\napi-1,浙江省金华市义乌市稠城街道测试社区接口路一百零五号,"
           f"{float(bx):.8f},{float(by):.8f}\n").encode()
    res = anonymous.post("/addresses/import", files={"file": ("book.csv", csv)},
                         data={"crs": "bd09", "mode": "merge"}, headers=headers("t_admin"))
    assert res.status_code == 200, res.text
    assert ImportSummary.model_validate(res.json()).model_dump() == {
        "added": 1, "changed": 0, "unchanged": 0, "ended": 0, "total": 1, "crs": "BD-09"}
    top = anonymous.get("/addresses/search", params={"q": "接口路105号"},
                        headers=headers("t_dispatcher")).json()["candidates"][0]
    assert top["code"] == "api-1" and top["grid_code"] == grid
    assert abs(top["lon"] - lon) < 1e-5 and abs(top["lat"] - lat) < 1e-5


def test_import_lists_every_bad_row(anonymous: TestClient, headers, conn: Connection) -> None:
    _, lon, lat = _grid_point(conn, "330782002")  # outside the planner's street
    csv = (f"address,lon,lat\n,{lon},{lat}\n坏路1号,x,{lat}\n外路1号,{lon},{lat}\n").encode()
    res = anonymous.post("/addresses/import", files={"file": ("bad.csv", csv)},
                         data={"mode": "merge"}, headers=headers("t_planner"))
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "import_rejected"
    assert [(e["row"], e["field"]) for e in body["detail"]["errors"]] == [
        (2, "address"), (3, "lon"), (4, "lon")]
    assert "jurisdiction" in body["detail"]["errors"][2]["reason"]
    bad_crs = anonymous.post("/addresses/import", files={"file": ("a.csv", csv)},
                             data={"crs": "mars"}, headers=headers("t_admin"))
    assert bad_crs.status_code == 422 and bad_crs.json()["detail"]["errors"][0]["field"] == "crs"


def test_cli_import_and_search(tmp_path) -> None:
    """``citygrid addresses import FILE --crs`` on the tiny city (it commits, as an operator would)."""
    from typer.testing import CliRunner

    from app.cli import app as cli
    from app.db import migrate
    from app.settings import get_settings
    from tests.conftest import app_role_url, database_url
    from tests.tiny_city import write_tiny_city

    owner = database_url("citygrid_test_cli_addr", fresh=True)
    migrate(owner)
    engine = create_engine(owner)
    with engine.begin() as conn:
        write_tiny_city(conn)
        grid, lon, lat = conn.execute(text(
            "SELECT code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
            "FROM region_current WHERE level = 'grid' ORDER BY code LIMIT 1")).one()
    engine.dispose()
    env = {"CITYGRID_DATABASE_URL": app_role_url(owner), "CITYGRID_MIGRATION_URL": owner}
    gx, gy = from_lonlat(lon, lat, "gcj02")
    good = tmp_path / "book.csv"
    good.write_text(f"address,lon,lat\n小城路十二号三幢,{float(gx):.8f},{float(gy):.8f}\n"
                    f"小城路13号,{float(gx):.8f},{float(gy):.8f}\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"address,lon,lat\n小城路14号,{lon},{lat}\n小城路15号,east,{lat}\n",
                   encoding="utf-8")

    def run(*args: str):
        get_settings.cache_clear()
        return CliRunner().invoke(cli, list(args), env=env)

    try:
        done = run("addresses", "import", str(good), "--crs", "gcj02")
        assert done.exit_code == 0, done.output
        assert "'added': 2" in done.output and "GCJ-02" in done.output
        refused = run("addresses", "import", str(bad))
        assert refused.exit_code == 2 and "row 3 [lon]: not a number" in refused.output
        found = run("addresses", "search", "小城路12號3座")
        assert found.exit_code == 0 and '"confidence": 1.0' in found.output
        assert grid in found.output
    finally:
        get_settings.cache_clear()
