"""What the phone shows and sends: my grids, my tasks, actions and field reports.

- **My grids**: the outlines of the grids in the caller's jurisdiction (a grid worker's own
  grids), simplified for a weak signal, with their open cases and today's patrol coverage and the
  parts no track came near (:mod:`layers.patrols.coverage`).
- **My tasks**: cases dispatched to me (``responsible_code`` is my staff code) waiting to be
  accepted or reported, with their due time and light; for those who verify (核查), the reported
  cases in their jurisdiction.
- **Actions and reports are idempotent** on the phone's client id: a resent request finds its
  receipt (``field_receipt``; for reports the incident's ``source + external_id``) and changes
  nothing. Photos are named by their SHA-256 and linked to the event that shows them.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Literal, NotRequired, TypedDict, cast

import numpy as np
import shapely
from shapely.geometry import mapping
from sqlalchemy import Connection, text

from gis.geojson import Feature, FeatureCollection, Geometry
from gis.transform import transformer
from grids.access import Permission, Principal
from grids.city import profile
from grids.errors import Conflict, GridError
from grids.locate import Snapshot
from layers.field import evidence
from layers.field import photos as photo_store
from layers.incidents import handling, intake
from layers.incidents.workflow import CHECKERS, OPEN_STATES, light_sql
from layers.patrols.coverage import GRID_COLUMNS, covered_parts, grids_of, window_fixes
from layers.patrols.grid_cover import BUFFER_M
from layers.patrols.intake import _own_staff_code

FIELD_ACTIONS = ("accept", "report", "return", "verify", "rework")
SIMPLIFY_DEG = 0.00002  # ~2 m: invisible on a phone, a fraction of the bytes
MAX_GRIDS = 300


class FieldError(GridError):
    code = "invalid_field_request"


class CityView(TypedDict):
    tz: str  # the city's zone: the phone's "today"
    name: str | None
    center: list[float] | None  # the first view, [lat, lon], before any grid is drawn


class Me(TypedDict):
    """Who uses the phone (:func:`me`)."""

    username: str
    role: str
    staff_code: str | None
    staff_name: str | None
    grids: list[str]
    can_verify: bool
    can_clear_flags: bool
    city: CityView


class GridProps(TypedDict):
    code: str
    name: str
    area_m2: float
    patrolled_share: float
    last_fix_at: str | None
    unpatrolled: NotRequired[Geometry | None]  # only when asked for


class OpenCase(TypedDict):
    id: int
    state: str
    category_name: str
    grid_code: str | None
    address: str
    lon: float | None
    lat: float | None
    due_at: datetime | None
    light: str | None


class MyGrids(FeatureCollection[Feature[GridProps]]):
    """My grids (:func:`my_grids`): outlines, open cases, today's window and buffer."""

    cases: list[OpenCase]
    truncated: bool
    since: str
    until: str
    buffer_m: float


class Task(TypedDict):
    """A case on the phone's inbox (the public incident's fields the phone reads)."""

    id: int
    category: str
    category_name: str
    description: str
    address: str
    lon: float | None
    lat: float | None
    state: str
    light: str | None
    due_at: datetime | None
    state_since: datetime
    grid_code: str | None
    card: str | None
    version: int
    allowed_actions: list[str]
    kind: Literal["handle", "verify"]
    flagged: bool


class MyTasks(TypedDict):
    staff_code: str | None
    tasks: list[Task]
    verify: list[Task]


def me(conn: Connection, *, principal: Principal) -> Me:
    """Who is using the phone: staff code, grids, and whether they verify."""
    principal.require(Permission.INCIDENTS_READ)
    staff = _own_staff_code(conn, principal)
    name = None
    if staff:
        name = conn.execute(text("SELECT name FROM staff WHERE code = :c"),
                            {"c": staff}).scalar()
    return {"username": principal.name.removeprefix("user:"), "role": principal.role,
            "staff_code": staff, "staff_name": name,
            "grids": [p for p in principal.scope.prefixes if len(p) == 15],
            "can_verify": principal.role in CHECKERS,
            "can_clear_flags": principal.role in evidence.CLEARERS,
            # the city's zone (the phone's "today") and first view (before any grid is drawn)
            "city": {"tz": (city := profile(conn)).tz.key, "name": city.name,
                     "center": city.first_view()["center"]}}


