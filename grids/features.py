"""Current boundaries as OGC API - Features collections (Part 1 Core, GeoJSON; Part 2 CRS).

Framework-free, after tipg's ``Collection.features(conn, ...)``: a :class:`Collection` reads its
features from the ``region_current`` view with plain values (a scope, a bounding box, a time
interval, a page), and the ``*_document`` functions turn the results into the JSON documents of
the standard, given the service's base URL. ``app/routers/ogc.py`` only parses the request.

What is served: the city, its streets/towns, communities and grids in force now, with their
code, name, level, parent code, area (m², the city's metric CRS) and boundary version. No
staff: desktop GIS users get geometry, not people.

Coordinates: stored in CGCS2000 (EPSG:4490), served by default in OGC:CRS84 (lon, lat). CGCS2000
and WGS84 are treated as one datum (see ``gis/crs.py``), so the CRSs offered differ only in axis
order: ``EPSG:4490`` and ``EPSG:4326`` are lat, lon by their EPSG definitions, and Part 2 requires
coordinates in the CRS's own axis order, so those answers have their axes swapped.

>>> parse_bbox("120.0,29.2,120.1,29.3").envelopes
((120.0, 29.2, 120.1, 29.3),)
>>> parse_bbox("29.2,120.0,29.3,120.1", crs=EPSG_4490).envelopes
((120.0, 29.2, 120.1, 29.3),)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection, text

from grids.access import Scope
from grids.errors import GridError, RegionNotFound
from grids.sql import in_scope

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_4490 = "http://www.opengis.net/def/crs/EPSG/0/4490"
EPSG_4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"
# CRS URI → True if its axis order is lat, lon (the stored geometries are lon, lat).
CRS_LATLON: dict[str, bool] = {CRS84: False, EPSG_4490: True, EPSG_4326: True}
STORAGE_CRS = EPSG_4490
# Other spellings clients send for the same CRSs.
_CRS_ALIASES = {
    "crs84": CRS84, "ogc:crs84": CRS84, "urn:ogc:def:crs:ogc:1.3:crs84": CRS84,
    "http://www.opengis.net/def/crs/ogc/1.3/crs84": CRS84,
    "epsg:4490": EPSG_4490, "urn:ogc:def:crs:epsg::4490": EPSG_4490,
    "http://www.opengis.net/def/crs/epsg/0/4490": EPSG_4490,
    "epsg:4326": EPSG_4326, "urn:ogc:def:crs:epsg::4326": EPSG_4326,
    "http://www.opengis.net/def/crs/epsg/0/4326": EPSG_4326,
}

CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
)
LIMIT_DEFAULT = 100
LIMIT_MAX = 10_000
GEOJSON = "application/geo+json"
JSON = "application/json"


class InvalidQuery(GridError):
    """A query parameter of an OGC request that cannot be understood."""

    code = "invalid_query"


class CollectionNotFound(RegionNotFound):
    """No such collection (a not-found of the registry, so it is answered 404 like the rest)."""

    code = "collection_not_found"


class FeatureNotFound(RegionNotFound):
    """No such feature in force in the collection, or one outside the caller's jurisdiction."""

    code = "feature_not_found"


# -- parameters ----------------------------------------------------------------------------------
def parse_crs(value: str | None, *, field: str = "crs") -> str:
    """The CRS URI for ``value`` (None: CRS84); InvalidQuery for one not offered.

    >>> parse_crs("EPSG:4490") == EPSG_4490, parse_crs(None) == CRS84
    (True, True)
    """
    if value is None or not value.strip():
        return CRS84
    uri = _CRS_ALIASES.get(value.strip().strip("[]").lower())
    if uri is None:
        raise InvalidQuery(f"The CRS {value!r} is not offered.",
                           detail={"field": field, "value": value, "expected": list(CRS_LATLON)})
    return uri


@dataclass(frozen=True, slots=True)
class BBox:
    """A bounding box as lon/lat envelopes (two when it crosses the antimeridian)."""

    envelopes: tuple[tuple[float, float, float, float], ...]


