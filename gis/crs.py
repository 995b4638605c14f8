"""The CRS vocabulary: parse what clients send, convert to and from lon/lat.

Accepted names (case-insensitive, surrounding spaces ignored):

* ``wgs84``, ``wgs-84``, ``crs84``, ``ogc:crs84``, ``4326``, ``EPSG:4326`` → ``EPSG:4326``;
* ``cgcs2000``, ``4490``, ``EPSG:4490`` → ``EPSG:4490``;
* ``gcj02``, ``gcj-02``, ``gcj_02``, ``gcj`` → ``GCJ-02`` (Amap, Tencent, WeChat);
* ``bd09``, ``bd-09``, ``bd_09``, ``bd09ll``, ``baidu`` → ``BD-09`` (Baidu, degrees);
* any other EPSG code pyproj knows: ``4547``, ``EPSG:4547``, ``urn:ogc:def:crs:EPSG::4547``,
  ``http://www.opengis.net/def/crs/EPSG/0/4547``.

The lon/lat these functions produce and take is CGCS2000 (EPSG:4490). WGS84 (EPSG:4326) is
treated as the same datum: the two differ by a few centimetres today, far below what grid work
can see, so no datum shift is applied between them. Axis order is always x/y (lon/lat).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS
from pyproj.exceptions import CRSError

from gis.errors import UnknownCRS
from gis.transform import (
    bd09_to_wgs84,
    gcj02_to_wgs84,
    transformer,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

WEB_MERCATOR_RADIUS_M = 6378137.0
"""The sphere of EPSG:3857 (the WGS84 semi-major axis), in metres."""
EARTH_M = 2 * math.pi * WEB_MERCATOR_RADIUS_M
"""The equator in EPSG:3857 metres: the width of the Web Mercator world (one zoom-0 tile)."""

__all__ = ["BD09", "CGCS2000", "EARTH_M", "GCJ02", "LONLAT", "WEB_MERCATOR_RADIUS_M", "WGS84", "Crs",
           "from_lonlat", "gk_zone_srid",
           "parse_crs", "to_lonlat"]  # fmt: skip

Float = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Crs:
    """A coordinate reference system as this project understands it.

    Attributes
    ----------
    name : str
        Canonical name to report back: ``'EPSG:4490'``, ``'GCJ-02'``, ``'BD-09'``, ...
    epsg : int or None
        The EPSG code; None for GCJ-02 and BD-09, which are not EPSG systems.
    geographic : bool
        True for lon/lat in degrees, False for projected metres.
    """

    name: str
    epsg: int | None
    geographic: bool

    def __str__(self) -> str:
        return self.name

    @property
    def is_lonlat(self) -> bool:
        """True for EPSG:4326 and EPSG:4490, the datum :func:`to_lonlat` returns."""
        return self.epsg in _LONLAT_EPSG


WGS84 = Crs("EPSG:4326", 4326, True)
CGCS2000 = Crs("EPSG:4490", 4490, True)
GCJ02 = Crs("GCJ-02", None, True)
BD09 = Crs("BD-09", None, True)
LONLAT = CGCS2000  # what to_lonlat returns and from_lonlat takes
_LONLAT_EPSG = frozenset({4326, 4490})

_ALIASES = {
    "wgs84": WGS84, "wgs-84": WGS84, "wgs 84": WGS84, "crs84": WGS84, "ogc:crs84": WGS84,
    "http://www.opengis.net/def/crs/ogc/1.3/crs84": WGS84,
    "cgcs2000": CGCS2000, "cgcs-2000": CGCS2000,
    "gcj02": GCJ02, "gcj-02": GCJ02, "gcj_02": GCJ02, "gcj": GCJ02,
    "bd09": BD09, "bd-09": BD09, "bd_09": BD09, "bd09ll": BD09, "baidu": BD09,
}  # fmt: skip

_EPSG_FORMS = re.compile(
    r"^(?:epsg:|urn:ogc:def:crs:epsg:[\d.]*:|https?://www\.opengis\.net/def/crs/epsg/[\d.]+/)?"
    r"(\d{4,6})$"
)


_EXPECTED = "wgs84, cgcs2000, gcj02, bd09 or a 2D EPSG code known to PROJ, such as EPSG:4547"


@lru_cache(maxsize=256)
def _parse(key: str) -> Crs | str:
    """The Crs for a normalised key, or a sentence saying why there is none."""
    if key in _ALIASES:
        return _ALIASES[key]
    match = _EPSG_FORMS.match(key)
    if match is None:
        return "is not a CRS name or EPSG code we know"
    code = int(match.group(1))
    if code == 4326:
        return WGS84
    if code == 4490:
        return CGCS2000
    try:
        crs = CRS.from_epsg(code)
    except CRSError:
        return f"names EPSG:{code}, which PROJ does not know"
    # vertical, geocentric and compound systems have no place in 2D lon/lat work
    if not (crs.is_geographic or crs.is_projected) or len(crs.axis_info) != 2:
        return f"names EPSG:{code}, which is not a 2D geographic or projected CRS"
    return Crs(f"EPSG:{code}", code, bool(crs.is_geographic))


def parse_crs(name: str | int | Crs) -> Crs:
    """Parse a CRS name or EPSG code (case-insensitive) into a :class:`Crs`.

    Raises
    ------
    UnknownCRS
        If the name is not an alias above nor an EPSG code known to PROJ.

    Examples
    --------
    >>> parse_crs("gcj-02").name, parse_crs("EPSG:4547").name, parse_crs(4326).name
    ('GCJ-02', 'EPSG:4547', 'EPSG:4326')
    >>> parse_crs("EPSG:4547").geographic
    False
    >>> parse_crs("mars")
    Traceback (most recent call last):
    ...
    gis.errors.UnknownCRS: Unknown CRS 'mars': it is not a CRS name or EPSG code we know.
    """
    if isinstance(name, Crs):
        return name
    if isinstance(name, bool) or not isinstance(name, str | int):
        raise UnknownCRS(
            f"A CRS must be a name or an EPSG code, not {type(name).__name__}.",
            detail={"field": "crs", "value": repr(name), "expected": _EXPECTED},
        )
    parsed = _parse(str(name).strip().lower())
    if isinstance(parsed, str):
        raise UnknownCRS(
            f"Unknown CRS {name!r}: it {parsed}.",
            detail={"field": "crs", "value": name, "expected": _EXPECTED},
        )
    return parsed


def to_lonlat(x: ArrayLike, y: ArrayLike, crs: str | int | Crs) -> tuple[Float, Float]:
    """Convert coordinates in ``crs`` to CGCS2000 (= WGS84 here) lon/lat in degrees.

    Examples
    --------
    >>> lon, lat = to_lonlat(500000.0, 3320113.398, "EPSG:4547")
    >>> round(float(lon), 6), round(float(lat), 6)
    (114.0, 30.0)
    >>> lon, lat = to_lonlat(120.004579, 28.997103, "gcj02")
    >>> round(float(lon), 4), round(float(lat), 4)
    (120.0, 29.0)
    """
    crs = parse_crs(crs)
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if crs is GCJ02:
        return gcj02_to_wgs84(x, y)
    if crs is BD09:
        return bd09_to_wgs84(x, y)
    if crs.is_lonlat:
        return x.copy(), y.copy()
    lon, lat = transformer(crs.name, LONLAT.name).transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def from_lonlat(lon: ArrayLike, lat: ArrayLike, crs: str | int | Crs) -> tuple[Float, Float]:
    """Convert CGCS2000 (= WGS84 here) lon/lat in degrees to coordinates in ``crs``.

    Examples
    --------
    >>> x, y = from_lonlat(114.0, 30.0, "EPSG:4547")
    >>> round(float(x), 3), round(float(y), 3)
    (500000.0, 3320113.398)
    >>> x, y = from_lonlat(116.404, 39.915, "BD-09")
    >>> round(float(x), 6), round(float(y), 6)
    (116.416627, 39.9227)
    """
    crs = parse_crs(crs)
    lon, lat = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    if crs is GCJ02:
        return wgs84_to_gcj02(lon, lat)
    if crs is BD09:
        return wgs84_to_bd09(lon, lat)
    if crs.is_lonlat:
        return lon.copy(), lat.copy()
    x, y = transformer(LONLAT.name, crs.name).transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


# CGCS2000 / 3-degree Gauss-Kruger CM 75E ... CM 135E: EPSG:4534 ... EPSG:4554, one code per 3°
# of central meridian, false easting 500 km and no zone number in the easting.
GK3_FIRST_SRID, GK3_FIRST_CM, GK3_LAST_CM = 4534, 75, 135


def gk_zone_srid(extent: tuple[float, float, float, float]) -> int:
    """The CGCS2000 3° Gauss–Krüger zone (EPSG code, no zone prefix) for a lon/lat extent.

    ``extent`` is ``(west, south, east, north)`` in degrees. The zone is the one whose central
    meridian is nearest the extent's centre longitude (zones are 3° wide, centred on multiples of
    3°), clamped to the zones EPSG defines for China (CM 75°E…135°E). An extent that straddles two
    zones gets the zone of its centre: at most about 1.5° + half its width from the meridian,
    where the scale error of areas stays below 0.1 % for a county (see ``docs/cities.md``).

    Examples
    --------
    >>> gk_zone_srid((116.8, 28.0, 117.3, 28.5))   # a county near 117°E: CM 117E
    4548
    >>> gk_zone_srid((103.9, 30.5, 104.3, 30.8))   # CM 105E
    4544
    >>> gk_zone_srid((101.2, 25.0, 101.7, 25.6))   # a centre of 101.45: CM 102E
    4543
    >>> gk_zone_srid((73.5, 39.0, 74.0, 39.5)), gk_zone_srid((134.0, 47.0, 135.1, 48.0))
    (4534, 4554)
    >>> gk_zone_srid((10.0, 0.0, 5.0, 1.0))
    Traceback (most recent call last):
    ...
    ValueError: extent (10.0, 0.0, 5.0, 1.0) is not (west, south, east, north) in degrees
    """
    west, south, east, north = (float(v) for v in extent)
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise ValueError(f"extent {tuple(extent)} is not (west, south, east, north) in degrees")
    cm = 3 * int(np.floor((west + east) / 2 / 3 + 0.5))
    cm = min(max(cm, GK3_FIRST_CM), GK3_LAST_CM)
    return GK3_FIRST_SRID + (cm - GK3_FIRST_CM) // 3
