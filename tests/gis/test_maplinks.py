"""Links copied from Amap, Baidu and Tencent maps, read in their own CRS (gis.maplinks)."""

from __future__ import annotations

import pytest

from gis.crs import parse_crs, to_lonlat
from gis.maplinks import MapLinkError, bd09mc_to_bd09, is_map_link, parse_map_link
from gis.transform import wgs84_to_bd09

# (link as a person would paste it, provider, x, y, crs)
LINKS = [
    ("https://uri.amap.com/marker?position=120.075123,29.306456&name=%E5%B8%82%E6%94%BF%E5%BA%9C"
     "&src=mypage&coordinate=gaode&callnative=0", "amap", 120.075123, 29.306456, "gcj02"),
    ("uri.amap.com/marker?position=120.07,29.30&coordinate=wgs84", "amap", 120.07, 29.30,
     "EPSG:4326"),
    ("https://www.amap.com/?p=B0FFH1ABCD,29.306456,120.075123,%E5%B8%82%E6%94%BF%E5%BA%9C,"
     "%E5%9F%8E%E4%B8%AD%E8%B7%AF", "amap", 120.075123, 29.306456, "gcj02"),
    ("https://uri.amap.com/navigation?to=120.08,29.31,%E7%9B%AE%E7%9A%84%E5%9C%B0&mode=car",
     "amap", 120.08, 29.31, "gcj02"),
    ("https://ditu.amap.com/regeo?lng=120.081&lat=29.311&name=x", "amap", 120.081, 29.311,
     "gcj02"),
    ("http://api.map.baidu.com/marker?location=29.312,120.086&title=%E6%88%91%E7%9A%84%E4%BD%8D"
     "%E7%BD%AE&content=x&output=html&src=webapp.demo", "baidu", 120.086, 29.312, "bd09"),
    ("http://api.map.baidu.com/marker?location=29.31,120.08&title=t&content=c&output=html"
     "&coord_type=gcj02", "baidu", 120.08, 29.31, "gcj02"),
    ("http://api.map.baidu.com/marker?location=29.31,120.08&title=t&coord_type=wgs84",
     "baidu", 120.08, 29.31, "EPSG:4326"),
    ("https://map.baidu.com/?latlng=29.312,120.086&title=x&content=y&autoOpen=true", "baidu",
     120.086, 29.312, "bd09"),
    ("https://apis.map.qq.com/uri/v1/marker?marker=coord:29.306456,120.075123;"
     "title:%E5%B8%82%E6%94%BF%E5%BA%9C;addr:%E5%9F%8E%E4%B8%AD%E8%B7%AF&referer=myapp",
     "tencent", 120.075123, 29.306456, "gcj02"),
    ("https://apis.map.qq.com/uri/v1/marker?marker=coord:29.30,120.07;title:x;addr:y"
     "&coord_type=1&referer=myapp", "tencent", 120.07, 29.30, "EPSG:4326"),
    ("https://apis.map.qq.com/uri/v1/geocoder?coord=29.30,120.07&referer=myapp", "tencent",
     120.07, 29.30, "gcj02"),
    ("https://apis.map.qq.com/tools/poimarker?type=0&marker=coord:29.30,120.07;title:a;"
     "coordtype:1&key=KEY&referer=myapp", "tencent", 120.07, 29.30, "EPSG:4326"),
    ("https://map.qq.com/?type=marker&isopeninfowin=1&markertype=1&pointx=120.07&pointy=29.30"
     "&name=x&addr=y", "tencent", 120.07, 29.30, "gcj02"),
]


@pytest.mark.parametrize(("link", "provider", "x", "y", "crs"), LINKS)
def test_links_are_read_in_their_maps_crs(link: str, provider: str, x: float, y: float,
                                          crs: str) -> None:
    p = parse_map_link(link)
    assert (p.provider, p.x, p.y, p.crs) == (provider, x, y, crs)
    parse_crs(p.crs)  # a name the locator understands
    assert is_map_link(link)


def test_names_come_along() -> None:
    assert parse_map_link(LINKS[0][0]).name == "市政府"
    assert parse_map_link(LINKS[2][0]).name == "市政府"
    assert parse_map_link(LINKS[9][0]).name == "市政府"


def test_baidu_web_map_view_is_mercator_metres() -> None:
    """map.baidu.com/@x,y,zoom: the view's centre in Baidu Mercator (BD-09MC)."""
    lon, lat = 120.0751, 29.3064
    bx, by = (float(v) for v in wgs84_to_bd09(lon, lat))
    # Baidu Mercator of that BD-09 point, by inverting our inverse with a few Newton steps
    x, y = bx * 111319.49, by * 110946.25 * 1.03
    for _ in range(20):
        gx, gy = bd09mc_to_bd09(x, y)
        x += (bx - gx) * 111319.49
        y += (by - gy) * 100_000
    link = f"https://map.baidu.com/@{x:.2f},{y:.2f},19z"
    p = parse_map_link(link)
    assert p.crs == "bd09" and p.provider == "baidu"
    back = to_lonlat(p.x, p.y, "bd09")
    assert abs(float(back[0]) - lon) < 2e-5 and abs(float(back[1]) - lat) < 2e-5
    p2 = parse_map_link(f"https://map.baidu.com/poi/%E5%B8%82/@{x:.2f},{y:.2f},18.5z?uid=abc")
    assert abs(p2.x - p.x) < 1e-6
    p3 = parse_map_link(f"http://api.map.baidu.com/marker?location={y:.2f},{x:.2f}"
                        "&coord_type=bd09mc&title=t")
    assert abs(p3.x - p.x) < 1e-6 and p3.crs == "bd09"


@pytest.mark.parametrize(("link", "reason"), [
    ("https://surl.amap.com/2kXYZabc1", "short_link"),
    ("https://www.openstreetmap.org/#map=17/29.3/120.07", "unknown_map"),
    ("https://uri.amap.com/marker?poiid=B0FFFAB6J2&src=mypage", "no_coordinates"),
    ("https://map.baidu.com/?shareurl=1&poiShareUid=abc", "no_coordinates"),
    ("https://apis.map.qq.com/uri/v1/marker?marker=title:x&referer=a", "no_coordinates"),
    ("http://api.map.baidu.com/marker?location=29.3,120.0&coord_type=sogou", "unknown_coord_type"),
    ("https://uri.amap.com/marker?position=" + "1" * 3000, "too_long"),
    ("https://uri.amap.com/marker?position=nan,nan", "not_a_number"),
])
def test_unreadable_links_say_why(link: str, reason: str) -> None:
    with pytest.raises(MapLinkError) as err:
        parse_map_link(link)
    assert err.value.code == "unreadable_map_link"
    assert err.value.detail["reason"] == reason


def test_numbers_are_not_links() -> None:
    assert not is_map_link("120.07, 29.30")
    assert not is_map_link("29.30 120.07")
    assert is_map_link("https://map.qq.com/?pointx=1&pointy=2")


def test_text_urllib_cannot_split_is_refused_in_words() -> None:
    with pytest.raises(MapLinkError) as info:
        parse_map_link("âø\U000bc31a2\x84\x85]\U00100079\x86&\x96O")  # found by schemathesis
    assert info.value.detail["reason"] == "not_a_link"
