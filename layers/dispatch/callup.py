"""Call-ups (集结调度) for emergencies and major events: who to call for an area, and their answers.

An **area** is a polygon (GeoJSON, WGS84 / CGCS2000 lon-lat, as drawn on the portal's map) or a
region code. Who is called for it:

- **responsible**: the primary and backup workers of every grid the area intersects (for a region
  code, every grid under it), as assigned now;
- **heads**: the grids' own heads (网格长, the grid chief, a ``head`` duty on the grid) and the
  heads of the communities and streets above them (the chain the locator names above a grid:
  community head, street officer);
- **nearest**: the available staff closest to the area by their last GPS fix (``patrol_fix``),
  measured in the city's metric CRS (:func:`grids.city.profile`), no older than ``max_fix_age``,
  at most ``limit`` of them, not already called above.

A person appears once, under the first reason that names them. Only ``available`` staff are
called; the others are listed (``will_call`` false) so the desk sees who is missing.

Permissions: dispatchers and supervisors (and admins) call up inside their jurisdiction (a
city-wide dispatcher anywhere, :meth:`Principal.locate_scope`); grids of a drawn area outside it
are left out, and the nearest are taken among staff assigned inside it. Everyone called answers
their own task (acknowledge, decline with a note, arrived); the desk may record an answer on a
person's behalf (a phone call), which is kept as answered by the desk user.

**Event mode** (重大活动): a call-up with a window (``window_from``, ``window_to``) puts each
person called as ``nearest`` on the area's grid nearest to their fix as a ``backup`` assignment
for the window. The assignment ends by itself (``valid_to``): the locator reads assignments in
force and reloads at their next start or end. Adding assignments needs ``assignments:write``
(supervisors), so a dispatcher cannot open an event window. A decline or closing the call-up ends
the reinforcements still to run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, text

from grids.access import Forbidden, Permission, Principal, Scope, mask_person
from grids.city import profile
from grids.codes import normalise
from grids.errors import Conflict, GridError, RegionNotFound
from layers.patrols.intake import _own_staff_code

CALLERS = frozenset({"admin", "supervisor", "dispatcher"})
KINDS = ("routine", "event", "emergency")
ANSWERS = {"acknowledge": "acknowledged", "decline": "declined", "arrive": "arrived"}
MAX_GRIDS = 400          # a street is ~100 grids; an area wider than a few streets is refused
MAX_NEAREST = 200
DEFAULT_NEAREST = 10
DEFAULT_FIX_AGE_MIN = 24 * 60


class CallupError(GridError):
    code = "invalid_callup"


class CallupNotFound(RegionNotFound):
    code = "callup_not_found"


def _require_caller(principal: Principal) -> Scope:
    principal.require(Permission.INCIDENTS_HANDLE)
    if principal.role not in CALLERS:
        raise Forbidden(f"The {principal.role} role may not send call-ups.",
                        detail={"role": principal.role, "allowed": sorted(CALLERS)})
    return principal.locate_scope()


# -- the area ----------------------------------------------------------------------------------------
def _area_sql(area: dict[str, Any] | None, region_code: str | None) -> tuple[str, dict[str, Any]]:
    """SQL for one row ``g`` (MultiPolygon, 4490) of the area, and its parameters."""
    if (area is None) == (region_code is None):
        raise CallupError("Give either a drawn area (GeoJSON polygon) or a region code.",
                          detail={"field": "area", "fields": ["area", "region_code"]},
                          code="area_required")
    if area is not None:
        geom = area.get("geometry", area) if area.get("type") == "Feature" else area
        if not isinstance(geom, dict) or geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise CallupError("The area must be a GeoJSON Polygon or MultiPolygon.",
                              detail={"field": "area", "expected": "Polygon"},
                              code="invalid_area")
        return ("SELECT ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_SetSRID("
                "ST_GeomFromGeoJSON(:gj), 4490)), 3)) AS g"), {"gj": orjson.dumps(geom).decode()}
    return ("SELECT ST_Multi(geom) AS g FROM region_current WHERE code = :rc",
            {"rc": normalise(str(region_code))})


def _check_area(conn: Connection, area_sql: str, params: dict[str, Any],
                region_code: str | None, scope: Scope) -> None:
    if region_code is not None:
        code = params["rc"]
        if not scope.covers(code) or conn.execute(text(
                "SELECT 1 FROM region_current WHERE code = :rc"), params).first() is None:
            raise RegionNotFound(f"No region {code} in your jurisdiction.",
                                 detail={"field": "region_code", "value": code})
        return
    try:
        with conn.begin_nested():
            row = conn.execute(text(
                f"WITH a AS ({area_sql}) SELECT ST_IsEmpty(g) AS empty, "
                "ST_NPoints(g) AS n FROM a"), params).one()
    except Exception as exc:  # noqa: BLE001 - PostGIS says why the GeoJSON is not a polygon
        raise CallupError("The area is not a valid GeoJSON polygon.",
                          detail={"field": "area", "reason": str(exc).splitlines()[0][:200]},
                          code="invalid_area") from None
    if row.empty or row.n is None or row.n < 4:
        raise CallupError("The area is empty.", detail={"field": "area"}, code="invalid_area")
    if row.n > 5000:
        raise CallupError("The area has too many vertices (at most 5000).",
                          detail={"field": "area", "limit": 5000, "value": row.n},
                          code="invalid_area")


def _grids(conn: Connection, area_sql: str, params: dict[str, Any], region_code: str | None,
           scope: Scope) -> tuple[list[dict[str, Any]], int]:
    """The grids of the area in the caller's scope, and how many were left out as outside it."""
    if region_code is not None:
        code = params["rc"]
        prefix = Scope.of(code).prefixes[0]
        rows = conn.execute(text(
            "SELECT r.code, r.name, r.parent_code FROM region_current r WHERE r.level = 'grid' "
            "AND (r.code = :rc OR r.code LIKE :p) ORDER BY r.code LIMIT :n"),
            {**params, "p": prefix + "%", "n": MAX_GRIDS + 1}).mappings().all()
        outside = 0
    else:
        rows = conn.execute(text(
            f"WITH a AS ({area_sql}) SELECT r.code, r.name, r.parent_code, "
            "r.code LIKE ANY(:patterns) AS mine FROM region_current r, a "
            "WHERE r.level = 'grid' AND ST_Intersects(r.geom, a.g) "
            "AND NOT ST_Touches(r.geom, a.g) ORDER BY r.code LIMIT :n"),
            {**params, "patterns": scope.like_patterns(), "n": 4 * MAX_GRIDS}).mappings().all()
        outside = sum(1 for r in rows if not r["mine"])
        rows = [r for r in rows if r["mine"]]
    if len(rows) > MAX_GRIDS:
        raise CallupError(f"The area holds more than {MAX_GRIDS} grids: draw a smaller one.",
                          detail={"field": "area", "limit": MAX_GRIDS}, code="area_too_large")
    if not rows:
        raise CallupError("No grid of your jurisdiction lies in this area.",
                          detail={"field": "area", "outside_jurisdiction": outside},
                          code="no_grids_in_area")
    return [{"code": r["code"], "name": r["name"], "parent_code": r["parent_code"]}
            for r in rows], outside


