"""Response models: what the API promises, validated in tests."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

Level = Literal["province", "city", "street", "community", "grid"]

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_only(value: Any) -> Any:
    """Refuse numbers where the schema says ``date-time``: pydantic's lax mode reads ``0.5`` as
    a Unix time, which the OpenAPI document does not promise (found by tests/app/test_contract.py).

    >>> _iso_only("2026-03-10T09:00:00+08:00")
    '2026-03-10T09:00:00+08:00'
    >>> _iso_only("0.5")
    Traceback (most recent call last):
    ValueError: expected an ISO 8601 date-time, not a number
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            or isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected an ISO 8601 date-time, not a number")
    return value


# A date-time as the schema says: ISO 8601 text (or a datetime), never a number.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


def _true_or_false(value: Any) -> Any:
    """A query boolean as the schema says: ``true`` or ``false``, not ``0``, ``yes`` or ``on``.

    >>> _true_or_false("false"), _true_or_false(True)
    (False, True)
    >>> _true_or_false("0")
    Traceback (most recent call last):
    ValueError: expected true or false
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("expected true or false")


QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]

# A JSON number in a result whose producer gives an integer for whole values (a sum that may be
# empty, a count divided out): ``float`` would write ``3`` as ``3.0``; this keeps what was sent.
Number = int | float


class ErrorPublic(BaseModel):
    code: str = Field(examples=["region_not_found"])
    message: str
    detail: Any = None


class ChainLink(BaseModel):
    code: str
    level: Level
    name: str


class RegionSummary(BaseModel):
    code: str
    level: Level
    name: str
    parent_code: str | None
    area_m2: float
    version_id: int
    valid_from: datetime


class RegionPublic(RegionSummary):
    geometry: dict[str, Any] | None = None
    chain: list[ChainLink]


class RegionPage(BaseModel):
    items: list[RegionSummary]
    total: int
    limit: int
    offset: int


class StaffAssignmentPublic(BaseModel):
    code: str
    name: str
    phone: str
    role: str
    status: Literal["available", "seconded", "on_leave"]
    duty: Literal["primary", "backup", "head"]
    valid_from: datetime
    valid_to: datetime | None


class PointPublic(BaseModel):
    lon: float
    lat: float
    crs_in: str = Field(description="The CRS the input was read in")
    crs_out: str = Field(description="The CRS of lon/lat here (CGCS2000)")
    input: list[float]


class RegionBrief(BaseModel):
    code: str
    level: Level
    name: str


class PersonPublic(BaseModel):
    code: str
    name: str
    phone: str
    role: str
    status: str
    duty: str
    region_code: str | None = None


class EscalationStep(RegionBrief):
    head: PersonPublic | None


class NearestPublic(RegionBrief):
    distance_m: float


class LocatePublic(BaseModel):
    point: PointPublic
    status: Literal["inside", "gap", "outside"] = Field(
        description="inside a grid; in a gap (answered by the smallest covering region); outside")
    stale: bool = Field(description="True if the database is unreachable and the answer may be old")
    region: RegionBrief | None
    grid: RegionBrief | None
    chain: list[RegionBrief]
    responsible: PersonPublic | None
    backup: PersonPublic | None
    fallback: str | None = Field(
        description="null (the grid's primary), backup, community_head, street_officer, "
                    "command_centre or none_available")
    unavailable: list[PersonPublic] = []
    escalation: list[EscalationStep]
    nearest: NearestPublic | None
    boundary_version: int | None
    as_of: str | None = None
    uncertainty: dict[str, Any] | None = Field(None, description=(
        "with detail=edges or accuracy: edge_m (metres to the grid's edge, city metric CRS), "
        "runner_up (the nearest other grid within accuracy_m, else null), accuracy_m"))
    datum_doubt: dict[str, Any] | None = Field(None, description=(
        "with detail=edges: the same numbers read as GCJ-02 (or WGS84) fall in another grid: "
        "read_as, point, grid, responsible"))
    link: dict[str, Any] | None = Field(None, description="with link=: provider, input, crs")


class RasterStatsPublic(BaseModel):
    cells: int = Field(description="Cells of the batch lookup table (0: none built)")
    cell_size: float | None = Field(None, description="Degrees; only when a table is built")
    border_share: float = Field(description="Share of cells that need the exact test")
    fine_tiles: int | None = Field(None, description="Tiles a boundary crosses (fine tables)")
    top_tiles: int | None = Field(None, description="Tiles of the coarse grid over the extent")
    bytes: int | None = Field(None, description="Memory of the lookup table")


class LocatorStatusPublic(BaseModel):
    """Freshness of this worker's in-memory locator (``GET /locate/status``)."""

    stale: bool
    reloads: int
    source: str | None = Field(None, description="Where the locator came from: sql or file "
                                                 "(the cold-start snapshot)")
    loaded_at: str | None
    boundary_version: int | None
    next_change_at: str | None
    grids: int
    raster: RasterStatsPublic | None
    failure: str | None
