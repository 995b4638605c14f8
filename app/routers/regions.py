"""Read API of the registry: regions by level, one region, its children, its staff."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.auth import require
from app.deps import AsOf, Conn, PageParams
from app.schemas import ErrorPublic, Level, QueryBool, RegionPage, RegionPublic, StaffAssignmentPublic
from grids import registry
from grids.access import Permission, Principal

router = APIRouter(prefix="/regions", tags=["regions"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})

Code = Annotated[str, Path(description="Region code: 6/9/12-digit division code or 15-digit grid "
                                       "code", max_length=15)]
Reader = Annotated[Principal, Depends(require(Permission.REGIONS_READ))]


@router.get("", response_model=RegionPage)
def list_regions(
    conn: Conn, page: PageParams, at: AsOf, principal: Reader,
    level: Annotated[Level | None, Query(description="city, street, community or grid")] = None,
    parent: Annotated[str | None, Query(max_length=15, description="Parent code")] = None,
    q: Annotated[str | None, Query(max_length=50, description="Name contains / code starts with")]
    = None,
) -> RegionPage:
    result = registry.list_regions(conn, scope=principal.scope, level=level, parent=parent, q=q,
                                   limit=page.limit, offset=page.offset, at=at)
    return RegionPage.model_validate(asdict(result))


@router.get("/{code}", response_model=RegionPublic)
def get_region(conn: Conn, code: Code, at: AsOf, principal: Reader,
               geometry: Annotated[QueryBool, Query(description="Include the GeoJSON geometry")] = True
               ) -> RegionPublic:
    return RegionPublic.model_validate(
        registry.get_region(conn, code, scope=principal.scope, at=at, geometry=geometry))


@router.get("/{code}/children", response_model=RegionPage)
def get_children(conn: Conn, code: Code, page: PageParams, at: AsOf, principal: Reader
                 ) -> RegionPage:
    result = registry.children(conn, code, scope=principal.scope, at=at, limit=page.limit,
                               offset=page.offset)
    return RegionPage.model_validate(asdict(result))


@router.get("/{code}/staff", response_model=list[StaffAssignmentPublic])
def get_staff(conn: Conn, code: Code, at: AsOf,
              principal: Annotated[Principal, Depends(require(Permission.STAFF_READ))]
              ) -> list[StaffAssignmentPublic]:
    return [StaffAssignmentPublic.model_validate(s)
            for s in registry.region_staff(conn, code, principal=principal, at=at)]