def _person(row: Any, reason: str, now: datetime) -> dict[str, Any]:
    fix_at = row["fix_at"]
    return {"staff_code": row["code"], "name": row["name"], "phone": row["phone"],
            "role": row["role"], "status": row["status"], "reason": reason,
            "region_code": row["region_code"],
            "distance_m": None if row["distance_m"] is None else round(float(row["distance_m"]), 1),
            "fix_at": fix_at,
            "fix_lon": None if row["fix_lon"] is None else round(float(row["fix_lon"]), 6),
            "fix_lat": None if row["fix_lat"] is None else round(float(row["fix_lat"]), 6),
            "fix_age_s": None if fix_at is None else max(0, int((now - fix_at).total_seconds())),
            "will_call": row["status"] == "available"}


_LAST_FIX = (
    "LEFT JOIN LATERAL (SELECT f.at, f.geom FROM patrol_fix f WHERE f.staff_id = s.id "
    "AND f.at <= :now AND f.at > :since ORDER BY f.at DESC LIMIT 1) lf ON true "
)


def who(conn: Connection, *, principal: Principal, area: dict[str, Any] | None = None,
        region_code: str | None = None, limit: int = DEFAULT_NEAREST,
        max_fix_age_min: int = DEFAULT_FIX_AGE_MIN, now: datetime | None = None
        ) -> dict[str, Any]:
    """Who a call-up for this area would reach: grids, responsible, heads, nearest."""
    scope = _require_caller(principal)
    if not 0 <= limit <= MAX_NEAREST:
        raise CallupError(f"limit must be between 0 and {MAX_NEAREST}.",
                          detail={"field": "limit", "value": limit}, code="invalid_limit")
    if not 1 <= max_fix_age_min <= 60 * 24 * 31:
        raise CallupError("max_fix_age_min must be between 1 and 44640 (31 days).",
                          detail={"field": "max_fix_age_min", "value": max_fix_age_min},
                          code="invalid_limit")
    now = now or datetime.now(UTC)
    area_sql, params = _area_sql(area, region_code)
    _check_area(conn, area_sql, params, region_code, scope)
    grids, outside = _grids(conn, area_sql, params, region_code, scope)
    grid_codes = [g["code"] for g in grids]
    # metres in the area's city zone (a province's cities each have theirs: migration 0030)
    srid = profile(conn).metric_srid_for(region_code or (grid_codes[0] if grid_codes else None))
    base = {**params, "now": now, "since": now - timedelta(minutes=max_fix_age_min),
            "srid": srid}
    # The chain above the grids: their communities, streets (the city's head is the command
    # centre itself, which is who is calling).
    chain = conn.execute(text(
        "WITH RECURSIVE up AS (SELECT id, parent_id, code, level FROM region_current "
        " WHERE code = ANY(:g) UNION SELECT p.id, p.parent_id, p.code, p.level "
        " FROM region_current p JOIN up ON p.id = up.parent_id) "
        "SELECT DISTINCT code FROM up WHERE level IN ('community', 'street')"),
        {"g": grid_codes}).scalars().all()
    dist = "ST_Distance(ST_Transform(lf.geom, CAST(:srid AS integer)), a.gm)"
    xy = "ST_X(lf.geom) AS fix_lon, ST_Y(lf.geom) AS fix_lat"
    # the area once in metres (not once per person)
    with_area = (f"WITH a0 AS ({area_sql}), a AS (SELECT g, ST_Transform(g, CAST(:srid AS "
                 "integer)) AS gm FROM a0) ")
    rows = conn.execute(text(
        f"{with_area}"
        f"SELECT s.id, s.code, s.name, s.phone, s.role, s.status, x.duty, r.code AS region_code, "
        f"lf.at AS fix_at, {dist} AS distance_m, {xy} "
        "FROM assignment x JOIN region r ON r.id = x.region_id JOIN staff s ON s.id = x.staff_id "
        f"CROSS JOIN a {_LAST_FIX}"
        "WHERE x.valid_from <= :now AND (x.valid_to IS NULL OR x.valid_to > :now) AND ("
        " r.code = ANY(:g) OR "
        " (r.code = ANY(:chain) AND x.duty = 'head')) "
        "ORDER BY CASE x.duty WHEN 'primary' THEN 0 WHEN 'backup' THEN 1 ELSE 2 END, "
        "CASE r.level WHEN 'grid' THEN 0 WHEN 'community' THEN 1 ELSE 2 END, r.code, s.code"),
        {**base, "g": grid_codes, "chain": list(chain)}).mappings().all()
    seen: set[str] = set()
    responsible: list[dict[str, Any]] = []
    heads: list[dict[str, Any]] = []
    for row in rows:
        if row["code"] in seen:
            continue
        seen.add(row["code"])
        (heads if row["duty"] == "head" else responsible).append(
            _person(row, row["duty"], now))
    nearest: list[dict[str, Any]] = []
    if limit:
        in_scope = "" if scope.covers(None) else (
            "AND EXISTS (SELECT 1 FROM assignment a2 JOIN region r2 ON r2.id = a2.region_id "
            "WHERE a2.staff_id = s.id AND a2.valid_from <= :now AND (a2.valid_to IS NULL OR "
            "a2.valid_to > :now) AND r2.code LIKE ANY(:patterns)) ")
        near = conn.execute(text(
            f"{with_area}"
            "SELECT s.id, s.code, s.name, s.phone, s.role, s.status, lf.at AS fix_at, "
            f"{dist} AS distance_m, {xy}, (SELECT r3.code FROM assignment a3 JOIN region r3 "
            " ON r3.id = a3.region_id WHERE a3.staff_id = s.id AND a3.valid_from <= :now AND "
            " (a3.valid_to IS NULL OR a3.valid_to > :now) ORDER BY a3.duty <> 'primary', r3.code "
            " LIMIT 1) AS region_code "
            "FROM staff s CROSS JOIN a "
            "CROSS JOIN LATERAL (SELECT f.at, f.geom FROM patrol_fix f WHERE f.staff_id = s.id "
            " AND f.at <= :now AND f.at > :since ORDER BY f.at DESC LIMIT 1) lf "
            "WHERE s.status = 'available' AND NOT (s.code = ANY(:seen)) "
            f"{in_scope}ORDER BY distance_m, lf.at DESC, s.code LIMIT :n"),
            {**base, "seen": sorted(seen), "patterns": scope.like_patterns(), "n": limit}
        ).mappings().all()
        nearest = [_person(r, "nearest", now) for r in near]
    people = responsible + heads + nearest
    for p in people:
        visible = mask_person({"phone": p["phone"]}, principal, p["region_code"])
        p["phone"] = visible["phone"]
    return {"grids": grids, "outside_jurisdiction": outside, "responsible": responsible,
            "heads": heads, "nearest": nearest,
            "to_call": sum(1 for p in people if p["will_call"]),
            "max_fix_age_min": max_fix_age_min, "limit": limit, "as_of": now}


