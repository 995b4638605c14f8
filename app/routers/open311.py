"""Open311 GeoReport v2 under ``/open311/v2`` (JSON only; see :mod:`layers.incidents.open311`).

Who may call:

- ``GET services`` and ``GET services/{code}`` are open, as the spec says (the catalogue).
- ``GET requests`` and ``GET requests/{id}`` need a caller with ``incidents:read`` (``api_key``
  as a query parameter, ``X-API-Key`` or a token), who sees their jurisdiction; without
  credentials they are a 403 unless ``CITYGRID_OPEN311_PUBLIC_FEED`` opens the public feed
  (snapped locations, no free text: :func:`layers.incidents.open311.public_view`). They carry
  no personal data: the layer never reads the reporter's name or phone.
- ``POST requests`` needs a caller with ``incidents:create``: an API key, sent as the spec's
  ``api_key`` form field (or query parameter) or as the ``X-API-Key`` header; a bearer token works
  too. A citizen app's key has the viewer role, which may submit but not handle.

Errors on these routes, whatever raised them (a dependency, validation, the domain, the
database), are answered in the spec's form, ``[{"code": <HTTP status>, "description": ...}]``,
with 404 for what does not exist, 403 for a missing or invalid key and 400 for any other request
that cannot be fulfilled (429, 5xx and 405 keep their status). :class:`Open311Route` does the
conversion; the rest of the API keeps ``{code, message, detail}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from app.auth import API_KEY_HEADER, AuthError, current_principal, require
from app.deps import Conn
from app.errors import status_for
from app.routers.locate import _service
from gis.errors import GisError
from grids.access import Permission, Principal
from grids.errors import GridError
from layers.incidents import open311
from layers.incidents.workflow import IllegalTransition

log = logging.getLogger("citygrid")


# -- errors in the spec's form ---------------------------------------------------------------------
class Open311JSON(JSONResponse):
    media_type = "application/json; charset=utf-8"


class Open311Failure(Exception):
    """An error already put in the spec's form; raised past the app's own handlers."""

    def __init__(self, status: int, descriptions: list[str],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(descriptions[0] if descriptions else "error")
        self.status = status
        self.body = [{"code": status, "description": d} for d in descriptions or ["Error."]]
        self.headers = headers or None

    def response(self) -> Response:
        return Open311JSON(self.body, status_code=self.status, headers=self.headers)


def _described(message: str, detail: Any) -> str:
    """The message, naming the field in the spec's terms if it does not already."""
    field = detail.get("field") if isinstance(detail, dict) else None
    name = open311.FIELD_NAMES.get(field) if isinstance(field, str) else None
    if name and name not in message:
        return f"{message} (field: {name})"
    return message


