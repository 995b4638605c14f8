"""Request dependencies: the unit of work, and the small query groups routers share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Connection

from app.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_conn(request: Request) -> Iterator[Connection]:
    """One transaction per request: domain code writes, the request commits (or rolls back)."""
    with request.app.state.engine.begin() as conn:
        yield conn


Conn = Annotated[Connection, Depends(get_conn)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


@dataclass
class Paging:
    """``limit``/``offset`` paging, capped by the API settings."""

    limit: int
    offset: int


def paging(
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=100_000, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")] = 0,
) -> Paging:
    return Paging(limit=min(limit, settings.api.page_size_max), offset=offset)


def as_of(
    at: Annotated[
        datetime | None,
        Query(description="Answer as of this time (ISO 8601, with offset); default now"),
    ] = None,
) -> datetime | None:
    return at


PageParams = Annotated[Paging, Depends(paging)]
AsOf = Annotated[datetime | None, Depends(as_of)]
