"""Domain errors mapped to HTTP once: a JSON body ``{code, message, detail}``, never a traceback."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.auth import AuthError
from app.backpressure import describe_db_failure
from gis.errors import DomainError, GisError
from grids import addresses as grid_addresses
from grids import errors as grid_errors
from grids import features
from grids.access import Forbidden
from grids.point import LocatorUnavailable
from grids.upload_limits import UploadTooLarge
from layers.incidents.workflow import IllegalTransition

log = logging.getLogger("citygrid")

# Status per domain error class; the most specific class in the MRO wins.
STATUS: dict[type[Exception], int] = {
    GisError: 422,
    grid_errors.GridError: 422,
    grid_errors.RegionNotFound: 404,
    grid_errors.InvalidCode: 422,
    grid_errors.ImportRejected: 422,
    grid_errors.TopologyError: 409,
    LocatorUnavailable: 503,
    Forbidden: 403,
    grid_errors.Conflict: 409,
    UploadTooLarge: 413,
    grid_errors.PreconditionRequired: 428,
    IllegalTransition: 409,
    features.InvalidQuery: 400,  # OGC API - Features: a bad bbox, crs or datetime is a 400
    grid_addresses.AddressNotFound: 404,
}


def _finite(value: Any, depth: int = 0) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) as None, containers copied as lists and
    dicts, anything else unknown as its ``str``: what JSON can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool) \
            and not -(2**63) <= value < 2**64:
        return str(value)  # JSON numbers past 64 bits are lost by most readers (and by orjson)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if depth > 32:  # a detail is never that deep; cut it rather than fail
        return "…"
    if isinstance(value, dict):
        return {str(k): _finite(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_finite(v, depth + 1) for v in value]
    try:  # numpy scalars and the like
        return _finite(value.item(), depth + 1)
    except (AttributeError, TypeError, ValueError):
        return str(value)


def safe_json(content: Any) -> bytes:
    """``content`` as JSON whatever it holds: non-finite numbers become null, unknown objects
    their text. An error body must never fail to render (that would be a 500 about a 4xx)."""
    return orjson.dumps(_finite(content))


class ErrorResponse(JSONResponse):
    """A JSON error rendered by :func:`safe_json`."""

    def render(self, content: Any) -> bytes:
        return safe_json(content)


BODY_UNREADABLE = "There was an error parsing the body"  # FastAPI's words (fastapi.routing)
_DESCRIPTIONS = {
    400: "Bad request (OGC API and Open311 parameters)",
    401: "No or bad credentials",
    403: "The role lacks the permission (or CSRF failed)",
    404: "Not found, or outside your jurisdiction",
    405: "Method not allowed (see Allow)",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid request: detail names the field",
    428: "Precondition required (If-Match)",
    429: "Too many requests (Retry-After)",
    503: "Database or locator unavailable (Retry later)",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for error statuses, each with the ``{code, message, detail}`` body.

    >>> sorted(responses(404, 422))
    [404, 422]
    """
    from app.schemas import ErrorPublic

    return {c: {"model": ErrorPublic, "description": _DESCRIPTIONS.get(c, "Error")}
            for c in codes}


# What any route may answer whatever it does: a body over the limit, an API key over its rate,
# the database away. Declared once for the whole app (app.main).
COMMON = (413, 429, 503)


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail if detail is not None else {}}


def status_for(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({
            "field": ".".join(p for p in loc if p not in ("query", "body", "path")) or ".".join(loc),
            "in": loc[0] if loc else None,
            "expected": err.get("msg"),
            "type": err.get("type"),
        })
    return out


def allowed_methods(app: Any, path: str) -> list[str]:
    """The methods the API declares for ``path`` (read off its OpenAPI paths, indexed once).

    Starlette's own ``Allow`` on a 405 names only the first route that matched the path, so
    ``PUT /incidents`` said ``POST`` although ``GET`` works too."""
    index = getattr(app.state, "allow_index", None)
    if index is None:
        index = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.escape(re.sub(r"\{[^}/]+\}", "\x00", template)).replace("\x00", "[^/]+")
            index.append((re.compile(pattern + "$"),
                          {m.upper() for m in operations if m.isalpha()}))
        app.state.allow_index = index
    return sorted(set().union(*(methods for rx, methods in index if rx.match(path))))


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        code = getattr(exc, "code", "error")
        return ErrorResponse(
            error_body(code, getattr(exc, "message", str(exc)), getattr(exc, "detail", None)),
            status_code=status_for(exc),
        )

    # Starlette types every handler as taking ``Exception``; it only calls one with an instance
    # of the class it was registered for, which the asserts below spell out for the checker.
    async def auth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return ErrorResponse(error_body(exc.code, exc.message, exc.detail),
                            status_code=exc.status, headers=exc.headers or None)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = _validation_detail(exc)
        fields = ", ".join(d["field"] for d in detail)
        return ErrorResponse(
            error_body("invalid_request", f"Invalid request: check {fields}.", detail),
            status_code=422,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # Only the framework raises a bare 400 here: FastAPI for a body it cannot decode
            # (BODY_UNREADABLE: not UTF-8), Starlette for a broken multipart or form. The same
            # 422 as a body that is not JSON, so clients see one status for "fix your body".
            return ErrorResponse(
                error_body("invalid_request", "Invalid request: check body.",
                           [{"field": "body", "in": "body", "type": "body_unreadable",
                             "reason": str(exc.detail)[:200],
                             "expected": "a body in the declared content type"}]),
                status_code=422)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                 401: "unauthorized", 403: "forbidden"}
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.url.path)
            if allowed:  # every route on the path, not just the first one Starlette tried
                headers["Allow"] = ", ".join(allowed)
        return ErrorResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code, headers=headers or None,
        )

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # A statement timeout, a busy pool, a lock conflict or a lost database: said as such.
        failure = describe_db_failure(
            exc, statement_timeout_ms=request.app.state.settings.db.statement_timeout_ms)
        log.warning("database failure (%s): %s", failure.code, exc.__class__.__name__)
        return ErrorResponse(
            error_body(failure.code, failure.message), status_code=503,
            headers={"Retry-After": str(failure.retry_after_s)} if failure.retry_after_s else None)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        # A constraint or data error that slipped past validation: the client's input, not a crash.
        log.warning("database rejected a statement: %s", exc.orig)
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        diag = getattr(exc.orig, "diag", None)
        if sqlstate.startswith(("22", "23")):
            return ErrorResponse(
                error_body("rejected_by_database",
                           "The database rejected the data as invalid.",
                           {"sqlstate": sqlstate, "reason": str(diag and diag.message_primary)}),
                status_code=422,
            )
        return await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ErrorResponse(
            error_body("internal_error", "Something went wrong on the server; it has been logged."),
            status_code=500,
        )

    for cls in (DomainError, IllegalTransition):
        app.add_exception_handler(cls, domain_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, database_down)
    app.add_exception_handler(PoolTimeout, database_down)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(Exception, unexpected)