def parse_bbox(value: str, *, crs: str = CRS84) -> BBox:
    """Parse ``minx,miny,maxx,maxy`` (or 6 numbers with heights, which are ignored) in ``crs``.

    A box whose west edge lies east of its east edge crosses the antimeridian (as the standard
    says) and is split in two.
    """
    detail: dict[str, Any] = {"field": "bbox", "value": value,
                              "expected": "4 or 6 comma-separated numbers: west,south,east,north"}
    try:
        nums = [float(v) for v in value.split(",")]
    except ValueError:
        raise InvalidQuery("The bbox must be comma-separated numbers.", detail=detail) from None
    if len(nums) not in (4, 6) or not all(abs(n) != float("inf") and n == n for n in nums):
        raise InvalidQuery("The bbox needs 4 or 6 finite numbers.", detail=detail)
    lo, hi = (nums[:2], nums[2:4]) if len(nums) == 4 else (nums[:2], nums[3:5])
    if CRS_LATLON[crs]:
        lo, hi = lo[::-1], hi[::-1]
    (west, south), (east, north) = lo, hi
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidQuery("The bbox is outside the valid longitudes and latitudes, or its south "
                           "edge lies north of its north edge.", detail=detail)
    if west <= east:
        return BBox(((west, south, east, north),))
    return BBox(((west, south, 180.0, north), (-180.0, south, east, north)))


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed time interval; None at an end means open (``..``)."""

    start: datetime | None
    end: datetime | None


def parse_datetime(value: str) -> Interval:
    """An RFC 3339 instant or interval (``a/b``, ``../b``, ``a/..``); naive times are UTC.

    >>> parse_datetime("2025-01-01T00:00:00Z/..").end is None
    True
    """
    detail = {"field": "datetime", "value": value,
              "expected": "an RFC 3339 date-time, or an interval start/end with '..' for open"}

    def one(part: str) -> datetime | None:
        part = part.strip()
        if part in ("", ".."):
            return None
        try:
            t = datetime.fromisoformat(part)
        except ValueError:
            raise InvalidQuery("The datetime is not an RFC 3339 date-time.", detail=detail) from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    parts = value.split("/")
    if len(parts) == 1:
        t = one(parts[0])
        if t is None:
            raise InvalidQuery("The datetime needs a date-time.", detail=detail)
        return Interval(t, t)
    if len(parts) != 2:
        raise InvalidQuery("A datetime interval has one '/'.", detail=detail)
    interval = Interval(one(parts[0]), one(parts[1]))
    if interval.start and interval.end and interval.start > interval.end:
        raise InvalidQuery("The interval ends before it starts.", detail=detail)
    return interval


# -- collections ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FeaturePage:
    """Features of one page (geometry kept as GeoJSON text) and how many match in all."""

    features: list[dict[str, Any]]
    number_matched: int


@dataclass(frozen=True, slots=True)
class Extent:
    bbox: tuple[float, float, float, float] | None
    since: datetime | None


_COLUMNS = ("r.code, r.name, r.level, r.parent_code, r.area_m2, r.version_id AS boundary_version, "
            "r.valid_from")


@dataclass(frozen=True, slots=True)
class Collection:
    """One level of the registry, as a feature collection of its current boundaries."""

    id: str
    level: str
    title: str
    description: str

    def _where(self, scope: Scope, bbox: BBox | None, interval: Interval | None
               ) -> tuple[list[str], dict[str, Any]]:
        where = ["r.level = :level"]
        params: dict[str, Any] = {"level": self.level}
        cond, scoped = in_scope(scope, "r.code")
        where.append(cond)
        params |= scoped
        if bbox is not None:
            boxes = []
            for i, env in enumerate(bbox.envelopes):
                boxes.append(f"ST_Intersects(r.geom, ST_MakeEnvelope(:w{i}, :s{i}, :e{i}, :n{i}, "
                             "4490))")
                params.update(dict(zip((f"w{i}", f"s{i}", f"e{i}", f"n{i}"), env, strict=True)))
            where.append("(" + " OR ".join(boxes) + ")")
        if interval is not None:  # the feature's period [valid_from, valid_to) meets the interval
            if interval.end is not None:
                where.append("r.valid_from <= :t_end")
                params["t_end"] = interval.end
            if interval.start is not None:
                where.append("(r.valid_to IS NULL OR r.valid_to > :t_start)")
                params["t_start"] = interval.start
        return where, params

    def features(
        self, conn: Connection, *, scope: Scope, bbox: BBox | None = None,
        interval: Interval | None = None, crs: str = CRS84, limit: int = LIMIT_DEFAULT,
        offset: int = 0,
    ) -> FeaturePage:
        """The current features in ``scope`` meeting the filters, by code, one page of them."""
        where, params = self._where(scope, bbox, interval)
        geom = "ST_FlipCoordinates(r.geom)" if CRS_LATLON[crs] else "r.geom"
        rows = conn.execute(text(
            f"SELECT {_COLUMNS}, ST_AsGeoJSON({geom}, 7) AS geometry, count(*) OVER () AS matched "
            f"FROM region_current r WHERE {' AND '.join(where)} "
            "ORDER BY r.code LIMIT :limit OFFSET :offset"),
            {**params, "limit": limit, "offset": offset}).mappings().all()
        if rows:
            matched = rows[0]["matched"]
        else:  # past the last page: the window function saw no rows
            matched = conn.execute(text(
                f"SELECT count(*) FROM region_current r WHERE {' AND '.join(where)}"),
                params).scalar_one()
        return FeaturePage([_feature(r) for r in rows], matched)

    def feature(self, conn: Connection, feature_id: str, *, scope: Scope, crs: str = CRS84
                ) -> dict[str, Any]:
        """One current feature by code; not found outside ``scope`` just as if it did not exist."""
        geom = "ST_FlipCoordinates(r.geom)" if CRS_LATLON[crs] else "r.geom"
        row = None
        if scope.covers(feature_id):
            row = conn.execute(text(
                f"SELECT {_COLUMNS}, ST_AsGeoJSON({geom}, 7) AS geometry FROM region_current r "
                "WHERE r.code = :code AND r.level = :level"),
                {"code": feature_id, "level": self.level}).mappings().first()
        if row is None:
            raise FeatureNotFound(f"No feature {feature_id} is in force in {self.id}.",
                                  detail={"field": "featureId", "value": feature_id})
        return _feature(row)


def _feature(row: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": row["code"],
        # Already GeoJSON text from PostGIS: passed through to the output unparsed.
        "geometry": orjson.Fragment(row["geometry"]),
        "properties": {
            "code": row["code"], "name": row["name"], "level": row["level"],
            "parent_code": row["parent_code"], "area_m2": round(row["area_m2"], 1),
            "boundary_version": row["boundary_version"],
            "valid_from": row["valid_from"].isoformat(),
        },
    }


COLLECTIONS: dict[str, Collection] = {c.id: c for c in (
    Collection("grids", "grid", "Grids (网格)",
               "The grids in force now: the smallest unit, each inside one community."),
    Collection("communities", "community", "Villages and communities (村/社区)",
               "The villages and communities in force now, each inside one street or town."),
    Collection("streets", "street", "Streets and towns (镇/街道)",
               "The streets and towns in force now, each inside the city."),
    Collection("city", "city", "City (市)", "The city outline in force now."),
)}


def collection(collection_id: str) -> Collection:
    """The collection named ``collection_id``; CollectionNotFound if there is none."""
    found = COLLECTIONS.get(collection_id)
    if found is None:
        raise CollectionNotFound(f"No collection {collection_id!r}.",
                                 detail={"field": "collectionId", "value": collection_id,
                                         "expected": list(COLLECTIONS)})
    return found


def extents(conn: Connection, *, scope: Scope) -> dict[str, Extent]:
    """Spatial (CRS84) and temporal extent of each level's current boundaries in ``scope``."""
    where, params = in_scope(scope, "code")
    rows = conn.execute(text(
        "SELECT level, ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n, since "
        "FROM (SELECT level, ST_Extent(geom) AS e, min(valid_from) AS since FROM region_current "
        f"WHERE {where} GROUP BY level) x"), params).mappings()
    out = {c.level: Extent(None, None) for c in COLLECTIONS.values()}
    for r in rows:
        out[r["level"]] = Extent((r["w"], r["s"], r["e"], r["n"]), r["since"])
    return out


