"""Data the portal needs beyond the other routers: outlines by view and zoom, live incidents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.auth import require
from app.deps import Conn
from app.schemas import ErrorPublic
from gis.validate import parse_bbox
from grids import outlines as outline_domain
from grids.access import Permission, Principal
from layers import live

router = APIRouter(prefix="/portal", tags=["portal"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic},
                              422: {"model": ErrorPublic}})
RegionReader = Annotated[Principal, Depends(require(Permission.REGIONS_READ))]
IncidentReader = Annotated[Principal, Depends(require(Permission.INCIDENTS_READ))]
# A stream with nothing to say still sends a comment this often (proxies drop idle connections).
KEEPALIVE_S = 15.0
# Even without a NOTIFY (listener reconnecting), a stream asks again this often.
SAFETY_POLL_S = 10.0
# Streams end after max_s (default 120 s) and the browser reconnects at once with Last-Event-ID:
# a server shutting down then waits at most that long for its open streams.


def _bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    return None if bbox is None else parse_bbox(bbox)


@router.get("/outlines", response_class=Response,
            summary="Region outlines in a view, level and simplification chosen by zoom (GeoJSON)",
            responses={200: {"content": {"application/geo+json": {}}}})
def get_outlines(
    conn: Conn, principal: RegionReader,
    zoom: Annotated[float, Query(ge=0, le=22, description="The map's zoom")],
    bbox: Annotated[str | None, Query(max_length=120,
                                      description="minlon,minlat,maxlon,maxlat (EPSG:4326)")]
    = None,
    level: Annotated[Literal["street", "community", "grid"] | None,
                     Query(description="Default: by zoom (street < 13 ≤ community < 14 ≤ grid)")]
    = None,
    parent: Annotated[str | None, Query(pattern=r"^[0-9]{6,15}$")] = None,
) -> Response:
    body = outline_domain.outlines(conn, scope=principal.scope, zoom=zoom, bbox=_bbox(bbox),
                                   level=level, parent=parent)
    return Response(orjson.dumps(body), media_type="application/geo+json",
                    headers={"Cache-Control": "private, no-cache"})


def _event(name: str, data: object, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return (head + f"event: {name}\ndata: ").encode() + orjson.dumps(data) + b"\n\n"


@router.get("/events", response_class=StreamingResponse,
            summary="New incidents in your jurisdiction as server-sent events",
            responses={200: {"content": {"text/event-stream": {}}}})
async def get_events(
    request: Request, principal: IncidentReader,
    after: Annotated[int | None, Query(ge=0, le=2**62,
                                       description="Send incidents with a higher id (default: "
                                                   "from now on)")] = None,
    max_s: Annotated[float, Query(ge=0, le=3600, description="Close the stream after this "
                                                             "many seconds (the browser "
                                                             "reconnects)")] = 120,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """``event: hello`` with the cursor, then one ``event: incident`` per new case (``id:`` is
    the incident id, so a reconnecting EventSource resumes where it stopped), or
    ``event: reload`` when more than a batch arrived at once (reload the list)."""
    engine = request.app.state.engine
    hub: live.LiveHub | None = getattr(request.app.state, "portal_live", None)
    if hub is None:
        hub = request.app.state.portal_live = live.LiveHub(engine)
    if after is None and last_event_id and last_event_id.isdigit():
        after = int(last_event_id)

    def latest() -> int:
        with engine.connect() as conn:
            return live.latest_id(conn)

    cursor = after if after is not None else await run_in_threadpool(latest)

    def fetch(cursor: int, seen: set[int] | None) -> tuple[live.Batch, int, set[int]]:
        with engine.connect() as conn:
            if seen is None:  # what was there when the stream started is not news
                seen = live.seen_ids(conn, principal=principal, after_id=cursor)
            batch = live.new_incidents(conn, principal=principal, after_id=cursor, seen=seen)
            if batch.overflow:
                cursor = live.latest_id(conn)
                seen = live.seen_ids(conn, principal=principal, after_id=cursor)
            return batch, cursor, seen

    async def stream() -> AsyncIterator[bytes]:
        nonlocal cursor
        wake, unsubscribe = hub.subscribe()
        seen: set[int] | None = None
        deadline = time.monotonic() + max_s
        try:
            # The hello carries the cursor as its id, so a reconnecting browser resumes from it
            # (Last-Event-ID) even if no incident was sent on this stream.
            yield b"retry: 3000\n" + _event("hello", {"after": cursor, "listening": hub.connected},
                                             cursor)
            while time.monotonic() < deadline and not await request.is_disconnected():
                wake.clear()
                batch, cursor, known = await run_in_threadpool(fetch, cursor, seen)
                if batch.overflow:  # a bulk import: skip ahead, the page reloads its list
                    yield _event("reload", {"after": cursor}, cursor)
                for item in batch.items:
                    known.add(item["id"])
                    cursor = max(cursor, item["id"])
                    yield _event("incident", item, item["id"])
                seen = {i for i in known if i > cursor - live.LOOKBACK_IDS}
                if batch.items:
                    continue  # there may be more
                waited = 0.0
                while waited < SAFETY_POLL_S and time.monotonic() < deadline:
                    step = min(KEEPALIVE_S, SAFETY_POLL_S - waited, deadline - time.monotonic())
                    try:
                        await asyncio.wait_for(wake.wait(), timeout=max(step, 0))
                        break
                    except TimeoutError:
                        waited += step
                        yield b": keepalive\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
