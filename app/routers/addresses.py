"""The standard address book: forgiving search, import, one address (``grids.addresses``).

Search and reads need ``locate`` (what a dispatcher uses to find who is responsible) and are cut
to the caller's locate scope: city-wide for the command centre's dispatchers, the jurisdiction
for everyone else. Import needs ``addresses:write`` (admins, planners) and writes only rows
inside the caller's jurisdiction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from pydantic import BaseModel, Field

from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from grids import addresses
from grids.access import Permission, Principal

router = APIRouter(prefix="/addresses", tags=["addresses"], responses={
    401: {"model": ErrorPublic}, 403: {"model": ErrorPublic}, 404: {"model": ErrorPublic},
    422: {"model": ErrorPublic}})
Reader = Annotated[Principal, Depends(require(Permission.LOCATE))]
Writer = Annotated[Principal, Depends(require(Permission.ADDRESSES_WRITE))]


class AddressPublic(BaseModel):
    id: int
    text: str = Field(description="The address as the book writes it")
    code: str | None = Field(description="The book's address code, if it has one")
    grid_code: str | None = Field(description="The grid the point falls in (or the smallest "
                                              "region covering it, 属地兜底)")
    grid_name: str | None
    grid_level: str | None
    lon: float = Field(description="CGCS2000 (EPSG:4490) longitude")
    lat: float


class Candidate(AddressPublic):
    confidence: float = Field(ge=0, le=1, description="How sure the match is, 0–1")


class SearchPublic(BaseModel):
    query: str
    normalised: str = Field(description="The query as matched (gis.address_text.normalise)")
    candidates: list[Candidate]


class AddressDetail(AddressPublic):
    key: str
    norm: str
    valid_from: datetime
    valid_to: datetime | None


class ImportSummary(BaseModel):
    added: int
    changed: int
    unchanged: int
    ended: int
    total: int
    crs: str = Field(description="The CRS the coordinates were read in")


@router.get("/search", response_model=SearchPublic,
            summary="Standard addresses matching what a caller said, best first, with confidence")
def search_addresses(conn: Conn, principal: Reader,
                     q: Annotated[str, Query(min_length=1, max_length=200,
                                             description="The address as typed")],
                     limit: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
    return addresses.search(conn, q, principal=principal, limit=limit)


@router.post("/import", response_model=ImportSummary,
             summary="Import a CSV/XLSX address book (all or nothing; a new version)")
def import_addresses(conn: Conn, principal: Writer, request: Request,
                     file: Annotated[UploadFile, File(description=(
                         ".csv or .xlsx with columns address, lon, lat (or x, y), optional code"))],
                     crs: Annotated[str, Form(max_length=100)] = "EPSG:4490",
                     mode: Annotated[Literal["replace", "merge"], Form(description=(
                         "replace: end rows in your jurisdiction the file no longer holds; "
                         "merge: add and update only"))] = "replace") -> dict[str, Any]:
    return addresses.import_file(
        conn, file.file.read(), file.filename or "upload.csv", principal=principal, crs=crs,
        mode=mode, limits=request.app.state.settings.upload.limits(),
        snapshot=request.app.state.locator.snapshot)


@router.get("/{address_id}", response_model=AddressDetail, summary="One address (any version)")
def get_address(conn: Conn, principal: Reader,
                address_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict[str, Any]:
    return addresses.get(conn, address_id, principal=principal)
