"""Staff and assignments: read within your jurisdiction, change within it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from app import errors
from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from grids import staffing
from grids.access import Permission, Principal

router = APIRouter(tags=["staff"], responses={401: {"model": ErrorPublic},
                                              403: {"model": ErrorPublic},
                                              404: {"model": ErrorPublic},
                                              422: {"model": ErrorPublic}})
StaffCode = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class StaffPublic(BaseModel):
    code: str
    name: str
    phone: str
    role: str
    status: str
    region_codes: list[str]


class StaffUpdate(BaseModel):
    status: Literal["available", "seconded", "on_leave"] | None = None
    phone: str | None = Field(None, min_length=1, max_length=32)  # the city's pattern: grids
    name: str | None = Field(None, min_length=1, max_length=100)


class AssignmentCreate(BaseModel):
    staff_code: str = Field(max_length=32)
    region_code: str = Field(max_length=15)
    duty: Literal["primary", "backup", "head"]
    valid_from: datetime | None = None


class AssignmentPublic(BaseModel):
    id: int
    staff_code: str
    region_code: str
    duty: str
    valid_from: datetime
    valid_to: datetime | None


@router.get("/staff/{code}", response_model=StaffPublic)
def get_staff(code: StaffCode, conn: Conn,
              principal: Annotated[Principal, Depends(require(Permission.STAFF_READ))]
              ) -> StaffPublic:
    return StaffPublic.model_validate(staffing.get_staff(conn, code, principal=principal))


@router.patch("/staff/{code}", response_model=StaffPublic,
              summary="Change a worker's status (e.g. on leave), phone or name")
def update_staff(code: StaffCode, body: StaffUpdate, conn: Conn,
                 principal: Annotated[Principal, Depends(require(Permission.STAFF_WRITE))]
                 ) -> StaffPublic:
    return StaffPublic.model_validate(staffing.update_staff(
        conn, code, body.model_dump(exclude_unset=True), principal=principal))


@router.post("/assignments", response_model=AssignmentPublic, status_code=201)
def create_assignment(body: AssignmentCreate, conn: Conn,
                      principal: Annotated[Principal,
                                           Depends(require(Permission.ASSIGNMENTS_WRITE))]
                      ) -> AssignmentPublic:
    return AssignmentPublic.model_validate(staffing.assign(conn, **body.model_dump(),
                                                           principal=principal))


@router.delete("/assignments/{assignment_id}", response_model=AssignmentPublic,
               summary="End an assignment now (kept in history)",
               responses=errors.responses(409))  # 409: it has already ended
def end_assignment(assignment_id: Annotated[int, Path(ge=1, le=2**31 - 1)], conn: Conn,
                   principal: Annotated[Principal,
                                        Depends(require(Permission.ASSIGNMENTS_WRITE))]
                   ) -> dict[str, Any]:
    return AssignmentPublic.model_validate(
        staffing.end_assignment(conn, assignment_id, principal=principal)).model_dump()