def today_window(tz: tzinfo, now: datetime | None = None) -> tuple[datetime, datetime]:
    """From the city's midnight (in ``tz``) to now."""
    now = now or datetime.now(UTC)
    start = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    return start, max(now, start + timedelta(seconds=1))


def my_grids(conn: Connection, *, principal: Principal, now: datetime | None = None,
             unpatrolled: bool = False) -> MyGrids:
    """My grids as GeoJSON with open cases and today's patrolled share; with ``unpatrolled``
    also the parts of each grid no track came near today.

    The share is the background worker's (``patrol_grid_cover``, today's day rows: as fresh as
    its last refresh, ``CITYGRID_COVERAGE_REFRESH_S``). With ``unpatrolled`` the shapes and the
    shares are computed from today's fixes, and kept per (grids, day, today's cover rows of
    those grids, the caller's own latest fix today): recomputed when the background worker
    has seen new fixes there, or when the caller's own fixes arrive (a worker sees their walk
    at once).
    """
    principal.require(Permission.PATROLS_READ)
    # A worker's own grids; for a supervisor with a street, the first MAX_GRIDS of it (the
    # phone is not the desk's map), said so by ``truncated``.
    city = profile(conn)
    since, until = today_window(city.tz, now)
    day = since.date()
    rows = conn.execute(text(
        "SELECT r.code, r.name, r.area_m2, "
        "ST_AsGeoJSON(ST_SimplifyPreserveTopology(r.geom, :tol), 6) AS outline, "
        "c.share, c.last_fix_at FROM region_current r "
        "LEFT JOIN patrol_grid_cover c ON c.span = 'd' AND c.t0 = :day AND c.grid_code = r.code "
        "WHERE r.level = 'grid' AND r.code LIKE ANY(:patterns) ORDER BY r.code LIMIT :n"),
        {"patterns": principal.scope.like_patterns(), "n": MAX_GRIDS + 1, "tol": SIMPLIFY_DEG,
         "day": day}).all()
    truncated = len(rows) > MAX_GRIDS
    rows = rows[:MAX_GRIDS]
    shapes: dict[str, Any] = {}
    shares = {r.code: float(r.share or 0.0) for r in rows}
    if unpatrolled and rows:
        mine = conn.execute(text(
            "SELECT max(f.at) FROM patrol_fix f JOIN app_user u ON u.staff_id = f.staff_id "
            "WHERE u.username = :u AND f.at >= :since"),
            {"u": principal.name.removeprefix("user:"), "since": since}).scalar()
        shapes, fresh = _unpatrolled(conn, rows, (day, mine), since, until, city)
        shares.update(fresh)
    import orjson

    features: list[Feature[GridProps]] = []
    for r in rows:
        props: GridProps = {
            "code": r.code, "name": r.name, "area_m2": round(float(r.area_m2), 1),
            "patrolled_share": round(min(1.0, shares[r.code]), 4),
            "last_fix_at": r.last_fix_at.isoformat() if r.last_fix_at else None}
        if unpatrolled:
            props["unpatrolled"] = shapes.get(r.code)
        features.append({"type": "Feature", "properties": props,
                         "geometry": orjson.loads(r.outline)})
    cases: list[OpenCase] = []
    if rows:
        cases = [cast(OpenCase, dict(r)) for r in conn.execute(text(
            "SELECT i.id, i.state, c.name AS category_name, i.grid_code, i.address, "
            "round(ST_X(i.geom)::numeric, 6)::float8 AS lon, "
            "round(ST_Y(i.geom)::numeric, 6)::float8 AS lat, i.due_at, "
            f"{light_sql('i', 'c')} AS light FROM incident i "
            "JOIN category c ON c.id = i.category_id "
            "WHERE i.grid_code = ANY(:g) AND i.state = ANY(:open) ORDER BY i.received_at DESC "
            "LIMIT 500"), {"g": [r.code for r in rows], "open": sorted(OPEN_STATES)}).mappings()]
    return {"type": "FeatureCollection", "features": features, "cases": cases,
            "truncated": truncated, "since": since.isoformat(), "until": until.isoformat(),
            "buffer_m": BUFFER_M}


# (grid codes, day, today's cover rows of those grids, my latest fix) ->
# ({code: unpatrolled GeoJSON or None}, {code: share})
_SHAPES: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], dict[str, float]]] = OrderedDict()
_SHAPES_MAX = 256
_SHAPES_LOCK = threading.Lock()


