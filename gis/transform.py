"""CRS transforms: EPSG codes through pyproj, and the Chinese GCJ-02 / BD-09 offsets.

GCJ-02 ("Mars coordinates", used by Amap, Tencent, WeChat) and BD-09 (Baidu) are not EPSG
systems: they are WGS84 plus a published, deliberately non-linear offset. The forward formulas are
public; the inverses here iterate the forward formula to well under a millimetre.

Where the offset applies
------------------------
GCJ-02 is applied in mainland China only. :func:`in_china` tests a rough rectangle first and
then a simplified mainland outline (``gis/china_outline.geojson``, see ``gis/README.md``). Taiwan,
Hong Kong and Macau are outside it; the coast has a ~5 km margin so harbours and near-shore
islands count as mainland; land borders are accurate to about 1 km. Points outside are returned
unchanged by the WGS84 <-> GCJ-02 / BD-09 functions (pass ``only_in_china=False`` to apply the
formula everywhere). :func:`gcj02_to_bd09` and :func:`bd09_to_gcj02` are Baidu's pure formula
between two already-offset systems and apply everywhere.

The formulas were checked against published test vectors (googollee/eviltransform,
wandergis/coordtransform, hujiulong/gcoord); see ``tests/gis/test_transform.py``.

All functions accept scalars or array-likes and return ``numpy`` float arrays (0-d for scalars).
A point with a NaN coordinate counts as outside China: it comes back unchanged, NaN included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import Transformer

__all__ = [
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "china_outline",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "in_china",
    "transformer",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

Float = NDArray[np.float64]

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by the GCJ-02 formula
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0  # Baidu's constant; some copies wrongly use plain pi here

# The rectangle used by most published implementations: a cheap prefilter for the outline.
_RECT = (72.004, 0.8293, 137.8347, 55.8271)
_OUTLINE_PATH = Path(__file__).with_name("china_outline.geojson")

_TOL = 1e-11  # degrees, ~1 µm: the inverses stop per point once the residual is below this
_MAX_ITER = 30  # the fixed-point maps contract ~1000x per step; 4-6 steps are typical


def _as_float(a: ArrayLike) -> Float:
    return np.asarray(a, dtype=np.float64)


def _delta(lon: Float, lat: Float) -> tuple[Float, Float]:
    """The GCJ-02 offset (degrees) at a WGS84 point, without the out-of-China test."""
    with np.errstate(invalid="ignore"):  # sin(inf) is NaN, as it should be here
        return _delta_raw(lon, lat)


def _delta_raw(lon: Float, lat: Float) -> tuple[Float, Float]:
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
        + common
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )  # fmt: skip
    dlon = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
        + common
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )  # fmt: skip
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def _fixed_point(
    forward: Callable[[Float, Float], tuple[Float, Float]], target_x: Float, target_y: Float,
    x0: Float, y0: Float, *, tol: float, max_iter: int,
) -> tuple[Float, Float]:
    """Solve ``forward(x, y) == target`` by ``p <- p - (forward(p) - target)``, per point.

    Only points still moving are recomputed, so one slow point does not cost the whole array,
    and points with a non-finite input never enter the loop (they come back as NaN).
    """
    x = np.array(x0, dtype=np.float64).ravel()
    y = np.array(y0, dtype=np.float64).ravel()
    tx = target_x.ravel()
    ty = target_y.ravel()
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(tx) & np.isfinite(ty)
    x[~finite] = np.nan
    y[~finite] = np.nan
    active = np.flatnonzero(finite)
    for _ in range(max_iter):
        if active.size == 0:
            break
        fx, fy = forward(x[active], y[active])
        ex = fx - tx[active]
        ey = fy - ty[active]
        x[active] -= ex
        y[active] -= ey
        active = active[(np.abs(ex) >= tol) | (np.abs(ey) >= tol)]
    return x.reshape(target_x.shape), y.reshape(target_x.shape)


@cache
def china_outline() -> shapely.Geometry:
    """The simplified mainland-China outline (WGS84 lon/lat), loaded once and prepared.

    >>> china_outline().geom_type
    'MultiPolygon'
    """
    data = json.loads(_OUTLINE_PATH.read_text(encoding="utf-8"))
    geom = shapely.from_geojson(json.dumps(data["geometry"]))
    shapely.prepare(geom)
    return geom


def in_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Whether the GCJ-02 offset applies at a point: inside the mainland-China outline.

    A rectangle prefilter skips the polygon test for most points abroad. Taiwan, Hong Kong and
    Macau are outside; NaN is outside.

    >>> in_china([120.07, 2.35, 105.85, 114.17], [29.30, 48.85, 21.03, 22.30]).tolist()
    [True, False, False, False]
    """
    lon = _as_float(lon)
    lat = _as_float(lat)
    lon, lat = np.broadcast_arrays(lon, lat)
    x0, y0, x1, y1 = _RECT
    rect = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
    inside = np.zeros(lon.shape, dtype=bool)
    if rect.any():
        inside[rect] = shapely.contains_xy(china_outline(), lon[rect], lat[rect])
    return inside


