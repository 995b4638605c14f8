"""The city as configuration: the profile, the zone chooser, and both demo cities measured.

The demo city (义乌市, 330782, ~120.1°E: CGCS2000 GK zone CM 120E) and the second demo city
(蒲江县, 510131, 103.3–103.7°E: astride the 103.5°E line between zones CM 102E and CM 105E)
run the same checks: stored areas against geodesic areas, topology, tiles and the assessment.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gis.crs import gk_zone_srid
from grids import city
from grids.access import Principal
from grids.topology import check

ROOT = Path(__file__).resolve().parents[2]
GEOD = Geod(ellps="GRS80")  # CGCS2000's ellipsoid (the flattening differs in the 12th digit)
SYSTEM = Principal.system("test")


def geodesic_m2(geom: shapely.Geometry) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0])


# -- the zone chooser (pure) -------------------------------------------------------------------
@pytest.mark.parametrize(("extent", "srid"), [
    ((119.8, 29.0, 120.4, 29.5), 4549),   # CM 120E
    ((103.9, 30.5, 104.3, 30.8), 4544),   # CM 105E
    ((103.30, 30.09, 103.69, 30.34), 4543),  # centre 103.495: CM 102E
    ((103.32, 30.09, 103.70, 30.34), 4544),  # centre 103.51: CM 105E
    ((73.5, 39.0, 74.0, 39.5), 4534),     # west of the first zone: clamped
    ((134.5, 47.0, 135.1, 48.0), 4554),
])
def test_zone_of_the_extent_centre(extent: tuple[float, float, float, float], srid: int) -> None:
    assert gk_zone_srid(extent) == srid
    assert city.metric_crs_for(extent) == f"EPSG:{srid}"


@pytest.mark.parametrize("lon", [103.5, 106.5, 118.5, 121.5])
def test_a_county_astride_a_zone_line_stays_within_a_thousandth(lon: float) -> None:
    """A 40 km county centred on a zone line, measured in the zone of its centre (1.5° from the
    meridian, 1.7° at its far edge): the projected area is within 0.1 % of the geodesic one."""
    from gis.transform import transformer

    half = 0.2
    box = shapely.box(lon - half, 30.0 - half, lon + half, 30.0 + half)
    box = shapely.segmentize(box, 0.005)
    srid = gk_zone_srid(box.bounds)
    t = transformer("EPSG:4490", f"EPSG:{srid}")
    projected = shapely.transform(box, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    assert abs(projected.area / geodesic_m2(box) - 1) < 1e-3


# -- the profile -------------------------------------------------------------------------------
def test_profiles_of_the_two_demo_cities(conn: Connection, city2_conn: Connection) -> None:
    demo, second = city.profile(conn), city.profile(city2_conn)
    assert (demo.code, demo.name, demo.metric_srid) == ("330782000000", "义乌市", 4549)
    assert (second.code, second.name) == ("510131000000", "蒲江县")
    assert second.metric_srid == gk_zone_srid(second.extent) in (4543, 4544)
    assert demo.tz == second.tz == ZoneInfo("Asia/Shanghai")
    view = second.first_view()
    lat, lon = view["center"]
    assert 103.3 < lon < 103.7 and 30.0 < lat < 30.4 and 9 <= view["zoom"] <= 12
    # the extent is the city boundary's
    box = city2_conn.execute(text(
        "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM region_current "
        "WHERE level = 'city'")).one()
    assert tuple(box) == second.extent


def test_profile_is_cached_and_a_change_is_seen_and_rolled_back(city2_engine) -> None:
    with city2_engine.connect() as c:
        before = city.profile(c)
        assert city.profile(c) is before  # cached on the connection
        tx = c.begin()
        changed = city.update_profile(c, tz="Asia/Urumqi")
        assert changed.tz == ZoneInfo("Asia/Urumqi") and city.profile(c).tz == changed.tz
        tx.rollback()
        assert city.profile(c) == before


def test_a_given_srid_re_measures_every_boundary(city2_conn: Connection) -> None:
    before = dict(city2_conn.execute(text("SELECT id, area_m2 FROM region_boundary")).all())
    other = 4545 if city.profile(city2_conn).metric_srid != 4545 else 4544
    prof = city.update_profile(city2_conn, metric_srid=other)
    assert prof.metric_srid == other and not prof.metric_auto
    after = dict(city2_conn.execute(text(
        "SELECT id, area_m2 FROM region_boundary WHERE abs(area_m2 - "
        "ST_Area(ST_Transform(geom, :s))) < 1e-6 * area_m2"), {"s": other}).all())
    assert after.keys() == before.keys()
    assert any(abs(after[k] / before[k] - 1) > 1e-5 for k in before)  # a zone further off
    back = city.update_profile(city2_conn, metric_auto=True)
    assert back.metric_srid == gk_zone_srid(back.extent)


def test_the_database_refuses_a_bad_profile(city2_conn: Connection) -> None:
    for change in ({"tz": "Mars/Olympus"}, {"metric_srid": 4490}, {"phone_pattern": "(["}):
        with pytest.raises(DBAPIError), city2_conn.begin_nested():
            city.update_profile(city2_conn, **change)


def test_staff_phones_follow_the_profile_pattern(city2_conn: Connection) -> None:
    insert = text("INSERT INTO staff (code, name, phone, role) "
                  "VALUES ('PH1', '测试', :p, 'full_time')")
    with pytest.raises(DBAPIError, match="pattern"), city2_conn.begin_nested():
        city2_conn.execute(insert, {"p": "+85291234567"})
    city.update_profile(city2_conn, phone_pattern=r"^(1[0-9]{10}|\+852[0-9]{8})$")
    city2_conn.execute(insert, {"p": "+85291234567"})


# -- both cities -------------------------------------------------------------------------------
def test_stored_areas_are_within_a_thousandth_of_geodesic(any_city: Connection) -> None:
    rows = any_city.execute(text(
        "SELECT code, level, area_m2, ST_AsBinary(geom) FROM region_current "
        "WHERE level <> 'grid' OR right(code, 3) IN ('001', '005') ORDER BY code")).all()
    assert len(rows) > 50
    worst = max(abs(area / geodesic_m2(shapely.from_wkb(bytes(g))) - 1)
                for _, _, area, g in rows)
    assert worst < 1e-3


def test_the_city_tiles_exactly(any_city: Connection) -> None:
    assert check(any_city) == []


def test_grid_tiles_and_the_assessment(any_city: Connection) -> None:
    from layers import assessment, maps

    prof = city.profile(any_city)
    lat, lon = prof.first_view()["center"]
    z = 12
    x = int((lon + 180) / 360 * 2 ** z)
    y = int((1 - np.log(np.tan(np.radians(lat)) + 1 / np.cos(np.radians(lat))) / np.pi) / 2
            * 2 ** z)
    tile = maps.tile(any_city, "grids", z, x, y, principal=SYSTEM, cache=None)
    assert len(tile) > 100
    month, n = any_city.execute(text(
        "SELECT coalesce(to_char(max(received_at) AT TIME ZONE citygrid_tz(), 'YYYY-MM'), "
        "'2026-10'), count(*) FROM incident")).one()
    out = assessment.monthly(any_city, principal=SYSTEM, month=month, level="street",
                             as_of=datetime(2027, 1, 1, tzinfo=prof.tz))
    assert out["timezone"] == prof.tz.key
    assert {r["code"][:6] for r in out["rows"] if r["code"]} <= {prof.region_prefix}
    assert (sum(r["received"] for r in out["rows"]) > 0) == (n > 0)


# -- no city in the code -----------------------------------------------------------------------
LITERALS = re.compile(r"义乌|330782|4549")
HISTORY = re.compile(r"app/migrations/versions/00(0\d|1[0-2])_")  # migrations as they were


def test_production_code_names_no_city() -> None:
    found = []
    for top in ("app", "gis", "grids", "layers", "map_ui"):
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if (not path.is_file() or path.suffix not in (".py", ".js", ".html", ".css", ".json")
                    or HISTORY.match(rel) or "/vendor/" in rel):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if LITERALS.search(line):
                    found.append(f"{rel}:{n}: {line.strip()[:80]}")
    assert found == []


def test_a_staff_phone_change_is_checked_against_the_profile(city2_conn: Connection) -> None:
    from grids.errors import GridError
    from grids.staffing import update_staff

    code = city2_conn.execute(text("SELECT code FROM staff ORDER BY code LIMIT 1")).scalar_one()
    with pytest.raises(GridError, match="pattern"):
        update_staff(city2_conn, code, {"phone": "85291234567x"}, principal=SYSTEM)
    city.update_profile(city2_conn, phone_pattern=r"^[0-9x]{12}$")
    assert update_staff(city2_conn, code, {"phone": "85291234567x"},
                        principal=SYSTEM)["phone"] == "85291234567x"
