"""Taking in batches of GPS fixes from grid workers' phones.

- **Who.** A grid worker may post only their own fixes; supervisors and admins may post for any
  worker in their jurisdiction. A worker outside it is not found (404), a colleague in it is
  forbidden to a grid worker (403): the whole batch is refused, nothing is written.
- **Late, out of order, duplicated.** Fixes are stored as they come; order is made on read.
  A fix for a worker and instant already stored (a resent batch) is dropped by the primary key
  (``ON CONFLICT DO NOTHING``) and counted as a duplicate.
- **Bad rows** (unparseable or offset-less time, a time in the future, unknown CRS, a coordinate
  that is not a number, out of range, swapped or far from the city, a negative accuracy) are
  reported one by one with their index and reason; the others are stored.
- Coordinates come in any CRS :func:`gis.crs.to_lonlat` knows (per row, or the batch default) and
  are stored in CGCS2000 (EPSG:4490).
- **Coverage for the map.** A trigger notes the days and places of new fixes; the daily coverage
  of the grids there is recomputed after the commit, in the background
  (:mod:`layers.patrols.grid_cover`, ``app.coverage_worker``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gis.crs import parse_crs, to_lonlat
from gis.errors import GisError
from grids.access import Forbidden, Permission, Principal
from grids.errors import GridError
from grids.staffing import StaffNotFound

MAX_FIXES = 10_000
FAR_DEG = 0.3  # ~30 km around the city's bounding box: farther is not a patrol in this city
FUTURE = timedelta(minutes=5)


class PatrolError(GridError):
    code = "invalid_patrol"


def _own_staff_code(conn: Connection, principal: Principal) -> str | None:
    if not principal.name.startswith("user:"):
        return None
    return conn.execute(text(
        "SELECT s.code FROM app_user u JOIN staff s ON s.id = u.staff_id WHERE u.username = :u"),
        {"u": principal.name.removeprefix("user:")}).scalar()


def writable_staff(conn: Connection, codes: set[str], *, principal: Principal) -> dict[str, int]:
    """staff code → id for every code the principal may post fixes for; raise on the first not."""
    principal.require(Permission.PATROLS_WRITE)
    rows = conn.execute(text(
        "SELECT s.code, s.id, coalesce(array_agg(r.code) FILTER (WHERE r.code IS NOT NULL), "
        "'{}') AS regions FROM staff s LEFT JOIN assignment a ON a.staff_id = s.id "
        "AND a.valid_from <= now() AND (a.valid_to IS NULL OR a.valid_to > now()) "
        "LEFT JOIN region r ON r.id = a.region_id WHERE s.code = ANY(:codes) GROUP BY s.id"),
        {"codes": sorted(codes)}).all()
    found = {r.code: r for r in rows}
    own = _own_staff_code(conn, principal) if principal.role == "grid_worker" else None
    for code in sorted(codes):
        row = found.get(code)
        if row is None or not (principal.scope.covers(None)
                               or any(principal.scope.covers(c) for c in row.regions)):
            raise StaffNotFound(f"No staff member {code[:40]} in your jurisdiction.",
                                detail={"field": "staff_code", "value": code[:40]})
        if principal.role == "grid_worker" and code != own:
            raise Forbidden("A grid worker may post only their own fixes.",
                            detail={"field": "staff_code", "value": code[:40]})
    return {code: found[code].id for code in codes}


def _city_box(conn: Connection) -> tuple[float, float, float, float] | None:
    row = conn.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(geom) AS e FROM region_current WHERE level = 'city') q")).one()
    return None if row[0] is None else (float(row[0]), float(row[1]), float(row[2]),
                                         float(row[3]))


def _time(value: Any, now: datetime) -> datetime | str:
    if not isinstance(value, str):
        return "bad_time"
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return "bad_time"
    if at.tzinfo is None:
        return "time_without_offset"
    return "future_time" if at > now + FUTURE else at


def ingest(conn: Connection, fixes: list[dict[str, Any]], *, principal: Principal,
           crs: str = "EPSG:4326", now: datetime | None = None) -> dict[str, Any]:
    """Store a batch of fixes; returns ``{rows, accepted, duplicates, rejected, errors}``.

    Each fix: ``staff_code``, ``time`` (ISO 8601 with offset), ``lon``, ``lat`` (x, y in ``crs``),
    optional ``crs`` (default: the batch's) and ``accuracy_m``.
    """
    principal.require(Permission.PATROLS_WRITE)
    if len(fixes) > MAX_FIXES:
        raise PatrolError(f"At most {MAX_FIXES} fixes a batch.",
                          detail={"field": "fixes", "expected": f"at most {MAX_FIXES} rows"})
    now = now or datetime.now(UTC)
    staff = writable_staff(conn, {str(f.get("staff_code") or "") for f in fixes},
                           principal=principal) if fixes else {}
    n = len(fixes)
    errors: list[dict[str, Any]] = []
    reason: list[str | None] = [None] * n
    times: list[datetime | None] = [None] * n
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    acc = np.full(n, np.nan)
    crs_of: list[str] = [""] * n
    for i, f in enumerate(fixes):
        at = _time(f.get("time"), now)
        if isinstance(at, str):
            reason[i] = at
            continue
        times[i] = at
        a = f.get("accuracy_m")
        if a is not None and (not isinstance(a, int | float) or not math.isfinite(a) or a < 0):
            reason[i] = "bad_accuracy"
            continue
        acc[i] = np.nan if a is None else float(a)
        lon, lat = f.get("lon"), f.get("lat")
        if not isinstance(lon, int | float) or not isinstance(lat, int | float):
            reason[i] = "bad_coordinate"
            continue
        x[i], y[i] = lon, lat
        crs_of[i] = str(f.get("crs") or crs)
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    names: dict[str, str] = {}
    for name in set(crs_of) - {""}:
        rows = np.array([c == name for c in crs_of])
        try:
            names[name] = parse_crs(name).name
            with np.errstate(all="ignore"):
                lon[rows], lat[rows] = to_lonlat(x[rows], y[rows], name)
        except GisError:
            for j in np.flatnonzero(rows).tolist():
                reason[j] = "unknown_crs"
    box = _city_box(conn)
    for i in range(n):
        if reason[i] is not None:
            continue
        lo, la = lon[i], lat[i]
        if not (math.isfinite(lo) and math.isfinite(la)):
            reason[i] = "bad_coordinate"
        elif box is not None and not _near(box, lo, la):
            reason[i] = "swapped_coordinate" if _near(box, la, lo) else "far_from_city"
        elif not (-180 <= lo <= 180 and -90 <= la <= 90):
            reason[i] = "out_of_range"
    for i, r in enumerate(reason):
        if r is not None:
            errors.append({"row": i, "staff_code": fixes[i].get("staff_code"), "reason": r,
                           "message": MESSAGES[r]})
    ok = [i for i in range(n) if reason[i] is None]
    accepted = 0
    if ok:
        accepted = conn.execute(text(
            "INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m, crs_in) "
            "SELECT s, t, ST_SetSRID(ST_MakePoint(x, y), 4490), a, c "
            "FROM unnest(CAST(:s AS int[]), CAST(:t AS timestamptz[]), CAST(:x AS float8[]), "
            "CAST(:y AS float8[]), CAST(:a AS real[]), CAST(:c AS text[])) AS u(s, t, x, y, a, c) "
            "ON CONFLICT DO NOTHING"), {
                "s": [staff[str(fixes[i]["staff_code"])] for i in ok],
                "t": [times[i] for i in ok],
                "x": lon[ok].tolist(), "y": lat[ok].tolist(),
                "a": [None if math.isnan(acc[i]) else float(acc[i]) for i in ok],
                "c": [names[crs_of[i]] for i in ok]}).rowcount
    return {"rows": n, "accepted": accepted, "duplicates": len(ok) - accepted,
            "rejected": n - len(ok), "errors": errors[:1000]}


def _near(box: tuple[float, float, float, float], lon: float, lat: float) -> bool:
    return (box[0] - FAR_DEG <= lon <= box[2] + FAR_DEG
            and box[1] - FAR_DEG <= lat <= box[3] + FAR_DEG)


MESSAGES = {
    "bad_time": "time must be ISO 8601 with an offset, e.g. 2026-05-01T08:30:00+08:00",
    "time_without_offset": "time has no offset (+08:00 or Z): the instant is ambiguous",
    "future_time": "time is in the future",
    "bad_accuracy": "accuracy_m must be a number ≥ 0",
    "bad_coordinate": "lon and lat must be finite numbers",
    "unknown_crs": "unknown CRS: use wgs84, cgcs2000, gcj02, bd09 or an EPSG code",
    "out_of_range": "lon must be within ±180 and lat within ±90",
    "swapped_coordinate": "lon and lat look swapped",
    "far_from_city": "the point is far from the city",
}