def wgs84_to_gcj02(
    lon: ArrayLike, lat: ArrayLike, *, only_in_china: bool = True
) -> tuple[Float, Float]:
    """WGS84 → GCJ-02. Points outside mainland China are returned unchanged.

    Parameters
    ----------
    lon, lat : array_like
        WGS84 (or CGCS2000) longitude and latitude in degrees.
    only_in_china : bool, default True
        If False, apply the offset everywhere (the raw formula).

    >>> x, y = wgs84_to_gcj02(120.0, 29.0)
    >>> round(float(x), 6), round(float(y), 6)
    (120.004579, 28.997103)
    >>> wgs84_to_gcj02(2.35, 48.85)  # Paris: unchanged
    (array(2.35), array(48.85))
    """
    lon, lat = np.broadcast_arrays(_as_float(lon), _as_float(lat))
    dlon, dlat = _delta(lon, lat)
    if not only_in_china:
        return lon + dlon, lat + dlat
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def _wgs_to_gcj_everywhere(lon: Float, lat: Float) -> tuple[Float, Float]:
    dlon, dlat = _delta(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    only_in_china: bool = True,
    tol: float = _TOL,
    max_iter: int = _MAX_ITER,
) -> tuple[Float, Float]:
    """GCJ-02 → WGS84, iterating the forward formula per point (error < 1 mm).

    The offset is inverted first; the result is kept where it lies in mainland China, otherwise
    the point is returned unchanged. Within ~700 m of the outline a GCJ-02 point can have two
    preimages (one inside, one outside); the inside one wins.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitude and latitude in degrees.
    only_in_china : bool, default True
        If False, invert the raw formula everywhere.
    tol : float
        Stop a point once the forward residual is below ``tol`` degrees in both axes.
    max_iter : int
        Iteration cap; points still above ``tol`` then keep their last estimate.

    >>> x, y = gcj02_to_wgs84(*wgs84_to_gcj02(120.0, 29.0))
    >>> abs(float(x) - 120.0) < 1e-9 and abs(float(y) - 29.0) < 1e-9
    True
    >>> gcj02_to_wgs84([139.69, float("nan")], [35.69, 30.0])  # Tokyo and NaN: unchanged
    (array([139.69,    nan]), array([35.69, 30.  ]))
    """
    glon, glat = np.broadcast_arrays(_as_float(lon), _as_float(lat))
    dlon, dlat = _delta(glon, glat)  # one-step estimate, within ~4 m
    wlon, wlat = _fixed_point(
        _wgs_to_gcj_everywhere, glon, glat, glon - dlon, glat - dlat, tol=tol, max_iter=max_iter
    )
    if not only_in_china:
        return wlon, wlat
    inside = in_china(wlon, wlat)
    return np.where(inside, wlon, glon), np.where(inside, wlat, glat)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[Float, Float]:
    """GCJ-02 → BD-09 (Baidu's public formula, applied everywhere).

    >>> x, y = gcj02_to_bd09(116.404, 39.915)
    >>> round(float(x), 9), round(float(y), 9)
    (116.410369494, 39.921336994)
    """
    x, y = np.broadcast_arrays(_as_float(lon), _as_float(lat))
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02_closed_form(x: Float, y: Float) -> tuple[Float, Float]:
    """Baidu's published approximate inverse (errs by up to ~1e-6 degrees)."""
    x = x - 0.0065
    y = y - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_gcj02(
    lon: ArrayLike, lat: ArrayLike, *, tol: float = _TOL, max_iter: int = _MAX_ITER
) -> tuple[Float, Float]:
    """BD-09 → GCJ-02: Baidu's closed-form inverse refined by iterating the forward formula.

    >>> x, y = bd09_to_gcj02(*gcj02_to_bd09(116.404, 39.915))
    >>> abs(float(x) - 116.404) < 1e-10 and abs(float(y) - 39.915) < 1e-10
    True
    """
    blon, blat = np.broadcast_arrays(_as_float(lon), _as_float(lat))
    x0, y0 = _bd09_to_gcj02_closed_form(blon, blat)
    return _fixed_point(gcj02_to_bd09, blon, blat, x0, y0, tol=tol, max_iter=max_iter)


def wgs84_to_bd09(
    lon: ArrayLike, lat: ArrayLike, *, only_in_china: bool = True
) -> tuple[Float, Float]:
    """WGS84 → BD-09. Points outside mainland China are returned unchanged.

    >>> x, y = wgs84_to_bd09(116.404, 39.915)
    >>> round(float(x), 6), round(float(y), 6)
    (116.416627, 39.9227)
    """
    lon, lat = np.broadcast_arrays(_as_float(lon), _as_float(lat))
    blon, blat = gcj02_to_bd09(*wgs84_to_gcj02(lon, lat, only_in_china=False))
    if not only_in_china:
        return blon, blat
    inside = in_china(lon, lat)
    return np.where(inside, blon, lon), np.where(inside, blat, lat)


def bd09_to_wgs84(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    only_in_china: bool = True,
    tol: float = _TOL,
    max_iter: int = _MAX_ITER,
) -> tuple[Float, Float]:
    """BD-09 → WGS84. Points whose WGS84 preimage is outside mainland China are unchanged.

    >>> x, y = bd09_to_wgs84(*wgs84_to_bd09(120.07, 29.31))
    >>> abs(float(x) - 120.07) < 1e-9 and abs(float(y) - 29.31) < 1e-9
    True
    """
    blon, blat = np.broadcast_arrays(_as_float(lon), _as_float(lat))
    glon, glat = bd09_to_gcj02(blon, blat, tol=tol, max_iter=max_iter)
    wlon, wlat = gcj02_to_wgs84(glon, glat, only_in_china=False, tol=tol, max_iter=max_iter)
    if not only_in_china:
        return wlon, wlat
    inside = in_china(wlon, wlat)
    return np.where(inside, wlon, blon), np.where(inside, wlat, blat)


@lru_cache(maxsize=64)
def transformer(src: str | int, dst: str | int) -> Transformer:
    """The one cached pyproj transformer between two CRSs, in x/y (lon/lat) order.

    >>> x, y = transformer("EPSG:4490", "EPSG:4544").transform(105.0, 30.0)
    >>> round(x, 3), round(y, 3)
    (500000.0, 3320113.398)
    """
    return Transformer.from_crs(src, dst, always_xy=True)
