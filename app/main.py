"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import errors
from app.db import make_engine
from app.locator_service import LocatorService
from app.routers import locate, regions
from app.settings import Settings, get_settings

log = logging.getLogger("citygrid")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(settings.db)
        service = LocatorService(app.state.engine, raster=settings.api.batch_raster)
        app.state.locator = service
        try:
            service.reload()
        except Exception:  # noqa: BLE001 - serve errors, not a dead process, until the DB is up
            log.exception("locator could not load the city at start; retrying in the background")
        service.start()
        try:
            yield
        finally:
            service.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="CityGrid",
        version="0.1.0",
        summary="Grid management for city social governance: who is responsible here?",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(locate.router)
    app.include_router(regions.router)
    return app
