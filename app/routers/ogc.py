"""OGC API - Features, read-only: the current grids for desktop GIS (issue 8).

Part 1 Core with GeoJSON, and Part 2's ``crs``/``bbox-crs`` for CGCS2000 (EPSG:4490). Everything
needs ``regions:read`` and answers only from the caller's jurisdiction; QGIS sends an API key
(``X-API-Key``) or a bearer token. The documents are built in ``grids/features.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from app.auth import require
from app.deps import ReadConn
from app.errors import responses as error_responses
from grids import features as ogc
from grids.access import Permission, Principal

router = APIRouter(prefix="/ogc", tags=["ogc"],
                   responses=error_responses(400, 401, 403, 404, 422))

Reader = Annotated[Principal, Depends(require(Permission.REGIONS_READ))]
CollectionId = Annotated[str, Path(max_length=40, description="grids, communities, streets or city")]
# Only JSON is served; f=json (or geojson) is accepted because clients send it.
Format = Annotated[Literal["json", "geojson"] | None,
                   Query(description="Output format: json (GeoJSON for features)")]
GEOJSON_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {ogc.GEOJSON: {"schema": {"type": "object"}}}}}


class Link(BaseModel):
    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    conformsTo: list[str]  # the standard's name (camelCase)


class CollectionPublic(BaseModel):
    id: str
    title: str
    description: str
    itemType: str
    links: list[Link]
    crs: list[str]
    storageCrs: str
    extent: dict[str, Any] | None = None


class CollectionsPublic(BaseModel):
    links: list[Link]
    collections: list[CollectionPublic]
    crs: list[str]


async def base_url(request: Request) -> str:
    """This API's root, as the client reached it (links in every document are absolute)."""
    return str(request.base_url).rstrip("/") + router.prefix


Base = Annotated[str, Depends(base_url)]


@dataclass
class ItemsQuery:
    """The items query: paging, bbox (with its CRS), datetime and the output CRS."""

    limit: int
    offset: int
    bbox: ogc.BBox | None
    interval: ogc.Interval | None
    crs: str


async def items_query(
    # The maximum is advertised (clients such as QGIS read it from the API definition) but not
    # enforced: the standard says a larger limit is not an error, the maximum is used instead.
    limit: Annotated[int, Query(ge=1, json_schema_extra={"maximum": ogc.LIMIT_MAX},
                                description=f"Page size (default {ogc.LIMIT_DEFAULT}; above "
                                            f"{ogc.LIMIT_MAX} counts as {ogc.LIMIT_MAX})")]
    = ogc.LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Features to skip")] = 0,
    bbox: Annotated[str | None, Query(max_length=200, description=(
        "west,south,east,north (in bbox-crs; CRS84 lon/lat by default)"))] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", max_length=100,
                                          description="CRS of bbox: CRS84, EPSG:4490, EPSG:4326")]
    = None,
    datetime: Annotated[str | None, Query(max_length=80, description=(
        "RFC 3339 instant or interval a/b ('..' open): features in force then"))] = None,
    crs: Annotated[str | None, Query(max_length=100,
                                     description="Output CRS: CRS84 (default), EPSG:4490, "
                                                 "EPSG:4326")] = None,
) -> ItemsQuery:
    box_crs = ogc.parse_crs(bbox_crs, field="bbox-crs")
    return ItemsQuery(
        limit=min(limit, ogc.LIMIT_MAX), offset=offset,
        bbox=ogc.parse_bbox(bbox, crs=box_crs) if bbox is not None else None,
        interval=ogc.parse_datetime(datetime) if datetime is not None else None,
        crs=ogc.parse_crs(crs))


Items = Annotated[ItemsQuery, Depends(items_query)]


def _geojson(doc: dict[str, Any], crs: str) -> Response:
    return Response(ogc.dumps(doc), media_type=ogc.GEOJSON, headers={"Content-Crs": f"<{crs}>"})


@router.get("", response_model=LandingPage, response_model_exclude_none=True, summary="Landing page")
def landing(request: Request, base: Base, principal: Reader, f: Format = None) -> dict[str, Any]:
    root = str(request.base_url).rstrip("/")
    return ogc.landing_document(base, api_url=root + (request.app.openapi_url or ""),
                                docs_url=root + (request.app.docs_url or ""))


@router.get("/conformance", response_model=Conformance, summary="Conformance classes")
def conformance(principal: Reader, f: Format = None) -> dict[str, Any]:
    return ogc.conformance_document()


@router.get("/collections", response_model=CollectionsPublic,
            response_model_exclude_none=True, summary="The collections")
def collections(conn: ReadConn, base: Base, principal: Reader, f: Format = None) -> dict[str, Any]:
    return ogc.collections_document(ogc.extents(conn, scope=principal.scope), base)


@router.get("/collections/{collectionId}", response_model=CollectionPublic, response_model_exclude_none=True,
            summary="One collection")
def collection(conn: ReadConn, base: Base, principal: Reader,
               collection_id: Annotated[str, Path(alias="collectionId", max_length=40)],
               f: Format = None) -> dict[str, Any]:
    coll = ogc.collection(collection_id)
    return ogc.collection_document(coll, ogc.extents(conn, scope=principal.scope)[coll.level],
                                   base)


@router.get("/collections/{collectionId}/items", response_class=Response,
            responses=GEOJSON_RESPONSE, summary="Features of a collection")
def items(request: Request, conn: ReadConn, base: Base, principal: Reader, query: Items,
          collection_id: Annotated[str, Path(alias="collectionId", max_length=40)],
          f: Format = None) -> Response:
    coll = ogc.collection(collection_id)
    page = coll.features(conn, scope=principal.scope, bbox=query.bbox, interval=query.interval,
                         crs=query.crs, limit=query.limit, offset=query.offset)
    return _geojson(ogc.items_document(coll, page, base, query=request.query_params.multi_items(),
                                       limit=query.limit, offset=query.offset), query.crs)


@router.get("/collections/{collectionId}/items/{featureId}", response_class=Response,
            responses=GEOJSON_RESPONSE, summary="One feature")
def item(conn: ReadConn, base: Base, principal: Reader,
         collection_id: Annotated[str, Path(alias="collectionId", max_length=40)],
         feature_id: Annotated[str, Path(alias="featureId", max_length=40)],
         crs: Annotated[str | None, Query(max_length=100, description="Output CRS")] = None,
         f: Format = None) -> Response:
    coll = ogc.collection(collection_id)
    out_crs = ogc.parse_crs(crs)
    return _geojson(ogc.feature_document(
        coll, coll.feature(conn, feature_id, scope=principal.scope, crs=out_crs), base), out_crs)