def _validation(exc: RequestValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = loc[-1] if loc else "request"
        if err.get("type") == "missing":
            out.append(f"{field} was not provided.")
        else:
            out.append(f"{field}: {err.get('msg')}.")
    return out or ["The request is invalid."]


def failure_of(exc: Exception) -> Open311Failure:
    """Any exception raised on an Open311 route, as the spec's error (status, descriptions)."""
    if isinstance(exc, Open311Failure):
        return exc
    if isinstance(exc, RequestValidationError):
        return Open311Failure(400, _validation(exc))
    if isinstance(exc, AuthError):
        if exc.status == 429:
            return Open311Failure(429, [exc.message], exc.headers)
        if exc.code == "unauthorized":  # no credentials at all
            return Open311Failure(403, [
                "api_key was not provided: creating a service request needs an API key (send "
                "the api_key field or the X-API-Key header)."])
        return Open311Failure(403, [f"Invalid api_key or credentials: {exc.message}"])
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        status = 403 if status in (401, 403) else status if status in (404, 405, 413) else 400
        return Open311Failure(status, [str(exc.detail)],
                              dict(exc.headers) if status == 405 and exc.headers else None)
    if isinstance(exc, (GridError, GisError, IllegalTransition)):
        status = status_for(exc)
        status = status if status in (403, 404, 503) else 400
        return Open311Failure(status, [_described(getattr(exc, "message", str(exc)),
                                                  getattr(exc, "detail", None))])
    if isinstance(exc, OperationalError):
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return Open311Failure(503, ["The database is unreachable; try again shortly."])
    if isinstance(exc, DBAPIError) and (getattr(exc.orig, "sqlstate", None) or "").startswith(
            ("22", "23")):
        log.warning("database rejected a statement: %s", exc.orig)
        return Open311Failure(400, ["The database rejected the data as invalid."])
    log.error("unhandled error on an Open311 route", exc_info=exc)
    return Open311Failure(500, ["Something went wrong on the server; it has been logged."])


class Open311Route(APIRoute):
    """Routes whose every error is answered in the spec's form.

    The handler turns any exception into an :class:`Open311Failure` and raises it on, so it
    still passes the request's dependencies (the unit of work rolls back) and, having no handler
    in the app, reaches :meth:`handle`, which answers it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def spec_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # re-raised: every error is answered in the spec's form
                raise failure_of(exc) from exc

        return spec_errors

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        except Open311Failure as failure:
            await failure.response()(scope, receive, send)
        except StarletteHTTPException as exc:  # 405, raised before the handler runs
            await failure_of(exc).response()(scope, receive, send)


# -- dependencies ----------------------------------------------------------------------------------
async def json_only(response_format: Annotated[str, Path(
        description="`json` (XML, the spec's other format, is not served)")]) -> None:
    open311.check_format(response_format)


async def api_key_from_form(
    request: Request,
    api_key: Annotated[str | None, Query(max_length=200, include_in_schema=False)] = None,
) -> None:
    """The spec sends ``api_key`` in the form (Swagger: the query); the app reads keys from the
    ``X-API-Key`` header. Copy it there before the caller is worked out, so authentication, rate
    limits and the audit log treat it like any key."""
    if request.headers.get(API_KEY_HEADER) or request.headers.get("authorization"):
        return
    form = await request.form()
    sent = form.get("api_key")
    key = sent if isinstance(sent, str) and sent.strip() else api_key
    if key and key.strip():
        # request.headers reads scope["headers"] as one list: appending shows it to every reader.
        request.scope["headers"].append((API_KEY_HEADER.encode(), key.strip().encode("latin-1",
                                                                                      "replace")))


async def feed_reader(request: Request) -> Principal | None:
    """Who reads the requests: a caller with ``incidents:read``, or nobody (None) when the public
    feed is open. Carries ``.permission`` so the permission table lists these routes."""
    principal = current_principal(request)
    if principal is None:
        if request.app.state.settings.auth.open311_public_feed:
            return None
        raise Open311Failure(403, [
            "Reading service requests needs credentials: send api_key (or the X-API-Key "
            "header) or a token. This server has no public feed."])
    principal.require(Permission.INCIDENTS_READ)
    return principal


feed_reader.permission = Permission.INCIDENTS_READ  # type: ignore[attr-defined]


router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route,
                   default_response_class=Open311JSON, dependencies=[Depends(json_only)])
Submitter = Annotated[Principal, Depends(require(Permission.INCIDENTS_CREATE))]
Reader = Annotated[Principal | None, Depends(feed_reader)]
Csv = Annotated[str | None, Query(max_length=20_000)]


class ErrorOut(BaseModel):
    code: int
    description: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": list[ErrorOut], "description": "Invalid request (a field is named)"},
    403: {"model": list[ErrorOut], "description": "Missing or invalid api_key"},
    404: {"model": list[ErrorOut], "description": "No such service or service request"},
    "4XX": {"model": list[ErrorOut], "description": "Other errors, in the same form"}}


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str | None
    metadata: bool
    type: str
    keywords: str | None
    group: str | None


class ServiceDefinitionOut(BaseModel):
    service_code: str
    attributes: list[dict[str, Any]]


class ServiceRequestOut(BaseModel):
    service_request_id: str
    status: str
    status_notes: str | None
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class PostedOut(BaseModel):
    service_request_id: str
    service_notice: str | None
    account_id: str | None


class ServiceRequestForm(BaseModel):
    """The POST fields (application/x-www-form-urlencoded). A location is required: lat and
    long, or address_string. Extra fields (``attribute[...]``) are ignored."""

    api_key: str | None = Field(None, description="Or the X-API-Key header")
    jurisdiction_id: str | None = Field(None, description="Ignored: one city per endpoint")
    service_code: str = Field(description="From services.json")
    lat: float | None = Field(None, description="WGS 84 latitude")
    long: float | None = Field(None, description="WGS 84 longitude")
    address_string: str | None = None
    address_id: str | None = Field(None, description="Not supported alone")
    email: str | None = Field(None, description="Not stored")
    device_id: str | None = Field(None, description="Not stored")
    account_id: str | None = Field(None, description="Not stored")
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    description: str | None = Field(None, description="At most 4000 characters")
    media_url: str | None = Field(None, description="An http(s) URL")


# -- routes ----------------------------------------------------------------------------------------
@router.get("/services.{response_format}", response_model=list[ServiceOut], responses=ERRORS,
            summary="Open311: the service types (the catalogue's categories)")
def services(conn: Conn) -> list[dict[str, Any]]:
    return open311.list_services(conn)


@router.get("/services/{service_code}.{response_format}", response_model=ServiceDefinitionOut,
            responses=ERRORS, summary="Open311: a service definition (no extra attributes)")
def service_definition(service_code: Annotated[str, Path(max_length=32)], conn: Conn
                       ) -> dict[str, Any]:
    return open311.service_definition(conn, service_code)


@router.post("/requests.{response_format}", response_model=list[PostedOut], responses=ERRORS,
             dependencies=[Depends(api_key_from_form)],
             summary="Open311: report a service request (becomes a citizen_app incident)")
def post_request(form: Annotated[ServiceRequestForm, Form()], request: Request, conn: Conn,
                 principal: Submitter) -> list[dict[str, Any]]:
    return [open311.submit(conn, _service(request).snapshot, form.model_dump(),
                           principal=principal,
                           max_outside_m=request.app.state.settings.city.max_outside_m)]


@router.get("/requests.{response_format}", response_model=list[ServiceRequestOut],
            responses=ERRORS, dependencies=[Depends(api_key_from_form)],
            summary="Open311: service requests in your jurisdiction (no personal data)")
def list_requests(conn: Conn, reader: Reader, service_request_id: Csv = None,
                  service_code: Csv = None,
                  start_date: Annotated[str | None, Query(max_length=40)] = None,
                  end_date: Annotated[str | None, Query(max_length=40)] = None,
                  status: Annotated[str | None, Query(max_length=20)] = None
                  ) -> list[dict[str, Any]]:
    return open311.find_requests(conn, service_request_id=service_request_id,
                                 service_code=service_code, start_date=start_date,
                                 end_date=end_date, status=status,
                                 scope=reader.locate_scope() if reader else None,
                                 public=reader is None)


@router.get("/requests/{service_request_id}.{response_format}",
            response_model=list[ServiceRequestOut], responses=ERRORS,
            dependencies=[Depends(api_key_from_form)],
            summary="Open311: one service request (as a one-element list)")
def get_request(service_request_id: Annotated[str, Path(max_length=40)], conn: Conn,
                reader: Reader) -> list[dict[str, Any]]:
    return [open311.get_request(conn, service_request_id,
                                scope=reader.locate_scope() if reader else None,
                                public=reader is None)]


class DiscoveryEndpoint(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class Discovery(BaseModel):
    """Open311 Service Discovery: where the GeoReport v2 endpoint is."""

    changeset: str = Field(description="When this document last changed (ISO 8601)")
    contact: str
    key_service: str
    endpoints: list[DiscoveryEndpoint]


discovery_router = APIRouter(prefix="/open311", tags=["open311"], route_class=Open311Route,
                             default_response_class=Open311JSON)


@discovery_router.get("/discovery.json", response_model=Discovery,
                      summary="Open311 service discovery")
def discovery(request: Request, conn: Conn) -> Discovery:
    """Where the GeoReport v2 endpoint is, per the Open311 Service Discovery spec."""
    base = str(request.base_url).rstrip("/")
    changeset = open311.changeset(conn)
    return Discovery(
        changeset=changeset,
        contact="CityGrid command centre (指挥中心), via the city's 12345 hotline",
        key_service=f"{base}/docs#/access",
        endpoints=[DiscoveryEndpoint(
            specification="http://wiki.open311.org/GeoReport_v2",
            url=f"{base}/open311/v2",
            changeset=changeset,
            type="production",
            formats=["application/json"],
        )],
    )
