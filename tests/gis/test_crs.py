"""CRS vocabulary: parsing, canonical names, conversions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gis.crs import BD09, CGCS2000, GCJ02, WGS84, Crs, from_lonlat, parse_crs, to_lonlat
from gis.errors import GisError, UnknownCRS
from gis.transform import wgs84_to_bd09, wgs84_to_gcj02


@pytest.mark.parametrize(
    ("text", "name"),
    [("wgs84", "EPSG:4326"), ("WGS84", "EPSG:4326"), ("EPSG:4326", "EPSG:4326"),
     ("epsg:4326", "EPSG:4326"), ("4326", "EPSG:4326"), (4326, "EPSG:4326"),
     ("OGC:CRS84", "EPSG:4326"), ("cgcs2000", "EPSG:4490"), ("CGCS2000", "EPSG:4490"),
     ("EPSG:4490", "EPSG:4490"), ("gcj02", "GCJ-02"), ("gcj-02", "GCJ-02"), ("GCJ02", "GCJ-02"),
     (" GCJ-02 ", "GCJ-02"), ("bd09", "BD-09"), ("bd-09", "BD-09"), ("BD09", "BD-09"),
     ("EPSG:4549", "EPSG:4549"), ("4549", "EPSG:4549"), ("urn:ogc:def:crs:EPSG::4549", "EPSG:4549"),
     ("http://www.opengis.net/def/crs/EPSG/0/3857", "EPSG:3857"), ("EPSG:32650", "EPSG:32650")],
)  # fmt: skip
def test_parse_crs_canonical_names(text, name):
    crs = parse_crs(text)
    assert isinstance(crs, Crs)
    assert crs.name == name == str(crs)


def test_kinds():
    assert parse_crs("gcj02") is GCJ02 and GCJ02.epsg is None and GCJ02.geographic
    assert parse_crs("bd09") is BD09
    assert parse_crs("wgs84") is WGS84 and parse_crs("cgcs2000") is CGCS2000
    assert parse_crs("EPSG:4549") == Crs("EPSG:4549", 4549, False)
    assert parse_crs(parse_crs("EPSG:4549")).epsg == 4549


@pytest.mark.parametrize(
    "text", ["mars", "", "EPSG:", "EPSG:999999", "EPSG:5773", "EPSG:4978", "+proj=longlat", None]
)
def test_unknown_crs(text):
    with pytest.raises(UnknownCRS) as info:
        parse_crs(text)
    err = info.value
    assert isinstance(err, GisError)
    assert err.code == "unknown_crs"
    assert err.detail["field"] == "crs"
    assert "a 2D EPSG code known to PROJ" in err.detail["expected"]


def test_projected_round_trip_epsg_4549():
    rng = np.random.default_rng(3)
    lon = rng.uniform(118.5, 121.5, 1000)
    lat = rng.uniform(27.0, 32.0, 1000)
    x, y = from_lonlat(lon, lat, "EPSG:4549")
    assert float(x[0]) != float(lon[0])
    # CM 120E: x is 500 km false easting at the central meridian, y ~ metres from the equator
    assert ((x > 300_000) & (x < 700_000)).all() and ((y > 2.9e6) & (y < 3.6e6)).all()
    lon2, lat2 = to_lonlat(x, y, "EPSG:4549")
    np.testing.assert_allclose(lon2, lon, atol=1e-9)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)


def test_epsg_4549_known_point():
    x, y = from_lonlat(120.0, 30.0, "EPSG:4549")
    assert float(x) == pytest.approx(500_000.0, abs=1e-6)
    assert float(y) == pytest.approx(3_320_113.398, abs=1e-3)


def test_4326_and_4490_are_the_same_lonlat():
    for crs in ("EPSG:4326", "EPSG:4490", "wgs84", "cgcs2000"):
        lon, lat = to_lonlat([120.1, 121.2], [29.3, 30.4], crs)
        assert lon.tolist() == [120.1, 121.2] and lat.tolist() == [29.3, 30.4]
        assert from_lonlat(120.1, 29.3, crs) == (120.1, 29.3)


def test_gcj_and_bd_through_the_vocabulary():
    lon, lat = 120.07, 29.31
    gx, gy = wgs84_to_gcj02(lon, lat)
    bx, by = wgs84_to_bd09(lon, lat)
    assert tuple(map(float, from_lonlat(lon, lat, "gcj02"))) == (float(gx), float(gy))
    assert tuple(map(float, from_lonlat(lon, lat, "bd-09"))) == (float(bx), float(by))
    for x, y, crs in [(gx, gy, "GCJ-02"), (bx, by, "BD09")]:
        rlon, rlat = to_lonlat(x, y, crs)
        assert abs(float(rlon) - lon) < 1e-9 and abs(float(rlat) - lat) < 1e-9


def test_web_mercator():
    x, y = from_lonlat(120.0, 0.0, 3857)
    assert float(x) == pytest.approx(13_358_338.895, abs=1e-3) and float(y) == pytest.approx(0.0)


@settings(max_examples=100, deadline=None)
@given(
    lon=st.floats(min_value=73.0, max_value=135.0),
    lat=st.floats(min_value=18.0, max_value=53.5),
    crs=st.sampled_from(["EPSG:4549", "EPSG:3857", "EPSG:32650", "gcj02", "bd09", "EPSG:4326"]),
)
def test_round_trip_property(lon, lat, crs):
    x, y = from_lonlat(lon, lat, crs)
    lon2, lat2 = to_lonlat(x, y, crs)
    # 1e-7 degree is ~1 cm
    assert abs(float(lon2) - lon) < 1e-7 and abs(float(lat2) - lat) < 1e-7
