"""Request dependencies: the unit of work, and the small query groups routers share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Connection, text

from app.auth import UNSAFE, current_principal, optional_principal
from app.db import set_actor
from app.replicas import read_connection, trace_of
from app.schemas import IsoDateTime
from app.settings import Settings
from grids.access import Principal


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_conn(request: Request) -> Iterator[Connection]:
    """One transaction per request: domain code writes, the request commits (or rolls back).

    Writes are attributed in the audit log to the caller and their address. After a request
    that changed boundaries, staff, assignments or users commits, this worker reloads its locator
    and user directory at once, so its own next request sees the change (other workers follow
    via NOTIFY within a second). With standbys configured (app/replicas.py), a write notes the
    primary's WAL position after its commit, so the caller's next reads wait for a standby that
    has replayed it.
    """
    unsafe = request.method in UNSAFE
    trace = trace_of(request.scope)
    if trace is not None:
        trace.read = "primary"
    wrote = False
    with request.app.state.engine.connect() as conn:
        with conn.begin():
            if unsafe:
                principal = current_principal(request)
                auth = request.app.state.auth
                set_actor(conn, principal.name if principal else "anonymous",
                          auth.client_ip(request), key=auth.audit_key)
            yield conn
            if unsafe:
                # Set by the NOTIFY triggers (migration 0004): only changes to what the locator
                # and the user directory hold need a reload, not every incident.
                wrote = conn.execute(text(
                    "SELECT coalesce(current_setting('citygrid.changed', true), '') = 'true'"
                )).scalar()
        if unsafe and trace is not None and trace.replicated:
            trace.write_lsn = conn.execute(text(
                "SELECT pg_current_wal_insert_lsn()::text")).scalar_one()
            conn.rollback()
    if wrote:
        refresh_after_write(request.app)


def get_read_conn(request: Request) -> Iterator[Connection]:
    """A heavy read's transaction: on a standby fit for it, else as :func:`get_conn` does
    (app/replicas.py). Writes never come here: an unsafe request gets the primary. Where
    ``get_conn`` is overridden (the tests' shared transaction), the override serves reads too."""
    override = request.app.dependency_overrides.get(get_conn)
    if override is not None:
        yield from override(request)
        return
    yield from read_connection(request, get_conn)


def refresh_after_write(app) -> None:
    app.state.locator.reload()
    with app.state.engine.connect() as conn:
        app.state.directory.reload(conn)


# scope="function": the transaction ends (commits or fails) before the response is sent. FastAPI's
# default for yield dependencies ends it after, which lets a client read the old state right after
# a 200, or be told 200 for a commit that then fails (tests/app/test_unit_of_work.py).
Conn = Annotated[Connection, Depends(get_conn, scope="function")]
# The heavy GETs: a standby when one is fit (app/replicas.py), else the primary.
ReadConn = Annotated[Connection, Depends(get_read_conn, scope="function")]
CurrentPrincipal = Annotated[Principal | None, Depends(optional_principal)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


@dataclass
class Paging:
    """``limit``/``offset`` paging, capped by the API settings."""

    limit: int
    offset: int


async def paging(
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=100_000, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")] = 0,
) -> Paging:
    return Paging(limit=min(limit, settings.api.page_size_max), offset=offset)


async def as_of(
    at: Annotated[
        IsoDateTime | None,
        Query(description="Answer as of this time (ISO 8601, with offset); default now"),
    ] = None,
) -> datetime | None:
    return at


PageParams = Annotated[Paging, Depends(paging)]
AsOf = Annotated[datetime | None, Depends(as_of)]
