"""Validation of incoming points and geometries, with answers a client can act on.

Points are lon/lat degrees already converted to CGCS2000/WGS84 (see :mod:`gis.crs`). Each point
gets one code, checked in this order:

``'nan'``
    lon or lat is NaN or infinite.
``'swapped'``
    lat/lon were given in the wrong order: the point as given is out of range or outside the
    reference area, and swapping lands inside it. The corrected point is returned.
``'out_of_range'``
    ``|lon| > 180`` or ``|lat| > 90`` (and swapping does not help).
``'far_outside'``
    farther than ``max_outside_m`` metres outside the city (only when a city is given).
``'ok'``
    none of the above.

The reference area is the city grown by ``max_outside_m`` when a city is given, else mainland
China (:func:`gis.transform.in_china`). Distances are geodesic-quality metres: the city and
the points are projected to an azimuthal equidistant projection centred on the city.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from gis.errors import (
    InvalidBBox,
    InvalidCoordinate,
    InvalidGeometry,
    PointFarOutside,
    SwappedCoordinate,
)
from gis.transform import in_china, transformer

__all__ = [
    "check_bbox",
    "parse_bbox",
    "CODES",
    "PointCheck",
    "check_geometry",
    "check_point",
    "check_points",
    "distance_outside_m",
    "explain_invalid",
    "diagnose_lonlat",
    "guess_projected_crs",
]

CODES = ("ok", "nan", "out_of_range", "swapped", "far_outside")

Float = NDArray[np.float64]


class PointCheck(NamedTuple):
    """Per-point result of :func:`check_points` (all arrays have the input's shape).

    Attributes
    ----------
    code : ndarray of str
        One of :data:`CODES` per point.
    lon, lat : ndarray of float
        The point to use: swapped back for ``'swapped'``, as given otherwise.
    distance_m : ndarray of float
        Metres outside the city for the point to use (0 inside); NaN when no city was given or
        the point is ``'nan'`` / ``'out_of_range'``.
    """

    code: NDArray[np.str_]
    lon: Float
    lat: Float
    distance_m: Float


@lru_cache(maxsize=16)
def _city_in_metres(city: shapely.Geometry) -> tuple[str, shapely.Geometry]:
    """An azimuthal equidistant projection centred on the city, and the city in it."""
    c = city.centroid
    proj = (
        f"+proj=aeqd +lat_0={round(c.y, 3)} +lon_0={round(c.x, 3)} "
        "+ellps=GRS80 +units=m +no_defs +type=crs"
    )
    to_m = transformer("EPSG:4490", proj)
    # long lon/lat edges would become chords in metres: densify first (~500 m segments)
    city_m = shapely.transform(
        shapely.segmentize(city, 0.005),
        lambda xy: np.column_stack(to_m.transform(xy[:, 0], xy[:, 1])),
    )
    shapely.prepare(city_m)
    return proj, city_m


def distance_outside_m(city: shapely.Geometry, lon: ArrayLike, lat: ArrayLike) -> Float:
    """Metres from each point to ``city`` (0 on or inside it); NaN for non-finite points.

    >>> from shapely import box
    >>> city = box(120.0, 29.0, 120.1, 29.1)
    >>> d = distance_outside_m(city, [120.05, 120.05], [29.05, 29.2])
    >>> float(d[0]), abs(float(d[1]) - 11083.8) < 1.0  # geodesic distance: 11083.8 m
    (0.0, True)
    """
    lon, lat = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    out = np.full(lon.shape, np.nan)
    finite = np.isfinite(lon) & np.isfinite(lat)
    if not finite.any():
        return out
    shapely.prepare(city)
    inside = np.zeros(lon.shape, dtype=bool)
    inside[finite] = shapely.intersects_xy(city, lon[finite], lat[finite])
    out[inside] = 0.0
    rest = finite & ~inside
    if rest.any():
        proj, city_m = _city_in_metres(city)
        x, y = transformer("EPSG:4490", proj).transform(lon[rest], lat[rest])
        d = shapely.distance(city_m, shapely.points(np.asarray(x), np.asarray(y)))
        out[rest] = np.where(np.isfinite(d), d, np.inf)  # aeqd fails near the antipode
    return out


def check_points(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    city: shapely.Geometry | None = None,
    max_outside_m: float = 0.0,
) -> PointCheck:
    """Classify lon/lat points and correct swapped ones, vectorised.

    Parameters
    ----------
    lon, lat : array_like
        Longitude and latitude in degrees (CGCS2000/WGS84).
    city : shapely geometry, optional
        The reference area in lon/lat. Without it, mainland China is the reference for the swap
        test and no point is ``'far_outside'``.
    max_outside_m : float, default 0
        How far outside ``city`` a point may lie, in metres.

    Returns
    -------
    PointCheck

    Examples
    --------
    >>> from shapely import box
    >>> city = box(119.9, 29.1, 120.3, 29.5)
    >>> r = check_points([120.07, float("nan"), 29.3, 200.0, 121.0],
    ...                  [29.3, 29.3, 120.07, 10.0, 29.3], city=city, max_outside_m=5000)
    >>> r.code.tolist()
    ['ok', 'nan', 'swapped', 'out_of_range', 'far_outside']
    >>> float(r.lon[2]), float(r.lat[2])
    (120.07, 29.3)
    """
    lon, lat = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    shape = lon.shape
    lon, lat = lon.ravel(), lat.ravel()

    def reference(x: Float, y: Float) -> tuple[NDArray[np.bool_], Float]:
        if city is None:
            return in_china(x, y), np.full(x.shape, np.nan)
        d = distance_outside_m(city, x, y)
        return d <= max_outside_m, d

    finite = np.isfinite(lon) & np.isfinite(lat)
    in_range = finite & (np.abs(lon) <= 180.0) & (np.abs(lat) <= 90.0)
    swap_in_range = finite & (np.abs(lat) <= 180.0) & (np.abs(lon) <= 90.0)

    near = np.zeros(lon.shape, dtype=bool)
    dist = np.full(lon.shape, np.nan)
    near[in_range], dist[in_range] = reference(lon[in_range], lat[in_range])

    candidate = swap_in_range & ~near & (lon != lat)
    swapped = np.zeros(lon.shape, dtype=bool)
    swap_dist = np.full(lon.shape, np.nan)
    swapped[candidate], swap_dist[candidate] = reference(lat[candidate], lon[candidate])

    code = np.full(lon.shape, "ok", dtype="<U12")
    code[~finite] = "nan"
    code[finite & ~in_range] = "out_of_range"
    if city is not None:
        code[in_range & ~near] = "far_outside"
    code[swapped] = "swapped"

    out_lon = np.where(swapped, lat, lon)
    out_lat = np.where(swapped, lon, lat)
    dist = np.where(swapped, swap_dist, dist)
    return PointCheck(
        code.reshape(shape), out_lon.reshape(shape), out_lat.reshape(shape), dist.reshape(shape)
    )


def _json_number(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def check_point(
    lon: float,
    lat: float,
    *,
    city: shapely.Geometry | None = None,
    max_outside_m: float = 0.0,
) -> tuple[float, float]:
    """Check one lon/lat point; return it as floats, or raise a domain error saying what is wrong.

    Raises
    ------
    InvalidCoordinate
        ``code`` 'invalid_coordinate': NaN/infinite or out of range; ``detail['fields']`` names
        each bad field, its value and what was expected.
    SwappedCoordinate
        lat/lon in the wrong order; ``detail['corrected']`` is ``{'lon': ..., 'lat': ...}``.
    PointFarOutside
        more than ``max_outside_m`` outside ``city``; ``detail['distance_m']`` says how far.

    Examples
    --------
    >>> check_point(120.07, 29.3)
    (120.07, 29.3)
    >>> try:
    ...     check_point(29.3, 120.07)
    ... except SwappedCoordinate as e:
    ...     e.detail["corrected"]
    {'lon': 120.07, 'lat': 29.3}
    """
    r = check_points(lon, lat, city=city, max_outside_m=max_outside_m)
    code = str(r.code)
    lon_f, lat_f = float(lon), float(lat)
    if code == "ok":
        return lon_f, lat_f
    if code == "nan":
        bad = [(name, v) for name, v in (("lon", lon_f), ("lat", lat_f)) if not math.isfinite(v)]
        fields = [
            {"field": name, "value": _json_number(v), "expected": "a finite number"}
            for name, v in bad
        ]
        names = " and ".join(name for name, _ in bad)
        raise InvalidCoordinate(f"{names} must be a finite number.", detail={"fields": fields})
    if code == "out_of_range":
        limits = [
            (n, v, lim) for n, v, lim in (("lon", lon_f, 180), ("lat", lat_f, 90)) if abs(v) > lim
        ]
        fields = [
            {"field": name, "value": v, "expected": f"a number from -{limit} to {limit}"}
            for name, v, limit in limits
        ]
        names = " and ".join(name for name, _, _ in limits)
        raise InvalidCoordinate(f"{names} out of range.", detail={"fields": fields})
    if code == "swapped":
        corrected = {"lon": float(r.lon), "lat": float(r.lat)}
        raise SwappedCoordinate(
            "lon and lat seem to be swapped: send longitude (x) first, then latitude (y).",
            detail={
                "fields": [
                    {"field": "lon", "value": lon_f, "expected": "longitude (x), given first"},
                    {"field": "lat", "value": lat_f, "expected": "latitude (y), given second"},
                ],
                "corrected": corrected,
            },
        )
    distance = float(r.distance_m)
    expected = f"a point within {max_outside_m:g} m of the city"
    raise PointFarOutside(
        f"The point is {distance:.0f} m outside the city (at most {max_outside_m:g} m allowed).",
        detail={
            "fields": [
                {"field": "lon", "value": lon_f, "expected": expected},
                {"field": "lat", "value": lat_f, "expected": expected},
            ],
            "distance_m": round(distance, 1) if math.isfinite(distance) else "inf",
            "max_outside_m": max_outside_m,
        },
    )


_REASON = re.compile(r"^(?P<reason>.*?)\s*\[(?P<x>\S+)\s+(?P<y>\S+)\]\s*$")


def explain_invalid(geom: shapely.Geometry | None) -> dict[str, Any] | None:
    """None if ``geom`` is valid, else ``{reason, location, message}`` from GEOS.

    ``location`` is ``[x, y]`` where GEOS found the problem (None if it gave none or it is not
    finite), ready for a message such as "Self-intersection at [x y]".

    >>> from shapely import Polygon
    >>> problem = explain_invalid(Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]))
    >>> problem["reason"], problem["location"], problem["message"]
    ('Self-intersection', [0.5, 0.5], 'Self-intersection at [0.5 0.5]')
    >>> explain_invalid(Polygon([(0, 0), (1, 0), (1, 1)])) is None
    True
    """
    if geom is None:
        return {"reason": "Missing geometry", "location": None, "message": "Missing geometry"}
    text = shapely.is_valid_reason(geom)
    if text == "Valid Geometry":
        return None
    match = _REASON.match(text)
    if match is None:
        return {"reason": text, "location": None, "message": text}
    reason = match["reason"]
    try:
        x, y = float(match["x"]), float(match["y"])
    except ValueError:
        return {"reason": reason, "location": None, "message": reason}
    if not (math.isfinite(x) and math.isfinite(y)):
        return {"reason": reason, "location": None, "message": reason}
    return {"reason": reason, "location": [x, y], "message": f"{reason} at [{x:g} {y:g}]"}


def check_geometry(geom: shapely.Geometry | None, *, field: str = "geometry") -> None:
    """Raise :class:`~gis.errors.InvalidGeometry` if ``geom`` is not valid.

    ``detail`` is ``{field, reason, location}``.

    >>> from shapely import Polygon
    >>> try:
    ...     check_geometry(Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]), field="boundary")
    ... except InvalidGeometry as e:
    ...     e.message, e.detail
    ('boundary is invalid: Self-intersection at [1 1].', {'field': 'boundary', 'reason': 'Self-intersection', 'location': [1.0, 1.0]})
    """  # noqa: E501
    problem = explain_invalid(geom)
    if problem is None:
        return
    raise InvalidGeometry(
        f"{field} is invalid: {problem['message']}.",
        detail={"field": field, "reason": problem["reason"], "location": problem["location"]},
    )


BBox = tuple[float, float, float, float]


def check_bbox(bbox: BBox, *, max_lat: float = 90.0, field: str = "bbox") -> BBox:
    """``bbox`` if it is ``(minlon, minlat, maxlon, maxlat)``, finite, in range, min < max.

    ``max_lat`` narrows the latitudes (85 for anything drawn in Web Mercator).

    >>> check_bbox((120.0, 29.0, 120.1, 29.1))
    (120.0, 29.0, 120.1, 29.1)
    >>> check_bbox((120.1, 29.0, 120.0, 29.1))
    Traceback (most recent call last):
    gis.errors.InvalidBBox: bbox must be minlon,minlat,maxlon,maxlat with min < max.
    """
    x0, y0, x1, y1 = bbox
    if not (-180 <= x0 < x1 <= 180 and -max_lat <= y0 < y1 <= max_lat):  # False for NaN
        raise InvalidBBox("bbox must be minlon,minlat,maxlon,maxlat with min < max.",
                          detail={"field": field, "value": list(bbox),
                                  "expected": f"lon in [-180, 180], lat in [-{max_lat:g}, "
                                              f"{max_lat:g}], min < max"})
    return bbox


def parse_bbox(text: str, *, max_lat: float = 90.0, field: str = "bbox") -> BBox:
    """Parse ``"minlon,minlat,maxlon,maxlat"`` and :func:`check_bbox` it.

    >>> parse_bbox("120,29,120.5,29.5")
    (120.0, 29.0, 120.5, 29.5)
    >>> parse_bbox("120,29,120.5")
    Traceback (most recent call last):
    gis.errors.InvalidBBox: bbox is minlon,minlat,maxlon,maxlat: four numbers.
    """
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidBBox("bbox is minlon,minlat,maxlon,maxlat: four numbers.",
                          detail={"field": field, "value": text,
                                  "expected": "four comma-separated numbers"}) from None
    return check_bbox((x0, y0, x1, y1), max_lat=max_lat, field=field)


# ---------------------------------------------------------------------------------------------
# Whole files: do the coordinates look like what the CRS says?
# ---------------------------------------------------------------------------------------------

_MERCATOR_X, _MERCATOR_Y = 20037508.342789244, 20048966.1040146
SAMPLE = 20_000
"""At most this many vertices of a file are looked at (evenly spaced through it)."""


def _sample(x: ArrayLike, y: ArrayLike) -> tuple[Float, Float]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    step = max(1, x.size // SAMPLE)
    return x[::step], y[::step]


def _share_in_china(lon: Float, lat: Float) -> float:
    ok = np.isfinite(lon) & np.isfinite(lat)
    return float(in_china(lon[ok], lat[ok]).mean()) if ok.any() else 0.0


def guess_projected_crs(x: ArrayLike, y: ArrayLike, *,
                        metric: str | None = None) -> list[dict[str, Any]]:
    """Projected CRSs under which coordinates given in metres land in mainland China.

    Tried: Web Mercator (EPSG:3857, what web maps and many exports write); a CGCS2000
    Gauss-Krüger zone *with* its zone number in front of the easting (3° zones 25-45:
    EPSG:4513-4533; 6° zones 13-23: EPSG:4491-4501), read off the easting's millions; and,
    for an easting of 0-1,000,000 without zone prefix, ``metric`` (the city's own CRS). Each
    candidate is ``{crs, name, lon, lat}`` with the median point converted, most likely first.

    >>> [c["crs"] for c in guess_projected_crs([13366000.0], [3412000.0])]
    ['EPSG:3857']
    >>> [c["crs"] for c in guess_projected_crs([40507000.0], [3241000.0])]
    ['EPSG:4528']
    """
    x, y = _sample(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if not x.size:
        return []
    mx, my = float(np.median(x)), float(np.median(y))
    tries: list[tuple[str, str]] = []
    if np.all(np.abs(x) <= _MERCATOR_X) and np.all(np.abs(y) <= _MERCATOR_Y):
        tries.append(("EPSG:3857", "Web Mercator"))
    zone = int(mx // 1_000_000)
    if 25 <= zone <= 45:
        tries.append((f"EPSG:{4513 + zone - 25}", f"CGCS2000 3-degree Gauss-Kruger zone {zone} "
                                                 "(zone number in front of the easting)"))
    elif 13 <= zone <= 23:
        tries.append((f"EPSG:{4491 + zone - 13}", f"CGCS2000 6-degree Gauss-Kruger zone {zone} "
                                                 "(zone number in front of the easting)"))
    elif zone == 0 and metric is not None:
        tries.append((metric, "the city's CGCS2000 Gauss-Kruger zone, easting without "
                              "zone number"))
    out = []
    for crs, name in tries:
        try:
            lon, lat = transformer(crs, "EPSG:4490").transform(x, y)
        except Exception:  # noqa: BLE001 - a candidate PROJ cannot use is no candidate
            continue
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        if _share_in_china(lon, lat) >= 0.5:
            clon, clat = transformer(crs, "EPSG:4490").transform(mx, my)
            out.append({"crs": crs, "name": name, "lon": round(float(clon), 5),
                        "lat": round(float(clat), 5)})
    return out


def diagnose_lonlat(lon: ArrayLike, lat: ArrayLike, *, raw_x: ArrayLike | None = None,
                    raw_y: ArrayLike | None = None, projected_source: bool = False,
                    metric: str | None = None) -> dict[str, Any] | None:
    """What is wrong with a whole file's coordinates after conversion to lon/lat, or None.

    ``lon``/``lat`` are every vertex converted to CGCS2000 degrees; ``raw_x``/``raw_y`` the
    same vertices as the file wrote them (default: the same); ``projected_source`` says the CRS
    assumed was projected (metres). Returns ``{reason, message, candidates?, corrected?}`` with
    ``reason`` one of:

    ``'projected'``
        The values are far outside degrees but look like projected metres; ``candidates`` lists
        the CRSs (from :func:`guess_projected_crs`) under which they land in China.
    ``'degrees'``
        A projected CRS was assumed but the values are degrees in China.
    ``'swapped'``
        Most vertices are out of range or outside mainland China, and inside it with lat/lon
        swapped (the second city in Antarctica).
    ``'out_of_range'``
        Out of range (or not convertible) and none of the above explains it.

    A file whose vertices are valid degrees but simply lie abroad is not judged here.

    >>> diagnose_lonlat([29.30, 29.31], [120.07, 120.08])["reason"]
    'swapped'
    >>> diagnose_lonlat([120.07, 120.08], [29.30, 29.31]) is None
    True
    """
    lon, lat = _sample(lon, lat)
    raw_x, raw_y = _sample(raw_x if raw_x is not None else lon,
                           raw_y if raw_y is not None else lat)
    if not lon.size:
        return None
    rx, ry = raw_x[np.isfinite(raw_x) & np.isfinite(raw_y)], raw_y[np.isfinite(raw_x)
                                                                   & np.isfinite(raw_y)]
    span = (f"x {np.min(rx):.6g} to {np.max(rx):.6g}, y {np.min(ry):.6g} to {np.max(ry):.6g}"
            if rx.size else "no finite values")
    if projected_source and rx.size and _share_in_china(rx, ry) >= 0.5:
        return {"reason": "degrees",
                "message": f"the coordinates ({span}) are degrees in China, but the CRS "
                           "assumed is projected (metres); pass the file's real CRS, e.g. "
                           "EPSG:4490, gcj02 or bd09"}
    finite = np.isfinite(lon) & np.isfinite(lat)
    in_range = finite & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    if not in_range.all():
        looks_metric = rx.size and (np.nanmax(np.abs(rx)) > 1000 or np.nanmax(np.abs(ry)) > 1000)
        candidates = guess_projected_crs(rx, ry, metric=metric) if looks_metric else []
        if candidates:
            best = candidates[0]
            also = "; ".join(f"{c['crs']} ({c['name']}) puts them at {c['lon']}, {c['lat']}"
                             for c in candidates[1:])
            return {"reason": "projected", "candidates": candidates,
                    "message": f"the coordinates ({span}) are not degrees: they look like "
                               f"projected metres. Read as {best['crs']} ({best['name']}) they "
                               f"lie in China at {best['lon']}, {best['lat']}"
                               + (f"; {also}" if also else "")
                               + f". Pass the CRS, e.g. crs='{best['crs']}' (--crs "
                                 f"{best['crs']})"}
    swapped_ok = finite & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)
    as_given = _share_in_china(np.where(in_range, lon, np.nan), np.where(in_range, lat, np.nan))
    if as_given < 0.5:
        swapped = _share_in_china(np.where(swapped_ok, lat, np.nan),
                                  np.where(swapped_ok, lon, np.nan))
        if swapped >= 0.5 and swapped > as_given:
            i = int(np.flatnonzero(swapped_ok)[0])
            return {"reason": "swapped", "corrected": [float(lat[i]), float(lon[i])],
                    "message": f"lat/lon look swapped: {as_given:.0%} of the vertices lie in "
                               f"China as given, {swapped:.0%} with x and y swapped (e.g. "
                               f"{lon[i]:.6f}, {lat[i]:.6f} would be {lat[i]:.6f}, "
                               f"{lon[i]:.6f}). Write longitude (x) first, or fix the file's "
                               "axis order"}
    if not in_range.all():
        return {"reason": "out_of_range",
                "message": f"the coordinates ({span}) are out of range for the CRS assumed "
                           "(lon within ±180, lat within ±90 after conversion) and do not look "
                           "like Web Mercator or a CGCS2000 Gauss-Kruger zone; pass the "
                           "file's CRS"}
    return None
