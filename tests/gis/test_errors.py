"""The error pattern other packages copy."""

from __future__ import annotations

import json

import pytest

from gis.errors import (
    GisError,
    InvalidCoordinate,
    InvalidGeometry,
    PointFarOutside,
    SwappedCoordinate,
    UnknownCRS,
)


@pytest.mark.parametrize(
    ("cls", "code"),
    [(GisError, "gis_error"), (UnknownCRS, "unknown_crs"),
     (InvalidCoordinate, "invalid_coordinate"), (SwappedCoordinate, "swapped_coordinate"),
     (PointFarOutside, "point_far_outside"), (InvalidGeometry, "invalid_geometry")],
)  # fmt: skip
def test_codes_and_fields(cls, code):
    err = cls("Something is wrong.", detail={"field": "lon"})
    assert isinstance(err, GisError) and isinstance(err, Exception)
    assert (err.code, err.message, err.detail) == (code, "Something is wrong.", {"field": "lon"})
    assert str(err) == "Something is wrong."
    json.dumps({"code": err.code, "message": err.message, "detail": err.detail})


def test_code_override_is_per_instance():
    err = InvalidCoordinate("x", code="nan_coordinate")
    assert err.code == "nan_coordinate"
    assert InvalidCoordinate("y").code == "invalid_coordinate"
    assert GisError("z").detail == {}
