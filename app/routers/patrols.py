"""Patrols: workers' GPS fixes in, tracks, coverage and alerts out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn, ReadConn
from app.geojson_schemas import Feature, FeatureCollection
from app.schemas import ErrorPublic, IsoDateTime, Number
from grids.access import Permission, Principal
from layers.patrols import alerts, coverage, daily, intake

router = APIRouter(prefix="/patrols", tags=["patrols"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})
Writer = Annotated[Principal, Depends(require(Permission.PATROLS_WRITE))]
Reader = Annotated[Principal, Depends(require(Permission.PATROLS_READ))]
RegionCode = Annotated[str | None, Query(pattern=r"^[0-9]{6,15}$",
                                         description="Region code (default: your jurisdiction)")]


class FixIn(BaseModel):
    staff_code: str = Field(min_length=1, max_length=32)
    time: str = Field(max_length=64, description="ISO 8601 with offset, e.g. 2026-05-01T08:30:00+08:00")
    lon: float | None = Field(None, description="x in `crs`")
    lat: float | None = Field(None, description="y in `crs`")
    crs: str | None = Field(None, max_length=40, description="Default: the batch's crs")
    accuracy_m: float | None = Field(None, description="Reported accuracy (metres)")


class FixBatch(BaseModel):
    crs: str = Field("EPSG:4326", max_length=40)
    fixes: list[FixIn] = Field(max_length=intake.MAX_FIXES)


class FixRejected(BaseModel):
    row: int
    staff_code: str | None
    reason: str
    message: str


class FixBatchResult(BaseModel):
    rows: int
    accepted: int
    duplicates: int
    rejected: int
    errors: list[FixRejected]


class GridCoverage(BaseModel):
    code: str
    name: str
    area_m2: float
    patrolled_m2: float
    share: float
    last_patrolled_at: datetime | None
    seconds_since: float | None


class RegionCoverage(BaseModel):
    code: str
    name: str | None
    level: str
    grids: int
    area_m2: float
    patrolled_m2: float
    share: float


class CoveragePublic(BaseModel):
    region: str | None
    since: datetime
    until: datetime
    buffer_m: float
    grids: list[GridCoverage]
    totals: list[RegionCoverage]


class AlertPublic(BaseModel):
    staff: str
    name: str
    grids: list[str]
    started_at: datetime
    ended_at: datetime
    minutes: float
    fixes: int
    max_distance_m: float


class AlertsPublic(BaseModel):
    since: datetime
    until: datetime
    minutes: float
    region: str | None
    workers: int
    alerts: list[AlertPublic]


class ShiftProps(BaseModel):
    """One shift's track (see ``layers.patrols.daily.ShiftProps``)."""

    shift: int
    started_at: str
    ended_at: str
    fixes: int
    kept: int
    good: int
    dropped: dict[str, int] = Field(description="Fixes the filter dropped, by reason")
    length_m: float
    duration_s: float
    mean_speed_mps: float


class DayProps(BaseModel):
    staff: str
    name: str
    date: str
    crs: str
    fixes: int
    dropped: dict[str, int]
    shifts: int
    length_m: Number
    rule: str


class DayTracks(FeatureCollection[Feature[ShiftProps]]):
    """A worker's day: one LineString a shift, the day's totals as ``properties``."""

    properties: DayProps


class PartProps(BaseModel):
    area_m2: float


class UnpatrolledProps(BaseModel):
    grid: str
    name: str
    since: str
    until: str
    buffer_m: float
    crs: str
    area_m2: float
    unpatrolled_m2: float
    unpatrolled_share: float


class UnpatrolledPublic(FeatureCollection[Feature[PartProps]]):
    """The polygons of a grid no track came near; the grid and the window as ``properties``."""

    properties: UnpatrolledProps


@dataclass
class Window:
    """A time window; default the last 24 hours, at most 31 days."""

    since: datetime | None
    until: datetime | None


async def time_window(
    since: Annotated[IsoDateTime | None, Query(description="Start (ISO 8601 with offset)")] = None,
    until: Annotated[IsoDateTime | None, Query(description="End, exclusive; default now")] = None,
) -> Window:
    return Window(since=since, until=until)


TimeWindow = Annotated[Window, Depends(time_window)]
BufferM = Annotated[float, Query(gt=0, le=500, description="Buffer around tracks (m)")]


@router.post("/fixes", response_model=FixBatchResult)
def post_fixes(batch: FixBatch, conn: Conn, principal: Writer) -> dict[str, Any]:
    """Store a batch of GPS fixes (up to 10,000); duplicates are dropped, bad rows listed."""
    return intake.ingest(conn, [f.model_dump() for f in batch.fixes], crs=batch.crs,
                         principal=principal)


@router.get("/tracks", response_model=DayTracks)
def get_tracks(conn: Conn, principal: Reader,
               staff: Annotated[str, Query(min_length=1, max_length=32)],
               day: Annotated[date, Query(alias="date", description="Local date (UTC+8)")],
               ) -> daily.DayTracks:
    """The worker's tracks of the day as GeoJSON LineStrings (one per shift) with stats."""
    return daily.day_tracks(conn, staff, day, principal=principal)


@router.get("/coverage", response_model=CoveragePublic)
def get_coverage(conn: ReadConn, principal: Reader, window: TimeWindow, region: RegionCode = None,
                 buffer_m: BufferM = 50.0) -> dict[str, Any]:
    """Patrolled share of each grid in the window, with community/street/city totals."""
    return coverage.coverage(conn, region=region, since=window.since, until=window.until,
                             buffer_m=buffer_m, principal=principal)


@router.get("/coverage/{grid}/unpatrolled", response_model=UnpatrolledPublic)
def get_unpatrolled(conn: ReadConn, principal: Reader, window: TimeWindow,
                    grid: Annotated[str, Path(pattern=r"^[0-9]{15}$")],
                    buffer_m: BufferM = 50.0) -> coverage.Unpatrolled:
    """The part of the grid no track came near in the window, as GeoJSON polygons."""
    return coverage.unpatrolled(conn, grid, since=window.since, until=window.until,
                                buffer_m=buffer_m, principal=principal)


@router.get("/alerts", response_model=AlertsPublic)
def get_alerts(conn: Conn, principal: Reader, window: TimeWindow, region: RegionCode = None,
               minutes: Annotated[float, Query(gt=0, le=24 * 60)] = 20) -> dict[str, Any]:
    """Workers who stayed outside their own grids longer than ``minutes`` while on duty."""
    return alerts.alerts(conn, since=window.since, until=window.until, minutes=minutes,
                         region=region, principal=principal)
