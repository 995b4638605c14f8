"""Open311 GeoReport v2: the city's incidents as a standard 311 service (JSON format only).

The mapping, kept free of any web framework so it can be tested and reused on its own:

- **services** are the active second-level categories of the catalogue: ``service_code`` is the
  category code, ``service_name`` its Chinese name, ``group`` the name of its top-level group and
  ``keywords`` the English names (category and group). No service needs extra attributes, so
  ``metadata`` is false, every service definition has ``attributes: []``, and every service is
  ``realtime`` (the request id is returned at once).
- **POST requests** become incidents from the ``citizen_app`` channel. The spec's POST is not
  idempotent, so each request gets a fresh ``open311-<uuid>`` external id. ``lat``/``long`` are
  WGS 84 (taken as EPSG:4326, which is CGCS2000 to well under a metre); an ``address_string``
  alone is kept and placed at the city level until a dispatcher places it (属地兜底).
  ``last_name`` + ``first_name`` become the reporter's name and ``phone`` the reporter's phone;
  ``email``, ``device_id``, ``account_id`` and ``attribute[...]`` are not stored (nowhere to keep
  them, and personal data not needed for handling is not collected). ``jurisdiction_id`` is
  ignored: one endpoint serves one city. ``address_id`` alone cannot be located: there is no
  master address repository.
- **Who may read requests** (``GET requests``): a caller with ``incidents:read`` (an API key,
  sent as ``api_key`` or ``X-API-Key``, or a token) sees the requests in their jurisdiction (a
  dispatcher's as for ``/incidents``), with the exact location and the (masked) description.
  Without credentials, nothing, unless the deployment opens the *public feed*
  (``CITYGRID_OPEN311_PUBLIC_FEED=true``): then anyone sees every request of the public
  categories city-wide, with the location snapped to a 0.001° grid (about 100 m), and without
  the description, the address and the media URL (free text and photos can identify people).
  Either way the social-governance classes (family ``social``) are never in the Open311 feed.
- **GET requests** show incidents with *no personal data*: the spec's request fields carry no
  reporter, and none is ever read here (the queries do not even select the reporter columns);
  phone, ID card and e-mail numbers typed into a description or address are masked.
  ``status`` is ``open`` for the open states of the closed loop and ``closed`` for closed,
  evaluated and voided; ``status_notes`` names the exact step. ``agency_responsible`` is the
  responsible grid and department, e.g. ``510131101001002 鹤山社区第2网格 / 综合行政执法局``;
  ``expected_datetime`` is the due time (extensions included). Times are ISO 8601 with the
  city's offset (its time zone: ``grids.city``). The default window is the last 90 days, at
  most 1000 requests, newest
  first; a given window may not span more than 90 days; ``service_request_id`` overrides every
  other filter, as the spec says.

Formats: the spec makes XML the required format and JSON optional. This server speaks JSON only:
``.xml`` (or any other format) is answered with a 400 in the spec's error form. Errors use the
spec's form ``[{"code": <HTTP status>, "description": ...}]`` (the router converts them).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from grids.access import Principal, Scope, mask_phone
from grids.city import profile
from grids.errors import GridError, RegionNotFound
from grids.locate import Snapshot
from grids.sql import in_scope
from layers.incidents import intake
from layers.incidents.catalogue import CategoryNotFound, get_category, list_categories
from layers.incidents.workflow import OPEN_STATES, STATES

SOURCE = "citizen_app"
MAX_REQUESTS = 1000  # the spec's response volume: 90 days or 1000 requests, whichever is less
MAX_SPAN = timedelta(days=90)
CLOSED_STATES = frozenset(STATES) - OPEN_STATES
# What status alone does not say: the step of the closed loop the incident is in.
STATUS_NOTES = {
    "received": "受理 received: waiting to be registered",
    "registered": "立案 registered: waiting to be dispatched",
    "dispatched": "派遣 dispatched to the responsible grid and department",
    "handling": "处置 being handled",
    "reported": "反馈 handled, waiting to be checked",
    "verified": "核查 checked, waiting to be closed",
    "closed": "结案 closed: resolved",
    "evaluated": "评价 closed: resolved and evaluated",
    "voided": "作废 voided: not taken up (duplicate or invalid report)",
}
# Our field names as the spec calls them, for error descriptions.
FIELD_NAMES = {"lon": "long", "lat": "lat", "address": "address_string", "category": "service_code",
               "reporter_name": "last_name", "reporter_phone": "phone", "attachments": "media_url",
               "description": "description", "id": "service_request_id"}
_URL = re.compile(r"^https?://[^\s]{1,490}$")
LIMITS = {"service_code": 32, "address_string": 500, "address_id": 100, "description": 4000,
          "first_name": 50, "last_name": 50, "phone": 30, "media_url": 500, "email": 254,
          "device_id": 100, "account_id": 100, "jurisdiction_id": 100}


class Open311Invalid(GridError):
    """A request this server cannot fulfil as sent (the spec's 400)."""

    code = "invalid_open311_request"


class UnsupportedFormat(Open311Invalid):
    code = "unsupported_format"


class ServiceNotFound(RegionNotFound):
    code = "service_not_found"


class ServiceRequestNotFound(RegionNotFound):
    code = "service_request_not_found"


def check_format(response_format: str) -> None:
    """Only ``json`` is served; the spec's required XML is answered with a clear 400."""
    if response_format == "json":
        return
    if response_format.lower() == "xml":
        raise UnsupportedFormat(
            "XML is not supported by this server: it serves the JSON format only. "
            "Ask for the same resource with .json instead of .xml.",
            detail={"field": "response_format", "value": "xml", "expected": ["json"]})
    raise UnsupportedFormat(
        f"Unknown format {response_format[:20]!r}: this server serves .json only.",
        detail={"field": "response_format", "value": response_format[:20], "expected": ["json"]})


# -- times -----------------------------------------------------------------------------------------
def w3_datetime(value: datetime | None, tz: tzinfo) -> str | None:
    """A time in the spec's W3C profile of ISO 8601, with the city's offset (``tz``).

    >>> from datetime import UTC
    >>> from zoneinfo import ZoneInfo
    >>> w3_datetime(datetime(2026, 1, 1, 0, 0, 30, 500, tzinfo=UTC), ZoneInfo("Asia/Urumqi"))
    '2026-01-01T06:00:30+06:00'
    """
    if value is None:
        return None
    return value.astimezone(tz).isoformat(timespec="seconds")


def changeset(conn: Connection) -> str:
    """When the discovery document last changed: the city profile's last change, in its zone."""
    tz = profile(conn).tz
    at = conn.execute(text("SELECT updated_at FROM city_profile")).scalar_one()
    return at.astimezone(tz).isoformat(timespec="seconds")


def parse_w3_datetime(value: str | None, field: str) -> datetime | None:
    """A ``start_date``/``end_date`` argument; the offset (Z or ±hh:mm) is required.

    A ``+`` sent unencoded in a query string arrives as a space; it is read as the ``+`` meant.

    >>> parse_w3_datetime("2010-01-01T00:00:00Z", "start_date").isoformat()
    '2010-01-01T00:00:00+00:00'
    >>> parse_w3_datetime("2010-01-01T08:00:00 08:00", "end_date").isoformat()
    '2010-01-01T08:00:00+08:00'
    """
    if value is None or not value.strip():
        return None
    raw = re.sub(r" (\d\d:?\d\d)$", r"+\1", value.strip())
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Open311Invalid(
            f"{field} must be a W3C date-time with a time zone, e.g. 2010-01-01T00:00:00Z or "
            f"2010-01-01T08:00:00+08:00 (got {value[:40]!r}).",
            detail={"field": field, "value": value[:40]})
    return parsed


def query_window(start: datetime | None, end: datetime | None, now: datetime
                 ) -> tuple[datetime, datetime]:
    """The ``requested_datetime`` window: 90 days at most, the last 90 days by default.

    >>> from datetime import UTC
    >>> now = datetime(2026, 6, 1, tzinfo=UTC)
    >>> [d.date().isoformat() for d in query_window(None, None, now)]
    ['2026-03-03', '2026-06-01']
    >>> [d.date().isoformat() for d in query_window(datetime(2026, 1, 1, tzinfo=UTC), None, now)]
    ['2026-01-01', '2026-04-01']
    """
    if start is None and end is None:
        return now - MAX_SPAN, now
    if start is None:
        assert end is not None  # both None was answered above
        return end - MAX_SPAN, end
    if end is None:
        return start, start + MAX_SPAN
    if end < start:
        raise Open311Invalid("end_date is before start_date.",
                             detail={"field": "end_date", "start_date": start.isoformat(),
                                     "end_date": end.isoformat()})
    if end - start > MAX_SPAN:
        raise Open311Invalid("start_date and end_date may not span more than 90 days.",
                             detail={"field": "end_date", "expected": "at most 90 days"})
    return start, end


# -- services --------------------------------------------------------------------------------------
def service_of(category: Mapping[str, Any], group: Mapping[str, Any] | None) -> dict[str, Any]:
    """A catalogue category (second level) as an Open311 service."""
    routing = "先属主 owner first" if category.get("routing") == "owner" else \
        "先属地 location first"
    parts = [category.get("name_en") or "", f"责任部门 {category['department_name']}"
             if category.get("department_name") else "", routing]
    keywords = [k for k in (category.get("name_en"), (group or {}).get("name_en")) if k]
    return {
        "service_code": category["code"],
        "service_name": category["name"],
        "description": "; ".join(p for p in parts if p),
        "metadata": False,
        "type": "realtime",
        "keywords": ", ".join(k.replace(",", " ") for k in keywords) or None,
        "group": (group or {}).get("name"),
    }


def list_services(conn: Connection) -> list[dict[str, Any]]:
    """Every active second-level category, in code order."""
    categories = list_categories(conn)
    groups = {c["code"]: c for c in categories if c["parent_code"] is None}
    return [service_of(c, groups.get(c["parent_code"])) for c in categories
            if c["parent_code"] is not None]


def _service_category(conn: Connection, service_code: str) -> dict[str, Any]:
    try:
        category = get_category(conn, service_code)
    except CategoryNotFound:
        category = None
    if category is None or not category["active"] or category["parent_code"] is None:
        raise ServiceNotFound(
            f"service_code {service_code[:32]!r} was not found: services.json lists the codes.",
            detail={"field": "service_code", "value": service_code[:32]})
    return category


def service_definition(conn: Connection, service_code: str) -> dict[str, Any]:
    """No service asks for extra attributes (``metadata`` is false): the list is empty."""
    category = _service_category(conn, service_code)
    return {"service_code": category["code"], "attributes": []}


# -- requests in -----------------------------------------------------------------------------------
def _text(form: Mapping[str, Any], field: str) -> str | None:
    """A form value: a null or empty parameter counts as not sent (the spec's rule)."""
    value = form.get(field)
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    limit = LIMITS.get(field, 500)
    if len(value) > limit:
        raise Open311Invalid(f"{field} is too long: at most {limit} characters.",
                             detail={"field": field, "expected": f"<= {limit} characters"})
    return value


def _number(form: Mapping[str, Any], field: str) -> float | None:
    value = form.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Open311Invalid(f"{field} must be a number (WGS 84 degrees), got {str(value)[:30]!r}.",
                             detail={"field": field, "value": str(value)[:30]}) from None


def intake_data(form: Mapping[str, Any], *, external_id: str | None = None,
                received_at: datetime | None = None) -> dict[str, Any]:
    """The fields of a POST service request as the data :func:`intake.create` takes.

    >>> d = intake_data({"service_code": "E0101", "lat": "29.3", "long": "120.07",
    ...                  "first_name": "三", "last_name": "张", "phone": "13800000000",
    ...                  "media_url": "https://example.org/1.jpg"}, external_id="open311-x")
    >>> d["lon"], d["lat"], d["reporter_name"], d["attachments"], d["source"]
    (120.07, 29.3, '张三', ['https://example.org/1.jpg'], 'citizen_app')
    """
    service_code = _text(form, "service_code")
    if service_code is None:
        raise Open311Invalid("service_code was not provided.", detail={"field": "service_code"})
    lat, lon = _number(form, "lat"), _number(form, "long")
    address = _text(form, "address_string")
    address_id = _text(form, "address_id")
    if (lat is None) != (lon is None):
        missing = "long" if lon is None else "lat"
        raise Open311Invalid(f"lat and long must be sent together: {missing} was not provided.",
                             detail={"field": missing})
    if lat is None and address is None:
        if address_id is not None:
            raise Open311Invalid(
                "address_id cannot be located here (there is no address repository): send lat "
                "and long, or address_string.", detail={"field": "address_id"})
        raise Open311Invalid("A location was not provided: send lat and long, or address_string.",
                             detail={"field": "lat", "fields": ["lat", "long", "address_string"]})
    first, last = _text(form, "first_name"), _text(form, "last_name")
    name = "".join(p for p in (last, first) if p) or None  # 姓 + 名
    media_url = _text(form, "media_url")
    if media_url is not None and not _URL.match(media_url):
        raise Open311Invalid("media_url must be an http(s) URL.",
                             detail={"field": "media_url", "expected": "an http(s) URL"})
    return {
        "source": SOURCE,
        "external_id": external_id or f"open311-{uuid.uuid4()}",
        "category": service_code,
        "description": _text(form, "description") or "",
        "address": address or "",
        "lon": lon, "lat": lat, "crs": "EPSG:4326",
        "reporter_name": name,
        "reporter_phone": _text(form, "phone"),
        "attachments": [media_url] if media_url else [],
        "received_at": received_at,
    }


def submit(conn: Connection, snap: Snapshot, form: Mapping[str, Any], *, principal: Principal,
           max_outside_m: float) -> dict[str, Any]:
    """Take in one POSTed service request; returns the spec's answer for it."""
    data = intake_data(form)
    _service_category(conn, data["category"])
    for field in ("email", "device_id", "account_id", "jurisdiction_id"):
        _text(form, field)  # checked for length, not stored
    placed, _ = intake.create(conn, snap, data, principal=principal, max_outside_m=max_outside_m)
    request = get_request(conn, str(placed["id"]))
    notice = f"已受理 received. 责任网格/部门 responsible: {request['agency_responsible'] or '—'}"
    if placed.get("grid_code") is None:
        notice += "; 地址待定位 the address will be placed on the map by a dispatcher"
    if request["expected_datetime"]:
        notice += f"; 预计办结 expected by {request['expected_datetime']}"
    return {"service_request_id": request["service_request_id"], "service_notice": notice + ".",
            "account_id": None}


# -- requests out ----------------------------------------------------------------------------------
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact(value: str | None) -> str | None:
    """Free text for a public answer: phone numbers, ID card numbers and e-mail addresses that a
    caller or a clerk typed into it are masked (names cannot be told apart from other words).

    >>> redact("张先生13812345678反映，座机0579-85123456，身份证510131199001011234，a.b@x.cn")
    '张先生138****5678反映，座机057******3456，身份证******************，***@***'
    """
    if not value:
        return value
    value = _ID_CARD.sub(lambda m: "*" * len(m.group()), value)
    value = _PHONE.sub(lambda m: mask_phone(m.group()) or "", value)
    return _EMAIL.sub("***@***", value)


# Only what the spec's request carries: never the reporter's name or phone.
# A request merged into a lead case (the dispatch desk's duplicates) reports the lead's progress:
# its state, times and last step are the lead's (``m``), its own text and place stay its own.
_SELECT = (
    "SELECT i.id, coalesce(m.state, i.state) AS state, c.code AS service_code, "
    "c.name AS service_name, i.description, "
    "i.address, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.attachments, i.received_at, "
    "coalesce(m.state_since, i.state_since) AS state_since, "
    "coalesce(m.due_at, i.due_at) AS due_at, "
    "CASE WHEN m.id IS NULL THEN i.closed_at ELSE m.closed_at END AS closed_at, "
    "i.merged_into, coalesce(i.grid_code, i.region_code) AS agency_code, "
    "r.name AS agency_region_name, d.name AS department_name, "
    "(SELECT max(e.at) FROM incident_event e WHERE e.incident_id = coalesce(m.id, i.id)) "
    "AS last_event_at "
    "FROM incident i JOIN category c ON c.id = i.category_id "
    "LEFT JOIN incident m ON m.id = i.merged_into "
    "LEFT JOIN department d ON d.id = i.department_id "
    "LEFT JOIN region r ON r.code = coalesce(i.grid_code, i.region_code)"
)
# The open feed leaves out the social-governance classes (disputes, hardship help, safety
# hazards): they concern identifiable people, so they are read only through the authorised API.
_PUBLIC = "c.family <> 'social'"


def agency(region_code: str | None, region_name: str | None,
           department_name: str | None) -> str | None:
    """The responsible grid and department, as one line.

    >>> agency("510131101001002", "鹤山社区第2网格", "综合行政执法局")
    '510131101001002 鹤山社区第2网格 / 综合行政执法局'
    >>> agency(None, None, "水务局"), agency(None, None, None)
    ('水务局', None)
    """
    region = " ".join(p for p in (region_code, region_name) if p)
    return " / ".join(p for p in (region, department_name) if p) or None


def request_of(row: RowMapping | Mapping[str, Any], tz: tzinfo) -> dict[str, Any]:
    """An incident row (as selected by this module) as an Open311 service request."""
    state = row["state"]
    closed = state in CLOSED_STATES
    if state in ("closed", "evaluated"):
        updated = row.get("closed_at") or row["state_since"]
    elif state == "voided":
        updated = row["state_since"]
    else:
        updated = max(t for t in (row.get("last_event_at"), row["state_since"], row["received_at"])
                      if t is not None)
    attachments = row.get("attachments") or []
    return {
        "service_request_id": str(row["id"]),
        "status": "closed" if closed else "open",
        "status_notes": (f"并入 {row['merged_into']} merged into request {row['merged_into']}; "
                         if row.get("merged_into") else "") + STATUS_NOTES.get(state, state),
        "service_name": row["service_name"],
        "service_code": row["service_code"],
        "description": redact(row.get("description")) or None,
        "agency_responsible": agency(row.get("agency_code"), row.get("agency_region_name"),
                                     row.get("department_name")),
        "service_notice": None,
        "requested_datetime": w3_datetime(row["received_at"], tz),
        "updated_datetime": w3_datetime(updated, tz),
        "expected_datetime": w3_datetime(row.get("due_at"), tz),
        "address": redact(row.get("address")) or None,
        "address_id": None,
        "zipcode": None,
        "lat": None if row.get("lat") is None else round(float(row["lat"]), 7),
        "long": None if row.get("lon") is None else round(float(row["lon"]), 7),
        "media_url": attachments[0] if attachments else None,
    }


# The public feed's location precision: 3 decimals of a degree, about 111 m north-south and
# 97 m east-west at the city's latitude: the street block, not the doorway.
PUBLIC_DECIMALS = 3


def public_view(request: dict[str, Any]) -> dict[str, Any]:
    """A service request as the public feed shows it: location snapped to about 100 m; no
    description, address or media (free text and photos can name or show people).

    >>> view = public_view({"lat": 29.3061234, "long": 120.0751234, "description": "x",
    ...                     "address": "y", "media_url": "https://e/1.jpg", "status": "open"})
    >>> view["lat"], view["long"], view["description"], view["address"], view["media_url"]
    (29.306, 120.075, None, None, None)
    """
    out = dict(request)
    for axis in ("lat", "long"):
        if out.get(axis) is not None:
            out[axis] = round(float(out[axis]), PUBLIC_DECIMALS)
    out.update(description=None, address=None, media_url=None)
    return out


def _scope_clause(scope: Scope | None, params: dict[str, Any]) -> str:
    """SQL limiting incidents to ``scope`` (None: no limit; the public feed and internal reads)."""
    if scope is None:
        return "true"
    cond, scoped = in_scope(scope, "coalesce(i.grid_code, i.region_code)")
    params.update(scoped)
    return cond


def _list(value: str | None, field: str, allowed: Iterable[str] | None = None) -> list[str]:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    if len(items) > MAX_REQUESTS:
        raise Open311Invalid(f"{field} lists more than {MAX_REQUESTS} values.",
                             detail={"field": field})
    if allowed is not None:
        allowed = list(allowed)
        bad = [v for v in items if v not in allowed]
        if bad:
            raise Open311Invalid(
                f"{field} must be one or more of {', '.join(allowed)} (got {bad[0][:20]!r}).",
                detail={"field": field, "expected": allowed})
    return items


def _ids(value: str | None) -> list[int]:
    ids = []
    for item in _list(value, "service_request_id"):
        if not item.isdigit() or len(item) > 18:
            raise Open311Invalid(
                f"service_request_id must be a comma-separated list of ids (got {item[:20]!r}).",
                detail={"field": "service_request_id", "value": item[:20]})
        ids.append(int(item))
    return ids


def find_requests(conn: Connection, *, service_request_id: str | None = None,
                  service_code: str | None = None, start_date: str | None = None,
                  end_date: str | None = None, status: str | None = None,
                  now: datetime | None = None, scope: Scope | None = None,
                  public: bool = False) -> list[dict[str, Any]]:
    """GET requests: the filters as the spec defines them, newest first, at most 1000.

    ``scope`` limits them to a jurisdiction; ``public`` gives the public feed's view.
    """
    params: dict[str, Any] = {"limit": MAX_REQUESTS}
    within = _scope_clause(scope, params)
    ids = _ids(service_request_id)
    if ids:  # overrides all other arguments
        where = "i.id = ANY(:ids)"
        params["ids"] = ids
    else:
        since, until = query_window(parse_w3_datetime(start_date, "start_date"),
                                    parse_w3_datetime(end_date, "end_date"),
                                    now or datetime.now(UTC))
        clauses = ["i.received_at >= :since", "i.received_at <= :until"]
        params.update(since=since, until=until)
        codes = _list(service_code, "service_code")
        if codes:
            clauses.append("c.code = ANY(:codes)")
            params["codes"] = codes
        statuses = set(_list(status, "status", ("open", "closed")))
        if statuses == {"open"}:
            clauses.append("coalesce(m.state, i.state) = ANY(:states)")
            params["states"] = sorted(OPEN_STATES)
        elif statuses == {"closed"}:
            clauses.append("coalesce(m.state, i.state) = ANY(:states)")
            params["states"] = sorted(CLOSED_STATES)
        where = " AND ".join(clauses)
    rows = conn.execute(text(f"{_SELECT} WHERE ({where}) AND {_PUBLIC} AND {within} "
                             "ORDER BY i.received_at DESC, i.id DESC "
                             "LIMIT :limit"), params).mappings()
    tz = profile(conn).tz
    return [public_view(request_of(r, tz)) if public else request_of(r, tz) for r in rows]


def get_request(conn: Connection, service_request_id: str, *, scope: Scope | None = None,
                public: bool = False) -> dict[str, Any]:
    """GET one request (the route answers it as a one-element list, as the spec does); outside
    ``scope`` it is not found."""
    ident = service_request_id.strip()
    row = None
    if ident.isdigit() and len(ident) <= 18:
        params: dict[str, Any] = {"id": int(ident)}
        within = _scope_clause(scope, params)
        row = conn.execute(text(f"{_SELECT} WHERE i.id = :id AND {_PUBLIC} AND {within}"),
                           params).mappings().first()
    if row is None:
        raise ServiceRequestNotFound(
            f"service_request_id {ident[:20]!r} was not found.",
            detail={"field": "service_request_id", "value": ident[:20]})
    tz = profile(conn).tz
    return public_view(request_of(row, tz)) if public else request_of(row, tz)
