"""Links copied from Chinese web maps, read as a point **in the CRS that map uses**.

A dispatcher pastes what a caller sent: a share link from Amap (高德), Baidu or Tencent maps.
Each map writes its own coordinates in its own order and datum, and taking them as GPS
coordinates puts the point a few hundred metres off (GCJ-02) or more (BD-09), often in another
grid. :func:`parse_map_link` returns the numbers as written, with the CRS name :mod:`gis.crs`
understands; nothing is fetched (a short link such as ``surl.amap.com/…`` must be opened by a
person first, and says so).

Formats read (from the maps' URI API documentation):

* **Amap** ``uri.amap.com/marker?position=lon,lat`` (``coordinate=gaode`` the default, GCJ-02;
  ``coordinate=wgs84``), ``uri.amap.com/navigation?to=lon,lat,name``, ``amap.com/?p=POIID,lat,lon,
  name,…`` (the web map's share link: latitude first), ``…?lnglat=lon,lat``, ``…regeo?lng=&lat=``.
* **Baidu** ``api.map.baidu.com/marker?location=lat,lng`` with ``coord_type`` ``bd09ll`` (the
  default), ``bd09mc``, ``gcj02`` or ``wgs84``; ``map.baidu.com/?latlng=lat,lng`` (BD-09);
  ``map.baidu.com/@x,y,17z`` or ``…/poi/…/@x,y,19z`` (Baidu Mercator metres, BD-09MC, converted to
  BD-09 degrees here with Baidu's published polynomial).
* **Tencent** ``apis.map.qq.com/uri/v1/marker?marker=coord:lat,lng;title:…`` and
  ``…/uri/v1/geocoder?coord=lat,lng`` (``coord_type=1`` GPS, ``2`` Tencent GCJ-02, the default),
  ``apis.map.qq.com/tools/poimarker?marker=coord:lat,lng;coordtype:1`` (1 GPS, 3 Baidu, 5 GCJ-02),
  ``map.qq.com/?pointx=lng&pointy=lat``.

>>> p = parse_map_link("https://uri.amap.com/marker?position=120.075,29.306&name=x")
>>> p.provider, p.crs, p.x, p.y
('amap', 'gcj02', 120.075, 29.306)
>>> parse_map_link("https://apis.map.qq.com/uri/v1/marker?marker=coord:29.3,120.07;title:A"
...                "&referer=app").as_dict()["input"]
[120.07, 29.3]
>>> parse_map_link("https://map.baidu.com/?latlng=29.31,120.08&title=x").crs
'bd09'
>>> is_map_link("120.07, 29.30"), is_map_link("uri.amap.com/marker?position=1,2")
(False, True)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from gis.errors import GisError


class MapLinkError(GisError):
    """A pasted map link we cannot read a point from (``reason`` says why)."""

    code = "unreadable_map_link"


@dataclass(frozen=True, slots=True)
class MapLinkPoint:
    """A point as the link wrote it: ``x`` longitude, ``y`` latitude, in ``crs``."""

    provider: str  # amap, baidu, tencent
    x: float
    y: float
    crs: str  # a name gis.crs.parse_crs knows: gcj02, bd09, EPSG:4326
    name: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"provider": self.provider, "input": [self.x, self.y], "crs": self.crs,
                "name": self.name}


_SHORT_HOSTS = ("surl.amap.com", "t.cn", "j.map.baidu.com", "map.baidu.com/mobile/webapp/s",
                "url.cn", "dwz.cn")
_NUM = r"[-+]?\d+(?:\.\d+)?"
_BD_AT = re.compile(rf"@({_NUM}),({_NUM})(?:,[\d.]+z)?")

MAX_LINK_LENGTH = 2000


def is_map_link(text: str) -> bool:
    """Does ``text`` look like a link (as opposed to two numbers)?"""
    t = text.strip().lower()
    return t.startswith(("http://", "https://", "//")) or bool(
        re.match(r"^[a-z0-9.-]+\.(com|cn|net)(/|\?)", t))


def parse_map_link(text: str) -> MapLinkPoint:
    """The point of an Amap, Baidu or Tencent map link; :class:`MapLinkError` when none.

    >>> parse_map_link("https://www.amap.com/?p=B0FFG,29.3061,120.0751,市政府,").as_dict()
    {'provider': 'amap', 'input': [120.0751, 29.3061], 'crs': 'gcj02', 'name': '市政府'}
    >>> try:
    ...     parse_map_link("https://surl.amap.com/2abcDEF")
    ... except MapLinkError as err:
    ...     err.detail["reason"]
    'short_link'
    """
    raw = text.strip()
    if len(raw) > MAX_LINK_LENGTH:
        raise MapLinkError("The link is too long.", detail={
            "field": "link", "reason": "too_long", "max_length": MAX_LINK_LENGTH})
    url = raw if "://" in raw else "https://" + raw.lstrip("/")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # urllib refuses e.g. an unbalanced "[" in the host part
        raise MapLinkError("Not a link of Amap, Baidu or Tencent maps.", detail={
            "field": "link", "reason": "not_a_link"}) from None
    if any((host + parts.path).startswith(h) for h in _SHORT_HOSTS):
        raise MapLinkError(
            "A short link cannot be read without opening it: open it in a browser and copy the "
            "full address.", detail={"field": "link", "reason": "short_link", "host": host})
    query = {k.lower(): v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    # a link pasted from an app may carry its query in the fragment (#/…?a=b)
    if "?" in parts.fragment:
        query.update({k.lower(): v[-1] for k, v in parse_qs(
            parts.fragment.split("?", 1)[1]).items()})
    if host.endswith(("amap.com", "gaode.com", "autonavi.com")):
        point = _amap(query)
    elif host.endswith("baidu.com"):
        point = _baidu(unquote(parts.path), query)
    elif host.endswith(("map.qq.com", "qq.com")):
        point = _tencent(query)
    else:
        raise MapLinkError("Not a link of Amap, Baidu or Tencent maps.", detail={
            "field": "link", "reason": "unknown_map", "host": host,
            "expected": "uri.amap.com, amap.com, map.baidu.com, api.map.baidu.com, "
                        "apis.map.qq.com or map.qq.com"})
    if point is None:
        raise MapLinkError("The link names no coordinates (a place id alone cannot be read "
                           "without asking that map).", detail={
                               "field": "link", "reason": "no_coordinates", "host": host})
    if not (math.isfinite(point.x) and math.isfinite(point.y)):
        raise MapLinkError("The link's coordinates are not numbers.", detail={
            "field": "link", "reason": "not_a_number"})
    return point


def _pair(value: str | None) -> tuple[float, float] | None:
    """The first two numbers of ``'a,b[,…]'`` (None if there are not two)."""
    if not value:
        return None
    bits = [b.strip() for b in value.replace("，", ",").split(",")]
    try:
        return float(bits[0]), float(bits[1])
    except (IndexError, ValueError):
        return None


def _amap(q: dict[str, str]) -> MapLinkPoint | None:
    crs = "EPSG:4326" if q.get("coordinate", "").lower() == "wgs84" else "gcj02"
    name = q.get("name") or None
    for key in ("position", "lnglat", "to", "dest"):
        xy = _pair(q.get(key))
        if xy is not None:
            if key == "to" and name is None:
                name = (q[key].split(",") + ["", ""])[2] or None
            return MapLinkPoint("amap", xy[0], xy[1], crs, name)
    p = q.get("p")
    if p:  # the web map's share link: POIID,lat,lon,name,address
        bits = p.split(",")
        xy = _pair(",".join(bits[1:3]))
        if xy is not None:
            return MapLinkPoint("amap", xy[1], xy[0], crs, (bits[3] if len(bits) > 3 else "")
                                or name)
    if "lng" in q and "lat" in q:
        xy = _pair(f"{q['lng']},{q['lat']}")
        if xy is not None:
            return MapLinkPoint("amap", xy[0], xy[1], crs, name)
    return None


_BAIDU_COORD = {"bd09ll": "bd09", "bd09": "bd09", "gcj02": "gcj02", "wgs84": "EPSG:4326",
                "wgs84ll": "EPSG:4326"}


def _baidu(path: str, q: dict[str, str]) -> MapLinkPoint | None:
    coord_type = (q.get("coord_type") or q.get("coordtype") or "bd09ll").lower()
    name = q.get("title") or q.get("name") or None
    for key in ("location", "latlng"):
        xy = _pair(q.get(key))
        if xy is not None:
            lat, lng = xy
            if coord_type == "bd09mc":  # location=y,x in Mercator metres
                lng, lat = bd09mc_to_bd09(lng, lat)
                return MapLinkPoint("baidu", lng, lat, "bd09", name)
            if coord_type not in _BAIDU_COORD:
                raise MapLinkError(f"Unknown Baidu coord_type {coord_type!r}.", detail={
                    "field": "link", "reason": "unknown_coord_type", "value": coord_type,
                    "expected": "bd09ll, bd09mc, gcj02 or wgs84"})
            return MapLinkPoint("baidu", lng, lat, _BAIDU_COORD[coord_type], name)
    m = _BD_AT.search(path) or _BD_AT.search(q.get("center", "") and "@" + q["center"])
    if m:  # the web map's view: @x,y,zoom in Baidu Mercator metres
        lng, lat = bd09mc_to_bd09(float(m.group(1)), float(m.group(2)))
        return MapLinkPoint("baidu", round(lng, 7), round(lat, 7), "bd09", name)
    return None


_TENCENT_COORD_TYPE = {"1": "EPSG:4326", "2": "gcj02"}
_TENCENT_COORDTYPE = {"1": "EPSG:4326", "3": "bd09", "5": "gcj02"}


def _tencent(q: dict[str, str]) -> MapLinkPoint | None:
    crs = _TENCENT_COORD_TYPE.get(q.get("coord_type", "2"), "gcj02")
    marker = q.get("marker")
    if marker:
        attrs = {}
        for item in marker.split("|")[0].split(";"):
            key, _, value = item.partition(":")
            attrs[key.strip().lower()] = value.strip()
        if "coordtype" in attrs:
            crs = _TENCENT_COORDTYPE.get(attrs["coordtype"], crs)
        xy = _pair(attrs.get("coord"))
        if xy is not None:
            return MapLinkPoint("tencent", xy[1], xy[0], crs, attrs.get("title") or None)
    xy = _pair(q.get("coord"))
    if xy is not None:
        return MapLinkPoint("tencent", xy[1], xy[0], crs, q.get("title") or None)
    if "pointx" in q and "pointy" in q:
        xy = _pair(f"{q['pointx']},{q['pointy']}")
        if xy is not None:
            return MapLinkPoint("tencent", xy[0], xy[1], crs, q.get("name") or None)
    return None


# Baidu Mercator (BD-09MC) to BD-09 degrees: Baidu's published piecewise polynomial (its JS API's
# MC2LL table), by band of |y|.
_MC_BAND = (12890594.86, 8362377.87, 5591021.0, 3481989.83, 1678043.12, 0.0)
_MC2LL = (
    (1.410526172116255e-8, 8.98305509648872e-6, -1.9939833816331, 200.9824383106796,
     -187.2403703815547, 91.6087516669843, -23.38765649603339, 2.57121317296198,
     -0.03801003308653, 17337981.2),
    (-7.435856389565537e-9, 8.983055097726239e-6, -0.78625201886289, 96.32687599759846,
     -1.85204757529826, -59.36935905485877, 47.40033549296737, -16.50741931063887,
     2.28786674699375, 10260144.86),
    (-3.030883460898826e-8, 8.98305509983578e-6, 0.30071316287616, 59.74293618442277,
     7.357984074871, -25.38371002664745, 13.45380521110908, -3.29883767235584,
     0.32710905363475, 6856817.37),
    (-1.981981304930552e-8, 8.983055099779535e-6, 0.03278182852591, 40.31678527705744,
     0.65659298677277, -4.44255534477492, 0.85341911805263, 0.12923347998204,
     -0.04625736007561, 4482777.06),
    (3.09191371068437e-9, 8.983055096812155e-6, 6.995724062e-5, 23.10934304144901,
     -2.3663490511e-4, -0.6321817810242, -0.00663494467273, 0.03430082397953,
     -0.00466043876332, 2555164.4),
    (2.890871144776878e-9, 8.983055095805407e-6, -3.068298e-8, 7.47137025468032,
     -3.53937994e-6, -0.02145144861037, -1.234426596e-5, 1.0322952773e-4, -3.23890364e-6,
     826088.5),
)


def bd09mc_to_bd09(x: float, y: float) -> tuple[float, float]:
    """Baidu Mercator metres to Baidu (BD-09) degrees.

    >>> lon, lat = bd09mc_to_bd09(12958160.97, 4825907.72)  # Beijing, Tian'anmen
    >>> round(lon, 3), round(lat, 3)
    (116.404, 39.915)
    """
    ay = abs(y)
    coef = next(c for band, c in zip(_MC_BAND, _MC2LL, strict=True) if ay >= band)
    lon = coef[0] + coef[1] * abs(x)
    d = ay / coef[9]
    lat = sum(coef[2 + k] * d ** k for k in range(7))
    return math.copysign(lon, x), math.copysign(lat, y)
