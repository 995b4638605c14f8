"""Who is responsible here? Single lookups from memory, batches streamed, history from PostGIS."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute

from app.auth import authorize, require
from app.deps import Conn
from app.locator_service import LocatorStatus
from app.schemas import ErrorPublic, IsoDateTime, LocatePublic, LocatorStatusPublic
from gis.maplinks import parse_map_link
from grids import batch
from grids.access import Permission, Principal
from grids.errors import GridError
from grids.locate import locate_at
from grids.point import LocatorUnavailable, check_outside, checked_point
from grids.uncertainty import DEFAULT_ACCURACY_M, MAX_ACCURACY_M, datum_doubt, uncertainty


class HotRoute(APIRoute):
    """A route on the hot path.

    FastAPI still documents it and the permission table still reads its declared ``require()``
    dependency, but a request runs without FastAPI's dependency solving and validation: the
    handler checks that same permission and calls ``endpoint(request, principal)``. On a 2-core
    machine that machinery costs more than the lookup itself (see docs/benchmarks.md).
    """

    def get_route_handler(self):
        permission = next(d.call.permission for d in self.dependant.dependencies
                          if hasattr(d.call, "permission"))
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request, authorize(request, permission))

        return handler


router = APIRouter(tags=["locate"], responses={401: {"model": ErrorPublic},
                                               403: {"model": ErrorPublic},
                                               404: {"model": ErrorPublic},
                                               422: {"model": ErrorPublic}})
Locator = Annotated[Principal, Depends(require(Permission.LOCATE))]
hot_router = APIRouter(tags=["locate"], route_class=HotRoute,
                       responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                                  404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})

Lon = Annotated[float, Query(description="x: longitude (or easting in a projected CRS)",
                             allow_inf_nan=True)]
Lat = Annotated[float, Query(description="y: latitude (or northing in a projected CRS)",
                             allow_inf_nan=True)]
Crs = Annotated[str, Query(max_length=40, description="EPSG:4326 (default), EPSG:4490, gcj02, "
                                                     "bd09 or any EPSG code")]


def _service(request: Request):
    service = request.app.state.locator
    if service.snapshot is None:
        raise LocatorUnavailable("The locator has not loaded the city yet; try again shortly.")
    return service


_LOCATE_PARAMS = [
    {"name": "lon", "in": "query", "required": False, "schema": {"type": "number"},
     "description": "x: longitude (or easting in a projected CRS)"},
    {"name": "lat", "in": "query", "required": False, "schema": {"type": "number"},
     "description": "y: latitude (or northing in a projected CRS)"},
    {"name": "crs", "in": "query", "required": False,
     "schema": {"type": "string", "default": "EPSG:4326", "maxLength": 40},
     "description": "EPSG:4326 (default), EPSG:4490, gcj02, bd09 or any EPSG code"},
    {"name": "link", "in": "query", "required": False, "schema": {"type": "string",
     "maxLength": 2000}, "description": "instead of lon/lat/crs: a link copied from Amap, Baidu "
     "or Tencent maps, read in that map's CRS (gis.maplinks)"},
    {"name": "detail", "in": "query", "required": False, "schema": {"enum": ["edges"]},
     "description": "edges: add uncertainty (metres to the grid's edge, the runner-up grid "
     "within the accuracy) and datum_doubt (WGS84 and GCJ-02 readings in different grids)"},
    {"name": "accuracy", "in": "query", "required": False,
     "schema": {"type": "number", "default": 30, "maximum": 500},
     "description": "the point's accuracy in metres (e.g. the phone's GPS accuracy); implies "
     "detail=edges"},
]


def _query(request: Request) -> dict[str, str]:
    """The query string as a dict, as ``request.query_params`` reads it (latin-1, blank values
    kept, the last of a repeated name wins) without building a multi-dict: a plain
    ``lon=…&lat=…`` needs no unquoting, which on the hot path is most of the cost."""
    raw = request.scope["query_string"].decode("latin-1")
    if "%" in raw or "+" in raw:
        return dict(parse_qsl(raw, keep_blank_values=True))
    return {name: value for name, _, value in (p.partition("=") for p in raw.split("&") if p)}


def _number(query, name: str) -> float:
    raw = query.get(name)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise GridError(
            f"Invalid request: check {name}.", code="invalid_request",
            detail=[{"field": name, "in": "query", "type": "missing" if raw is None else "float",
                     "expected": "a number"}]) from None


@hot_router.get("/locate", response_model=LocatePublic,
            summary="The grid, chain and responsible worker at a point",
            openapi_extra={"parameters": _LOCATE_PARAMS})
async def locate(request: Request, principal: Locator) -> Response:
    # The hot path: async, database-free (the in-memory snapshot), parameters read by hand
    # (declared for the docs above) because validation machinery would cost more than the
    # lookup itself.
    query = _query(request)
    link = query.get("link")
    if link is not None:  # a link copied from Amap, Baidu or Tencent maps: their own CRS
        parsed = parse_map_link(link)
        lon, lat, crs = parsed.x, parsed.y, parsed.crs
    else:
        lon, lat = _number(query, "lon"), _number(query, "lat")
        crs = query.get("crs") or "EPSG:4326"
    if len(crs) > 40:
        raise GridError("Invalid request: check crs.", code="invalid_request",
                        detail=[{"field": "crs", "in": "query", "expected": "at most 40 "
                                 "characters"}])
    service = _service(request)
    snap = service.snapshot
    limit = request.app.state.settings.city.max_outside_m
    point = checked_point(snap, lon, lat, crs, resolved=True)
    body = snap.locate_json(
        point.lon, point.lat, principal=principal,
        on_outside=lambda: check_outside(snap, point, max_outside_m=limit))
    extra: dict = {"point": point.as_dict(), "stale": service.stale}
    if link is not None:
        extra["link"] = {**parsed.as_dict(), "crs": point.crs}  # the canonical name
    if query.get("detail") == "edges" or "accuracy" in query:  # only when asked: not cached
        extra.update(_edges(query, snap, point, crs, principal, body))
    head = orjson.dumps(extra)
    return Response(head[:-1] + b"," + body[1:], media_type="application/json")


def _edges(query, snap, point, crs: str, principal: Principal, body: bytes) -> dict:
    """``uncertainty`` (edge distance, runner-up grid) and ``datum_doubt`` for ``/locate``."""
    accuracy = DEFAULT_ACCURACY_M
    if "accuracy" in query:
        accuracy = _number(query, "accuracy")
        if not 0 < accuracy <= MAX_ACCURACY_M:
            raise GridError("Invalid request: check accuracy.", code="invalid_request",
                            detail=[{"field": "accuracy", "in": "query",
                                     "expected": f"metres, > 0 and <= {MAX_ACCURACY_M:g}"}])
    grid = orjson.loads(body).get("grid")
    return {"uncertainty": uncertainty(snap, point.lon, point.lat, accuracy_m=accuracy),
            "datum_doubt": datum_doubt(snap, point.x, point.y, crs,
                                       grid["code"] if grid else None, principal=principal)}


@router.get("/locate/history", response_model=LocatePublic,
            summary="The same answer as of a past (or scheduled) time, from PostGIS")
def locate_history(request: Request, conn: Conn, principal: Locator, lon: Lon, lat: Lat,
                   at: Annotated[IsoDateTime, Query(description="ISO 8601 time with offset")],
                   crs: Crs = "EPSG:4326") -> Response:
    snap = _service(request).snapshot
    point = checked_point(snap, lon, lat, crs,
                          max_outside_m=request.app.state.settings.city.max_outside_m)
    answer = locate_at(conn, point.lon, point.lat, at=at, principal=principal)
    return Response(orjson.dumps({"point": point.as_dict(), "stale": False, **answer}),
                    media_type="application/json")


@router.post(
    "/locate/batch",
    summary="Locate many points: CSV, JSON arrays or GeoJSON in, the same format out (streamed)",
    openapi_extra={"requestBody": {"content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {}}},
        "application/geo+json": {"schema": {"type": "object"}},
    }, "required": True}},
)
async def locate_batch(
    request: Request, principal: Locator, crs: Crs = "EPSG:4326",
    x_field: Annotated[str, Query(max_length=64, description="CSV column of x")] = "lon",
    y_field: Annotated[str, Query(max_length=64, description="CSV column of y")] = "lat",
) -> StreamingResponse:
    service = _service(request)
    snap = service.snapshot
    body = await request.body()
    far = request.app.state.settings.city.max_outside_m  # as for a single /locate
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype in ("text/csv", "application/csv", "text/plain"):
        result, media = batch.locate_csv(snap, body, crs=crs, principal=principal,
                                         x_field=x_field, y_field=y_field,
                                         max_outside_m=far), "text/csv"
    elif ctype == "application/geo+json":
        result, media = batch.locate_geojson(snap, body, crs=crs, principal=principal,
                                             max_outside_m=far), "application/geo+json"
    elif ctype in ("application/json", ""):
        result, media = batch.locate_json(snap, body, crs=crs, principal=principal,
                                          max_outside_m=far), "application/json"
    else:
        raise batch.BatchInputError(
            f"Unsupported content type {ctype!r}.",
            detail={"field": "content-type",
                    "expected": "text/csv, application/json or application/geo+json"})
    headers = {"X-CityGrid-Rows": str(result.rows), "X-CityGrid-Bad-Rows": str(result.bad_rows),
               "X-CityGrid-CRS": result.crs, "X-CityGrid-Stale": str(service.stale).lower()}
    return StreamingResponse(result.chunks, media_type=media, headers=headers)


@router.get("/locate/status", response_model=LocatorStatusPublic,
            response_model_exclude_unset=True,  # no cell_size without a lookup table
            summary="Freshness of this worker's in-memory locator")
async def locate_status(request: Request, principal: Locator) -> LocatorStatus:
    return request.app.state.locator.status()
