"""The OGC feature collections as domain code, on the tiny hand-drawn city (tests/tiny_city.py)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from sqlalchemy import Connection

from grids import features as ogc
from grids.access import Scope
from tests.tiny_city import C1, G1, G2, G3, STREET, T0, X0, Y0, U

EVERYTHING = Scope.everything()


def bbox(x0: float, y0: float, x1: float, y1: float) -> ogc.BBox:
    """A bbox given in the drawing's units."""
    return ogc.parse_bbox(f"{X0 + x0 * U},{Y0 + y0 * U},{X0 + x1 * U},{Y0 + y1 * U}")


def ids(page: ogc.FeaturePage) -> list[str]:
    return [f["id"] for f in page.features]


GRIDS = ogc.collection("grids")


def test_bbox_selects_what_it_touches_edges_included(tiny_city: Connection) -> None:
    assert ids(GRIDS.features(tiny_city, scope=EVERYTHING, bbox=bbox(0.2, 0.2, 0.4, 0.4))) == [G1]
    # A box only touching the shared edge x=1 meets both neighbours (ST_Intersects semantics).
    assert ids(GRIDS.features(tiny_city, scope=EVERYTHING, bbox=bbox(1, 0.2, 1, 0.4))) == [G1, G2]
    # Inside the gap above G3: no grid, although the community and street cover it.
    assert ids(GRIDS.features(tiny_city, scope=EVERYTHING, bbox=bbox(2.2, 0.6, 2.8, 0.9))) == []
    communities = ogc.collection("communities").features(
        tiny_city, scope=EVERYTHING, bbox=bbox(2.2, 0.6, 2.8, 0.9))
    assert ids(communities) == [C1[:-1] + "2"]
    assert ids(GRIDS.features(tiny_city, scope=EVERYTHING, bbox=bbox(2.5, 0.5, 2.6, 0.7))) == [G3]
    # A box far away, and one crossing the antimeridian that still covers the city's longitude.
    assert GRIDS.features(tiny_city, scope=EVERYTHING, bbox=bbox(-500, 0, -400, 1)).number_matched == 0
    wrapped = ogc.parse_bbox("170,28.9,121,29.1")
    assert len(wrapped.envelopes) == 2
    assert ids(GRIDS.features(tiny_city, scope=EVERYTHING, bbox=wrapped)) == [G1, G2, G3]


def test_paging_counts_and_scope(tiny_city: Connection) -> None:
    first = GRIDS.features(tiny_city, scope=EVERYTHING, limit=2)
    second = GRIDS.features(tiny_city, scope=EVERYTHING, limit=2, offset=2)
    past = GRIDS.features(tiny_city, scope=EVERYTHING, limit=2, offset=5)
    assert ids(first) + ids(second) == [G1, G2, G3] and ids(past) == []
    assert first.number_matched == second.number_matched == past.number_matched == 3
    assert ids(GRIDS.features(tiny_city, scope=Scope.of(C1))) == [G1, G2]
    assert ids(GRIDS.features(tiny_city, scope=Scope.of(G3))) == [G3]
    assert ogc.collection("city").features(tiny_city, scope=Scope.of(STREET)).number_matched == 0


def test_one_feature_and_what_it_carries(tiny_city: Connection) -> None:
    f = GRIDS.feature(tiny_city, G1, scope=EVERYTHING)
    assert f["properties"]["parent_code"] == C1 and f["properties"]["level"] == "grid"
    assert f["properties"]["area_m2"] == pytest.approx(1.08e6, rel=0.01)  # 1112 m × 973 m at 29°N
    geometry = orjson.loads(orjson.dumps(f["geometry"]))
    assert geometry["type"] == "MultiPolygon"
    lon, lat = geometry["coordinates"][0][0][0]
    assert 120 <= lon <= 120.03 and 29 <= lat <= 29.01
    flipped = orjson.loads(orjson.dumps(GRIDS.feature(tiny_city, G1, scope=EVERYTHING,
                                                      crs=ogc.EPSG_4490)["geometry"]))
    assert flipped["coordinates"][0][0][0] == [lat, lon]
    for missing, scope in ((G3, Scope.of(C1)), (C1, EVERYTHING), ("990100001009001", EVERYTHING)):
        with pytest.raises(ogc.FeatureNotFound):
            GRIDS.feature(tiny_city, missing, scope=scope)