# -- sending -----------------------------------------------------------------------------------------
def _incident_in_scope(conn: Connection, incident_id: int, scope: Scope) -> None:
    from layers.incidents.handling import IncidentNotFound

    row = conn.execute(text("SELECT region_code FROM incident WHERE id = :i"),
                       {"i": incident_id}).first()
    if row is None or not scope.covers(row.region_code):
        raise IncidentNotFound(f"No incident {incident_id} in your jurisdiction.",
                               detail={"field": "incident_id", "value": incident_id})


def send(conn: Connection, *, principal: Principal, kind: str, title: str, note: str = "",
         area: dict[str, Any] | None = None, region_code: str | None = None,
         incident_id: int | None = None, window_from: datetime | None = None,
         window_to: datetime | None = None, limit: int = DEFAULT_NEAREST,
         max_fix_age_min: int = DEFAULT_FIX_AGE_MIN, exclude: list[str] | None = None
         ) -> dict[str, Any]:
    """Send a call-up: one row, one task per available person :func:`who` names (less
    ``exclude``), and for an event the reinforcements of its window."""
    scope = _require_caller(principal)
    if kind not in KINDS:
        raise CallupError(f"Unknown kind {kind[:20]!r}.", detail={"field": "kind",
                                                                   "expected": list(KINDS)},
                          code="invalid_kind")
    now = datetime.now(UTC)
    if (window_from is None) != (window_to is None):
        raise CallupError("An event window needs both its start and its end.",
                          detail={"field": "window_to"}, code="invalid_window")
    if kind == "event" and window_to is None:
        raise CallupError("A major event (event) needs a window.",
                          detail={"field": "window_from"}, code="invalid_window")
    if window_from is not None and window_to is not None:
        principal.require(Permission.ASSIGNMENTS_WRITE)
        if window_to <= window_from or window_to <= now:
            raise CallupError("The window must end after it starts, and in the future.",
                              detail={"field": "window_to"}, code="invalid_window")
        if window_to - window_from > timedelta(days=31):
            raise CallupError("An event window is at most 31 days.",
                              detail={"field": "window_to", "limit_days": 31},
                              code="invalid_window")
    if incident_id is not None:
        _incident_in_scope(conn, incident_id, scope)
    plan = who(conn, principal=principal, area=area, region_code=region_code, limit=limit,
               max_fix_age_min=max_fix_age_min, now=now)
    skip = set(exclude or [])
    people = [p for p in plan["responsible"] + plan["heads"] + plan["nearest"]
              if p["will_call"] and p["staff_code"] not in skip]
    if not people:
        raise CallupError("Nobody available to call in this area.",
                          detail={"field": "area", "grids": len(plan["grids"])},
                          code="nobody_to_call")
    grid_codes = [g["code"] for g in plan["grids"]]
    streets = {c[:9] for c in grid_codes}
    if region_code is not None:
        home = normalise(region_code)
    elif len(streets) == 1:  # the street of the area, or the city when it spans several
        home = next(iter(streets)) + "000"
    else:
        home = min(grid_codes)[:6] + "000000"
    area_sql, params = _area_sql(area, region_code)
    callup_id = conn.execute(text(
        f"WITH a AS ({area_sql}) INSERT INTO callup (kind, title, note, region_code, area, "
        "grid_codes, incident_id, window_from, window_to, created_by) "
        "SELECT :kind, :title, :note, :home, a.g, :grids, :inc, :wf, :wt, :by FROM a "
        "RETURNING id"),
        {**params, "kind": kind, "title": title, "note": note, "home": home, "grids": grid_codes,
         "inc": incident_id, "wf": window_from, "wt": window_to, "by": principal.name}
    ).scalar_one()
    for p in people:
        task_id = conn.execute(text(
            "INSERT INTO callup_task (callup_id, staff_id, region_code, reason, distance_m, "
            "fix_at) SELECT :c, s.id, :rc, :reason, :d, :fix FROM staff s WHERE s.code = :s "
            "RETURNING id"),
            {"c": callup_id, "s": p["staff_code"], "rc": p["region_code"] or home,
             "reason": p["reason"], "d": p["distance_m"], "fix": p["fix_at"]}).scalar_one()
        if window_to is not None and p["reason"] == "nearest":
            _reinforce(conn, callup_id, task_id, p["staff_code"], area_sql, params, grid_codes,
                       max(window_from or now, now), window_to)
    return get(conn, callup_id, principal=principal)


