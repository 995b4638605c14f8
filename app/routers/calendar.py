"""The workday calendar: one year's holidays and make-up workdays, and the city's office hours.
Thin: the work is in ``layers.incidents.calendar``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi import Path as FPath
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from grids.access import Permission, Principal
from layers.incidents import calendar

router = APIRouter(prefix="/calendar", tags=["calendar"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              422: {"model": ErrorPublic}})
Reader = Annotated[Principal, Depends(require(Permission.INCIDENTS_READ))]
Editor = Annotated[Principal, Depends(require(Permission.CATALOGUE_WRITE))]
Year = Annotated[int, FPath(ge=2000, le=2100)]
Period = Annotated[list[Annotated[str, Field(max_length=5)]], Field(min_length=2, max_length=2)]


class CalendarDay(BaseModel):
    date: date
    kind: Literal["holiday", "workday"]
    name: str


class CalendarPublic(BaseModel):
    year: int
    office_hours: list[list[str]] = Field(description="Office periods of a workday, local time")
    workdays: int = Field(description="Workdays in the year (Mon–Fri unless a row says otherwise)")
    days: list[CalendarDay] = Field(description="The days that break the Mon–Fri rule")


class CalendarDayIn(BaseModel):
    # Plain text here: the domain checks every row and lists every bad one at once.
    date: str = Field(max_length=20, examples=["2026-10-01"])
    kind: str = Field(max_length=20, examples=["holiday"])
    name: str = Field("", max_length=200)


class CalendarSave(BaseModel):
    days: list[CalendarDayIn] = Field(max_length=366)
    office_hours: list[Period] | None = Field(
        None, max_length=6, examples=[[["08:30", "12:00"], ["13:30", "17:30"]]],
        description="Also replace the city's office hours (all years)")


@router.get("/{year}", summary="A year's workday calendar and the office hours")
def get_year(conn: Conn, principal: Reader, year: Year) -> CalendarPublic:
    return CalendarPublic.model_validate(calendar.read_year(conn, year, principal=principal))


@router.put("/{year}", summary="Replace a year's holidays and make-up workdays (all or nothing)")
def put_year(conn: Conn, principal: Editor, year: Year, body: CalendarSave) -> CalendarPublic:
    return CalendarPublic.model_validate(calendar.replace_year(
        conn, year, [d.model_dump() for d in body.days], office_hours=body.office_hours,
        principal=principal))
