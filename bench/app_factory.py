"""The app under benchmark: the real :func:`app.main.create_app` on ``citygrid_bench`` plus
baseline routes that exist only here (never in the product).

- ``GET /_baseline/trivial``: ``async def`` returning a small dict: the framework's ceiling.
- ``GET /_baseline/postgis``: the same question (which grid covers lon/lat) answered by ONE
  PostGIS ``ST_Covers`` query per request, ``async def`` on a psycopg ``AsyncConnectionPool``
  (16 connections, server-side prepared statement after the first use). This was the fastest of
  the variants tried; ``/_baseline/postgis_sync`` is the same query in a plain ``def`` route on
  the app's own SQLAlchemy engine (threadpool).
- ``GET /_diag/params``: diagnostic, not a baseline: ``/locate``'s three query parameters, declared
  the same way, and a fixed body of /locate's size: what the framework alone charges for them.
- ``GET /_diag/params_auth``: the same, behind the product's own ``/locate`` auth dependency: the
  floor for ``/locate`` before any locator work.
- ``GET /_diag/locate_raw``: diagnostic: ``/locate``'s work for a point inside a grid as a plain
  Starlette route, without FastAPI's parameter model and dependency solving. It reads
  ``lon``/``lat``/``crs`` from the query string, makes the same auth checks as the product's
  dependency, takes the grid from the raster cell (the exact test only in border cells), checks
  the caller's jurisdiction, and returns the product's own bytes (``Snapshot.locate_json``, cached
  per snapshot, grid and caller) behind the same point header. Points it does not handle get a
  501 (never in the measured load, which only sends points inside grids). Bytes are compared
  with ``/locate`` before timing.
- ``GET /_baseline/trivial_end``: the trivial route again, left at the end of the route list.
- ``GET /_baseline/trivial_hot``: the trivial answer on ``/locate``'s own hot path
  (:class:`app.hotpath.HotPath`, before the router and FastAPI's exception and exit-stack
  middleware), public: what ``/locate`` would cost if its lookup and its auth were free.
- ``GET /_diag/trivial_hot_auth``: the same behind ``/locate``'s permission check (the product's
  :func:`app.auth.authorize`): the hot path's floor with authentication.

All bench routes but ``trivial_end`` are moved to just before the router that holds ``/locate``, so
that FastAPI's in-order route matching costs them what it costs ``/locate``.

- ``POST /_baseline/sink?size=N``: reads the whole body, then streams back N bytes in 1 MiB
  chunks: the HTTP transport floor for the batch benchmark.

Start with ``uvicorn --factory bench.app_factory:build``; the database URL comes from
``CITYGRID_BENCH_DATABASE_URL`` (default: the ``citygrid_bench`` database).
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import ORJSONResponse, Response, StreamingResponse
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.auth import require
from app.hotpath import HotPath
from app.limits import BodySizeLimit
from app.main import create_app
from app.routers.locate import Crs, Lat, Lon
from app.settings import DatabaseSettings, Settings
from grids.access import Permission
from grids.locate import Snapshot
from grids.point import CheckedPoint, _crs_name

GRID_AT_POINT = (
    "SELECT r.code FROM region r JOIN region_boundary b ON b.region_id = r.id "
    "WHERE r.level = 'grid' AND b.valid_from <= now() "
    "AND (b.valid_to IS NULL OR b.valid_to > now()) "
    "AND ST_Covers(b.geom, ST_SetSRID(ST_MakePoint({lon}, {lat}), 4490)) "
    "ORDER BY r.code LIMIT 1"
)
PG_SQL = GRID_AT_POINT.format(lon="%s", lat="%s")
SA_SQL = text(GRID_AT_POINT.format(lon=":lon", lat=":lat"))
Coord = Annotated[float, Query()]
# The product's auth dependency as /locate declares it (``Depends(require(Permission.LOCATE))``).
AUTH = [Depends(require(Permission.LOCATE))]


async def _authenticate(request: Request) -> Any:
    """The checks the product's /locate auth dependency makes, called directly (diagnostic)."""
    from app.auth import Unauthorized

    principal = request.app.state.auth.principal(request)
    request.state.principal = principal
    if principal is None:
        raise Unauthorized("Log in first.", detail={"field": "authorization"})
    principal.require(Permission.LOCATE)
    return principal


class _FastPath:
    """``/_diag/locate_raw``'s lookup: the grid from the batch raster's cell (the exact test only
    in border cells), the jurisdiction check, and the product's own answer bytes cached per
    snapshot, grid and caller. None when the point is not inside a grid or not the caller's."""

    def __init__(self) -> None:
        self.snap: Snapshot | None = None
        self.answers: dict[tuple[int, str | None], bytes] = {}

    def answer(self, request: Request, lon: float, lat: float, crs: str,
               principal: Any) -> Response | None:
        service = request.app.state.locator
        snap: Snapshot | None = service.snapshot
        if snap is None or crs not in ("EPSG:4326", "EPSG:4490") \
                or not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        idx = snap.grids
        raster = idx.raster
        g = -2
        if raster is not None:  # None right after a reload, until the raster is rebuilt
            fx = (lon - raster.x0) / raster.cell
            fy = (lat - raster.y0) / raster.cell
            ny, nx = raster.shape
            if not (0 <= fx < nx and 0 <= fy < ny):
                return None
            g = raster.label_one(int(fy), int(fx))
        if g == -2:
            g = idx.query_one(lon, lat)
        if g < 0:
            return None
        if principal is not None and not principal.locate_scope().covers(
                snap.regions[int(snap.grid_ids[g])].code):
            return None
        if self.snap is not snap:  # a reload: start a new cache
            self.snap, self.answers = snap, {}
        key = (g, principal.name if principal is not None else None)
        body = self.answers.get(key)
        if body is None:
            body = self.answers[key] = snap.locate_json(lon, lat, principal=principal)
        point = CheckedPoint(lon=lon, lat=lat, crs=_crs_name(crs), x=lon, y=lat)
        head = orjson.dumps({"point": point.as_dict(), "stale": service.stale})
        return Response(head[:-1] + b"," + body[1:], media_type="application/json")


