"""Maps and assessment: heat bins, choropleth counts, vector tiles, monthly figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import ReadConn
from app.schemas import ErrorPublic, IsoDateTime, QueryBool
from gis.validate import parse_bbox
from grids.access import Permission, Principal
from layers import assessment, maps
from layers.analysis import crosswalk

router = APIRouter(tags=["maps"], responses={401: {"model": ErrorPublic},
                                             403: {"model": ErrorPublic},
                                             404: {"model": ErrorPublic},
                                             422: {"model": ErrorPublic}})
MapReader = Annotated[Principal, Depends(require(Permission.MAPS_READ))]
Assessor = Annotated[Principal, Depends(require(Permission.ASSESSMENT_READ))]
State = Literal["received", "registered", "dispatched", "handling", "reported", "verified",
                "closed", "evaluated", "voided"]
Code = Annotated[str, Field(max_length=32)]


@dataclass
class Filters:
    """The incident filters every map endpoint shares."""

    value: maps.IncidentFilter


async def incident_filters(
    since: Annotated[IsoDateTime | None, Query(description="Received at or after (ISO 8601)")]
    = None,
    until: Annotated[IsoDateTime | None, Query(description="Received before (ISO 8601)")]
    = None,
    category: Annotated[list[Code] | None, Query(description="Category or group codes")] = None,
    state: Annotated[list[State] | None, Query()] = None,
    region: Annotated[str | None, Query(max_length=15, pattern=r"^[0-9]{6,15}$")] = None,
) -> Filters:
    return Filters(maps.IncidentFilter(since=since, until=until, categories=tuple(category or ()),
                                       states=tuple(state or ()), region=region))


MapFilters = Annotated[Filters, Depends(incident_filters)]


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"]
    kind: Literal["bins", "points"]
    total: int
    zoom: float
    crs: str
    shape: Literal["square", "hex"]
    cell_m: float
    source: Literal["tally", "raw"] = Field(
        description="How the bins were counted: migration 0008's tallies plus the raw rows at "
                    "the window's ends, or every row; the numbers are the same")
    features: list[dict[str, Any]]


class RegionCount(BaseModel):
    code: str
    name: str
    area_km2: float
    incidents: int
    open: int
    overdue: int
    per_km2: float | None
    per_1000_households: float | None
    geometry: dict[str, Any] | None = None


class RegionCounts(BaseModel):
    level: Literal["grid", "community", "street"]
    items: list[RegionCount]
    total: int
    notes: dict[str, str]


def _bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    return None if bbox is None else parse_bbox(bbox, max_lat=85.0)


@router.get("/maps/heat", response_model=FeatureCollection,
            summary="Incidents binned on the server (points only when few match); bins that "
                    "meet the bbox come whole")
def heat(conn: ReadConn, principal: MapReader, filters: MapFilters,
         zoom: Annotated[float, Query(ge=0, le=22)],
         bbox: Annotated[str | None, Query(max_length=100,
                                           description="minlon,minlat,maxlon,maxlat (EPSG:4326)")]
         = None,
         shape: Literal["square", "hex"] = "square",
         pixels: Annotated[int, Query(ge=4, le=256, description="Bin side in screen pixels")]
         = 32) -> FeatureCollection:
    return FeatureCollection.model_validate(maps.heat(
        conn, principal=principal, zoom=zoom, bbox=_bbox(bbox), filters=filters.value,
        shape=shape, pixels=pixels))


@router.get("/maps/counts", response_model=RegionCounts,
            summary="Incidents per grid, community or street, with rates, for choropleths")
def counts(conn: ReadConn, principal: MapReader, filters: MapFilters,
           level: Literal["grid", "community", "street"] = "grid",
           geometry: QueryBool = False) -> RegionCounts:
    return RegionCounts.model_validate(maps.counts(
        conn, principal=principal, level=level, filters=filters.value, geometry=geometry))


def _accepts_gzip(header: str) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) without ``q=0``."""
    for part in header.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


@router.get("/tiles/{layer}/{z}/{x}/{y}.mvt", response_class=Response,
            summary="Mapbox vector tile: grids (with counts and patrol coverage), incidents (z >= 14) "
                    "or bins; gzip if accepted",
            responses={200: {"content": {"application/vnd.mapbox-vector-tile": {}}}})
def vector_tile(request: Request, conn: ReadConn, principal: MapReader, filters: MapFilters,
                layer: Literal["grids", "incidents", "bins"],
                z: Annotated[int, Path(ge=0, le=22)], x: Annotated[int, Path(ge=0, le=2**22 - 1)],
                y: Annotated[int, Path(ge=0, le=2**22 - 1)]) -> Response:
    # Private: tiles are cut to the caller's jurisdiction. Revalidate: data may change.
    headers = {"Cache-Control": "private, no-cache", "Vary": "Accept-Encoding"}
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        data = maps.gzipped_tile(conn, layer, z, x, y, principal=principal,
                                 filters=filters.value)
        if data:
            headers["Content-Encoding"] = "gzip"
    else:
        data = maps.tile(conn, layer, z, x, y, principal=principal, filters=filters.value)
    return Response(data, media_type="application/vnd.mapbox-vector-tile", headers=headers)


Month = Annotated[str, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
Level = Literal["grid", "community", "street", "city", "worker", "department"]


class AssessmentPublic(BaseModel):
    month: str
    level: Level
    region: str | None
    timezone: str
    rows: list[dict[str, Any]]
    formulas: dict[str, str]
    notes: list[str]
    boundaries: Literal["then", "today"] = "then"


Boundaries = Annotated[Literal["then", "today"], Query(
    description="then: units of the month (as assigned at intake); today: today's grids, "
                "through the boundary crosswalk")]


@router.get("/assessment", response_model=AssessmentPublic,
            summary="Monthly figures per grid, community, street, city, worker or department")
def get_assessment(conn: ReadConn, principal: Assessor, month: Month, level: Level = "street",
                   region: Annotated[str | None, Query(max_length=15,
                                                       pattern=r"^[0-9]{6,15}$")] = None,
                   boundaries: Boundaries = "then") -> AssessmentPublic:
    return AssessmentPublic.model_validate(crosswalk.monthly(
        conn, principal=principal, month=month, level=level, region=region,
        boundaries=boundaries))


@router.get("/assessment.xlsx", response_class=Response,
            summary="The same figures as a workbook, with a sheet explaining each formula",
            responses={200: {"content": {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}})
def get_assessment_xlsx(conn: ReadConn, principal: Assessor, month: Month, level: Level = "street",
                        region: Annotated[str | None, Query(max_length=15,
                                                            pattern=r"^[0-9]{6,15}$")] = None,
                        boundaries: Boundaries = "then") -> Response:
    figures = crosswalk.monthly(conn, principal=principal, month=month, level=level,
                                region=region, boundaries=boundaries)
    return Response(
        assessment.to_xlsx(figures),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition":
                 f'attachment; filename="assessment-{month}-{level}.xlsx"'})
