"""Domain errors mapped to HTTP once: a JSON body ``{code, message, detail}``, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.auth import AuthError
from app.backpressure import describe_db_failure
from gis.errors import DomainError, GisError
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
}


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


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        code = getattr(exc, "code", "error")
        return JSONResponse(
            error_body(code, getattr(exc, "message", str(exc)), getattr(exc, "detail", None)),
            status_code=status_for(exc),
        )

    # Starlette types every handler as taking ``Exception``; it only calls one with an instance
    # of the class it was registered for, which the asserts below spell out for the checker.
    async def auth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return JSONResponse(error_body(exc.code, exc.message, exc.detail),
                            status_code=exc.status, headers=exc.headers or None)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = _validation_detail(exc)
        fields = ", ".join(d["field"] for d in detail)
        return JSONResponse(
            error_body("invalid_request", f"Invalid request: check {fields}.", detail),
            status_code=422,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                 401: "unauthorized", 403: "forbidden"}
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code, headers=getattr(exc, "headers", None),
        )

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # A statement timeout, a busy pool, a lock conflict or a lost database: said as such.
        failure = describe_db_failure(
            exc, statement_timeout_ms=request.app.state.settings.db.statement_timeout_ms)
        log.warning("database failure (%s): %s", failure.code, exc.__class__.__name__)
        return JSONResponse(
            error_body(failure.code, failure.message), status_code=503,
            headers={"Retry-After": str(failure.retry_after_s)} if failure.retry_after_s else None)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        # A constraint or data error that slipped past validation: the client's input, not a crash.
        log.warning("database rejected a statement: %s", exc.orig)
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        diag = getattr(exc.orig, "diag", None)
        if sqlstate.startswith(("22", "23")):
            return JSONResponse(
                error_body("rejected_by_database",
                           "The database rejected the data as invalid.",
                           {"sqlstate": sqlstate, "reason": str(diag and diag.message_primary)}),
                status_code=422,
            )
        return await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
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
