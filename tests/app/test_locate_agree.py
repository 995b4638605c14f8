"""Single and batch lookups give the same answers: GET /locate, POST /locate/batch (CSV, JSON,
GeoJSON) and ``citygrid locate-file``, on the tiny city and on a city with streets but no grids.

The points are drawn at random (seeded) from every case the locator distinguishes: inside a grid,
on shared edges and vertices, in a gap, outside but near, farther than CITYGRID_MAX_OUTSIDE_M,
swapped, out of range. Each goes through all paths; the answers must agree row by row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from typer.testing import CliRunner

from app.cli import app as cli
from app.locator_service import LocatorService
from app.main import create_app
from app.settings import CitySettings, DatabaseSettings, Settings, get_settings
from grids import store
from tests.conftest import app_role_url, database_url, tiny_city_engine, token_for
from tests.tiny_city import CITY, REGIONS, STREET, T0, X0, Y0, at

MAX_OUTSIDE_M = 5_000.0


def _points(seed: int = 7) -> list[tuple[str, float, float]]:
    """(case, lon, lat) around the tiny city (3 × 1 units of 0.01°)."""
    rng = np.random.default_rng(seed)
    pts: list[tuple[str, float, float]] = []
    for x, y in rng.uniform([0, 0], [3, 1], size=(40, 2)):
        pts.append(("random", *at(float(x), float(y))))
    for x in (0, 1, 2, 3):  # shared edges and vertices
        for y in (0, 0.5, 1):
            pts.append(("vertex", *at(x, y)))
    for x, y in rng.uniform([2, 0.5], [3, 1], size=(5, 2)):
        pts.append(("gap", *at(x, y)))
    for d in (0.5, 1.5, 4.0, 8.0):  # units of 0.01° (~1 km): near, and beyond 5 km
        pts.append(("east", *at(3 + d, 0.3)))
        pts.append(("south", *at(1.2, -d)))
    for x, y in rng.uniform([0, 0], [3, 1], size=(5, 2)):
        lon, lat = at(x, y)
        pts.append(("swapped", lat, lon))
    pts += [("range", 200.0, 29.0), ("range", 120.0, 95.0)]
    return [(c, float(x), float(y)) for c, x, y in pts]


POINTS = _points()


def _from_single(res: Any) -> dict[str, Any]:
    body = res.json()
    if res.status_code != 200:
        return {"status": "error", "error_code": body["code"]}
    by_level = {c["level"]: c["code"] for c in body["chain"]}
    near = body.get("nearest") or {}
    return {"status": body["status"],
            "grid_code": body["grid"]["code"] if body["grid"] else "",
            "community_code": by_level.get("community", ""),
            "street_code": by_level.get("street", ""),
            "responsible_code": (body["responsible"] or {}).get("code", ""),
            "fallback": body["fallback"] or "",
            "nearest_code": near.get("code", ""),
            "nearest_distance_m": near.get("distance_m")}


def _from_batch(row: dict[str, Any]) -> dict[str, Any]:
    if row["status"] == "error":
        return {"status": "error", "error_code": row["error_code"]}
    dist = row["nearest_distance_m"]
    return {k: row[k] for k in ("status", "grid_code", "community_code", "street_code",
                                "responsible_code", "fallback", "nearest_code")} | {
        "nearest_distance_m": float(dist) if dist not in ("", None) else None}


def _csv(points: list[tuple[str, float, float]]) -> str:
    return "case,lon,lat\n" + "".join(f"{c},{x!r},{y!r}\n" for c, x, y in points)


def _all_paths(client: TestClient, env: dict[str, str], tmp_path,
               points: list[tuple[str, float, float]]) -> dict[str, list[dict[str, Any]]]:
    single = [_from_single(client.get("/locate", params={"lon": x, "lat": y}))
              for _, x, y in points]
    res = client.post("/locate/batch", content=_csv(points), headers={"content-type": "text/csv"})
    assert res.status_code == 200, res.text
    batch_csv = [_from_batch(r) for r in csv.DictReader(io.StringIO(res.text))]
    res = client.post("/locate/batch", json=[{"lon": x, "lat": y} for _, x, y in points])
    assert res.status_code == 200, res.text
    batch_json = [_from_batch(r) for r in res.json()]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
         "properties": {}} for _, x, y in points]}
    res = client.post("/locate/batch", content=orjson.dumps(fc),
                      headers={"content-type": "application/geo+json"})
    assert res.status_code == 200, res.text
    batch_geojson = [_from_batch(f["properties"]) for f in res.json()["features"]]
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(_csv(points))
    get_settings.cache_clear()
    done = CliRunner().invoke(cli, ["locate-file", str(src), str(dst)], env=env)
    get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    with dst.open() as f:
        cli_rows = [_from_batch(r) for r in csv.DictReader(f)]
    return {"single": single, "csv": batch_csv, "json": batch_json, "geojson": batch_geojson,
            "locate-file": cli_rows}


def _serve(engine: Engine, username: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    owner = engine.url.render_as_string(hide_password=False)
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(owner),
                                            migration_url=owner),
                        city=CitySettings(max_outside_m=MAX_OUTSIDE_M))
    app = create_app(settings)
    env = {"CITYGRID_DATABASE_URL": app_role_url(owner), "CITYGRID_MIGRATION_URL": owner,
           "CITYGRID_MAX_OUTSIDE_M": str(MAX_OUTSIDE_M)}
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.locator.wait_raster()
        client.headers.update({"Authorization": f"Bearer {token_for(app, username)}"})
        yield client, env


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[TestClient, dict[str, str]]]:
    engine = tiny_city_engine("citygrid_test_agree", users=(("agree_admin", "admin"),))
    yield from _serve(engine, "agree_admin")
    engine.dispose()


def test_single_batch_and_locate_file_agree(tiny, tmp_path) -> None:
    client, env = tiny
    answers = _all_paths(client, env, tmp_path, POINTS)
    single = answers.pop("single")
    seen = {a["status"] for a in single} | {a.get("error_code") for a in single}
    # every case is exercised
    assert {"inside", "gap", "outside", "error", "point_far_outside", "swapped_coordinate",
            "invalid_coordinate"} <= seen
    for path, rows in answers.items():
        assert len(rows) == len(POINTS)
        for (case, x, y), one, other in zip(POINTS, single, rows, strict=True):
            assert other == one, f"{path} disagrees with /locate at {case} {x},{y}"


def test_outside_rows_carry_the_nearest_grid_and_far_rows_are_errors(tiny) -> None:
    client, _ = tiny
    near, far = at(3.5, 0.3), at(12.0, 0.3)  # ~0.5 km and ~8.7 km east of the city
    res = client.post("/locate/batch", content=_csv([("n", *near), ("f", *far)]),
                      headers={"content-type": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(res.text)))
    assert rows[0]["status"] == "outside" and rows[0]["nearest_code"].startswith("990100")
    assert 400 < float(rows[0]["nearest_distance_m"]) < 600
    assert rows[1]["status"] == "error" and rows[1]["error_code"] == "point_far_outside"
    assert rows[1]["nearest_code"] == "" and res.headers["x-citygrid-bad-rows"] == "1"


def test_input_columns_pass_through_byte_for_byte(tiny, tmp_path) -> None:
    client, env = tiny
    lon, lat = at(0.5, 0.5)
    body = ("id,reported_at,amount,code,note,lon,lat\n"
            f'007,2024-03-01 08:05:00,1.10,0330,"a, b",{lon},{lat}\n'
            f"8,2024-03-01T08:05:00+08:00,1e3,,NA,{lon},{lat}\n")
    res = client.post("/locate/batch", content=body, headers={"content-type": "text/csv"})
    assert res.status_code == 200
    want = list(csv.reader(io.StringIO(body)))
    got = list(csv.reader(io.StringIO(res.text)))
    assert [r[:7] for r in got] == want
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(body)
    get_settings.cache_clear()
    done = CliRunner().invoke(cli, ["locate-file", str(src), str(dst)], env=env)
    get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    with dst.open() as f:
        assert [r[:7] for r in csv.reader(f)] == want


# --------------------------------------------------------------------------------------------
# A city with streets but no grids yet
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streets_only() -> Iterator[Engine]:
    from app import users
    from app.db import migrate
    from grids.access import Principal

    url = database_url("citygrid_test_nogrids", fresh=True)
    migrate(url)
    engine = create_engine(url)
    keep = [r for r in REGIONS if r[2] in ("city", "street")]
    frame = gpd.GeoDataFrame(
        [dict(code=c, name=n, level=lv, parent_code=p) for c, n, lv, p, _ in keep],
        geometry=[g for *_, g in keep], crs="EPSG:4490")
    with engine.begin() as conn:
        version = store.new_version(conn, label="streets only", activated_at=T0)
        store.insert_regions(conn, frame, version_id=version, valid_from=T0)
        store.upsert_staff(conn, pd.DataFrame([
            dict(code="SO", name="苏街", phone="19900000001", role="street_officer",
                 status="available"),
            dict(code="CD", name="陈值", phone="19900000002", role="command_duty",
                 status="available")]))
        store.insert_assignments(conn, pd.DataFrame([
            dict(staff_code="SO", region_code=STREET, duty="head"),
            dict(staff_code="CD", region_code=CITY, duty="head")]), valid_from=T0)
        users.create_user(conn, username="nogrid_admin", password="tiny-city-password",
                          role="admin", region_code="990100", principal=Principal.system("t"))
    yield engine
    engine.dispose()


def test_the_raster_thread_builds_without_grids(streets_only: Engine) -> None:
    service = LocatorService(streets_only)
    snap = service.reload()
    service.wait_raster()
    assert len(snap.grids) == 0 and snap.areas.has_raster  # the thread ran to its end


def test_streets_without_grids_answer_by_their_street(streets_only: Engine, tmp_path) -> None:
    for client, env in _serve(streets_only, "nogrid_admin"):
        points = [("street", *at(0.5, 0.5)), ("street", *at(2.9, 0.9)),
                  ("near", *at(3.5, 0.5)), ("far", X0 + 0.2, Y0 + 0.005),
                  ("swapped", Y0 + 0.005, X0 + 0.005)]
        answers = _all_paths(client, env, tmp_path, points)
        single = answers.pop("single")
        assert [a["status"] for a in single] == ["gap", "gap", "outside", "error", "error"]
        assert single[0]["street_code"] == STREET and single[0]["responsible_code"] == "SO"
        assert single[2]["nearest_code"] in (STREET, CITY)  # no grid: the nearest region
        assert single[3]["error_code"] == "point_far_outside"
        for path, rows in answers.items():
            assert rows == single, path