def _reinforce(conn: Connection, callup_id: int, task_id: int, staff_code: str, area_sql: str,
               params: dict[str, Any], grid_codes: list[str], start: datetime,
               end: datetime) -> None:
    """A backup assignment for the window on the area's grid nearest the person's last fix."""
    row = conn.execute(text(
        "SELECT s.id AS staff_id, r.id AS region_id FROM staff s "
        "CROSS JOIN LATERAL (SELECT geom FROM patrol_fix WHERE staff_id = s.id "
        " ORDER BY at DESC LIMIT 1) f "
        "CROSS JOIN LATERAL (SELECT id FROM region_current WHERE code = ANY(:g) "
        " ORDER BY geom <-> f.geom, code LIMIT 1) r WHERE s.code = :s"),
        {"s": staff_code, "g": grid_codes}).mappings().first()
    if row is None:
        return
    clash = conn.execute(text(
        "SELECT 1 FROM assignment WHERE staff_id = :s AND region_id = :r AND duty = 'backup' "
        "AND tstzrange(valid_from, valid_to) && tstzrange(:a, :b)"),
        {"s": row["staff_id"], "r": row["region_id"], "a": start, "b": end}).first()
    if clash:
        return  # already a backup there during the window
    aid = conn.execute(text(
        "INSERT INTO assignment (staff_id, region_id, duty, valid_from, valid_to) "
        "VALUES (:s, :r, 'backup', :a, :b) RETURNING id"),
        {"s": row["staff_id"], "r": row["region_id"], "a": start, "b": end}).scalar_one()
    conn.execute(text("INSERT INTO callup_reinforcement (callup_id, assignment_id, task_id) "
                      "VALUES (:c, :a, :t)"), {"c": callup_id, "a": aid, "t": task_id})