# -- documents -----------------------------------------------------------------------------------
def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": type_}
    if title:
        link["title"] = title
    return link


def landing_document(base: str, *, api_url: str, docs_url: str) -> dict[str, Any]:
    """The landing page: where the API definition, conformance and collections are."""
    return {
        "title": "CityGrid: current grids and regions",
        "description": "The city, its streets and towns, communities and grids in force now "
                       "(OGC API - Features, read-only).",
        "links": [
            _link(base, "self", JSON, "This document"),
            _link(api_url, "service-desc", "application/vnd.oai.openapi+json;version=3.1",
                  "The API definition"),
            _link(docs_url, "service-doc", "text/html", "The API documentation"),
            _link(f"{base}/conformance", "conformance", JSON, "Conformance classes"),
            _link(f"{base}/collections", "data", JSON, "The collections"),
        ],
    }


def conformance_document() -> dict[str, Any]:
    return {"conformsTo": list(CONFORMANCE)}


def collection_document(coll: Collection, extent: Extent, base: str) -> dict[str, Any]:
    """One collection's description: links, extent, the CRSs offered."""
    href = f"{base}/collections/{coll.id}"
    doc: dict[str, Any] = {
        "id": coll.id, "title": coll.title, "description": coll.description,
        "itemType": "feature",
        "links": [
            _link(href, "self", JSON, "This collection"),
            _link(f"{href}/items", "items", GEOJSON, "The features"),
        ],
        "crs": list(CRS_LATLON), "storageCrs": STORAGE_CRS,
    }
    if extent.bbox is not None:
        doc["extent"] = {
            "spatial": {"bbox": [[round(v, 7) for v in extent.bbox]], "crs": CRS84},
            "temporal": {"interval": [[extent.since.isoformat() if extent.since else None, None]],
                         "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"},
        }
    return doc


