"""The supervisor's month: compared figures, the cases behind a figure, a grid's summary, scores,
trends, 研判 and the monthly meeting pack. Thin: the work is in ``layers.analysis``."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as FPath
from pydantic import BaseModel, Field

from app.analysis_schemas import (
    GridSummary,
    Hotspots,
    HotspotTrend,
    MonthCases,
    MonthView,
    Pack,
    Recurring,
    Scores,
    Spikes,
    Topics,
    Trend,
)
from app.auth import require
from app.deps import Conn, ReadConn
from app.schemas import ErrorPublic
from app.settings import PackSettings, _from_env
from grids.access import Permission, Principal
from grids.city import profile
from grids.errors import RegionNotFound
from layers.analysis import month as month_view
from layers.report import prune_packs

if TYPE_CHECKING:  # for the annotations; the routes import these where they use them
    from layers.analysis import gi, recurring, topics, trends

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


@router.get("/month", response_model=MonthView, response_model_exclude_unset=True,
            summary="The month's figures per unit, ranked, with the month before and "
            "the same month last year")
def get_month(conn: ReadConn, principal: Assessor, month: OptMonth = None, level: Level = "street",
              region: Region = None,
              boundaries: Literal["then", "today"] = "then",
              p90: Annotated[bool, Query(description="also the month's 90th percentile of "
                                         "handling time (read from the closed cases)")] = False
              ) -> dict[str, Any]:
    return month_view.compare(conn, principal=principal,
                              month=month or month_view.last_full_month(profile(conn).tz),
                              level=level,
                              region=month_view.area(principal, region), boundaries=boundaries,
                              p90=p90)


@router.get("/cases", response_model=MonthCases, response_model_exclude_unset=True,
            summary="The cases behind a figure of the month")
def get_cases(conn: ReadConn, principal: Assessor, month: Month,
              figure: Annotated[str, Query(max_length=32)],
              level: Literal["all", "grid", "community", "street", "worker", "department"]
              = "all", code: Annotated[str | None, Query(max_length=32)] = None,
              region: Region = None,
              limit: Annotated[int, Query(ge=1, le=month_view.CASE_LIMIT)] = 500
              ) -> month_view.MonthCases:
    return month_view.cases(conn, principal=principal, month=month, level=level, code=code,
                            figure=figure, region=month_view.area(principal, region), limit=limit)


@router.get("/grids/{code}", response_model=GridSummary,
            response_model_exclude_unset=True, summary="A grid's summary: open cases, the month's figures, "
            "coverage, last patrol, worker and backup")
def get_grid_summary(conn: ReadConn, principal: Assessor, code: str, month: OptMonth = None
                     ) -> month_view.GridSummary:
    return month_view.grid_summary(conn, principal=principal, code=code[:20], month=month)


@router.get("/scores", response_model=Scores, response_model_exclude_unset=True,
            summary="Scores and ranks of streets and departments (rules as data)")
def get_scores(conn: ReadConn, principal: Assessor, month: Month, region: Region = None
               ) -> dict[str, Any]:
    from layers.analysis import scoring

    return scoring.scores(conn, principal=principal, month=month, region=month_view.area(principal, region))


@router.get("/scores.xlsx", response_class=Response, summary="The scores as a workbook",
            responses={200: {"content": {XLSX: {}}}})
def get_scores_xlsx(conn: ReadConn, principal: Assessor, month: Month, region: Region = None
                    ) -> Response:
    from layers.analysis import scoring

    res = scoring.scores(conn, principal=principal, month=month, region=month_view.area(principal, region))
    return _xlsx(scoring.to_xlsx(res), f"scores-{month}.xlsx")


@router.get("/trend", response_model=Trend, response_model_exclude_unset=True,
            summary="Twelve months of the jurisdiction's figures")
def get_trend(conn: ReadConn, principal: Assessor, month: Month, region: Region = None,
              boundaries: Literal["then", "today"] = "then") -> dict[str, Any]:
    from layers.analysis import crosswalk

    return crosswalk.series(conn, principal=principal, month=month, boundaries=boundaries,
                            region=month_view.area(principal, region))


@router.get("/hotspots", response_model=Hotspots | HotspotTrend,
            response_model_exclude_unset=True, summary="Getis–Ord Gi* hot and cold spots over grid counts")
def get_hotspots(conn: ReadConn, principal: Assessor, month: Month, region: Region = None,
                 category: Annotated[str | None, Query(max_length=32)] = None,
                 months: Annotated[int, Query(ge=1, le=24)] = 1,
                 geometry: Annotated[bool, Query(description="add each grid's name and, for "
                                                 "the grids shown (hot/cold, or every grid of "
                                                 "months > 1), its outline as GeoJSON")] = False
                 ) -> gi.Hotspots | gi.HotspotTrend:
    from layers.analysis import gi

    region = month_view.area(principal, region)
    res: gi.Hotspots | gi.HotspotTrend
    if months > 1:
        res = gi.trend(conn, principal=principal, month=month, months=months, region=region,
                       category=category)
    else:
        res = gi.hotspots(conn, principal=principal, month=month, region=region,
                          category=category)
    if geometry:
        gi.attach_shapes(conn, res["grids"], all_geometry=months > 1)
    return res


@router.get("/recurring", response_model=Recurring,
            response_model_exclude_unset=True, summary="Places with repeated cases (ST_ClusterDBSCAN)")
def get_recurring(conn: ReadConn, principal: Assessor, month: Month, region: Region = None,
                  days: Annotated[int, Query(ge=7, le=366)] = 90,
                  eps_m: Annotated[float, Query(gt=0, le=1000)] = 50.0,
                  min_cases: Annotated[int, Query(ge=2, le=100)] = 3,
                  by_category: bool = True) -> recurring.Recurring:
    from layers.analysis import recurring

    region = month_view.area(principal, region)
    return recurring.recurring(conn, principal=principal, month=month, region=region,
                               days=days, eps_m=eps_m, min_cases=min_cases,
                               by_category=by_category)


@router.get("/spikes", response_model=Spikes, response_model_exclude_unset=True,
            summary="Categories spiking against their own past")
def get_spikes(conn: ReadConn, principal: Assessor, month: Month, region: Region = None
               ) -> trends.Spikes:
    from layers.analysis import trends

    return trends.spikes(conn, principal=principal, month=month, region=month_view.area(principal, region))


@router.get("/topics", response_model=Topics, response_model_exclude_unset=True,
            summary="Hot topics: words of the month's descriptions (jieba)")
def get_topics(conn: ReadConn, principal: Assessor, month: Month, region: Region = None
               ) -> topics.Topics:
    from layers.analysis import topics

    return topics.topics(conn, principal=principal, month=month, region=month_view.area(principal, region))


class PackRequest(BaseModel):
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    region: str | None = Field(default=None, max_length=15, pattern=r"^[0-9]{6,15}$")
    lang: Literal["zh-CN", "en"] = "zh-CN"
    pdf: bool = True
    boundaries: Literal["then", "today"] = "then"


_PACK_FILES = {"html": ("pack.html", "text/html; charset=utf-8"), "xlsx": ("pack.xlsx", XLSX),
               "pdf": ("pack.pdf", "application/pdf")}


def pack_settings(request: Request) -> PackSettings:
    """The pack settings (from the environment, once per app; tests set their own)."""
    state = request.app.state
    if getattr(state, "pack_settings", None) is None:
        state.pack_settings = _from_env(PackSettings)()
    return state.pack_settings


Packs = Annotated[PackSettings, Depends(pack_settings)]


@router.post("/pack", response_model=Pack, response_model_exclude_unset=True,
             summary="Build the monthly meeting pack (HTML, XLSX, PDF)")
def post_pack(conn: Conn, principal: Assessor, packs: Packs, body: PackRequest
              ) -> dict[str, Any]:
    from layers.report import ReportError, build_pack

    root = Path(packs.pack_dir)
    removed = prune_packs(root, packs.pack_max_age_h * 3600, keep=packs.pack_max_count - 1)
    pack_id = uuid.uuid4().hex
    out = root / pack_id
    try:
        res = build_pack(conn, principal=principal, month=body.month,
                         region=month_view.area(principal, body.region),
                         out_dir=out, lang=body.lang, pdf=body.pdf,
                         boundaries=body.boundaries)
    except ReportError as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise RegionNotFound(str(exc), detail={"region": body.region}) from None
    (out / "owner").write_text(principal.name, encoding="utf-8")
    res["id"] = pack_id
    res["files"] = [{"kind": k, "url": f"/analysis/packs/{pack_id}/{k}", "bytes": res["bytes"][k]}
                    for k in res["files"]]
    res["pruned"] = removed
    res["expires_h"] = packs.pack_max_age_h
    return res


@router.get("/packs/{pack_id}/{kind}", response_class=Response,
            summary="A file of a pack built by the caller")
def get_pack_file(principal: Assessor, packs: Packs,
                  pack_id: Annotated[str, FPath(pattern=r"^[0-9a-f]{32}$")],
                  kind: Literal["html", "xlsx", "pdf"]) -> Response:
    out = Path(packs.pack_dir) / pack_id
    owner = out / "owner"
    name, media = _PACK_FILES[kind]
    if not owner.exists() or owner.read_text(encoding="utf-8") != principal.name \
            or not (out / name).exists():
        raise RegionNotFound("No such pack file of yours.", detail={"pack": pack_id})
    disposition = "inline" if kind != "xlsx" else "attachment"
    return Response((out / name).read_bytes(), media_type=media, headers={
        "Content-Disposition": f'{disposition}; filename="{name}"'})