def _unpatrolled(conn: Connection, rows: Sequence[Any], stamp: Any, since: datetime,
                 until: datetime, city: Any) -> tuple[dict[str, Any], dict[str, float]]:
    key = (city.metric_srid, stamp, tuple((r.code, r.share, r.last_fix_at) for r in rows))
    with _SHAPES_LOCK:
        hit = _SHAPES.get(key)
        if hit is not None:
            _SHAPES.move_to_end(key)
            return hit
    grid_rows = conn.execute(text(
        f"SELECT {GRID_COLUMNS} FROM region_current WHERE level = 'grid' AND code = ANY(:c) "
        "ORDER BY code"), {"c": [r.code for r in rows]}).all()
    grids = grids_of(grid_rows)
    fx = window_fixes(conn, grids, since, until, BUFFER_M)
    parts = covered_parts(grids.geom, fx, BUFFER_M)
    back = transformer(city.metric_crs, "EPSG:4490")

    def to_lonlat(g: Any) -> Any:
        return shapely.transform(g, lambda xy: np.column_stack(back.transform(xy[:, 0],
                                                                              xy[:, 1])))
    shapes: dict[str, Any] = {}
    shares: dict[str, float] = {}
    for code, geom, part in zip(grids.code, grids.geom, parts, strict=True):
        area = float(shapely.area(geom))
        shares[code] = float(shapely.area(part)) / area if part is not None and area else 0.0
        rest = geom if part is None else shapely.difference(geom, part)
        rest = shapely.simplify(rest, 3.0)
        shapes[code] = None if shapely.is_empty(rest) else mapping(to_lonlat(rest))
    out = (shapes, shares)
    with _SHAPES_LOCK:
        _SHAPES[key] = out
        while len(_SHAPES) > _SHAPES_MAX:
            _SHAPES.popitem(last=False)
    return out


def my_tasks(conn: Connection, *, principal: Principal) -> MyTasks:
    """Cases dispatched to me (to accept, to report) and, for checkers, cases to verify."""
    principal.require(Permission.INCIDENTS_READ)
    staff = _own_staff_code(conn, principal)
    todo: list[dict[str, Any]] = []
    if staff:
        todo = handling.search(conn, principal=principal, states=["dispatched", "handling"],
                               assignee=staff, sort="due_at", limit=200)["items"]
    verify: list[dict[str, Any]] = []
    if principal.role in CHECKERS:
        verify = handling.search(conn, principal=principal, states=["reported"],
                                 sort="due_at", limit=200)["items"]
    flags = evidence.flagged(conn, [t["id"] for t in todo + verify])
    return {"staff_code": staff,
            "tasks": [_task(t, "handle", t["id"] in flags) for t in todo],
            "verify": [_task(t, "verify", t["id"] in flags) for t in verify]}


def _task(t: dict[str, Any], kind: Literal["handle", "verify"], flagged: bool) -> Task:
    return Task(id=t["id"], category=t["category"], category_name=t["category_name"],
                description=t["description"], address=t["address"], lon=t["lon"], lat=t["lat"],
                state=t["state"], light=t["light"], due_at=t["due_at"],
                state_since=t["state_since"], grid_code=t["grid_code"], card=t["card"],
                version=t["version"], allowed_actions=t["allowed_actions"], kind=kind,
                flagged=flagged)


def _client_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise FieldError("client_id must be a UUID.", detail={"field": "client_id"}) from exc


def _photo_shas(conn: Connection, refs: list[str]) -> list[str]:
    shas = []
    for ref in refs:
        sha = photo_store.sha_of_url(ref)
        if sha is None:
            raise FieldError("Photos are referred to by their SHA-256.",
                             detail={"field": "photos", "value": ref[:80]})
        shas.append(sha)
    shas = list(dict.fromkeys(shas))
    missing = sorted(set(shas) - set(photo_store.known(conn, shas)))
    if missing:
        raise FieldError("Upload the photos first.", detail={"field": "photos",
                                                             "missing": missing},
                         code="photo_not_uploaded")
    return shas