def test_datetime_is_the_period_in_force(tiny_city: Connection) -> None:
    def matched(value: str) -> int:
        return GRIDS.features(tiny_city, scope=EVERYTHING,
                              interval=ogc.parse_datetime(value)).number_matched

    assert matched((T0 + timedelta(days=1)).isoformat()) == 3
    assert matched((T0 - timedelta(days=1)).isoformat()) == 0
    assert matched(f"../{(T0 - timedelta(seconds=1)).isoformat()}") == 0
    assert matched(f"{(T0 - timedelta(days=9)).isoformat()}/..") == 3
    assert matched(T0.isoformat()) == 3  # the first instant of the period counts


def test_extents(tiny_city: Connection) -> None:
    extent = ogc.extents(tiny_city, scope=EVERYTHING)
    assert extent["grid"].bbox == pytest.approx((X0, Y0, X0 + 3 * U, Y0 + U))
    assert extent["grid"].since == T0
    assert ogc.extents(tiny_city, scope=Scope.of(G3))["grid"].bbox == pytest.approx(
        (X0 + 2 * U, Y0, X0 + 3 * U, Y0 + 0.5 * U))
    assert ogc.extents(tiny_city, scope=Scope.of(G3))["city"].bbox is None


def test_items_document_links() -> None:
    page = ogc.FeaturePage([{"type": "Feature", "id": "x", "geometry": None, "properties": {}}], 7)
    base = "http://h/ogc"
    middle = ogc.items_document(GRIDS, page, base, query=[("bbox", "1,2,3,4"), ("limit", "1")],
                                limit=1, offset=3)
    links = {link["rel"]: link["href"] for link in middle["links"]}
    assert parse_qs(urlsplit(links["next"]).query) == {"bbox": ["1,2,3,4"], "limit": ["1"],
                                                       "offset": ["4"]}
    assert parse_qs(urlsplit(links["prev"]).query)["offset"] == ["2"]
    assert middle["numberMatched"] == 7 and middle["numberReturned"] == 1
    assert middle["features"][0]["links"][0]["href"] == f"{base}/collections/grids/items/x"
    last = ogc.items_document(GRIDS, page, base, query=[], limit=1, offset=6)
    assert {link["rel"] for link in last["links"]} == {"self", "collection", "prev"}


@pytest.mark.parametrize("value", ["1,2,3", "1,2,3,4,5", "a,b,c,d", "1,2,3,inf", "0,50,1,40",
                                   "0,-91,1,0", "181,0,182,1", ""])
def test_bad_bbox(value: str) -> None:
    with pytest.raises(ogc.InvalidQuery) as err:
        ogc.parse_bbox(value)
    assert err.value.detail["field"] == "bbox"


def test_bbox_with_heights_and_crs_names() -> None:
    assert ogc.parse_bbox("120,29,0,121,30,100").envelopes == ((120, 29, 121, 30),)
    for name in ("CRS84", "OGC:CRS84", "[OGC:CRS84]", "http://www.opengis.net/def/crs/OGC/1.3/CRS84"):
        assert ogc.parse_crs(name) == ogc.CRS84
    assert ogc.parse_crs("urn:ogc:def:crs:EPSG::4490") == ogc.EPSG_4490
    with pytest.raises(ogc.InvalidQuery):
        ogc.parse_crs("EPSG:3857")
    with pytest.raises(ogc.CollectionNotFound):
        ogc.collection("roads")
