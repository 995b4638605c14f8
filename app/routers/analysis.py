"""The supervisor's month: compared figures, the cases behind a figure, a grid's summary, scores,
trends, 研判 and the monthly meeting pack. Thin: the work is in ``layers.analysis``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from grids.access import Permission, Principal
from layers.analysis import month as month_view

router = APIRouter(prefix="/analysis", tags=["analysis"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})
Assessor = Annotated[Principal, Depends(require(Permission.ASSESSMENT_READ))]
Month = Annotated[str, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
OptMonth = Annotated[str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
                                       description="YYYY-MM (default: last full month)")]
Level = Literal["grid", "community", "street", "worker", "department"]
Region = Annotated[str | None, Query(max_length=15, pattern=r"^[0-9]{6,15}$")]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _xlsx(body: bytes, name: str) -> Response:
    return Response(body, media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/month", summary="The month's figures per unit, ranked, with the month before and "
            "the same month last year")
def get_month(conn: Conn, principal: Assessor, month: OptMonth = None, level: Level = "street",
              region: Region = None) -> dict[str, Any]:
    return month_view.compare(conn, principal=principal,
                              month=month or month_view.last_full_month(), level=level,
                              region=region)


@router.get("/cases", summary="The cases behind a figure of the month")
def get_cases(conn: Conn, principal: Assessor, month: Month,
              figure: Annotated[str, Query(max_length=32)],
              level: Literal["all", "grid", "community", "street", "worker", "department"]
              = "all", code: Annotated[str | None, Query(max_length=32)] = None,
              region: Region = None,
              limit: Annotated[int, Query(ge=1, le=month_view.CASE_LIMIT)] = 500
              ) -> dict[str, Any]:
    return month_view.cases(conn, principal=principal, month=month, level=level, code=code,
                            figure=figure, region=region, limit=limit)


@router.get("/grids/{code}", summary="A grid's summary: open cases, the month's figures, "
            "coverage, last patrol, worker and backup")
def get_grid_summary(conn: Conn, principal: Assessor, code: str, month: OptMonth = None
                     ) -> dict[str, Any]:
    return month_view.grid_summary(conn, principal=principal, code=code[:20], month=month)