def _end_reinforcements(conn: Connection, callup_id: int, task_id: int | None = None) -> int:
    """End the reinforcements of a call-up (or of one task) that are still to run."""
    return conn.execute(text(
        "UPDATE assignment a SET valid_to = greatest(now(), a.valid_from + "
        "interval '1 microsecond') FROM callup_reinforcement cr WHERE cr.assignment_id = a.id "
        "AND cr.callup_id = :c AND (CAST(:t AS bigint) IS NULL OR cr.task_id = :t) "
        "AND a.valid_to > now()"), {"c": callup_id, "t": task_id}).rowcount


# -- reading -----------------------------------------------------------------------------------------
_CALLUP_COLS = (
    "c.id, c.kind, c.title, c.note, c.region_code, c.grid_codes, c.incident_id, c.window_from, "
    "c.window_to, c.created_by, c.created_at, c.closed_at, c.closed_by, "
    "ST_AsGeoJSON(c.area, 6) AS area")


def _tasks(conn: Connection, callup_id: int, principal: Principal) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT t.id, s.code AS staff_code, s.name, s.phone, s.role, t.region_code, t.reason, "
        "t.distance_m, t.fix_at, t.state, t.note, t.answered_at, t.answered_by, t.arrived_at, "
        "(SELECT json_agg(json_build_object('grid_code', r.code, 'valid_from', a.valid_from, "
        "  'valid_to', a.valid_to) ORDER BY a.id) FROM callup_reinforcement cr "
        "  JOIN assignment a ON a.id = cr.assignment_id JOIN region r ON r.id = a.region_id "
        "  WHERE cr.task_id = t.id) AS reinforcements "
        "FROM callup_task t JOIN staff s ON s.id = t.staff_id WHERE t.callup_id = :c "
        "ORDER BY array_position(ARRAY['primary', 'backup', 'head', 'nearest'], t.reason), "
        "t.distance_m NULLS FIRST, s.code"), {"c": callup_id}).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        d["phone"] = mask_person({"phone": d["phone"]}, principal, d["region_code"])["phone"]
        d["reinforcements"] = d["reinforcements"] or []
        out.append(d)
    return out


