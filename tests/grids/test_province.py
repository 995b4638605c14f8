"""A province in one database (issue 20, migration 0030): three generated cities across two
Gauss-Krüger zones, loaded by data.province_load into a database of their own.

Levels and parent rules; each city's own metric zone, its areas against a geodesic oracle; the
provincial supervisor and dispatcher see every city, a city's see their city only (404 outside),
over HTTP with real users and keys; the province's assessment has one row per city, summing to
the raw count.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Geod
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import IntegrityError, InternalError

from app import users
from app.db import migrate
from app.main import create_app
from app.seed_incidents import load_demo_incidents
from app.settings import DatabaseSettings, Settings
from data.province import Province, build_province
from data.province_load import load_province, province_code
from grids import topology
from grids.access import Principal
from grids.city import read_profile
from grids.codes import level_of, normalise
from layers import assessment
from tests.conftest import app_role_url, database_url

PASSWORD = "province-test-password"
CITIES = 3  # the third city's centre lies east of 118.5°E: another 3° zone
INCIDENTS = 3000


@pytest.fixture(scope="module")
def province() -> Iterator[tuple[Engine, Province, str]]:
    url = database_url("citygrid_test_province", fresh=True)
    migrate(url)
    eng = create_engine(url)
    p = build_province(cities=CITIES, grids_per_city=12)
    system = Principal.system("test-setup")
    prov = province_code(p)
    cities = [normalise(c) for c in p.city_codes]
    with eng.begin() as conn:
        load_province(conn, p, staff=True)
        # boundaries start now: the year of incidents ends now
        load_demo_incidents(conn, n=INCIDENTS, end=datetime.now(UTC), days=90)
        for name, role, region in (("p_super", "supervisor", prov), ("p_disp", "dispatcher", prov),
                                   ("c1_super", "supervisor", cities[0]),
                                   ("c1_disp", "dispatcher", cities[0])):
            users.create_user(conn, username=name, password=PASSWORD, role=role,
                              region_code=region, principal=system)
    yield eng, p, url
    eng.dispose()


@pytest.fixture(scope="module")
def http(province: tuple[Engine, Province, str]) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    eng, p, url = province
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(url),
                                                  migration_url=url)))
    cities = [normalise(c) for c in p.city_codes]
    with eng.begin() as conn:
        system = Principal.system("test-setup")
        keys = {name: users.create_api_key(conn, name=name, role=role, region_code=region,
                                           principal=system)["key"]
                for name, role, region in (("p_key", "supervisor", province_code(p)),
                                           ("c2_key", "supervisor", cities[1]))}
    with TestClient(app, raise_server_exceptions=False) as client:
        tokens = {u: {"Authorization": f"Bearer {app.state.auth.issue(e)[0]}"}
                  for u, e in app.state.directory.by_name.items()}
        tokens |= {k: {"X-API-Key": v} for k, v in keys.items()}
        yield client, tokens


@pytest.fixture
def conn(province: tuple[Engine, Province, str]) -> Iterator[Connection]:
    c = province[0].connect()
    t = c.begin()
    try:
        yield c
    finally:
        t.rollback()
        c.close()


def _month(conn: Connection) -> str:
    """The busiest month of the province's incidents (local time)."""
    return conn.execute(text(
        "SELECT to_char(received_at AT TIME ZONE citygrid_tz(), 'YYYY-MM') m FROM incident "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")).scalar_one()


# -- levels and parent rules -------------------------------------------------------------------
def test_codes_know_the_province() -> None:
    assert level_of("990000000000") == "province"
    assert level_of("990001000000") == "city"
    from grids.access import prefix_of
    assert prefix_of("990000") == "99" and prefix_of("990001") == "990001"


def test_the_province_is_the_root_and_names_the_profile(conn: Connection,
                                                         province: tuple[Engine, Province, str]
                                                         ) -> None:
    _, p, _ = province
    prov = province_code(p)
    levels = dict(conn.execute(text("SELECT level, count(*) FROM region_current GROUP BY 1")).all())
    assert levels["province"] == 1 and levels["city"] == CITIES
    parents = conn.execute(text("SELECT DISTINCT parent_code FROM region_current "
                                "WHERE level = 'city'")).scalars().all()
    assert parents == [prov]
    prof = read_profile(conn)
    assert prof.code == prov and prof.is_province and prof.region_prefix == prov[:2]
    outline = shapely.union_all(p.geoms[p.level_mask("city")])
    assert prof.extent == pytest.approx(tuple(shapely.bounds(outline)), abs=1e-9)
    # the tree is whole (the generated outlines stick out of their parents by a few m²: not
    # this test's business)
    tree = [v for v in topology.check(conn, tolerance_m2=1e6)
            if v.kind in ("missing_parent", "level_mismatch")]
    assert tree == []


def _region(conn: Connection, code: str, level: str) -> int:
    return conn.execute(text("INSERT INTO region (code, level, name) VALUES (:c, :l, 'x') "
                             "RETURNING id"), {"c": code, "l": level}).scalar_one()


def _boundary(conn: Connection, region_id: int, parent_id: int | None) -> None:
    conn.execute(text(
        "INSERT INTO region_boundary (region_id, parent_id, version_id, geom, area_m2, valid_from) "
        "VALUES (:r, :p, (SELECT min(id) FROM boundary_version), "
        "ST_Multi(ST_GeomFromText('POLYGON((130 40, 130.01 40, 130.01 40.01, 130 40))', 4490)), "
        "0, now())"), {"r": region_id, "p": parent_id})


@pytest.mark.parametrize(("child", "child_level", "parent", "parent_level", "why"), [
    ("880000000000", "province", "880001000000", "city", "a province cannot hang under a city"),
    ("880001001000", "street", "880000000000", "province", "a street cannot hang under a prov"),
    ("770001000000", "city", "880000000000", "province", "its code starts with other digits"),
])
def test_parent_rules_refuse_a_wrong_tree(conn: Connection, child: str, child_level: str,
                                          parent: str, parent_level: str, why: str) -> None:
    pid = _region(conn, parent, parent_level)
    if parent_level == "city":
        _boundary(conn, pid, None)
    else:
        _boundary(conn, pid, None)
    cid = _region(conn, child, child_level)
    with pytest.raises((IntegrityError, InternalError), match=why[:25]), conn.begin_nested():
        _boundary(conn, cid, pid)


def test_a_province_code_is_refused_as_a_city(conn: Connection) -> None:
    with pytest.raises(IntegrityError, match="region_code_matches_level"), conn.begin_nested():
        _region(conn, "880000000000", "city")


def test_a_city_under_its_province_and_a_province_without_parent_are_accepted(
        conn: Connection) -> None:
    pid = _region(conn, "880000000000", "province")
    _boundary(conn, pid, None)
    cid = _region(conn, "880001000000", "city")
    _boundary(conn, cid, pid)
    assert conn.execute(text("SELECT parent_code FROM region_current WHERE code = "
                             "'880001000000'")).scalar_one() == "880000000000"


# -- each city its own zone ---------------------------------------------------------------------
def test_each_city_is_measured_in_its_own_zone(conn: Connection,
                                               province: tuple[Engine, Province, str]) -> None:
    _, p, _ = province
    zones = dict(conn.execute(text("SELECT code, metric_srid FROM city_metric")).all())
    expected = {normalise(c): s for c, s in zip(p.city_codes, p.city_srids, strict=True)}
    assert zones == expected and len(set(zones.values())) == 2  # two zones, as the generator
    prof = read_profile(conn)
    for city, srid in expected.items():
        assert conn.execute(text("SELECT citygrid_metric_srid(:c)"),
                            {"c": city[:9] + "001001"}).scalar_one() == srid
        assert prof.metric_crs_for(city[:9] + "001001") == f"EPSG:{srid}"
    # the province itself: the profile's zone (its centre's)
    assert conn.execute(text("SELECT citygrid_metric_srid(code) = citygrid_metric_srid() "
                             "FROM city_profile")).scalar_one()
    geod = Geod(ellps="GRS80")
    rows = conn.execute(text(
        "SELECT code, area_m2, ST_Area(ST_Transform(geom, citygrid_metric_srid(code))) AS own, "
        "ST_AsBinary(geom) AS wkb FROM region_current WHERE level IN ('city', 'street') "
        "ORDER BY code")).all()
    for r in rows:
        oracle = abs(geod.geometry_area_perimeter(shapely.from_wkb(bytes(r.wkb)))[0])
        assert r.area_m2 == pytest.approx(r.own, rel=1e-9), r.code
        assert r.area_m2 == pytest.approx(oracle, rel=1e-3), r.code


def test_a_given_srid_overrides_the_cities_zones(conn: Connection) -> None:
    conn.execute(text("UPDATE city_profile SET metric_auto = false, metric_srid = 4547"))
    srids = conn.execute(text("SELECT DISTINCT citygrid_metric_srid(code) FROM city_metric")
                         ).scalars().all()
    assert srids == [4547]


# -- jurisdiction over HTTP ---------------------------------------------------------------------
def _a_point(conn: Connection, city: str) -> tuple[float, float, str]:
    r = conn.execute(text(
        "SELECT code, ST_X(ST_PointOnSurface(geom)) x, ST_Y(ST_PointOnSurface(geom)) y "
        "FROM region_current WHERE level = 'grid' AND code LIKE :p ORDER BY code LIMIT 1"),
        {"p": city[:6] + "%"}).one()
    return r.x, r.y, r.code


def test_the_province_sees_every_city_and_a_city_only_itself(
        http: tuple[TestClient, dict[str, Any]], conn: Connection,
        province: tuple[Engine, Province, str]) -> None:
    client, tok = http
    _, p, _ = province
    cities = [normalise(c) for c in p.city_codes]
    for who in ("p_super", "p_disp", "p_key"):
        for city in cities:
            x, y, grid = _a_point(conn, city)
            res = client.get("/locate", params={"lon": x, "lat": y}, headers=tok[who])
            assert res.status_code == 200, (who, res.text)
            assert res.json()["grid"]["code"] == grid
            assert client.get(f"/regions/{city}", headers=tok[who]).status_code == 200
    own = {"c1_super": cities[0], "c1_disp": cities[0], "c2_key": cities[1]}
    for who, mine in own.items():
        for city in cities:
            x, y, _ = _a_point(conn, city)
            res = client.get("/locate", params={"lon": x, "lat": y}, headers=tok[who])
            want = 200 if city == mine else 404
            assert res.status_code == want, (who, city, res.text)
            assert client.get(f"/regions/{city}", headers=tok[who]).status_code == want
        listed = client.get("/incidents", params={"limit": 200}, headers=tok[who]).json()
        assert listed["items"] and all(i["region_code"].startswith(mine[:6])
                                       for i in listed["items"]), who
    every = client.get("/incidents", params={"limit": 500}, headers=tok["p_super"]).json()
    assert {i["region_code"][:6] for i in every["items"] if i["region_code"]} == \
        {c[:6] for c in cities}
    # the heat map: the city's supervisor counts their city's cases, the province's all
    month = _month(conn)
    heat = {who: client.get("/maps/heat", params={"since": f"{month}-01T00:00:00+08:00", "zoom": 6},
                            headers=tok[who]) for who in ("p_super", "c1_super")}
    assert all(h.status_code == 200 for h in heat.values()), heat["p_super"].text
    total = {who: sum(f["properties"]["count"] for f in h.json()["features"])
             for who, h in heat.items()}
    raw = dict(conn.execute(text(
        "SELECT left(region_code, 6), count(*) FROM incident WHERE received_at >= "
        "CAST(:s AS timestamptz) GROUP BY 1"), {"s": f"{month}-01T00:00:00+08:00"}).all())
    assert total["c1_super"] == raw[cities[0][:6]]
    assert total["p_super"] == sum(raw.values())


def test_the_province_assessment_has_a_row_per_city(
        http: tuple[TestClient, dict[str, Any]], conn: Connection,
        province: tuple[Engine, Province, str]) -> None:
    client, tok = http
    _, p, _ = province
    cities = sorted(normalise(c) for c in p.city_codes)
    mine, other_city = normalise(p.city_codes[0]), normalise(p.city_codes[1])  # c1_super's
    month = _month(conn)
    res = client.get("/assessment", params={"month": month, "level": "city"},
                     headers=tok["p_super"])
    assert res.status_code == 200, res.text
    rows = res.json()["rows"]
    assert [r["code"] for r in rows] == cities
    start, end = assessment.month_window(month, read_profile(conn).tz)
    raw = conn.execute(text("SELECT count(*) FROM incident WHERE received_at >= :s AND "
                            "received_at < :e"), {"s": start, "e": end}).scalar_one()
    assert sum(r["received"] for r in rows) == raw > 0
    # the tally's answer is the raw statement's, row for row
    args: dict[str, Any] = {"where": "TRUE", "params": {"as_of": datetime.now(start.tzinfo)},
                            "windows": [(start, end)], "levels": ["city"], "region": None,
                            "scope": Principal.system().scope, "total": True, "p90": []}
    tally = assessment.figures(conn, tally=True, **args)[0]
    plain = assessment.figures(conn, tally=False, **args)[0]
    assert tally["levels"]["city"] == plain["levels"]["city"]
    assert tally["total"] == plain["total"]
    # a city's supervisor: their city's row, or their streets
    res = client.get("/assessment", params={"month": month, "level": "city"},
                     headers=tok["c1_super"])
    assert [r["code"] for r in res.json()["rows"]] == [mine]
    streets = client.get("/assessment", params={"month": month, "level": "street"},
                         headers=tok["c1_super"]).json()["rows"]
    assert streets and all(r["code"].startswith(mine[:6]) for r in streets
                           if r["code"] is not None)
    assert sum(r["received"] for r in streets) == res.json()["rows"][0]["received"]
    # outside their city: nothing (a region filter there is not found)
    other = client.get("/assessment", params={"month": month, "level": "street",
                                              "region": other_city[:6]}, headers=tok["c1_super"])
    assert other.status_code == 404 or other.json()["rows"] == []


def test_profile_zones_match_the_generator(province: tuple[Engine, Province, str]) -> None:
    _, p, _ = province
    assert len(set(p.city_srids)) == 2 and np.all(np.array(p.city_srids) > 4500)


def test_a_single_city_is_unchanged_by_the_migration_and_it_goes_back() -> None:
    """0030 on a single city: the profile, the zone and every stored area are what they were;
    the downgrade drops the per-city zones and puts 0014's functions back."""
    from alembic import command

    from app.db import alembic_config
    from tests.conftest import tiny_city_engine

    eng = tiny_city_engine("citygrid_test_province_migration")
    url = eng.url.render_as_string(hide_password=False)
    areas = "SELECT code, area_m2 FROM region_current ORDER BY code"
    try:
        with eng.connect() as c:
            after = c.execute(text(areas)).all()
            prof = read_profile(c)
            assert not prof.is_province and prof.city_zones  # the city's zone is noted
            assert prof.metric_crs_for(after[-1][0]) == prof.metric_crs
        command.downgrade(alembic_config(url), "0028")
        with eng.connect() as c:
            assert c.execute(text("SELECT to_regclass('city_metric')")).scalar() is None
            assert c.execute(text(areas)).all() == after
        command.upgrade(alembic_config(url), "head")
        with eng.connect() as c:
            assert c.execute(text(areas)).all() == after
            assert c.execute(text("SELECT citygrid_metric_srid(code) = citygrid_metric_srid() "
                                  "FROM region_current")).scalars().all() == [True] * len(after)
    finally:
        eng.dispose()


def test_a_region_file_may_hang_cities_under_their_province() -> None:
    import geopandas as gpd
    import pandas as pd

    from grids.io.regions import check_frame

    sq = shapely.box(118.0, 29.0, 118.1, 29.1)
    frame = gpd.GeoDataFrame(
        {"code": ["880000", "880001", "770001", "880002"],
         "name": ["P", "C1", "C2", "C3"], "level": ["province", "city", "city", "city"],
         "parent_code": pd.Series([None, "880000", "880000", None], dtype=object)},
        geometry=[sq, sq, sq, shapely.box(119, 29, 119.1, 29.1)], crs="EPSG:4490")
    errors = check_frame(frame)
    assert [(e["code"], e["field"]) for e in errors] == [("770001000000", "parent_code")]
    assert "other digits" in errors[0]["reason"]
    frame.loc[0, "parent_code"] = "880001"
    assert any(e["code"] == "880000000000" and "no parent" in e["reason"]
               for e in check_frame(frame))


def test_an_address_only_case_waits_in_the_callers_city_or_the_province(
        http: tuple[TestClient, dict[str, Any]], province: tuple[Engine, Province, str]) -> None:
    client, tok = http
    _, p, _ = province
    cities = [normalise(c) for c in p.city_codes]
    landed = {}
    for who in ("c1_disp", "p_disp"):
        res = client.post("/incidents", headers=tok[who], json={
            "source": "hotline_12345", "external_id": f"no-place-{who}", "category": "E0101",
            "description": "地址不详", "address": "某路某号"})
        assert res.status_code == 201, res.text
        landed[who] = res.json()["region_code"]
    # the city's dispatcher keeps it in their city (and can see it); the province's, at the top
    assert landed == {"c1_disp": cities[0], "p_disp": province_code(p)}
    mine = client.get("/incidents", params={"limit": 500, "sort": "-received_at"},
                      headers=tok["c1_disp"]).json()["items"]
    assert any(i["external_id"] == "no-place-c1_disp" for i in mine)
