"""The FastAPI application factory."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import errors, health, openapi_security
from app.auth import Authenticator, Directory, install_log_redaction
from app.backpressure import InFlightLimit, size_thread_pool
from app.coverage_worker import CoverageWorker
from app.db import make_engine
from app.hotpath import HotPath
from app.input_guard import InputGuard
from app.limits import BodySizeLimit
from app.locator_service import LocatorService
from app.plan_worker import PlanWorker
from app.replicas import MAP_TABLES, ReadRouting, Replicas
from app.routers import (
    access,
    addresses,
    analysis,
    calendar,
    callup,
    crosswalk,
    desk,
    field,
    incidents,
    locate,
    maps,
    ogc,
    open311,
    patrols,
    plans,
    portal_data,
    regions,
    staffing,
)
from app.settings import Settings, get_settings
from grids.access import Permission
from layers.maps import TILE_CACHE
from map_ui import portal

log = logging.getLogger("citygrid")
# Bulk endpoints that may carry large bodies (everything else is capped lower).
BULK_PATHS = ("/locate/batch", "/incidents/bulk", "/patrols/fixes", "/plans/import",
              "/field/photos", "/addresses/import")  # photos: their own size limit (PhotoSettings)
BULK_PATTERNS = (re.compile(r"/plans/[0-9]+/import"),)  # a GeoPackage into an open plan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(settings.db)
        size_thread_pool(settings.api.max_in_flight or settings.db.pool_size)
        service = LocatorService(app.state.engine, raster=settings.api.batch_raster,
                                 snapshot_dir=settings.api.locator_snapshot_dir)
        app.state.locator = service
        service.subscribe({"app_user", "api_key", "assignment", "auth_session_revoked"},
                          app.state.directory.reload)
        # Cached map tiles go when the incidents or boundaries under them change.
        service.subscribe({"incident", "region", "region_boundary", "boundary_version",
                           "patrol_grid_cover"}, TILE_CACHE.invalidate)
        app.state.coverage_worker = CoverageWorker(
            app.state.engine, interval_s=settings.api.coverage_refresh_s)
        app.state.plan_worker = PlanWorker(app.state.engine, interval_s=settings.api.plan_work_s)
        try:
            service.reload()
            with app.state.engine.connect() as conn:
                app.state.directory.reload(conn)
        except Exception:  # logged; serve errors, not a dead process, until the DB is up
            log.exception("could not load the city at start; retrying in the background")
        service.start()
        app.state.coverage_worker.start()
        app.state.plan_worker.start()
        try:
            yield
        finally:
            app.state.plan_worker.stop()
            app.state.coverage_worker.stop()
            service.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="CityGrid",
        version="0.1.0",
        summary="Grid management for city social governance: who is responsible here?",
        lifespan=lifespan,
        responses=errors.responses(*errors.COMMON),  # what any route may answer (app.errors)
        # No OpenTelemetry export (closed networks); saying so also spares every request the
        # provider lookups FastAPI makes to find out.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.directory = Directory()
    app.state.auth = Authenticator(settings.auth, app.state.directory,
                                   production=settings.api.mode == "production")
    errors.install(app)
    # Heavy reads on standbys (app/replicas.py): the innermost middleware, so a read a standby
    # failed runs again on the primary within the same in-flight slot; /locate never sees it.
    app.state.replicas = Replicas(settings.replicas, settings.db)
    app.add_middleware(ReadRouting, replicas=app.state.replicas,
                       echo={MAP_TABLES: TILE_CACHE.invalidate})
    # Back-pressure: at most max_in_flight requests use the database at once, then a fast 503
    # (app/backpressure.py). Added before HotPath, so it sits inside it: /locate never waits.
    app.add_middleware(InFlightLimit, limit=settings.api.max_in_flight or settings.db.pool_size,
                       queue_max=settings.api.queue_max, queue_wait_s=settings.api.queue_wait_s,
                       retry_after_s=settings.api.retry_after_s)
    install_log_redaction()  # API keys sent as ?api_key= are not written to the access log
    # /locate is answered before the router (the innermost user middleware: limits and CORS still
    # wrap it); its route below stays declared for the docs and the permission table.
    app.add_middleware(HotPath, routes={"/locate": (Permission.LOCATE, locate.locate)})
    app.add_middleware(InputGuard,  # control characters in paths, queries, bodies: one 422
                       renderers={"/open311/": lambda e: open311.failure_of(e).response()})
    app.add_middleware(BodySizeLimit, default=settings.auth.max_body_bytes,
                       bulk=settings.auth.max_batch_bytes, bulk_paths=BULK_PATHS,
                       bulk_patterns=BULK_PATTERNS)
    if settings.api.cors_origins:  # closed unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["authorization", "content-type", "x-csrf-token",
                                          "x-api-key"], allow_credentials=True)

    # The hot path first: routes are matched in order, and /locate should not wait on others.
    app.include_router(locate.hot_router)

    app.add_api_route("/health", health.health, tags=["meta"], methods=["GET"],
                      summary="ok, degraded (database or locator away) or down (app.health)")

    app.include_router(access.router)
    app.include_router(locate.router)
    app.include_router(regions.router)
    app.include_router(staffing.router)
    app.include_router(incidents.router)
    app.include_router(maps.router)
    app.include_router(patrols.router)
    app.include_router(open311.router)
    app.include_router(open311.discovery_router)
    app.include_router(plans.router)
    app.include_router(crosswalk.router)  # a plan's crosswalk, old codes to new (issue 19)
    app.include_router(ogc.router)
    app.include_router(portal_data.router)
    app.include_router(desk.router)  # the dispatch desk (layers/dispatch)
    app.include_router(field.router)  # the grid worker's phone (/worker)
    app.include_router(analysis.router)
    app.include_router(addresses.router)  # the standard address book (grids/addresses)
    app.include_router(calendar.router)  # the workday calendar (layers/incidents/calendar)
    app.include_router(callup.router)  # call-ups for emergencies and events (layers/dispatch)
    portal.mount(app)  # the Leaflet portal: /, /portal, /portal/config.json, /portal/static
    openapi_security.install(app)  # bearer, API key, session: /docs' Authorize button
    return app
