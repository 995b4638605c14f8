"""GCJ-02 / BD-09: published vectors, round trips in metres, the China outline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from gis.transform import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    china_outline,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    in_china,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

GEOD = Geod(ellps="WGS84")
RECT = (72.004, 0.8293, 137.8347, 55.8271)


def metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# googollee/eviltransform test.py (also in its Go/JS/PHP/Ruby ports): lat, lng order there.
EVILTRANSFORM_WGS_GCJ = [
    # wgs lon, wgs lat, gcj lon, gcj lat
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),  # Shanghai
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),  # Shenzhen
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),  # Beijing
]


def test_wgs84_to_gcj02_matches_eviltransform_vectors():
    wlon, wlat, glon, glat = np.array(EVILTRANSFORM_WGS_GCJ).T
    x, y = wgs84_to_gcj02(wlon, wlat)
    np.testing.assert_allclose(x, glon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(y, glat, rtol=0, atol=1e-9)


def test_gcj02_to_wgs84_recovers_eviltransform_vectors_to_a_millimetre():
    wlon, wlat, glon, glat = np.array(EVILTRANSFORM_WGS_GCJ).T
    x, y = gcj02_to_wgs84(glon, glat)
    assert metres(x, y, wlon, wlat).max() < 1e-3


def test_wandergis_coordtransform_vectors():
    # wandergis/coordtransform README (also hutool's CoordinateUtilTest)
    x, y = wgs84_to_gcj02(116.404, 39.915)
    assert (float(x), float(y)) == pytest.approx((116.41024449916938, 39.91640428150164), abs=1e-11)
    x, y = gcj02_to_bd09(116.404, 39.915)
    assert (float(x), float(y)) == pytest.approx((116.41036949371029, 39.92133699351021), abs=1e-11)
    # their bd09togcj02 is Baidu's closed-form approximation: ours iterates, so within ~0.1 m
    x, y = bd09_to_gcj02(116.404, 39.915)
    assert metres(x, y, 116.39762729119315, 39.90865673957631) < 0.1


def test_gcoord_gcj02_to_bd09_vector():
    # hujiulong/gcoord test/unit/crs/GCJ02.spec.js
    x, y = gcj02_to_bd09(123.0, 45.0)
    assert float(x) == pytest.approx(123.00636499, abs=1e-8)
    assert float(y) == pytest.approx(45.00636899, abs=1e-8)


def test_eviltransform_bd_vectors_use_plain_pi_and_are_not_the_baidu_formula():
    # googollee's bd2wgs vectors were computed with sin(y*pi) instead of sin(y*3000*pi/180);
    # the Baidu formula (gcoord, coordtransform, ours) lands ~40 m away from them.
    x, y = bd09_to_wgs84(120.036455, 29.210504)
    d = float(metres(x, y, 120.0253853970846, 29.206795749156136))
    assert 20 < d < 60


def test_offset_is_hundreds_of_metres_in_china():
    lon = np.array([120.07, 116.4, 87.6, 126.6, 110.33])
    lat = np.array([29.31, 39.9, 43.8, 45.75, 20.03])
    d_gcj = metres(lon, lat, *wgs84_to_gcj02(lon, lat))
    d_bd = metres(lon, lat, *wgs84_to_bd09(lon, lat))
    assert ((d_gcj > 100) & (d_gcj < 800)).all()
    assert ((d_bd > 500) & (d_bd < 1800)).all()


@pytest.fixture(scope="module")
def random_china_points():
    rng = np.random.default_rng(20240601)
    n = 100_000
    lon = rng.uniform(RECT[0], RECT[2], n)
    lat = rng.uniform(RECT[1], RECT[3], n)
    return lon, lat


def test_gcj_round_trip_below_one_centimetre_inside_china(random_china_points):
    lon, lat = random_china_points
    inside = in_china(lon, lat)
    assert inside.sum() > 20_000
    x, y = gcj02_to_wgs84(*wgs84_to_gcj02(lon[inside], lat[inside]))
    assert metres(x, y, lon[inside], lat[inside]).max() < 0.01


def test_raw_formula_round_trip_over_whole_rectangle_and_its_edges(random_china_points):
    lon, lat = random_china_points
    rng = np.random.default_rng(7)
    # add points hugging every edge and corner of the rectangle
    edge_lon = np.concatenate([np.full(500, RECT[0]), np.full(500, RECT[2]),
                               rng.uniform(RECT[0], RECT[2], 1000)])  # fmt: skip
    edge_lat = np.concatenate([rng.uniform(RECT[1], RECT[3], 1000),
                               np.full(500, RECT[1]), np.full(500, RECT[3])])  # fmt: skip
    lon = np.concatenate([lon, edge_lon, [RECT[0], RECT[2], 105.0, 105.0 + 1e-12]])
    lat = np.concatenate([lat, edge_lat, [RECT[1], RECT[3], 35.0, 35.0]])
    gx, gy = wgs84_to_gcj02(lon, lat, only_in_china=False)
    x, y = gcj02_to_wgs84(gx, gy, only_in_china=False)
    assert metres(x, y, lon, lat).max() < 0.01


def test_bd_round_trip_below_one_centimetre(random_china_points):
    lon, lat = random_china_points
    lon, lat = lon[:20_000], lat[:20_000]
    inside = in_china(lon, lat)
    x, y = bd09_to_wgs84(*wgs84_to_bd09(lon[inside], lat[inside]))
    assert metres(x, y, lon[inside], lat[inside]).max() < 0.01
    bx, by = bd09_to_gcj02(*gcj02_to_bd09(lon, lat))
    assert metres(bx, by, lon, lat).max() < 0.01


def test_outside_points_round_trip_away_from_the_outline(random_china_points):
    lon, lat = random_china_points
    # points whose whole 0.02-degree neighbourhood is outside: no ambiguous preimage
    far = ~in_china(lon, lat)
    for dx, dy in [(0.02, 0), (-0.02, 0), (0, 0.02), (0, -0.02)]:
        far &= ~in_china(lon + dx, lat + dy)
    gx, gy = wgs84_to_gcj02(lon[far], lat[far])
    np.testing.assert_array_equal(gx, lon[far])
    x, y = gcj02_to_wgs84(gx, gy)
    np.testing.assert_array_equal(x, lon[far])
    np.testing.assert_array_equal(y, lat[far])


@pytest.mark.parametrize(
    ("name", "lon", "lat"),
    [("Paris", 2.3522, 48.8566), ("Tokyo", 139.6917, 35.6895), ("Seoul", 126.978, 37.5665),
     ("Hanoi", 105.8542, 21.0285), ("Ulaanbaatar", 106.9057, 47.8864),
     ("Taipei", 121.5654, 25.033), ("Hong Kong", 114.1694, 22.3193), ("Macau", 113.5439, 22.1987),
     ("New York", -74.006, 40.7128), ("Sydney", 151.2093, -33.8688)],
)  # fmt: skip
def test_points_outside_mainland_are_not_shifted(name, lon, lat):
    for forward in (wgs84_to_gcj02, wgs84_to_bd09):
        assert tuple(map(float, forward(lon, lat))) == (lon, lat), name
    assert tuple(map(float, gcj02_to_wgs84(lon, lat))) == (lon, lat), name
    if name != "Macau":
        assert tuple(map(float, bd09_to_wgs84(lon, lat))) == (lon, lat), name


def test_ambiguous_preimage_near_the_outline_prefers_the_mainland():
    # BD-09 (113.5439, 22.1987) in central Macau is also where a WGS84 point in Zhuhai's Wanzai,
    # ~1.2 km west across the Inner Harbour, lands after the BD-09 shift: the mainland one wins.
    x, y = bd09_to_wgs84(113.5439, 22.1987)
    assert bool(in_china(x, y))
    assert 1000 < float(metres(x, y, 113.5439, 22.1987)) < 1500
    bx, by = wgs84_to_bd09(x, y)
    assert float(metres(bx, by, 113.5439, 22.1987)) < 0.01


def test_hanoi_and_ulaanbaatar_are_in_the_rectangle_but_not_the_outline():
    lon = np.array([105.8542, 106.9057])
    lat = np.array([21.0285, 47.8864])
    assert ((lon >= RECT[0]) & (lon <= RECT[2]) & (lat >= RECT[1]) & (lat <= RECT[3])).all()
    assert not in_china(lon, lat).any()


@pytest.mark.parametrize(
    ("name", "lon", "lat", "expected"),
    [("Yiwu", 120.075, 29.306, True), ("Haikou", 110.33, 20.03, True),
     ("Sanya", 109.51, 18.25, True), ("Zhoushan", 122.2, 29.99, True),
     ("Kashgar", 75.99, 39.47, True), ("Heihe", 127.5, 50.25, True),
     ("Hekou", 103.95, 22.52, True), ("Shenzhen", 114.06, 22.54, True),
     ("Zhuhai", 113.58, 22.27, True), ("Lao Cai", 103.97, 22.48, False),
     ("Sinuiju", 124.40, 40.10, False), ("Blagoveshchensk", 127.53, 50.27, False)],
)  # fmt: skip
def test_in_china_outline(name, lon, lat, expected):
    assert bool(in_china(lon, lat)) is expected, name


def test_outline_keeps_hainan_and_is_small():
    outline = china_outline()
    assert outline.is_valid
    assert 100 < len(outline.geoms) < 400
    hainan = [p for p in outline.geoms if p.contains(p.__class__([(110.3, 20.0), (110.31, 20.0),
                                                                   (110.31, 20.01)]))]  # fmt: skip
    assert hainan and hainan[0].area > 2.5  # square degrees; Hainan is ~3.2


def test_nan_stays_nan_and_does_not_stall_the_others():
    lon = np.array([np.nan, 120.0, np.inf, 120.5, 121.0])
    lat = np.array([30.0, np.nan, 30.0, 30.5, -np.inf])
    gx, gy = wgs84_to_gcj02(lon, lat)
    assert np.isnan(gx[0]) and np.isnan(gy[1]) and np.isinf(gx[2]) and np.isinf(gy[4])
    x, y = gcj02_to_wgs84(gx, gy)
    assert np.isnan(x[0]) and np.isnan(y[1])
    assert float(metres(x[3], y[3], 120.5, 30.5)) < 0.01
    for f in (gcj02_to_wgs84, bd09_to_wgs84, bd09_to_gcj02):
        x, y = f(np.full(3, np.nan), np.full(3, np.nan))
        assert np.isnan(x).all() and np.isnan(y).all()


def test_shapes_are_kept():
    lon = np.full((2, 3), 120.0)
    lat = np.full((2, 3), 30.0)
    for f in (wgs84_to_gcj02, gcj02_to_wgs84, wgs84_to_bd09, bd09_to_wgs84):
        x, y = f(lon, lat)
        assert x.shape == y.shape == (2, 3)
    x, y = gcj02_to_wgs84(120.0, 30.0)
    assert x.shape == () and y.shape == ()


def test_max_iter_caps_the_iteration():
    x1, _ = gcj02_to_wgs84(120.0, 30.0, max_iter=1)
    x9, _ = gcj02_to_wgs84(120.0, 30.0)
    assert 1e-9 < abs(float(x1) - float(x9)) < 1e-4  # one step is metres-good, not mm-good


@settings(max_examples=300, deadline=None)
@given(
    lon=st.floats(min_value=73.0, max_value=135.0),
    lat=st.floats(min_value=18.0, max_value=53.5),
)
def test_round_trip_property(lon, lat):
    gx, gy = wgs84_to_gcj02(lon, lat, only_in_china=False)
    x, y = gcj02_to_wgs84(gx, gy, only_in_china=False)
    assert float(metres(x, y, lon, lat)) < 0.01
    bx, by = wgs84_to_bd09(lon, lat, only_in_china=False)
    x, y = bd09_to_wgs84(bx, by, only_in_china=False)
    assert float(metres(x, y, lon, lat)) < 0.01
