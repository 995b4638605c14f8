"""An incoming point, checked and converted to CGCS2000 lon/lat, saying which CRS was assumed.

The checks, in order, each with its own error code (see :mod:`gis.errors`):

1. the CRS is known (``unknown_crs``);
2. both numbers are finite (``invalid_coordinate``, ``reason='nan'``);
3. lon within ±180 and lat within ±90 after conversion (``invalid_coordinate``,
   ``reason='out_of_range'``) — but if the pair swapped is a point in the city, ``swapped_coordinate``
   with the corrected point instead;
4. a point outside the city whose swapped pair lands inside: ``swapped_coordinate``;
5. a point farther than ``max_outside_m`` from every grid: ``point_far_outside``.

A point outside the city but nearer than that is not an error: the locator answers ``outside``
and names the nearest grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from gis.crs import parse_crs, to_lonlat
from gis.errors import InvalidCoordinate, PointFarOutside, SwappedCoordinate
from grids.errors import GridError
from grids.locate import Snapshot

LONLAT = {"EPSG:4326", "EPSG:4490"}
DEFAULT_MAX_OUTSIDE_M = 30_000.0


class LocatorUnavailable(GridError):
    code = "locator_unavailable"


@dataclass(frozen=True, slots=True)
class CheckedPoint:
    lon: float
    lat: float
    crs: str
    x: float
    y: float

    def as_dict(self) -> dict[str, object]:
        return {"lon": round(self.lon, 8), "lat": round(self.lat, 8), "crs_in": self.crs,
                "input": [self.x, self.y], "crs_out": "EPSG:4490"}


@lru_cache(maxsize=256)
def _crs_name(crs: str) -> str:
    return parse_crs(crs).name


def checked_point(snap: Snapshot, x: float, y: float, crs: str = "EPSG:4326", *,
                  max_outside_m: float = DEFAULT_MAX_OUTSIDE_M,
                  resolved: bool = False) -> CheckedPoint:
    """Check and convert one input point; raise a :mod:`gis.errors` error when it is unusable.

    With ``resolved=True`` the caller has already found the point in no region (or will check
    it), so only the CRS, finiteness and range checks run here; call :func:`check_outside` for
    points that resolve outside.
    """
    name = _crs_name(crs)
    bad = [f for f, v in (("lon", x), ("lat", y)) if not math.isfinite(v)]
    if bad:
        raise InvalidCoordinate(
            f"{' and '.join(bad)} must be a finite number.",
            detail={"field": bad[0], "fields": bad, "reason": "nan",
                    "expected": "a finite number", "crs": name},
        )
    if name in LONLAT:
        lon, lat = float(x), float(y)
    else:
        lo, la = to_lonlat(x, y, name)
        lon, lat = float(lo), float(la)
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 90:
        _raise_if_swapped(snap, lon, lat, name)
        field = "lat" if math.isfinite(lat) and abs(lat) > 90 else "lon"
        raise InvalidCoordinate(
            f"The point is out of range for {name}: lon must be within ±180 and lat within ±90.",
            detail={"field": field, "reason": "out_of_range", "value": [x, y], "crs": name,
                    "expected": "lon in [-180, 180], lat in [-90, 90]"},
        )
    point = CheckedPoint(lon=lon, lat=lat, crs=name, x=float(x), y=float(y))
    if resolved or snap.grids.query_one(lon, lat) >= 0 or snap.areas.query_one(lon, lat) >= 0:
        return point
    check_outside(snap, point, max_outside_m=max_outside_m)
    return point


def check_outside(snap: Snapshot, point: CheckedPoint, *,
                  max_outside_m: float = DEFAULT_MAX_OUTSIDE_M) -> None:
    """For a point in no region: raise if it looks swapped or is too far from every grid."""
    lon, lat, name = point.lon, point.lat, point.crs
    _raise_if_swapped(snap, lon, lat, name)
    _, distance = snap.nearest_grid(lon, lat)
    if distance > max_outside_m:
        raise PointFarOutside(
            f"The point is {distance / 1000:.1f} km from the nearest grid; this service covers "
            f"the city and {max_outside_m / 1000:.0f} km around it.",
            detail={"field": "lon", "fields": ["lon", "lat"], "distance_m": round(distance),
                    "max_outside_m": max_outside_m, "point": [lon, lat], "crs": name,
                    "expected": "a point in or near the city"},
        )


def _raise_if_swapped(snap: Snapshot, lon: float, lat: float, crs: str) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 90):
        return
    if snap.grids.query_one(lat, lon) >= 0 or snap.areas.query_one(lat, lon) >= 0:
        raise SwappedCoordinate(
            "Latitude and longitude look swapped: the point as given is outside the city, "
            f"swapped it is inside at lon={lat:.6f}, lat={lon:.6f}.",
            detail={"field": "lon", "fields": ["lon", "lat"], "given": [lon, lat],
                    "corrected": {"lon": lat, "lat": lon}, "crs": crs,
                    "expected": "lon first (x), then lat (y)"},
        )