def act(conn: Connection, incident_id: int, action: str, *, principal: Principal,
        client_id: str, note: str = "", reason: str = "", photos: list[str] | None = None,
        position: dict[str, Any] | None = None) -> dict[str, Any]:
    """One step taken from the phone, at most once per ``client_id``."""
    principal.require(Permission.INCIDENTS_HANDLE)
    cid = _client_id(client_id)
    if action not in FIELD_ACTIONS:
        raise FieldError(f"The phone may {', '.join(FIELD_ACTIONS)}.",
                         detail={"field": "action", "expected": list(FIELD_ACTIONS)})
    if action in ("return", "rework") and not reason.strip():
        raise FieldError("Say why.", detail={"field": "reason"}, code="reason_required")
    fresh = conn.execute(text(
        "INSERT INTO field_receipt (client_id, kind, actor, incident_id, action) "
        "VALUES (:c, 'action', :a, :i, :act) ON CONFLICT DO NOTHING RETURNING client_id"),
        {"c": cid, "a": principal.name, "i": incident_id, "act": action}).scalar()
    if fresh is None:
        old = conn.execute(text("SELECT actor, incident_id, action FROM field_receipt "
                                "WHERE client_id = :c"), {"c": cid}).one()
        if (old.actor, old.incident_id, old.action) != (principal.name, incident_id, action):
            raise Conflict("This client id was used for another request.",
                           detail={"field": "client_id"})
        return {"replayed": True, "incident": handling.get(conn, incident_id,
                                                           principal=principal),
                "evidence": None}
    shas = _photo_shas(conn, photos or [])
    text_note = "\n".join(s for s in (reason.strip(), note.strip()) if s)
    handling.act(conn, incident_id, action, principal=principal, note=text_note,
                 photos=[photo_store.url_of(s) for s in shas])
    event_id = conn.execute(text("SELECT max(id) FROM incident_event WHERE incident_id = :i "
                                 "AND action = :a"), {"i": incident_id, "a": action}).scalar_one()
    photo_store.link(conn, shas, incident_id, event_id)
    check = None
    if action in ("report", "verify"):
        check = evidence.check(conn, incident_id, event_id, stage=action, principal=principal,
                               shas=shas, position=position)
    return {"replayed": False, "incident": handling.get(conn, incident_id, principal=principal),
            "evidence": check}


def report(conn: Connection, snap: Snapshot, *, principal: Principal, client_id: str,
           category: str, lon: float, lat: float, crs: str = "EPSG:4326", address: str = "",
           note: str = "", photos: list[str] | None = None,
           max_outside_m: float = 30_000) -> dict[str, Any]:
    """A field report (采集上报): a new incident from the worker, at most once per client id."""
    cid = _client_id(client_id)
    shas = _photo_shas(conn, photos or [])
    placed, created = intake.create(conn, snap, {
        "source": "grid_worker", "external_id": cid, "category": category,
        "description": note, "address": address, "lon": lon, "lat": lat, "crs": crs},
        principal=principal, max_outside_m=max_outside_m)
    if created and shas:
        event_id = conn.execute(text(
            "INSERT INTO incident_event (incident_id, actor, action, from_state, to_state, note, "
            "photos) VALUES (:i, :a, 'attach', 'received', 'received', '现场照片', "
            "CAST(:p AS jsonb)) RETURNING id"),
            {"i": placed["id"], "a": principal.name,
             "p": _json([photo_store.url_of(s) for s in shas])}).scalar_one()
        photo_store.link(conn, shas, placed["id"], event_id)
    return {"replayed": not created,
            "incident": handling.get(conn, placed["id"], principal=principal)}


def supplement(conn: Connection, incident_id: int, *, principal: Principal, client_id: str,
               note: str = "", photos: list[str] | None = None) -> dict[str, Any]:
    """Add a note and photos to an open case instead of reporting it again (补充)."""
    from layers.field import duplicates

    cid = _client_id(client_id)
    shas = _photo_shas(conn, photos or [])
    if not note.strip() and not shas:
        raise FieldError("Add a note or a photo.", detail={"field": "note"})
    return duplicates.supplement(conn, incident_id, principal=principal, cid=cid,
                                 note=note, shas=shas)


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def case(conn: Connection, incident_id: int, *, principal: Principal) -> dict[str, Any]:
    """A case as the phone shows it: the incident, its history and its evidence checks."""
    inc = handling.get(conn, incident_id, principal=principal)
    return {**inc, "evidence": evidence.for_incident(conn, incident_id, principal=principal)}
