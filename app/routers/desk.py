"""The command centre's dispatch desk: the queue, the case view and its actions, duplicates and
merges, reveals of phones, saved views (``layers.dispatch``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn
from app.routers.incidents import IncidentAction, IncidentDetail, Source
from app.schemas import ErrorPublic
from grids.access import Permission, Principal
from layers.dispatch import cases, duplicates, merge, views
from layers.dispatch.queue import QueueFilters, queue
from layers.dispatch.roles import DESK_ROLES, DeskUser, desk_user
from layers.incidents.handling import IncidentNotFound

router = APIRouter(prefix="/desk", tags=["desk"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              404: {"model": ErrorPublic}, 409: {"model": ErrorPublic},
                              422: {"model": ErrorPublic}})
Reader = Annotated[Principal, Depends(require(Permission.INCIDENTS_READ))]
Handler = Annotated[Principal, Depends(require(Permission.INCIDENTS_HANDLE))]
IncidentId = Annotated[int, Path(ge=1, le=2**62)]
OpenState = Literal["received", "registered", "dispatched", "handling", "reported", "verified"]
Light = Literal["green", "yellow", "red"]


class QueueItem(BaseModel):
    id: int
    source: str
    external_id: str
    category: str
    category_name: str
    category_name_en: str
    state: str
    light: Light | None
    address: str
    description: str
    received_at: datetime
    state_since: datetime
    due_at: datetime | None
    region_code: str | None
    grid_code: str | None
    community_code: str | None
    street_code: str | None
    responsible_code: str | None
    responsible_name: str | None
    department: str | None
    department_name: str | None
    card: str | None
    version: int
    lon: float | None
    lat: float | None
    duplicates: int = Field(0, description="open cases likely the same event (score >= 0.5)")


class QueueCounts(BaseModel):
    state: dict[str, int]
    light: dict[str, int]


class QueuePage(BaseModel):
    items: list[QueueItem]
    total: int
    limit: int
    offset: int
    next: str | None = Field(None, description="cursor of the next page (keyset): pass as after")
    counts: QueueCounts
    department: str | None = Field(description="The liaison's department (the queue is cut to it)")


class Person(BaseModel):
    code: str
    name: str | None
    phone: str | None
    role: str | None
    status: str | None


class Limits(BaseModel):
    step_hours: float | None
    total_hours: float
    extension_hours: float
    step_used: float | None = Field(description="Share of the current step's limit used")
    unit: Literal["hours", "work_hours", "work_days"] = Field(
        "hours", description="Unit of step_hours and total_hours (working time: the calendar)")


class Candidate(BaseModel):
    id: int
    source: str
    state: str
    category: str
    category_name: str
    category_name_en: str
    address: str
    description: str
    received_at: datetime
    region_code: str | None
    version: int
    distance_m: float
    hours_apart: float
    score: float
    same_channel: bool = False
    same_phone: bool = False
    text_similarity: float | None = None
    likely: bool = False


class MergeLink(BaseModel):
    id: int
    lead_id: int
    duplicate_id: int
    score: float | None
    note: str
    merged_by: str
    merged_at: datetime
    undone_by: str | None
    undone_at: datetime | None
    duplicate_source: str
    duplicate_received_at: datetime


class Links(BaseModel):
    lead: int | None
    merged: list[MergeLink]
    history: list[MergeLink]


class CaseView(IncidentDetail):
    category_name_en: str
    category_group: str | None
    department_name: str | None
    grid_name: str | None
    merged_into: int | None
    responsible: Person | None
    limits: Limits
    may_reveal: bool
    links: Links
    candidates: list[Candidate]


class DeskProfile(BaseModel):
    name: str
    role: str
    department: str | None
    department_name: str | None
    may_merge: bool


class MergeRequest(BaseModel):
    duplicates: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=50)
    note: str = Field("", max_length=2000)
    expected_version: int | None = Field(None, ge=1)


class UnmergeRequest(BaseModel):
    note: str = Field("", max_length=2000)


class RevealRequest(BaseModel):
    field: Literal["reporter_phone", "responsible_phone"]
    reason: str = Field(min_length=2, max_length=500)


class Revealed(BaseModel):
    field: str
    value: str
    tel: str


class ViewFilters(BaseModel):
    states: list[OpenState] = []
    lights: list[Light] = []
    categories: list[Annotated[str, Field(max_length=32)]] = Field([], max_length=50)
    sources: list[Source] = []
    region: str | None = Field(None, pattern=r"^[0-9]{6,15}$")
    assignee: str | None = Field(None, max_length=32)
    department: str | None = Field(None, max_length=32)
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = Field(None, max_length=100)
    sort: Literal["due_at", "-due_at", "received_at", "-received_at"] = "due_at"


class ViewSave(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    filters: ViewFilters


class ViewPublic(BaseModel):
    id: int
    name: str
    filters: dict[str, Any]
    created_at: datetime


def _user(conn: Conn, principal: Principal) -> DeskUser:
    return desk_user(conn, principal)


async def queue_filters(
    state: Annotated[list[OpenState] | None, Query()] = None,
    light: Annotated[list[Light] | None, Query()] = None,
    category: Annotated[list[Annotated[str, Field(max_length=32)]] | None, Query()] = None,
    source: Annotated[list[Source] | None, Query()] = None,
    region: Annotated[str | None, Query(pattern=r"^[0-9]{6,15}$")] = None,
    assignee: Annotated[str | None, Query(max_length=32)] = None,
    department: Annotated[str | None, Query(max_length=32)] = None,
    since: datetime | None = None, until: datetime | None = None,
    q: Annotated[str | None, Query(max_length=100, description="id, address or description")]
    = None,
    sort: Literal["due_at", "-due_at", "received_at", "-received_at"] = "due_at",
) -> QueueFilters:
    return QueueFilters(states=list(state or []), lights=list(light or []),
                        categories=list(category or []), sources=list(source or []),
                        region=region, assignee=assignee, department=department, since=since,
                        until=until, q=q, sort=sort)


Filters = Annotated[QueueFilters, Depends(queue_filters)]


@router.get("/me", response_model=DeskProfile, summary="Who sits at the desk: role, liaison "
            "department, what the desk offers")
def get_profile(conn: Conn, principal: Reader) -> DeskProfile:
    user = _user(conn, principal)
    return DeskProfile(name=principal.name, role=principal.role, department=user.department,
                       department_name=user.department_name,
                       may_merge=principal.role in DESK_ROLES
                       and not user.is_liaison and principal.can(Permission.INCIDENTS_HANDLE))


@router.get("/queue", response_model=QueuePage,
            summary="Open cases in your jurisdiction, by due time, with counts per state and light")
def get_queue(conn: Conn, principal: Reader, filters: Filters,
              limit: Annotated[int, Query(ge=1, le=200)] = 50,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
              after: Annotated[str | None, Query(max_length=80, description=(
                  "keyset: the previous page's next"))] = None) -> QueuePage:
    return QueuePage.model_validate(queue(conn, user=_user(conn, principal), filters=filters,
                                          limit=limit, offset=offset, after=after))


@router.get("/cases/{incident_id}", response_model=CaseView,
            summary="One case: history, people by name, limits, merges, candidates, allowed actions")
def get_case(incident_id: IncidentId, conn: Conn, principal: Reader) -> CaseView:
    return CaseView.model_validate(cases.case_view(conn, incident_id,
                                                   user=_user(conn, principal)))


@router.post("/cases/{incident_id}/actions", response_model=CaseView,
             summary="A step of the closed loop from the desk (409: changed meanwhile or not "
                     "allowed now)")
def post_action(incident_id: IncidentId, body: IncidentAction, conn: Conn, principal: Handler
                ) -> CaseView:
    return CaseView.model_validate(cases.act(
        conn, incident_id, body.action, user=_user(conn, principal), note=body.note,
        photos=body.photos, hours=body.hours, card=body.card, score=body.score,
        expected_version=body.expected_version))


@router.get("/cases/{incident_id}/duplicates", response_model=list[Candidate],
            summary="Open cases that may report the same event, best first")
def get_duplicates(incident_id: IncidentId, conn: Conn, principal: Reader,
                   limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[Candidate]:
    return [Candidate.model_validate(c) for c in duplicates.candidates(
        conn, incident_id, user=_user(conn, principal), limit=limit)]


@router.post("/cases/{incident_id}/merge", response_model=CaseView,
             summary="Merge duplicates into this (lead) case")
def post_merge(incident_id: IncidentId, body: MergeRequest, conn: Conn, principal: Handler
               ) -> CaseView:
    user = _user(conn, principal)
    try:  # the scores recorded with the merge; merge() itself checks role and jurisdiction
        found = {c["id"]: c["score"] for c in duplicates.candidates(conn, incident_id,
                                                                   user=user, limit=100)}
    except IncidentNotFound:
        found = {}
    merge.merge(conn, incident_id, body.duplicates, user=user, note=body.note,
                expected_version=body.expected_version, scores=found)
    return CaseView.model_validate(cases.case_view(conn, incident_id, user=user))


@router.post("/cases/{incident_id}/unmerge", response_model=CaseView,
             summary="Undo the merge of this (duplicate) case; it gets its state back")
def post_unmerge(incident_id: IncidentId, body: UnmergeRequest, conn: Conn, principal: Handler
                 ) -> CaseView:
    user = _user(conn, principal)
    merge.unmerge(conn, incident_id, user=user, note=body.note)
    return CaseView.model_validate(cases.case_view(conn, incident_id, user=user))


@router.post("/cases/{incident_id}/reveal", response_model=Revealed,
             summary="A phone in full, with a reason (audited)")
def post_reveal(incident_id: IncidentId, body: RevealRequest, conn: Conn, principal: Reader
                ) -> Revealed:
    return Revealed.model_validate(cases.reveal(
        conn, incident_id, field=body.field, reason=body.reason, user=_user(conn, principal)))


@router.get("/views", response_model=list[ViewPublic], summary="Your saved queue views")
def get_views(conn: Conn, principal: Reader) -> list[ViewPublic]:
    return [ViewPublic.model_validate(v) for v in views.list_views(
        conn, user=_user(conn, principal))]


@router.post("/views", response_model=ViewPublic, status_code=201,
             summary="Save the queue's filters under a name (same name: replaced)")
def post_view(body: ViewSave, conn: Conn, principal: Reader) -> ViewPublic:
    return ViewPublic.model_validate(views.save_view(
        conn, user=_user(conn, principal), name=body.name,
        filters=body.filters.model_dump(mode="json", exclude_defaults=True)))


@router.delete("/views/{view_id}", status_code=204, response_class=Response,
               summary="Delete one of your saved views")
def delete_view(view_id: Annotated[int, Path(ge=1, le=2**62)], conn: Conn, principal: Reader
                ) -> Response:
    views.delete_view(conn, view_id, user=_user(conn, principal))
    return Response(status_code=204)
