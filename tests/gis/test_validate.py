"""Point and geometry validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely import Polygon, box

from gis.errors import InvalidCoordinate, InvalidGeometry, PointFarOutside, SwappedCoordinate
from gis.validate import (
    check_geometry,
    check_point,
    check_points,
    distance_outside_m,
    explain_invalid,
)

CITY = box(119.9, 29.1, 120.3, 29.5)  # roughly Yiwu
GEOD = Geod(ellps="GRS80")


def test_each_code_vectorised():
    lon = [120.07, np.nan, 120.0, np.inf, 29.3, 200.0, 120.0, 121.0, 120.35, 29.3]
    lat = [29.3, 29.3, np.nan, 29.3, 120.07, 10.0, 95.0, 29.3, 29.3, 200.0]
    r = check_points(lon, lat, city=CITY, max_outside_m=5000)
    assert r.code.tolist() == ["ok", "nan", "nan", "nan", "swapped", "out_of_range",
                               "out_of_range", "far_outside", "ok", "out_of_range"]  # fmt: skip
    assert (r.lon[4], r.lat[4]) == (120.07, 29.3)  # corrected
    assert (r.lon[7], r.lat[7]) == (121.0, 29.3)  # unchanged
    assert r.distance_m[0] == 0.0
    assert 4000 < r.distance_m[8] < 5000  # 0.05 degree east of the box at 29.3 N: ~4.85 km
    assert r.distance_m[7] > 60_000
    assert np.isnan(r.distance_m[1]) and np.isnan(r.distance_m[5])


def test_swapped_in_range_both_ways():
    # Kashgar given as (lat, lon): both orders are in range, only the swapped one is in China
    r = check_points(39.47, 75.99)
    assert str(r.code) == "swapped" and (float(r.lon), float(r.lat)) == (75.99, 39.47)
    # without a city, a valid point abroad is fine
    assert str(check_points(2.35, 48.85).code) == "ok"
    # with a city, a swapped point that is in China but not near the city is far outside
    r = check_points(39.47, 75.99, city=CITY, max_outside_m=5000)
    assert str(r.code) == "far_outside"


def test_shape_is_kept():
    r = check_points(np.full((2, 2), 120.0), np.full((2, 2), 29.3), city=CITY)
    assert r.code.shape == r.lon.shape == r.distance_m.shape == (2, 2)
    assert (r.code == "ok").all()


def test_distance_matches_geodesic():
    lon = np.array([120.2, 120.4, 121.3])
    lat = np.array([29.6, 29.3, 29.3])
    d = distance_outside_m(CITY, lon, lat)
    expected = [GEOD.inv(120.2, 29.5, 120.2, 29.6)[2], GEOD.inv(120.3, 29.3, 120.4, 29.3)[2]]
    np.testing.assert_allclose(d[:2], expected, rtol=1e-4)
    assert abs(d[2] - GEOD.inv(120.3, 29.3, 121.3, 29.3)[2]) < 200  # 97 km: still within 0.2 %


def test_check_point_ok():
    assert check_point(120.07, 29.3, city=CITY, max_outside_m=0) == (120.07, 29.3)


def _json(err):
    return json.loads(json.dumps({"code": err.code, "message": err.message, "detail": err.detail}))


def test_check_point_nan_names_the_field():
    with pytest.raises(InvalidCoordinate) as info:
        check_point(120.0, math.nan)
    body = _json(info.value)
    assert body["code"] == "invalid_coordinate"
    assert body["detail"]["fields"] == [
        {"field": "lat", "value": "nan", "expected": "a finite number"}
    ]
    assert "lat" in body["message"]


def test_check_point_out_of_range_names_the_field():
    with pytest.raises(InvalidCoordinate) as info:
        check_point(190.0, 95.0)
    fields = info.value.detail["fields"]
    assert [f["field"] for f in fields] == ["lon", "lat"]
    assert fields[1] == {"field": "lat", "value": 95.0, "expected": "a number from -90 to 90"}


def test_check_point_swapped_gives_the_correction():
    with pytest.raises(SwappedCoordinate) as info:
        check_point(29.3, 120.07, city=CITY, max_outside_m=1000)
    body = _json(info.value)
    assert body["code"] == "swapped_coordinate"
    assert body["detail"]["corrected"] == {"lon": 120.07, "lat": 29.3}
    assert {f["field"] for f in body["detail"]["fields"]} == {"lon", "lat"}


def test_check_point_far_outside_says_how_far():
    with pytest.raises(PointFarOutside) as info:
        check_point(120.4, 29.3, city=CITY, max_outside_m=5000)
    body = _json(info.value)
    assert body["code"] == "point_far_outside"
    assert 9_000 < body["detail"]["distance_m"] < 10_000
    assert body["detail"]["max_outside_m"] == 5000
    assert body["detail"]["fields"][0]["field"] == "lon"
    assert "5000 m" in body["detail"]["fields"][0]["expected"]
    # the same point is fine with a larger allowance
    assert check_point(120.4, 29.3, city=CITY, max_outside_m=10_000) == (120.4, 29.3)


@settings(max_examples=200, deadline=None)
@given(
    lon=st.floats(min_value=119.9, max_value=120.3),
    lat=st.floats(min_value=29.1, max_value=29.5),
)
def test_points_in_the_city_are_ok_and_swapped_ones_are_fixed(lon, lat):
    r = check_points([lon, lat], [lat, lon], city=CITY, max_outside_m=0)
    assert r.code.tolist() == ["ok", "swapped"]
    assert r.lon.tolist() == [lon, lon] and r.lat.tolist() == [lat, lat]


@settings(max_examples=200, deadline=None)
@given(
    lon=st.floats(allow_nan=True, allow_infinity=True),
    lat=st.floats(allow_nan=True, allow_infinity=True),
)
def test_every_point_gets_exactly_one_known_code(lon, lat):
    r = check_points(lon, lat, city=CITY, max_outside_m=1000)
    code = str(r.code)
    assert code in {"ok", "nan", "out_of_range", "swapped", "far_outside"}
    if not (math.isfinite(lon) and math.isfinite(lat)):
        assert code == "nan"
    elif code == "ok":
        assert abs(lon) <= 180 and abs(lat) <= 90 and r.distance_m <= 1000


def test_explain_invalid_self_intersection():
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    problem = explain_invalid(bowtie)
    assert problem == {
        "reason": "Self-intersection",
        "location": [1.0, 1.0],
        "message": "Self-intersection at [1 1]",
    }


def test_explain_invalid_valid_and_other_reasons():
    assert explain_invalid(box(0, 0, 1, 1)) is None
    hole_outside = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)], [[(2, 2), (3, 2), (3, 3), (2, 3)]])
    problem = explain_invalid(hole_outside)
    assert problem["reason"] == "Hole lies outside shell"
    assert problem["location"] == [2.0, 2.0]
    assert explain_invalid(None)["reason"] == "Missing geometry"


def test_check_geometry_raises_with_location():
    with pytest.raises(InvalidGeometry) as info:
        check_geometry(Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]), field="boundary")
    body = _json(info.value)
    assert body["code"] == "invalid_geometry"
    assert body["detail"] == {
        "field": "boundary",
        "reason": "Self-intersection",
        "location": [1.0, 1.0],
    }
    assert body["message"] == "boundary is invalid: Self-intersection at [1 1]."
    check_geometry(shapely.box(0, 0, 1, 1))  # valid: no error


@pytest.mark.parametrize("text", ["120,29,120.5", "a,b,c,d", "120,29,120.5,nan", "120.5,29,120,29.5",
                                  "120,29,120.5,95"])
def test_bad_bboxes_name_the_field(text: str) -> None:
    from gis.errors import InvalidBBox
    from gis.validate import parse_bbox

    with pytest.raises(InvalidBBox) as err:
        parse_bbox(text)
    assert err.value.detail["field"] == "bbox" and err.value.detail["expected"]


def test_mercator_bbox_stops_at_85_degrees() -> None:
    from gis.errors import InvalidBBox
    from gis.validate import check_bbox

    assert check_bbox((0.0, -89.0, 1.0, 89.0)) == (0.0, -89.0, 1.0, 89.0)
    with pytest.raises(InvalidBBox):
        check_bbox((0.0, -89.0, 1.0, 89.0), max_lat=85.0)
