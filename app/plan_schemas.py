"""Request and response models of the plans API (contract in docs/plans-api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.geojson_schemas import FeatureCollection, IdFeature

GridCode = Annotated[str, Field(pattern=r"^[0-9]{15}$", description="15-digit grid code")]
CommunityCode = Annotated[str, Field(pattern=r"^[0-9]{12}$",
                                     description="12-digit community code")]
GeoJSONPolygon = Annotated[dict[str, Any], Field(
    description="GeoJSON Polygon (or MultiPolygon), lon/lat CGCS2000 (EPSG:4490)")]


class PlanCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    region_code: str = Field(max_length=15, description="A street (9/12 digits) or community")
    note: str = Field("", max_length=2000)
    restore_version: int | None = Field(None, ge=1, le=2**31 - 1, description=(
        "Open the plan with the region's boundaries as of this past version"))


class ProblemPublic(BaseModel):
    kind: str
    message: str
    codes: list[str]
    location: dict[str, Any] | None = None
    area_m2: float | None = None
    parent: str | None = Field(None, description="The parent whose tiling the problem breaks")


class EditPublic(BaseModel):
    seq: int
    op: str
    summary: str = Field(description="What the edit did, in English")
    by: str
    at: datetime
    facts: dict[str, Any] | None = Field(None, description=(
        "What the edit did as data (op, codes, names, areas), for a summary in any language"))
    state: Literal["done", "undone", "dropped"] = Field("done", description=(
        "undone: on the redo stack; dropped: undone, then replaced by a later edit"))


class StaffingPublic(BaseModel):
    id: int
    action: Literal["assign", "end"]
    staff_code: str
    staff_name: str
    region_code: str
    duty: str
    assignment_id: int | None = None
    note: str
    by: str
    at: datetime


class ReviewPublic(BaseModel):
    action: Literal["submit", "approve", "return", "activate"]
    comment: str
    revision: int
    by: str
    at: datetime


class PlanPublic(BaseModel):
    id: int
    name: str
    region_code: str
    note: str
    status: Literal["draft", "submitted", "returned", "approved", "activated", "discarded"]
    etag: str
    base_version: int
    restored_from: int | None = None
    created_by: str
    created_at: datetime
    updated_at: datetime
    activated_version: int | None = None
    activated_at: datetime | None = None
    effective_at: datetime | None = None
    edits: list[EditPublic]
    problems: list[ProblemPublic]
    summary: str | None = Field(None, description="What a dry-run edit would do")
    facts: dict[str, Any] | None = Field(None, description="The same as data (dry run only)")
    stale: bool = Field(False, description="A draft whose boundaries were changed by someone "
                                           "else since it was opened: activation will be 409")
    submitted_at: datetime | None = None
    submitted_by: str | None = None
    approved_at: datetime | None = None
    approved_by: str | None = None
    proposed_effective_at: datetime | None = Field(None, description=(
        "The activation time proposed on submit: activated at approval, as scheduled"))
    reroute_open_incidents: bool = False
    unstaffed_reason: str | None = Field(None, description=(
        "The planner's reason to go ahead with grids that have no responsible worker"))
    unstaffed_grids: list[str] = []
    work_moved_at: datetime | None = Field(None, description=(
        "When the open work moved to the new grids (null: not yet, e.g. scheduled)"))
    work_moved: dict[str, Any] | None = None
    staffing: list[StaffingPublic] = []
    reviews: list[ReviewPublic] = []


class PlanList(BaseModel):
    items: list[PlanPublic]


class Reshape(BaseModel):
    op: Literal["reshape"]
    code: GridCode
    geometry: GeoJSONPolygon


class Split(BaseModel):
    op: Literal["split"]
    code: GridCode
    line: dict[str, Any] = Field(description="GeoJSON LineString crossing the grid")
    new_code: GridCode | None = None
    new_name: str | None = Field(None, min_length=1, max_length=200)


class Merge(BaseModel):
    op: Literal["merge"]
    codes: list[GridCode] = Field(min_length=2, max_length=50)
    keep: GridCode


class Move(BaseModel):
    op: Literal["move"]
    code: GridCode
    parent_code: CommunityCode
    new_code: GridCode | None = None


class Create(BaseModel):
    op: Literal["create"]
    parent_code: CommunityCode
    geometry: GeoJSONPolygon
    name: str | None = Field(None, min_length=1, max_length=200)
    code: GridCode | None = None


class Retire(BaseModel):
    op: Literal["retire"]
    code: GridCode
    into: GridCode


class Recode(BaseModel):
    op: Literal["recode"]
    code: GridCode
    new_code: GridCode


class Rename(BaseModel):
    op: Literal["rename"]
    code: GridCode
    name: str = Field(min_length=1, max_length=200)


Edit = Annotated[Reshape | Split | Merge | Move | Create | Retire | Recode | Rename,
                 Field(discriminator="op")]


class StaffingChange(BaseModel):
    op: Literal["assign", "end", "move"]
    staff_code: str = Field(min_length=1, max_length=40)
    grid_code: str = Field(pattern=r"^[0-9]{9}([0-9]{3}([0-9]{3})?)?$", description=(
        "assign: the grid (or, for head, community) of the draft; end/move: where they are now"))
    to_code: str | None = Field(None, pattern=r"^[0-9]{9}([0-9]{3}([0-9]{3})?)?$",
                                description="move: the grid of the draft they go to")
    duty: Literal["primary", "backup", "head"] = "primary"
    note: str = Field("", max_length=500)


class Submit(BaseModel):
    comment: str = Field("", max_length=2000)
    effective_at: datetime | None = Field(None, description=(
        "Proposed activation time (future): activated as scheduled once approved"))
    reroute_open_incidents: bool = False
    unstaffed_reason: str | None = Field(None, max_length=1000, description=(
        "Go ahead although some grids the plan touches have no responsible worker: why"))


class ReviewComment(BaseModel):
    comment: str = Field("", max_length=2000)


class ReturnComment(BaseModel):
    comment: str = Field(min_length=1, max_length=2000)


class ValidationPublic(BaseModel):
    ok: bool
    problems: list[ProblemPublic]


class Activate(BaseModel):
    effective_at: datetime | None = Field(None, description="When the new boundaries take "
                                                            "effect (ISO 8601); default now")
    reroute_open_incidents: bool | None = Field(None, description=(
        "Re-route open cases (null: as proposed on submit); with a scheduled effective_at they "
        "move when it comes"))


class ActivationPublic(BaseModel):
    plan: PlanPublic
    boundary_version: int
    effective_at: datetime
    changed: int
    rerouted: int
    staffing: dict[str, int] = {}
    work: dict[str, Any] = {}


class ApprovalPublic(BaseModel):
    plan: PlanPublic
    activation: ActivationPublic | None = Field(None, description=(
        "The scheduled activation made at approval (when one was proposed on submit)"))


class GridImpact(BaseModel):
    code: str
    level: str
    change: str
    origin_code: str | None
    old_area_m2: float
    new_area_m2: float
    delta_m2: float
    delta_pct: float | None


class IncidentMove(BaseModel):
    id: int
    from_grid: str | None
    to_grid: str | None


class IncidentImpact(BaseModel):
    open_moving: int
    items: list[IncidentMove]
    note: str


class WorkerMove(BaseModel):
    staff_code: str
    name: str
    duty: str
    from_grid: str
    to_grid: str | None
    change: str


class WorkerBrief(BaseModel):
    staff_code: str
    name: str


class WorkerImpact(BaseModel):
    moving: list[WorkerMove]
    without_grid: list[WorkerBrief]


class ImpactPublic(BaseModel):
    plan_id: int
    grids: list[GridImpact]
    incidents: IncidentImpact
    workers: WorkerImpact
    grids_without_worker: list[str]
    households: dict[str, Any]
    staffing: dict[str, Any] = {}
    work: dict[str, Any] = {}


class VersionPublic(BaseModel):
    version: int
    label: str
    activated_at: datetime | None
    effective_at: datetime | None
    plan_id: int | None
    note: str
    region_code: str | None


class VersionList(BaseModel):
    items: list[VersionPublic]


class PlanGridProps(BaseModel):
    code: str
    name: str
    parent_code: str | None
    change: str = Field(description="The plan's change of the grid, or 'context' for a grid "
                        "just outside its region")
    area_m2: float


class PlanFeatures(FeatureCollection[IdFeature[PlanGridProps]]):
    """The plan's grids (draft) and the grids just outside, as GeoJSON (id ``change:code``)."""


class DiffProps(BaseModel):
    code: str
    name: str
    change: Literal["new", "retired", "changed"]
    side: Literal["from", "to"]
    version: int = Field(description="The version whose boundary the feature shows")
    parent_code: str
    moved_m2: float | None


class BoundaryDiff(FeatureCollection[IdFeature[DiffProps]]):
    """The grids that differ between two versions, one feature a side (id ``side:code``)."""

    from_version: int
    to_version: int | None = Field(description="None: the boundaries in force now")
