"""CRS transforms: EPSG codes through pyproj, and the Chinese GCJ-02 / BD-09 offsets.

GCJ-02 ("Mars coordinates", used by Amap, Tencent, WeChat) and BD-09 (Baidu) are not EPSG
systems: they are WGS84 plus a published, deliberately non-linear offset. The forward formulas are
public; the inverse is found iteratively to well under a centimetre.

All functions accept scalars or array-likes and return ``numpy`` arrays (0-d for scalars).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import Transformer

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by the GCJ-02 formula
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0


def _delta(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    """The GCJ-02 offset (degrees) at a WGS84 point, without the out-of-China test."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    dlat = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def in_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Whether the GCJ-02 offset applies at a point (rough mainland-China rectangle).

    >>> bool(in_china(120.07, 29.30)), bool(in_china(2.35, 48.85))
    (True, False)
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    return (lon >= 72.004) & (lon <= 137.8347) & (lat >= 0.8293) & (lat <= 55.8271)


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray, NDArray]:
    """WGS84 → GCJ-02. Points outside China are returned unchanged.

    >>> x, y = wgs84_to_gcj02(120.0, 29.0)
    >>> round(float(x), 6), round(float(y), 6)
    (120.004579, 28.997103)
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    dlon, dlat = _delta(lon, lat)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, tol: float = 1e-10, max_iter: int = 30
) -> tuple[NDArray, NDArray]:
    """GCJ-02 → WGS84 by fixed-point iteration on the forward formula (error ≪ 1 cm).

    >>> x, y = gcj02_to_wgs84(*wgs84_to_gcj02(120.0, 29.0))
    >>> abs(float(x) - 120.0) < 1e-9 and abs(float(y) - 29.0) < 1e-9
    True
    """
    glon = np.asarray(lon, dtype=float)
    glat = np.asarray(lat, dtype=float)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(max_iter):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        elon, elat = flon - glon, flat - glat
        wlon = wlon - elon
        wlat = wlat - elat
        if np.all(np.abs(elon[np.isfinite(elon)]) < tol) and np.all(
            np.abs(elat[np.isfinite(elat)]) < tol
        ):
            break
    return wlon, wlat


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray, NDArray]:
    """GCJ-02 → BD-09 (Baidu's public formula)."""
    x = np.asarray(lon, dtype=float)
    y = np.asarray(lat, dtype=float)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(
    lon: ArrayLike, lat: ArrayLike, *, tol: float = 1e-10, max_iter: int = 30
) -> tuple[NDArray, NDArray]:
    """BD-09 → GCJ-02 by iterating the forward formula."""
    blon = np.asarray(lon, dtype=float)
    blat = np.asarray(lat, dtype=float)
    glon, glat = blon - 0.0065, blat - 0.006
    for _ in range(max_iter):
        flon, flat = gcj02_to_bd09(glon, glat)
        elon, elat = flon - blon, flat - blat
        glon = glon - elon
        glat = glat - elat
        if np.all(np.abs(elon[np.isfinite(elon)]) < tol) and np.all(
            np.abs(elat[np.isfinite(elat)]) < tol
        ):
            break
    return glon, glat


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray, NDArray]:
    """WGS84 → BD-09."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray, NDArray]:
    """BD-09 → WGS84."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


@lru_cache(maxsize=64)
def transformer(src: str | int, dst: str | int) -> Transformer:
    """The one cached pyproj transformer between two CRSs, in x/y (lon/lat) order."""
    return Transformer.from_crs(src, dst, always_xy=True)