def _summary(tasks: list[dict[str, Any]]) -> dict[str, int]:
    counts = {s: 0 for s in ("sent", "acknowledged", "declined", "arrived")}
    for t in tasks:
        counts[t["state"]] += 1
    return counts


def _public(row: Any, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(row)
    out["area"] = orjson.loads(out["area"]) if out["area"] else None
    out["tasks"] = tasks
    out["answers"] = _summary(tasks)
    return out


def _visible(conn: Connection, callup_id: int, principal: Principal) -> Any:
    row = conn.execute(text(f"SELECT {_CALLUP_COLS} FROM callup c WHERE c.id = :c"),
                       {"c": callup_id}).mappings().first()
    if row is not None:
        if principal.role in CALLERS and principal.locate_scope().covers(row["region_code"]):
            return row
        if principal.role in CALLERS and any(principal.locate_scope().covers(g)
                                             for g in row["grid_codes"]):
            return row
        staff = _own_staff_code(conn, principal)
        if staff and conn.execute(text(
                "SELECT 1 FROM callup_task t JOIN staff s ON s.id = t.staff_id "
                "WHERE t.callup_id = :c AND s.code = :s"), {"c": callup_id, "s": staff}).first():
            return row
    raise CallupNotFound(f"No call-up {callup_id} in your jurisdiction.",
                         detail={"field": "id", "value": callup_id})


def get(conn: Connection, callup_id: int, *, principal: Principal) -> dict[str, Any]:
    """One call-up with its tasks and answers (the tasks' people masked as the caller sees)."""
    principal.require(Permission.INCIDENTS_READ)
    row = _visible(conn, callup_id, principal)
    return _public(row, _tasks(conn, callup_id, principal))


def list_callups(conn: Connection, *, principal: Principal, open_only: bool = True,
                 incident_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Call-ups in the caller's jurisdiction, newest first, with their answer counts."""
    scope = _require_caller(principal)
    rows = conn.execute(text(
        "SELECT c.id, c.kind, c.title, c.region_code, c.incident_id, c.window_from, "
        "c.window_to, c.created_by, c.created_at, c.closed_at, cardinality(c.grid_codes) AS grids, "
        "count(t.id) AS called, count(t.id) FILTER (WHERE t.state = 'acknowledged') AS "
        "acknowledged, count(t.id) FILTER (WHERE t.state = 'declined') AS declined, "
        "count(t.id) FILTER (WHERE t.state = 'arrived') AS arrived "
        "FROM callup c LEFT JOIN callup_task t ON t.callup_id = c.id "
        "WHERE (NOT :open OR c.closed_at IS NULL) "
        "AND (CAST(:inc AS bigint) IS NULL OR c.incident_id = :inc) "
        "AND (c.region_code LIKE ANY(:patterns) OR EXISTS (SELECT 1 FROM unnest(c.grid_codes) g "
        " WHERE g LIKE ANY(:patterns))) "
        "GROUP BY c.id ORDER BY c.created_at DESC, c.id DESC LIMIT :n"),
        {"open": open_only, "inc": incident_id, "patterns": scope.like_patterns(),
         "n": limit}).mappings().all()
    return [dict(r) for r in rows]


def mine(conn: Connection, *, principal: Principal) -> dict[str, Any]:
    """My call-up tasks on open call-ups (the phone's inbox), newest first."""
    principal.require(Permission.INCIDENTS_READ)
    staff = _own_staff_code(conn, principal)
    if not staff:
        return {"staff_code": None, "items": []}
    rows = conn.execute(text(
        "SELECT c.id AS callup_id, c.kind, c.title, c.note, c.incident_id, c.window_from, "
        "c.window_to, c.created_at, c.created_by, t.id AS task_id, t.reason, t.region_code, "
        "t.state, t.note AS answer_note, t.answered_at, t.arrived_at, "
        "round(ST_X(ST_PointOnSurface(c.area))::numeric, 6)::float8 AS lon, "
        "round(ST_Y(ST_PointOnSurface(c.area))::numeric, 6)::float8 AS lat "
        "FROM callup_task t JOIN callup c ON c.id = t.callup_id JOIN staff s ON s.id = t.staff_id "
        "WHERE s.code = :s AND c.closed_at IS NULL ORDER BY c.created_at DESC LIMIT 50"),
        {"s": staff}).mappings().all()
    return {"staff_code": staff, "items": [dict(r) for r in rows]}


# -- answering and closing ---------------------------------------------------------------------------
def answer(conn: Connection, callup_id: int, *, principal: Principal, answer: str,
           note: str = "", staff_code: str | None = None) -> dict[str, Any]:
    """Record a person's answer: ``acknowledge``, ``decline`` (with a note) or ``arrive``.

    A grid worker answers their own task only; a caller (dispatcher, supervisor) may record the
    answer of anyone called, naming them by ``staff_code``.
    """
    principal.require(Permission.INCIDENTS_HANDLE)
    if answer not in ANSWERS:
        raise CallupError(f"Unknown answer {answer[:20]!r}.",
                          detail={"field": "answer", "expected": list(ANSWERS)},
                          code="invalid_answer")
    note = note.strip()
    if answer == "decline" and not note:
        raise CallupError("Say why you decline.", detail={"field": "note"},
                          code="note_required")
    _visible(conn, callup_id, principal)
    own = _own_staff_code(conn, principal)
    if staff_code is None or staff_code == own:
        staff_code = own
        if staff_code is None:
            raise CallupError("Name the person who answers (staff_code).",
                              detail={"field": "staff_code"}, code="staff_code_required")
    elif principal.role not in CALLERS:
        raise Forbidden("A grid worker answers only their own call-up task.",
                        detail={"field": "staff_code", "value": staff_code[:40]})
    row = conn.execute(text(
        "SELECT t.id, t.state, c.closed_at FROM callup_task t JOIN callup c ON c.id = t.callup_id "
        "JOIN staff s ON s.id = t.staff_id WHERE t.callup_id = :c AND s.code = :s "
        "FOR UPDATE OF t"), {"c": callup_id, "s": staff_code}).mappings().first()
    if row is None:
        raise CallupNotFound(f"{staff_code[:40]} was not called in call-up {callup_id}.",
                             detail={"field": "staff_code", "value": staff_code[:40]},
                             code="callup_task_not_found")
    if row["closed_at"] is not None:
        raise Conflict("This call-up is closed.", detail={"field": "id", "value": callup_id,
                                                          "closed_at": row["closed_at"]})
    if answer == "arrive" and row["state"] == "declined":
        raise Conflict("A declined call-up cannot be marked arrived; acknowledge it first.",
                       detail={"field": "answer", "state": row["state"]})
    state = ANSWERS[answer]
    conn.execute(text(
        "UPDATE callup_task SET state = :st, note = CASE WHEN :note = '' THEN note ELSE :note END, "
        "answered_at = CASE WHEN :st = 'arrived' AND answered_at IS NOT NULL THEN answered_at "
        "ELSE now() END, answered_by = :by, "
        "arrived_at = CASE WHEN :st = 'arrived' THEN now() ELSE arrived_at END WHERE id = :id"),
        {"st": state, "note": note, "by": principal.name, "id": row["id"]})
    if state == "declined":
        _end_reinforcements(conn, callup_id, row["id"])
    return get(conn, callup_id, principal=principal)


def close(conn: Connection, callup_id: int, *, principal: Principal) -> dict[str, Any]:
    """Close a call-up: it leaves the phones' inboxes; reinforcements still to run end now."""
    _require_caller(principal)
    row = _visible(conn, callup_id, principal)
    if row["closed_at"] is not None:
        raise Conflict("This call-up is already closed.",
                       detail={"field": "id", "closed_at": row["closed_at"]})
    conn.execute(text("UPDATE callup SET closed_at = now(), closed_by = :by WHERE id = :c"),
                 {"c": callup_id, "by": principal.name})
    _end_reinforcements(conn, callup_id)
    return get(conn, callup_id, principal=principal)
