"""How to authenticate, in the OpenAPI document: security schemes and per-route requirements.

The app authenticates in :class:`app.auth.Authenticator` (not with FastAPI's security classes,
which would put a dependency chain on the hot path), so the document would otherwise say nothing
about credentials. :func:`install` declares them once, in ``components.securitySchemes``:

- ``bearer``: ``Authorization: Bearer <JWT>`` from ``POST /auth/token``;
- ``apiKey``: an API key in the ``X-API-Key`` header;
- ``apiKeyQuery``: the key as ``?api_key=`` (the Open311 operations, as their spec sends it);
- ``session`` (+ ``csrf``): the portal's session cookie from ``POST /auth/session``, with the
  ``X-CSRF-Token`` header on writes.

Each operation whose route declares a permission (:func:`app.auth.route_permissions`) lists the
alternatives it accepts; public routes list none. So ``/docs`` has an Authorize button and
generated clients know what to send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.auth import API_KEY_HEADER, CSRF_HEADER, SESSION_COOKIE, UNSAFE, _routes, _walk

SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token from `POST /auth/token` (username + password)."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "An API key (`cgk_…`) made by an admin with `POST /api-keys`."},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key",
                    "description": "The API key as a query parameter (the Open311 operations "
                                   "only, as GeoReport v2 sends it)."},
    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                "description": "The portal's session cookie from `POST /auth/session`."},
    "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
             "description": "With the session cookie on writes: the `csrf` value "
                            "`POST /auth/session` returned."},
}
assert SCHEMES["apiKey"]["name"].lower() == API_KEY_HEADER
assert SCHEMES["csrf"]["name"].lower() == CSRF_HEADER


def requirements(method: str, *, query_key: bool = False) -> list[dict[str, list[str]]]:
    """The alternatives (any one suffices) an authenticated operation accepts.

    >>> [sorted(r) for r in requirements("POST")]
    [['bearer'], ['apiKey'], ['csrf', 'session']]
    >>> [sorted(r) for r in requirements("GET", query_key=True)][-1]
    ['apiKeyQuery']
    """
    session: dict[str, list[str]] = {"session": []}
    if method.upper() in UNSAFE:
        session["csrf"] = []
    out: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, session]
    if query_key:
        out.append({"apiKeyQuery": []})
    return out


def _takes_query_key(route: APIRoute) -> bool:
    from app.routers.open311 import api_key_from_form

    return any(d.call is api_key_from_form for d in _walk(route.dependant))


def add_security(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (the app's OpenAPI document) with the schemes and requirements added."""
    schema.setdefault("components", {})["securitySchemes"] = SCHEMES
    paths = schema.get("paths", {})
    for route in _routes(app.routes, APIRoute):
        if not route.include_in_schema or route.path not in paths:
            continue
        perms = [d.call for d in _walk(route.dependant) if hasattr(d.call, "permission")]
        if not perms:
            continue  # public
        query_key = _takes_query_key(route)
        for method in route.methods:
            op = paths[route.path].get(method.lower())
            if op is not None:
                op["security"] = requirements(method, query_key=query_key)
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the security schemes (built once, like FastAPI's)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None and "securitySchemes" in app.openapi_schema.get(
                "components", {}):
            return app.openapi_schema
        app.openapi_schema = add_security(app, build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
