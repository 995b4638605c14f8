"""Incidents: the catalogue, intake (single and bulk), the closed loop, queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn, PageParams, ReadConn
from app.input_guard import check_frame
from app.routers.locate import _service
from app.schemas import ErrorPublic, IsoDateTime, QueryBool
from grids.access import Permission, Principal
from layers.incidents import catalogue, handling, intake

router = APIRouter(tags=["incidents"], responses={401: {"model": ErrorPublic},
                                                  403: {"model": ErrorPublic},
                                                  404: {"model": ErrorPublic},
                                                  409: {"model": ErrorPublic},
                                                  422: {"model": ErrorPublic}})
Source = Literal["hotline_12345", "police_110", "supervisor", "grid_worker", "citizen_app",
                 "other_centre"]
State = Literal["received", "registered", "dispatched", "handling", "reported", "verified",
                "closed", "evaluated", "voided", "merged"]
IncidentId = Annotated[int, Path(ge=1, le=2**62)]


class CategoryPublic(BaseModel):
    code: str
    parent_code: str | None
    name: str
    name_en: str
    family: str
    department: str | None
    department_name: str | None
    routing: Literal["location", "owner"]
    limits: dict[str, float]
    limit_unit: Literal["hours", "work_hours", "work_days"] = "hours"
    active: bool


class CategorySave(BaseModel):
    parent_code: str | None = Field(None, max_length=32)
    name: str = Field(min_length=1, max_length=100)
    name_en: str = Field("", max_length=100)
    family: Literal["component", "event", "social", "scene"]
    department: str | None = Field(None, max_length=32)
    routing: Literal["location", "owner"] = "location"
    limits: dict[Literal["register", "dispatch", "accept", "handle", "verify", "close"],
                 Annotated[float, Field(gt=0, le=24 * 365)]] = {}
    active: bool = Field(True, strict=True)  # true or false, not 0 or 1
    # calendar hours (the default), or working time on the city's calendar (GET /calendar/{year})
    limit_unit: Literal["hours", "work_hours", "work_days"] = "hours"


class IncidentCreate(BaseModel):
    source: Source
    external_id: str = Field(min_length=1, max_length=100)
    category: str = Field(min_length=1, max_length=32)
    description: str = Field("", max_length=4000)
    address: str = Field("", max_length=500)
    lon: float | None = Field(None, description="x in `crs`")
    lat: float | None = Field(None, description="y in `crs`")
    crs: str = Field("EPSG:4326", max_length=40)
    reporter_name: str | None = Field(None, max_length=100)
    reporter_phone: str | None = Field(None, max_length=30)
    attachments: list[Annotated[str, Field(max_length=500, pattern=r"^https?://\S+$")]] = Field(
        [], max_length=10)
    received_at: IsoDateTime | None = None


class IncidentAction(BaseModel):
    action: Literal["register", "dispatch", "accept", "report", "verify", "rework", "close",
                    "evaluate", "return", "void", "extend", "card"]
    note: str = Field("", max_length=2000)
    photos: list[Annotated[str, Field(max_length=500, pattern=r"^https?://\S+$")]] = Field(
        [], max_length=10)
    hours: float | None = Field(None, gt=0, le=720)
    card: Literal["yellow", "red"] | None = None
    score: int | None = Field(None, ge=1, le=5)
    expected_version: int | None = Field(None, ge=1)


class IncidentCreated(BaseModel):
    """An incident taken in (201), or found again by a retry of its source + external id (200)."""

    created: bool
    id: int
    region_code: str | None
    grid_code: str | None
    community_code: str | None
    street_code: str | None
    boundary_version_id: int | None
    responsible_code: str | None
    fallback: str | None


class IncidentPublic(BaseModel):
    id: int
    source: str
    external_id: str
    category: str
    category_name: str
    description: str
    address: str
    lon: float | None
    lat: float | None
    crs_in: str | None
    reporter_name: str | None
    reporter_phone: str | None
    attachments: list[str]
    state: State
    light: Literal["green", "yellow", "red"] | None
    region_code: str | None
    grid_code: str | None
    community_code: str | None
    street_code: str | None
    boundary_version_id: int | None
    responsible_code: str | None
    fallback: str | None
    department: str | None
    card: str | None
    extension_hours: float
    rework_count: int
    score: int | None
    received_at: datetime
    state_since: datetime
    due_at: datetime | None
    closed_at: datetime | None
    closed_on_time: bool | None
    version: int
    allowed_actions: list[str]


class HistoryPublic(BaseModel):
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    note: str
    photos: list[str]


class IncidentDetail(IncidentPublic):
    history: list[HistoryPublic]


class IncidentPage(BaseModel):
    items: list[IncidentPublic]
    total: int
    limit: int
    offset: int


class BulkResult(BaseModel):
    rows: int
    imported: int
    duplicates: int
    bad_rows: int
    errors: list[dict[str, Any]]


Reader = Annotated[Principal, Depends(require(Permission.INCIDENTS_READ))]
Creator = Annotated[Principal, Depends(require(Permission.INCIDENTS_CREATE))]
Handler = Annotated[Principal, Depends(require(Permission.INCIDENTS_HANDLE))]


@router.get("/categories", response_model=list[CategoryPublic])
def list_categories(conn: Conn, principal: Reader) -> list[CategoryPublic]:
    return [CategoryPublic.model_validate(c) for c in catalogue.list_categories(conn)]


@router.put("/categories/{code}", response_model=CategoryPublic)
def save_category(code: Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")],
                  body: CategorySave, conn: Conn,
                  principal: Annotated[Principal, Depends(require(Permission.CATALOGUE_WRITE))]
                  ) -> CategoryPublic:
    return CategoryPublic.model_validate(
        catalogue.save_category(conn, code=code, **body.model_dump(), principal=principal))


@router.post("/incidents", response_model=IncidentCreated, status_code=201,
             summary="Take in an incident (idempotent on source + external_id)",
             description="201 with the new incident's id and placement; a retry of the same "
                         "source + external_id answers 200 with that incident's. If that "
                         "incident lies outside the caller's jurisdiction the answer is a bare "
                         "409 `duplicate_external_id`: no id, grid or responsible worker.")
def create_incident(body: IncidentCreate, request: Request, response: Response, conn: Conn,
                    principal: Creator) -> IncidentCreated:
    snap = _service(request).snapshot
    placed, created = intake.create(
        conn, snap, body.model_dump(), principal=principal,
        max_outside_m=request.app.state.settings.city.max_outside_m)
    if not created:
        response.status_code = 200
    return IncidentCreated(created=created, **placed)


@router.post("/incidents/bulk", response_model=BulkResult,
             summary="Take in a day's export (CSV or XLSX body), all or nothing unless partial",
             openapi_extra={"requestBody": {"content": {
                 "text/csv": {"schema": {"type": "string"}},
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                     "schema": {"type": "string", "format": "binary"}}}, "required": True}})
async def bulk_incidents(
    request: Request, principal: Creator, conn: Conn,
    partial: Annotated[QueryBool, Query(description="Import the good rows, list the bad")] = False,
) -> BulkResult:
    from starlette.concurrency import run_in_threadpool

    snap = _service(request).snapshot
    body = await request.body()
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    name = "upload.xlsx" if "spreadsheet" in ctype else "upload.csv"
    # Parsed on a worker thread under the upload limits: lookups keep answering meanwhile.
    frame = await run_in_threadpool(intake.read_bulk, body, filename=name,
                                    limits=request.app.state.settings.upload.limits())
    check_frame(frame)  # the same text rule as every other request (app.input_guard)
    # The request's own unit of work, used from a worker thread (one thread at a time).
    result = await run_in_threadpool(
        intake.bulk, conn, snap, frame, principal=principal, partial=partial,
        max_outside_m=request.app.state.settings.city.max_outside_m)
    return BulkResult.model_validate(result)


@dataclass
class IncidentFilters:
    """The filters every incident listing and export shares."""

    state: list[State] | None
    category: list[str] | None
    source: list[Source] | None
    since: datetime | None
    until: datetime | None
    region: str | None
    light: list[Literal["green", "yellow", "red"]] | None
    assignee: str | None
    open_only: bool
    sort: str

    def kwargs(self) -> dict[str, Any]:
        return {"states": self.state, "categories": self.category, "sources": self.source,
                "since": self.since, "until": self.until, "region": self.region,
                "lights": self.light, "assignee": self.assignee, "open_only": self.open_only,
                "sort": self.sort}


async def incident_filters(
    state: Annotated[list[State] | None, Query()] = None,
    category: Annotated[list[Annotated[str, Field(max_length=32)]] | None, Query()] = None,
    source: Annotated[list[Source] | None, Query()] = None,
    since: IsoDateTime | None = None, until: IsoDateTime | None = None,
    region: Annotated[str | None, Query(max_length=15)] = None,
    light: Annotated[list[Literal["green", "yellow", "red"]] | None, Query()] = None,
    assignee: Annotated[str | None, Query(max_length=32)] = None,
    open_only: QueryBool = False,
    sort: Literal["received_at", "-received_at", "due_at", "-due_at", "id", "-id"]
    = "-received_at",
) -> IncidentFilters:
    return IncidentFilters(state, category, source, since, until, region, light, assignee,
                           open_only, sort)


Filters = Annotated[IncidentFilters, Depends(incident_filters)]


@router.get("/incidents", response_model=IncidentPage)
def list_incidents(conn: ReadConn, principal: Reader, page: PageParams, filters: Filters
                   ) -> IncidentPage:
    return IncidentPage.model_validate(handling.search(
        conn, principal=principal, limit=page.limit, offset=page.offset, **filters.kwargs()))


@router.get("/incidents/export.{fmt}", summary="The filtered list as CSV or XLSX (100,000 rows at most)",
            response_class=Response)
def export_incidents(fmt: Literal["csv", "xlsx"], conn: ReadConn, principal: Reader,
                     filters: Filters) -> Response:
    body, media = handling.export(conn, fmt, principal=principal, **filters.kwargs())
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="incidents.{fmt}"'})


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def get_incident(incident_id: IncidentId, conn: Conn, principal: Reader) -> IncidentDetail:
    return IncidentDetail.model_validate(handling.get(conn, incident_id, principal=principal))


@router.post("/incidents/{incident_id}/actions", response_model=IncidentDetail,
             summary="Take a step of the closed loop (409 names the allowed ones)")
def act(incident_id: IncidentId, body: IncidentAction, conn: Conn, principal: Handler
        ) -> IncidentDetail:
    return IncidentDetail.model_validate(handling.act(
        conn, incident_id, body.action, principal=principal, note=body.note, photos=body.photos,
        hours=body.hours, card=body.card, score=body.score,
        expected_version=body.expected_version))