def collections_document(extent_by_level: dict[str, Extent], base: str) -> dict[str, Any]:
    return {
        "links": [_link(f"{base}/collections", "self", JSON, "The collections")],
        "collections": [collection_document(c, extent_by_level[c.level], base)
                        for c in COLLECTIONS.values()],
        "crs": list(CRS_LATLON),
    }


def items_document(
    coll: Collection, page: FeaturePage, base: str, *, query: Sequence[tuple[str, str]],
    limit: int, offset: int, now: datetime | None = None,
) -> dict[str, Any]:
    """A page of features as a GeoJSON FeatureCollection with self/next/prev links.

    ``query`` is the request's own query string (pairs); paging links repeat it with the
    ``offset`` and ``limit`` of their page, so filters carry over.
    """
    href = f"{base}/collections/{coll.id}/items"
    kept = [(k, v) for k, v in query if k not in ("offset", "limit")]

    def at(off: int) -> str:
        return f"{href}?{urlencode([*kept, ('limit', str(limit)), ('offset', str(off))])}"

    links = [_link(at(offset), "self", GEOJSON, "This page"),
             _link(f"{base}/collections/{coll.id}", "collection", JSON, "The collection")]
    returned = len(page.features)
    if offset + returned < page.number_matched:
        links.append(_link(at(offset + limit), "next", GEOJSON, "The next page"))
    if offset > 0:
        links.append(_link(at(max(0, offset - limit)), "prev", GEOJSON, "The previous page"))
    for f in page.features:
        f["links"] = _feature_links(coll, f["id"], base)
    return {
        "type": "FeatureCollection",
        "features": page.features,
        "links": links,
        "numberMatched": page.number_matched,
        "numberReturned": returned,
        "timeStamp": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }


def feature_document(coll: Collection, feature: dict[str, Any], base: str) -> dict[str, Any]:
    return {**feature, "links": _feature_links(coll, feature["id"], base)}


def _feature_links(coll: Collection, feature_id: str, base: str) -> list[dict[str, str]]:
    href = f"{base}/collections/{coll.id}"
    return [_link(f"{href}/items/{feature_id}", "self", GEOJSON),
            _link(href, "collection", JSON)]


def dumps(doc: dict[str, Any] | Iterable[Any]) -> bytes:
    """Serialise a document (GeoJSON geometry fragments pass through as they are)."""
    return orjson.dumps(doc)
