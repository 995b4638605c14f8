"""Redraw plans: drafts, validation, impact preview, activation, history (issue 8).

Writes to a plan need ``If-Match`` with the plan's ETag (428 without it, 409 if stale). The
contract the portal's editor is built against is docs/plans-api.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)

from app.auth import require
from app.deps import Conn
from app.plan_schemas import (
    Activate,
    ActivationPublic,
    ApprovalPublic,
    BoundaryDiff,
    Edit,
    ImpactPublic,
    PlanCreate,
    PlanFeatures,
    PlanList,
    PlanPublic,
    ReturnComment,
    ReviewComment,
    StaffingChange,
    Submit,
    ValidationPublic,
    VersionList,
)
from app.schemas import ErrorPublic
from grids import plans
from grids.access import Permission, Principal
from grids.errors import PreconditionRequired
from grids.plans import history as plan_history
from grids.plans import io as plan_io
from grids.plans import review as plan_review
from grids.plans import staffing as plan_staffing
from grids.plans import undo as plan_undo
from grids.plans import views
from layers import redraw

router = APIRouter(tags=["plans"], responses={
    401: {"model": ErrorPublic}, 403: {"model": ErrorPublic}, 404: {"model": ErrorPublic},
    409: {"model": ErrorPublic}, 422: {"model": ErrorPublic}, 428: {"model": ErrorPublic}})

Reader = Annotated[Principal, Depends(require(Permission.PLANS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.PLANS_WRITE))]
# Approving is for the city profile's approver role (checked in grids.plans.review), which may be
# one without the plans permissions.
Anyone = Annotated[Principal, Depends(require(Permission.REGIONS_READ))]
PlanId = Annotated[int, Path(ge=1, le=2**31 - 1)]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=100,
                                       description="The plan's ETag, as last read")]
GEOPACKAGE = "application/geopackage+sqlite3"


def _need(if_match: str | None) -> str:
    if not if_match:
        raise PreconditionRequired(
            "Send If-Match with the plan's ETag (from GET /plans/{id}) to change it.",
            detail={"field": "If-Match", "in": "header", "expected": "the plan's ETag"})
    return if_match


def _etag(response: Response, plan: dict[str, Any]) -> dict[str, Any]:
    response.headers["ETag"] = f'"{plan["etag"]}"'
    return plan


@router.post("/plans", response_model=PlanPublic, status_code=201,
             summary="Open a plan over a street or community (optionally restoring a version)")
def create_plan(body: PlanCreate, conn: Conn, principal: Writer, response: Response
                ) -> dict[str, Any]:
    return _etag(response, plans.create_plan(
        conn, name=body.name, region_code=body.region_code, note=body.note,
        restore_version=body.restore_version, principal=principal))


@router.get("/plans", response_model=PlanList)
def list_plans(conn: Conn, principal: Reader,
               status: Annotated[Literal["draft", "submitted", "returned", "approved", "active",
                                         "activated", "discarded"] | None,
                                 Query()] = None) -> dict[str, Any]:
    return {"items": plans.list_plans(conn, principal=principal, status=status)}


@router.post("/plans/import", response_model=PlanPublic, status_code=201,
             summary="Open a plan from an edited GeoPackage (diffed against the current grids)")
def import_plan(conn: Conn, principal: Writer, response: Response, request: Request,
                file: Annotated[UploadFile, File(description="A .gpkg with a plan_grids layer")],
                region_code: Annotated[str, Form(max_length=15)],
                name: Annotated[str, Form(min_length=1, max_length=200)]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = FilePath(tmp) / "upload.gpkg"
        path.write_bytes(file.file.read())
        plan = plan_io.import_plan(conn, path, region_code=region_code, name=name,
                                   principal=principal,
                                   limits=request.app.state.settings.upload.limits())
    return _etag(response, plan)


@router.get("/plans/{plan_id}", response_model=PlanPublic)
def get_plan(plan_id: PlanId, conn: Conn, principal: Reader, response: Response
             ) -> dict[str, Any]:
    return _etag(response, plans.get_plan(conn, plan_id, principal=principal))


@router.delete("/plans/{plan_id}", status_code=204, response_class=Response,
               summary="Discard a plan not yet activated (kept with status 'discarded')")
def discard_plan(plan_id: PlanId, conn: Conn, principal: Writer, if_match: IfMatch = None
                 ) -> Response:
    plan_review.discard(conn, plan_id, principal=principal, if_match=if_match)
    return Response(status_code=204)


@router.get("/plans/{plan_id}/features", response_model=PlanFeatures,
            summary="GeoJSON of the plan's grids (draft) and the grids just outside as context")
def plan_features(plan_id: PlanId, conn: Conn, principal: Reader) -> views.PlanFeatures:
    return plans.features(conn, plan_id, principal=principal)


@router.post("/plans/{plan_id}/edits", response_model=PlanPublic,
             summary="Apply one edit (or only check it with dry_run=true)")
def edit_plan(plan_id: PlanId, edit: Edit, conn: Conn, principal: Writer, response: Response,
              if_match: IfMatch = None,
              dry_run: Annotated[bool, Query(description="Validate only; store nothing")] = False
              ) -> dict[str, Any]:
    return _etag(response, plans.apply_edit(
        conn, plan_id, edit.model_dump(exclude_none=True), principal=principal,
        if_match=_need(if_match), dry_run=dry_run))


@router.post("/plans/{plan_id}/validate", response_model=ValidationPublic)
def validate_plan(plan_id: PlanId, conn: Conn, principal: Reader) -> dict[str, Any]:
    return plans.validate_plan(conn, plan_id, principal=principal)


@router.get("/plans/{plan_id}/impact", response_model=ImpactPublic)
def plan_impact(plan_id: PlanId, conn: Conn, principal: Reader) -> dict[str, Any]:
    return redraw.plan_impact(conn, plan_id, principal=principal)


@router.post("/plans/{plan_id}/staffing", response_model=PlanPublic,
             summary="Store a staffing change with the plan (assign, end or move a worker)")
def change_staffing(plan_id: PlanId, body: StaffingChange, conn: Conn, principal: Writer,
                    response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    return _etag(response, plan_staffing.change_staffing(
        conn, plan_id, body.model_dump(exclude_none=True), principal=principal,
        if_match=_need(if_match)))


@router.delete("/plans/{plan_id}/staffing/{change_id}", response_model=PlanPublic,
               summary="Take a staffing change back out of the plan")
def withdraw_staffing(plan_id: PlanId, change_id: Annotated[int, Path(ge=1, le=2**62)],
                      conn: Conn, principal: Writer, response: Response,
                      if_match: IfMatch = None) -> dict[str, Any]:
    return _etag(response, plan_staffing.withdraw_staffing(
        conn, plan_id, change_id, principal=principal, if_match=_need(if_match)))


@router.post("/plans/{plan_id}/submit", response_model=PlanPublic,
             summary="Propose the plan for approval (optionally with a scheduled time)")
def submit_plan(plan_id: PlanId, body: Submit, conn: Conn, principal: Writer,
                response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    return _etag(response, plan_review.submit(
        conn, plan_id, principal=principal, if_match=_need(if_match), comment=body.comment,
        effective_at=body.effective_at, reroute_open_incidents=body.reroute_open_incidents,
        unstaffed_reason=body.unstaffed_reason))


@router.post("/plans/{plan_id}/approve", response_model=ApprovalPublic,
             summary="Approve a submitted plan (the city's approver role; a proposed scheduled "
                     "activation is made now)")
def approve_plan(plan_id: PlanId, body: ReviewComment, conn: Conn, principal: Anyone,
                 response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    result = redraw.approve_plan(conn, plan_id, principal=principal, if_match=_need(if_match),
                                 comment=body.comment)
    _etag(response, result["plan"])
    return result


@router.post("/plans/{plan_id}/return", response_model=PlanPublic,
             summary="Send a submitted plan back to the planner with comments")
def return_plan(plan_id: PlanId, body: ReturnComment, conn: Conn, principal: Anyone,
                response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    return _etag(response, plan_review.return_plan(
        conn, plan_id, principal=principal, if_match=_need(if_match), comment=body.comment))


@router.post("/plans/{plan_id}/activate", response_model=ActivationPublic,
             summary="Activate an approved plan as a new boundary version (now or scheduled), "
                     "with its staffing and open work")
def activate_plan(plan_id: PlanId, body: Activate, conn: Conn, principal: Writer,
                  response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    result = redraw.activate_plan(
        conn, plan_id, principal=principal, if_match=_need(if_match),
        effective_at=body.effective_at, reroute_open_incidents=body.reroute_open_incidents)
    _etag(response, result["plan"])
    return result


@router.get("/plans/{plan_id}/export.gpkg", response_class=Response,
            responses={200: {"content": {GEOPACKAGE: {}}}},
            summary="The plan's grids (layer plan_grids) and context as a GeoPackage")
def export_plan(plan_id: PlanId, conn: Conn, principal: Reader) -> Response:
    with tempfile.TemporaryDirectory() as tmp:
        path = FilePath(tmp) / f"plan-{plan_id}.gpkg"
        plan_io.export_plan(conn, plan_id, path, principal=principal)
        content = path.read_bytes()
    return Response(content, media_type=GEOPACKAGE, headers={
        "Content-Disposition": f'attachment; filename="plan-{plan_id}.gpkg"'})


@router.get("/boundaries/versions", response_model=VersionList)
def list_versions(conn: Conn, principal: Reader) -> dict[str, Any]:
    return {"items": plan_history.versions(conn, principal=principal)}


@router.get("/boundaries/diff", response_model=BoundaryDiff,
            summary="GeoJSON of the grids that differ between two versions")
def diff_versions(
    conn: Conn, principal: Reader,
    region: Annotated[str, Query(max_length=15, description="Street or community code")],
    from_version: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
    to_version: Annotated[int | None, Query(alias="to", ge=1, le=2**31 - 1,
                                            description="Default: the boundaries now")] = None,
) -> plan_history.Diff:
    return plan_history.diff(conn, region=region, from_version=from_version,
                             to_version=to_version, principal=principal)



# ---- undo and redo, import into a draft (issue 19) -------------------------------------------


@router.post("/plans/{plan_id}/undo", response_model=PlanPublic,
             summary="Undo the newest edit in force (If-Match); it goes on the redo stack")
def undo_edit(plan_id: PlanId, conn: Conn, principal: Writer, response: Response,
              if_match: IfMatch = None) -> dict[str, Any]:
    return _etag(response, plan_undo.undo(conn, plan_id, principal=principal,
                                          if_match=_need(if_match)))


@router.post("/plans/{plan_id}/redo", response_model=PlanPublic,
             summary="Redo the most recently undone edit (If-Match); a new edit clears the stack")
def redo_edit(plan_id: PlanId, conn: Conn, principal: Writer, response: Response,
              if_match: IfMatch = None) -> dict[str, Any]:
    return _etag(response, plan_undo.redo(conn, plan_id, principal=principal,
                                          if_match=_need(if_match)))


@router.post("/plans/{plan_id}/import", response_model=PlanPublic,
             summary="Make the draft's grids those of a GeoPackage (one edit, undoable)")
def import_into_plan(plan_id: PlanId, conn: Conn, principal: Writer, response: Response,
                     request: Request,
                     file: Annotated[UploadFile, File(description="A .gpkg, e.g. the plan's "
                                                                  "export edited in QGIS")],
                     if_match: IfMatch = None) -> dict[str, Any]:
    need = _need(if_match)
    with tempfile.TemporaryDirectory() as tmp:
        path = FilePath(tmp) / "upload.gpkg"
        path.write_bytes(file.file.read())
        plan = plan_io.import_into(conn, plan_id, path, principal=principal, if_match=need,
                                   limits=request.app.state.settings.upload.limits(),
                                   filename=FilePath(file.filename or "upload.gpkg").name)
    return _etag(response, plan)
