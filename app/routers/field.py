"""The grid worker's phone (``/worker``): my grids, my tasks, photos, actions, field reports and
the evidence checks of a closure. Domain code in :mod:`layers.field`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn
from app.geojson_schemas import Feature, FeatureCollection
from app.routers.incidents import IncidentDetail
from app.routers.locate import _service
from app.schemas import ErrorPublic
from app.settings import PhotoSettings, _from_env
from grids.access import Permission, Principal
from grids.city import profile
from layers.field import duplicates, evidence, photos, tasks
from layers.field.photos import city_offset

router = APIRouter(prefix="/field", tags=["field"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              404: {"model": ErrorPublic}, 409: {"model": ErrorPublic},
                              413: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})
Reader = Annotated[Principal, Depends(require(Permission.INCIDENTS_READ))]
Handler = Annotated[Principal, Depends(require(Permission.INCIDENTS_HANDLE))]
Creator = Annotated[Principal, Depends(require(Permission.INCIDENTS_CREATE))]
PatrolReader = Annotated[Principal, Depends(require(Permission.PATROLS_READ))]
IncidentId = Annotated[int, Path(ge=1, le=2**62)]
Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
PhotoRef = Annotated[str, Field(pattern=r"^(/field/photos/)?[0-9a-f]{64}$")]


def photo_settings(request: Request) -> PhotoSettings:
    """The photo settings (from the environment, once per app; tests set their own)."""
    state = request.app.state
    if getattr(state, "photo_settings", None) is None:
        state.photo_settings = _from_env(PhotoSettings)()
    return state.photo_settings


def photo_store(request: Request) -> photos.PhotoStore:
    state = request.app.state
    if getattr(state, "photo_store", None) is None:
        state.photo_store = photos.store_from(photo_settings(request))
    return state.photo_store


Store = Annotated[photos.PhotoStore, Depends(photo_store)]


class Position(BaseModel):
    """Where the phone was when it sent (WGS84, as the browser reports it)."""

    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)
    at: datetime | None = None


class FieldAction(BaseModel):
    client_id: str = Field(min_length=32, max_length=36, description="UUID made by the phone")
    action: Literal["accept", "report", "return", "verify", "rework"]
    note: str = Field("", max_length=1500)
    reason: str = Field("", max_length=400, description="Why (return, rework)")
    photos: list[PhotoRef] = Field([], max_length=10)
    position: Position | None = None


class FieldReport(BaseModel):
    client_id: str = Field(min_length=32, max_length=36, description="UUID made by the phone")
    category: str = Field(min_length=1, max_length=32)
    lon: float
    lat: float
    crs: str = Field("EPSG:4326", max_length=40)
    address: str = Field("", max_length=500)
    note: str = Field("", max_length=4000)
    photos: list[PhotoRef] = Field([], max_length=10)
    position: Position | None = None


class FieldSupplement(BaseModel):
    client_id: str = Field(min_length=32, max_length=36, description="UUID made by the phone")
    note: str = Field("", max_length=1500)
    photos: list[PhotoRef] = Field([], max_length=10)
    position: Position | None = None


class DuplicateCandidate(BaseModel):
    id: int
    state: str
    category: str
    category_name: str
    category_name_en: str | None
    address: str | None
    description: str | None
    received_at: datetime
    distance_m: float
    score: float
    lon: float
    lat: float


class DuplicateRule(BaseModel):
    radius_m: float
    window_h: float
    related: list[str]


class NearbyCases(BaseModel):
    candidates: list[DuplicateCandidate]
    rule: DuplicateRule | None


class EvidencePublic(BaseModel):
    id: int
    incident_id: int
    event_id: int | None
    stage: Literal["report", "verify"]
    actor: str
    checked_at: datetime
    findings: list[dict[str, Any]]
    suspicious: bool
    cleared_at: datetime | None
    cleared_by: str | None
    clear_reason: str | None


class FieldResult(BaseModel):
    replayed: bool
    incident: IncidentDetail
    evidence: EvidencePublic | None = None


class CasePublic(IncidentDetail):
    evidence: list[EvidencePublic]


class PhotoPublic(BaseModel):
    sha256: str
    url: str
    thumb_url: str
    content_type: str
    bytes: int
    width: int
    height: int
    taken_at: datetime | None
    lon: float | None
    lat: float | None
    created: bool


class CityView(BaseModel):
    tz: str = Field(description="The city's zone: the phone's today")
    name: str | None
    center: list[float] | None = Field(description="First view [lat, lon]")


class MePublic(BaseModel):
    username: str
    role: str
    staff_code: str | None
    staff_name: str | None
    grids: list[str]
    can_verify: bool
    can_clear_flags: bool
    city: CityView


class GridProps(BaseModel):
    code: str
    name: str
    area_m2: float
    patrolled_share: float
    last_fix_at: str | None
    unpatrolled: dict[str, Any] | None = Field(
        None, description="With unpatrolled=true only: the part no track came near (GeoJSON)")


class OpenCase(BaseModel):
    id: int
    state: str
    category_name: str
    grid_code: str | None
    address: str
    lon: float | None
    lat: float | None
    due_at: datetime | None
    light: str | None


class MyGrids(FeatureCollection[Feature[GridProps]]):
    """My grids: simplified outlines with today's patrolled share, and their open cases."""

    cases: list[OpenCase]
    truncated: bool
    since: str
    until: str
    buffer_m: float


class TaskPublic(BaseModel):
    id: int
    category: str
    category_name: str
    description: str
    address: str
    lon: float | None
    lat: float | None
    state: str
    light: Literal["green", "yellow", "red"] | None
    due_at: datetime | None
    state_since: datetime
    grid_code: str | None
    card: str | None
    version: int
    allowed_actions: list[str]
    kind: Literal["handle", "verify"]
    flagged: bool


