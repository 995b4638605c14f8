"""Call-ups (集结调度) for emergencies and major events: who to call for an area, send, answers.
Domain code in :mod:`layers.dispatch.callup`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from grids.access import Permission, Principal
from layers.dispatch import callup

router = APIRouter(prefix="/callups", tags=["callups"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              404: {"model": ErrorPublic}, 409: {"model": ErrorPublic},
                              422: {"model": ErrorPublic}})
Reader = Annotated[Principal, Depends(require(Permission.INCIDENTS_READ))]
Handler = Annotated[Principal, Depends(require(Permission.INCIDENTS_HANDLE))]
CallupId = Annotated[int, Path(ge=1, le=2**62)]
Area = Annotated[dict[str, Any] | None, Field(
    None, description="A GeoJSON Polygon or MultiPolygon (lon, lat in WGS84/CGCS2000), or a "
    "Feature holding one")]
RegionCode = Annotated[str | None, Field(None, pattern=r"^\d{6,15}$")]


class WhoRequest(BaseModel):
    area: Area = None
    region_code: RegionCode = None
    limit: int = Field(callup.DEFAULT_NEAREST, ge=0, le=callup.MAX_NEAREST,
                       description="How many nearest available workers (by last fix)")
    max_fix_age_min: int = Field(callup.DEFAULT_FIX_AGE_MIN, ge=1, le=60 * 24 * 31)


class CallupRequest(WhoRequest):
    kind: Literal["routine", "event", "emergency"] = "emergency"
    title: str = Field(min_length=1, max_length=200)
    note: str = Field("", max_length=2000)
    incident_id: int | None = Field(None, ge=1, le=2**62)
    window_from: datetime | None = Field(None, description="Event mode: reinforcements from")
    window_to: datetime | None = Field(None, description="Event mode: reinforcements until")
    exclude: list[Annotated[str, Field(max_length=32)]] = Field([], max_length=500)


class AnswerRequest(BaseModel):
    answer: Literal["acknowledge", "decline", "arrive"]
    note: str = Field("", max_length=1000)
    staff_code: str | None = Field(None, max_length=32, description="The desk, answering for "
                                   "someone (a phone call); a grid worker answers for themself")


class PersonCalled(BaseModel):
    staff_code: str
    name: str
    phone: str | None
    role: str
    status: str
    reason: Literal["primary", "backup", "head", "nearest"]
    region_code: str | None
    distance_m: float | None = Field(description="From the last fix to the area, metres")
    fix_at: datetime | None
    fix_age_s: int | None
    fix_lon: float | None = Field(description="The last fix (WGS84), to draw it")
    fix_lat: float | None
    will_call: bool


class GridIn(BaseModel):
    code: str
    name: str
    parent_code: str | None


class WhoPublic(BaseModel):
    grids: list[GridIn]
    outside_jurisdiction: int
    responsible: list[PersonCalled]
    heads: list[PersonCalled]
    nearest: list[PersonCalled]
    to_call: int
    max_fix_age_min: int
    limit: int
    as_of: datetime


class Reinforcement(BaseModel):
    grid_code: str
    valid_from: datetime
    valid_to: datetime | None


class TaskPublic(BaseModel):
    id: int
    staff_code: str
    name: str
    phone: str | None
    role: str
    region_code: str
    reason: str
    distance_m: float | None
    fix_at: datetime | None
    state: Literal["sent", "acknowledged", "declined", "arrived"]
    note: str
    answered_at: datetime | None
    answered_by: str | None
    arrived_at: datetime | None
    reinforcements: list[Reinforcement]


class CallupPublic(BaseModel):
    id: int
    kind: str
    title: str
    note: str
    region_code: str | None
    grid_codes: list[str]
    incident_id: int | None
    window_from: datetime | None
    window_to: datetime | None
    created_by: str
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    area: dict[str, Any] | None
    tasks: list[TaskPublic]
    answers: dict[str, int]


class CallupItem(BaseModel):
    id: int
    kind: str
    title: str
    region_code: str | None
    incident_id: int | None
    window_from: datetime | None
    window_to: datetime | None
    created_by: str
    created_at: datetime
    closed_at: datetime | None
    grids: int
    called: int
    acknowledged: int
    declined: int
    arrived: int


class MyCallup(BaseModel):
    callup_id: int
    kind: str
    title: str
    note: str
    incident_id: int | None
    window_from: datetime | None
    window_to: datetime | None
    created_at: datetime
    created_by: str
    task_id: int
    reason: str
    region_code: str
    state: str
    answer_note: str
    answered_at: datetime | None
    arrived_at: datetime | None
    lon: float | None
    lat: float | None


class MyCallups(BaseModel):
    staff_code: str | None
    items: list[MyCallup]


def _area_args(body: WhoRequest) -> dict[str, Any]:
    return {"area": body.area, "region_code": body.region_code, "limit": body.limit,
            "max_fix_age_min": body.max_fix_age_min}


@router.post("/who", response_model=WhoPublic,
             summary="Who a call-up for this area would reach (grids, workers, heads, nearest)")
def who(body: WhoRequest, conn: Conn, principal: Handler) -> dict[str, Any]:
    return callup.who(conn, principal=principal, **_area_args(body))


@router.post("", response_model=CallupPublic, status_code=201,
             summary="Send a call-up: one task per person; an event window adds reinforcements")
def send(body: CallupRequest, conn: Conn, principal: Handler) -> dict[str, Any]:
    return callup.send(conn, principal=principal, kind=body.kind, title=body.title,
                       note=body.note, incident_id=body.incident_id,
                       window_from=body.window_from, window_to=body.window_to,
                       exclude=body.exclude, **_area_args(body))


@router.get("", response_model=list[CallupItem], summary="Call-ups in my jurisdiction")
def list_callups(conn: Conn, principal: Handler,
                 open: Annotated[bool, Query(description="Only those not closed")] = True,
                 incident_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
    return callup.list_callups(conn, principal=principal, open_only=open,
                               incident_id=incident_id, limit=limit)


@router.get("/mine", response_model=MyCallups, summary="My call-up tasks (the phone's inbox)")
def mine(conn: Conn, principal: Reader) -> dict[str, Any]:
    return callup.mine(conn, principal=principal)


@router.get("/{callup_id}", response_model=CallupPublic, summary="A call-up with its answers")
def get_callup(callup_id: CallupId, conn: Conn, principal: Reader) -> dict[str, Any]:
    return callup.get(conn, callup_id, principal=principal)


@router.post("/{callup_id}/answer", response_model=CallupPublic,
             summary="Answer a call-up: acknowledge, decline (with a note), arrived")
def answer(callup_id: CallupId, body: AnswerRequest, conn: Conn,
           principal: Handler) -> dict[str, Any]:
    return callup.answer(conn, callup_id, principal=principal, answer=body.answer,
                         note=body.note, staff_code=body.staff_code)


@router.post("/{callup_id}/close", response_model=CallupPublic,
             summary="Close a call-up (its reinforcements still to run end now)")
def close(callup_id: CallupId, conn: Conn, principal: Handler) -> dict[str, Any]:
    return callup.close(conn, callup_id, principal=principal)
