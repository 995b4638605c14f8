"""The crosswalk a plan's activation recorded: old grid codes to new, as shares of area
(issue 19). Read like the plans routes (``plans:read``, the plan's region in the caller's
jurisdiction, else 404). Thin: the work is in ``grids.plans.crosswalk``."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from grids.access import Permission, Principal
from grids.plans import crosswalk

router = APIRouter(tags=["plans"], responses={
    401: {"model": ErrorPublic}, 403: {"model": ErrorPublic}, 404: {"model": ErrorPublic},
    422: {"model": ErrorPublic}})
Reader = Annotated[Principal, Depends(require(Permission.PLANS_READ))]
PlanId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class CrosswalkRow(BaseModel):
    version: int
    effective_at: str
    old_code: str
    new_code: str | None = Field(description="None: the remainder, outside every new grid")
    change: str
    old_area_m2: float
    area_m2: float
    area_share: float
    household_share: float | None


class CrosswalkPublic(BaseModel):
    plan: int
    status: str
    columns: list[str]
    rows: list[CrosswalkRow]
    today: dict[str, dict[str, float]] = Field(
        description="Each old code composed onto the grids in force now (key '' = remainder)")
    notes: list[str]


# JSON by the model; with format=csv the route answers a file (a Response passes the model by).
@router.get("/plans/{plan_id}/crosswalk", response_model=CrosswalkPublic,
            summary="Which old grid's area went to which new grid at the plan's activation "
            "(JSON, or CSV with format=csv)",
            responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
def plan_crosswalk(plan_id: PlanId, conn: Conn, principal: Reader,
                   format: Annotated[Literal["json", "csv"], Query()] = "json"
                   ) -> crosswalk.PlanCrosswalk | Response:
    res = crosswalk.of_plan(conn, plan_id, principal=principal)
    if format == "json":
        return res
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(res["columns"])
    for r in res["rows"]:
        row: dict[str, object] = dict(r)
        out.writerow(["" if row[c] is None else row[c] for c in res["columns"]])
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="plan-{plan_id}-crosswalk.csv"'})