class MyTasks(BaseModel):
    staff_code: str | None
    tasks: list[TaskPublic]
    verify: list[TaskPublic]


class ClearFlag(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


@router.get("/me", response_model=MePublic,
            summary="Who uses the phone: staff code, grids, may they verify")
def get_me(conn: Conn, principal: Reader) -> tasks.Me:
    return tasks.me(conn, principal=principal)


@router.get("/grids", response_model=MyGrids, response_model_exclude_unset=True,
            summary="My grids (simplified outlines), open cases, today's coverage")
def get_grids(conn: Conn, principal: PatrolReader,
              unpatrolled: Annotated[bool, Query(
                  description="Also the parts of each grid no track came near today")] = False
              ) -> tasks.MyGrids:
    return tasks.my_grids(conn, principal=principal, unpatrolled=unpatrolled)


@router.get("/tasks", response_model=MyTasks,
            summary="My tasks inbox: dispatched to me, and cases to verify")
def get_tasks(conn: Conn, principal: Reader) -> tasks.MyTasks:
    return tasks.my_tasks(conn, principal=principal)


@router.post("/tasks/{incident_id}/actions", response_model=FieldResult,
             summary="Accept, report (photos, note), return (reason), verify: once per client_id")
def post_action(incident_id: IncidentId, body: FieldAction, conn: Conn, principal: Handler
                ) -> dict[str, Any]:
    return tasks.act(conn, incident_id, body.action, principal=principal,
                     client_id=body.client_id, note=body.note, reason=body.reason,
                     photos=body.photos,
                     position=body.position.model_dump() if body.position else None)


@router.post("/reports", response_model=FieldResult, status_code=201,
             summary="A field report (采集上报), once per client_id")
def post_report(body: FieldReport, request: Request, response: Response, conn: Conn,
                principal: Creator) -> dict[str, Any]:
    out = tasks.report(conn, _service(request).snapshot, principal=principal,
                       client_id=body.client_id, category=body.category, lon=body.lon,
                       lat=body.lat, crs=body.crs, address=body.address, note=body.note,
                       photos=body.photos,
                       max_outside_m=request.app.state.settings.city.max_outside_m)
    if out["replayed"]:
        response.status_code = 200
    return out


@router.post("/photos", response_model=PhotoPublic, status_code=201,
             summary="Upload one photo (JPEG, PNG or WebP body); named by its SHA-256",
             responses={200: {"model": PhotoPublic,
                              "description": "The same photo was already uploaded: its record"}},
             openapi_extra={"requestBody": {"content": {
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                 "required": True}})
async def post_photo(request: Request, response: Response, conn: Conn, principal: Handler,
                     store: Store) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    cfg = photo_settings(request)
    body = await request.body()
    offset = cfg.photo_exif_offset or city_offset(profile(conn).tz)
    out = await run_in_threadpool(
        photos.save, conn, store, body, principal=principal, max_bytes=cfg.photo_max_bytes,
        max_pixels=cfg.photo_max_pixels, thumb_px=cfg.photo_thumb_px,
        default_offset=offset)
    if not out["created"]:
        response.status_code = 200
    return out


def _photo(conn: Conn, store: photos.PhotoStore, sha: str, thumb: bool,
           principal: Principal) -> Response:
    data, media = photos.fetch(conn, store, sha, thumb=thumb, principal=principal)
    return Response(data, media_type=media, headers={
        "Cache-Control": "private, max-age=31536000, immutable"})


@router.get("/photos/{sha}", response_class=Response, summary="A photo (its original bytes)")
def get_photo(sha: Sha, conn: Conn, principal: Reader, store: Store) -> Response:
    return _photo(conn, store, sha, False, principal)


@router.get("/photos/{sha}/thumb", response_class=Response, summary="A photo's thumbnail")
def get_thumb(sha: Sha, conn: Conn, principal: Reader, store: Store) -> Response:
    return _photo(conn, store, sha, True, principal)


@router.get("/incidents/{incident_id}", response_model=CasePublic,
            summary="A case with its history and evidence checks (疑似虚假回复)")
def get_case(incident_id: IncidentId, conn: Conn, principal: Reader) -> dict[str, Any]:
    return tasks.case(conn, incident_id, principal=principal)


@router.post("/incidents/{incident_id}/evidence/{check_id}/clear",
             response_model=EvidencePublic,
             summary="A supervisor clears a possible false reply, with a reason (audited)")
def clear_flag(incident_id: IncidentId, check_id: Annotated[int, Path(ge=1, le=2**62)],
               body: ClearFlag, conn: Conn, principal: Handler) -> dict[str, Any]:
    return evidence.clear(conn, incident_id, check_id, principal=principal, reason=body.reason)


@router.get("/duplicates", response_model=NearbyCases,
            summary="Before a field report: open cases near the pin that may be the same event")
def get_duplicates(conn: Conn, principal: Reader,
                   category: Annotated[str, Query(min_length=1, max_length=32)],
                   lon: Annotated[float, Query(ge=-180, le=180)],
                   lat: Annotated[float, Query(ge=-90, le=90)]) -> dict[str, Any]:
    return duplicates.near(conn, principal=principal, category=category, lon=lon, lat=lat)


@router.post("/incidents/{incident_id}/supplements", response_model=FieldResult,
             status_code=201,
             summary="Add a note and photos to an open case (已上报？补充), once per client_id")
def post_supplement(incident_id: IncidentId, body: FieldSupplement, response: Response,
                    conn: Conn, principal: Creator) -> dict[str, Any]:
    out = tasks.supplement(conn, incident_id, principal=principal, client_id=body.client_id,
                           note=body.note, photos=body.photos)
    if out["replayed"]:
        response.status_code = 200
    return out