def database_url() -> str:
    from bench.city import url

    return os.environ.get("CITYGRID_BENCH_DATABASE_URL", url())


def build() -> FastAPI:
    db_url = database_url()
    app = create_app(Settings(db=DatabaseSettings(database_url=db_url)))
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = AsyncConnectionPool(dsn, min_size=16, max_size=16, open=False,
                               kwargs={"prepare_threshold": 0})
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            async with inner(a):
                yield
        finally:
            await pool.close()

    app.router.lifespan_context = lifespan
    trivial_body = b'{"status":"ok"}'

    async def trivial_hot(request: Request, principal: Any) -> Response:
        return Response(trivial_body, media_type="application/json")

    for mw in app.user_middleware:
        if mw.cls is BodySizeLimit:  # the sink takes bulk bodies like /locate/batch does
            mw.kwargs["bulk_paths"] = (*mw.kwargs["bulk_paths"], "/_baseline/sink")
        if mw.cls is HotPath:  # /locate's own path, before the router
            mw.kwargs["routes"] = {**mw.kwargs["routes"],
                                   "/_baseline/trivial_hot": (None, trivial_hot),
                                   "/_diag/trivial_hot_auth": (Permission.LOCATE, trivial_hot)}

    @app.get("/_baseline/trivial", include_in_schema=False)
    async def trivial() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_baseline/postgis", include_in_schema=False)
    async def postgis(lon: Coord, lat: Coord) -> ORJSONResponse:
        async with pool.connection() as conn:
            cur = await conn.execute(PG_SQL, (lon, lat))
            row = await cur.fetchone()
        return ORJSONResponse({"grid": row[0] if row else None})

    @app.get("/_baseline/postgis_sync", include_in_schema=False)
    def postgis_sync(request: Request, lon: Coord, lat: Coord) -> ORJSONResponse:
        with request.app.state.engine.connect() as conn:
            code = conn.execute(SA_SQL, {"lon": lon, "lat": lat}).scalar()
        return ORJSONResponse({"grid": code})

    fixed_body = b'{"status":"inside",' + b'"x":"' + b"y" * 1580 + b'"}'

    @app.get("/_diag/params", include_in_schema=False)
    async def params(lon: Lon, lat: Lat, crs: Crs = "EPSG:4326") -> Response:
        return Response(fixed_body, media_type="application/json")

    @app.get("/_diag/params_auth", include_in_schema=False, dependencies=AUTH)
    async def params_auth(lon: Lon, lat: Lat, crs: Crs = "EPSG:4326") -> Response:
        return Response(fixed_body, media_type="application/json")

    fast = _FastPath()

    @app.post("/_baseline/sink", include_in_schema=False)
    async def sink(request: Request, size: int = 0) -> StreamingResponse:
        body = await request.body()
        chunk = b"x" * (1 << 20)

        def chunks() -> Iterator[bytes]:
            left = size
            while left > 0:
                yield chunk[:min(left, len(chunk))]
                left -= len(chunk)

        return StreamingResponse(chunks(), media_type="text/csv",
                                 headers={"X-Received": str(len(body))})

    async def locate_raw(request: Request) -> Response:
        q = request.query_params
        try:
            lon, lat = float(q["lon"]), float(q["lat"])
        except (KeyError, ValueError):
            return Response(b'{"code":"invalid_coordinate"}', status_code=422,
                            media_type="application/json")
        principal = await _authenticate(request)
        body = fast.answer(request, lon, lat, q.get("crs", "EPSG:4326"), principal)
        return body if body is not None else Response(
            b'{"code":"not_in_prototype"}', status_code=501, media_type="application/json")

    app.router.add_route("/_diag/locate_raw", locate_raw, methods=["GET"],
                         include_in_schema=False)

    @app.get("/_baseline/trivial_end", include_in_schema=False)
    async def trivial_end() -> dict[str, str]:
        return {"status": "ok"}

    _place_like_locate(app)
    return app


def _paths(route: Any) -> set[str]:
    inner = getattr(route, "original_router", None)
    if inner is not None:
        return {p for r in inner.routes for p in _paths(r)}
    return {getattr(route, "path", "")}


def _place_like_locate(app: FastAPI) -> None:
    """Move the bench routes to where ``/locate`` is matched, so that they pay the same routing
    cost (FastAPI matches routes in order; the product's routers come first otherwise). Only
    ``/_baseline/trivial_end`` stays last, to show what routing past every router costs."""
    routes = app.router.routes
    ours = [r for r in routes if getattr(r, "path", "").startswith(("/_baseline", "/_diag"))
            and getattr(r, "path", "") != "/_baseline/trivial_end"]
    rest = [r for r in routes if r not in ours]
    at = next((i for i, r in enumerate(rest) if "/locate" in _paths(r)), len(rest))
    routes[:] = rest[:at] + ours + rest[at:]
