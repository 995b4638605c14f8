"""Every JSON route declares what it answers (issue 15, "API results become TypedDicts or models
instead of functions returning dict[str, Any]").

The app's routes are walked (included routers too). A route that answers JSON through FastAPI's
serialisation must have a response model that is not an untyped mapping (``dict``,
``dict[str, Any]``, ``Any``, or a list of those). Routes that build their own ``Response`` (files,
streams, redirects, pre-encoded bodies, 204s) have no body model to declare; each of them is in
:data:`NOT_JSON` with the reason, so a new untyped route fails here until it gets a model or a
reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, get_args, get_origin, get_type_hints

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

from app.main import create_app
from app.settings import Settings

# (method, path) → why the route has no response model. Keep each reason true.
NOT_JSON: dict[tuple[str, str], str] = {
    # health: a JSONResponse built by hand so that "down" can answer 503 with the same body
    ("GET", "/health"): "JSONResponse with its own status code (app/health.py)",
    ("POST", "/auth/logout"): "204, no body",
    ("POST", "/locate/batch"): "a stream (NDJSON or CSV)",
    ("GET", "/incidents/export.{fmt}"): "a file (CSV or XLSX)",
    ("GET", "/tiles/{layer}/{z}/{x}/{y}.mvt"): "a vector tile (protobuf)",
    ("GET", "/assessment.xlsx"): "a workbook",
    ("DELETE", "/plans/{plan_id}"): "204, no body",
    ("GET", "/plans/{plan_id}/export.gpkg"): "a GeoPackage file",
    ("GET", "/ogc/collections/{collectionId}/items"):
        "GeoJSON or HTML by content negotiation, encoded by the route (OGC API Features)",
    ("GET", "/ogc/collections/{collectionId}/items/{featureId}"):
        "GeoJSON or HTML by content negotiation, encoded by the route (OGC API Features)",
    ("GET", "/portal/outlines"): "GeoJSON bytes built and cached by the domain code",
    ("GET", "/portal/events"): "a stream (server-sent events)",
    ("DELETE", "/desk/views/{view_id}"): "204, no body",
    ("GET", "/field/photos/{sha}"): "a photo file",
    ("GET", "/field/photos/{sha}/thumb"): "a thumbnail file",
    ("GET", "/analysis/scores.xlsx"): "a workbook",
    ("GET", "/analysis/packs/{pack_id}/{kind}"): "a pack file (HTML, XLSX or PDF)",
    ("GET", "/"): "the portal page (HTML file)",
    ("GET", "/portal"): "the portal page (HTML file)",
    ("GET", "/planner"): "the planner page (HTML file)",
    ("GET", "/worker"): "a redirect to /worker/",
    ("GET", "/worker/"): "the phone page (HTML file)",
    ("GET", "/worker/sw.js"): "the service worker (JavaScript file)",
}


def _routes(routes: Any) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)


def _untyped(model: Any) -> bool:
    """``None``, ``Any``, ``dict``, ``dict[str, Any]``, or a list of one of these."""
    if model is None or model is Any or model is dict:
        return True
    origin = get_origin(model)
    if origin is dict:
        return get_args(model)[1] is Any
    if origin is list:
        return _untyped(get_args(model)[0])
    return False


def _builds_its_response(route: APIRoute) -> bool:
    """Does the route hand back a Response of its own (not JSON through the model)?"""
    cls = route.response_class
    cls = cls.value if isinstance(cls, DefaultPlaceholder) else cls
    try:
        returns = get_type_hints(route.endpoint).get("return", inspect.Signature.empty)
    except NameError:  # an annotation imported only for type checking: not a Response class
        returns = None
    own = inspect.isclass(returns) and issubclass(returns, Response)
    return own or not (inspect.isclass(cls) and issubclass(cls, JSONResponse))


def _keys(route: APIRoute) -> list[tuple[str, str]]:
    return [(m, route.path) for m in sorted(route.methods)]


def test_every_json_route_has_a_typed_response_model(settings: Settings) -> None:
    app: FastAPI = create_app(settings)
    routes = list(_routes(app.routes))
    assert len(routes) > 100  # the walk found the included routers
    untyped = [k for r in routes if _untyped(r.response_model) for k in _keys(r)
               if k not in NOT_JSON]
    assert not untyped, f"JSON routes without a typed response model: {untyped}"
    # The allow-list names only routes that exist, have no model, and build their own response
    # (a route that gets a model, or starts answering JSON, leaves the list).
    by_key = {k: r for r in routes for k in _keys(r)}
    assert not set(NOT_JSON) - set(by_key), "NOT_JSON names routes that no longer exist"
    typed = [k for k in NOT_JSON if not _untyped(by_key[k].response_model)]
    assert not typed, f"these have a response model now; drop them from NOT_JSON: {typed}"
    json_ones = [k for k in NOT_JSON if not _builds_its_response(by_key[k])]
    assert not json_ones, f"these answer JSON through FastAPI; give them a model: {json_ones}"


def test_the_check_sees_an_untyped_route(settings: Settings) -> None:
    """The walk and the check catch what they are for: a route returning dict[str, Any]."""
    app = create_app(settings)

    @app.get("/h15-untyped")
    def untyped() -> dict[str, Any]:
        return {}

    @app.get("/h15-file", response_class=Response)
    def file() -> Response:
        return Response(b"")

    routes = {r.path: r for r in _routes(app.routes)}
    assert _untyped(routes["/h15-untyped"].response_model)
    assert not _builds_its_response(routes["/h15-untyped"])
    assert _builds_its_response(routes["/h15-file"])
    assert not _untyped(routes["/analysis/month"].response_model)
    assert _untyped(list[dict[str, Any]]) and not _untyped(list[int])
