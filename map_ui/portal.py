"""The Leaflet portal: one static page served by the API, with vendored assets only.

The page itself is public (it holds no data); every data call it makes carries the portal session
cookie and goes through the API's own permission checks. Nothing is loaded from outside the API
unless an operator configures a base map (``CITYGRID_BASEMAP_URL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from app.deps import Conn
from app.settings import PortalSettings
from grids.city import profile

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
# The (method, path) pairs that need no login: the page and its settings hold no city data.
PUBLIC_ROUTES = {("GET", "/"), ("GET", "/portal"), ("GET", "/portal/config.json"),
                 ("GET", "/planner"), ("GET", "/worker"), ("GET", "/worker/"),
                 ("GET", "/worker/sw.js")}
WORKER = STATIC / "worker"


class BaseMap(BaseModel):
    url: str
    crs: Literal["WGS84", "GCJ02"]


class CityView(BaseModel):
    """The city the database serves and the map's first view (from its extent)."""

    code: str | None = None
    name: str | None = None
    tz: str | None = None
    center: list[float] | None = None  # [lat, lon]
    zoom: int | None = None
    bounds: list[list[float]] | None = None  # [[south, west], [north, east]]


class PortalConfig(BaseModel):
    base_map: BaseMap | None
    city: CityView | None = None


def portal_config(source: PortalSettings | Mapping[str, str] | None = None) -> PortalConfig:
    """The portal's settings: ``CITYGRID_BASEMAP_URL`` / ``CITYGRID_BASEMAP_CRS`` as the app's
    settings read them (the environment, then ``.env``: app/settings.py), or from a mapping.

    No URL means no external tiles: the page draws the city's own outlines on a plain background.

    >>> portal_config({}).base_map is None
    True
    >>> portal_config({"CITYGRID_BASEMAP_URL": "https://t/{z}/{x}/{y}.png",
    ...                "CITYGRID_BASEMAP_CRS": "gcj02"}).base_map.crs
    'GCJ02'
    """
    if source is None:
        source = PortalSettings()
    elif isinstance(source, Mapping):
        source = PortalSettings(basemap_url=source.get("CITYGRID_BASEMAP_URL"),
                                # any spelling: the validator normalises it (gcj-02 -> GCJ02)
                                basemap_crs=source.get("CITYGRID_BASEMAP_CRS") or "WGS84")  # type: ignore[arg-type]
    if not source.basemap_url:
        return PortalConfig(base_map=None)
    return PortalConfig(base_map=BaseMap(url=source.basemap_url, crs=source.basemap_crs))


def mount(app: FastAPI) -> None:
    """Serve the portal on ``app``: ``/`` and ``/portal`` (the page), its config and assets."""
    # The app's settings (environment and .env), read once: a bad setting fails at start.
    settings = getattr(app.state, "settings", None)
    config = portal_config(settings.portal if settings is not None else None)

    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", page, methods=["GET"], tags=["portal"], include_in_schema=False)
    app.add_api_route("/portal", page, methods=["GET"], tags=["portal"], include_in_schema=False)

    async def planner_page() -> FileResponse:
        return FileResponse(STATIC / "planner.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    # The planners' editor (issue 8): its own page, same session, same vendored assets.
    app.add_api_route("/planner", planner_page, methods=["GET"], tags=["portal"],
                      include_in_schema=False)

    @app.get("/portal/config.json", response_model=PortalConfig, tags=["portal"],
             summary="Portal settings: the optional base map and the city's first view")
    def get_config(conn: Conn) -> PortalConfig:
        prof = profile(conn)
        city = CityView(code=prof.code, name=prof.name, tz=prof.tz.key, **prof.first_view())
        return config.model_copy(update={"city": city})

    mount_worker(app)
    # The more specific mount first: Starlette takes the first prefix that matches.
    app.mount("/portal/static/vendor", StaticFiles(directory=VENDOR), name="portal-vendor")
    app.mount("/portal/static", StaticFiles(directory=STATIC), name="portal-static")


def mount_worker(app: FastAPI) -> None:
    """The grid worker's phone app (an installable PWA): ``/worker/`` (the page), its service
    worker at ``/worker/sw.js`` (scope ``/worker/``) and its assets under ``/worker/static``.

    The page and the service worker hold no data; every data call carries the session.
    """

    async def worker_page() -> FileResponse:
        return FileResponse(WORKER / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    async def worker_redirect() -> RedirectResponse:
        return RedirectResponse("/worker/", status_code=308)

    async def service_worker() -> FileResponse:
        # no-cache: a new version of the app reaches the phone at its next start.
        return FileResponse(WORKER / "sw.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-cache",
                                     "Service-Worker-Allowed": "/worker/"})

    app.add_api_route("/worker", worker_redirect, methods=["GET"], tags=["portal"],
                      include_in_schema=False)
    app.add_api_route("/worker/", worker_page, methods=["GET"], tags=["portal"],
                      include_in_schema=False)
    app.add_api_route("/worker/sw.js", service_worker, methods=["GET"], tags=["portal"],
                      include_in_schema=False)
    app.mount("/worker/static", StaticFiles(directory=WORKER), name="worker-static")
