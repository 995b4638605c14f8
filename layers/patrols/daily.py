"""A worker's day: the tracks of each shift as GeoJSON, with what the filter did."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, TypedDict

import shapely
from shapely.geometry import mapping
from sqlalchemy import Connection, text

from gis.geojson import Feature, FeatureCollection
from grids.access import Permission, Principal
from grids.city import profile
from grids.staffing import StaffNotFound
from layers.patrols.fixes import read_fixes
from layers.patrols.tracks import KEPT, REASONS, good, lines


class ShiftProps(TypedDict):
    """One shift's track: when, how many fixes the filter kept or dropped (by reason), how far."""

    shift: int
    started_at: str
    ended_at: str
    fixes: int
    kept: int
    good: int
    dropped: dict[str, int]
    length_m: float
    duration_s: float
    mean_speed_mps: float


class DayProps(TypedDict):
    staff: str
    name: str
    date: str
    crs: str
    fixes: int
    dropped: dict[str, int]
    shifts: int
    length_m: float
    rule: str


class DayTracks(FeatureCollection[Feature[ShiftProps]]):
    """A worker's day: one LineString feature a shift, the day's totals as ``properties``."""

    properties: DayProps


def readable_staff(conn: Connection, code: str, *, principal: Principal) -> dict[str, Any]:
    """A staff member whose assignments (now) lie in the principal's jurisdiction, else 404."""
    principal.require(Permission.PATROLS_READ)
    row = conn.execute(text(
        "SELECT s.id, s.code, s.name, coalesce(array_agg(r.code ORDER BY r.code) "
        "FILTER (WHERE r.code IS NOT NULL), '{}') AS region_codes FROM staff s "
        "LEFT JOIN assignment a ON a.staff_id = s.id AND a.valid_from <= now() "
        "AND (a.valid_to IS NULL OR a.valid_to > now()) LEFT JOIN region r ON r.id = a.region_id "
        "WHERE s.code = :c GROUP BY s.id"), {"c": code}).mappings().first()
    if row is None or not (principal.scope.covers(None)
                           or any(principal.scope.covers(c) for c in row["region_codes"])):
        raise StaffNotFound(f"No staff member {code[:40]} in your jurisdiction.",
                            detail={"field": "staff", "value": code[:40]})
    return dict(row)


def _iso(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone(tz).isoformat()


def day_tracks(conn: Connection, staff_code: str, day: date, *,
               principal: Principal) -> DayTracks:
    """The worker's tracks on ``day`` (local time): a FeatureCollection, one feature a shift."""
    staff = readable_staff(conn, staff_code, principal=principal)
    tz = profile(conn).tz  # a "day" is the city's calendar day
    start = datetime.combine(day, time(0), tz)
    fx = read_fixes(conn, since=start, until=start + timedelta(days=1), staff_ids=[staff["id"]])
    kept = fx.status == KEPT
    keys, geoms = lines(fx.shift[kept], fx.lon[kept], fx.lat[kept])
    _, metric = lines(fx.shift[kept], fx.x[kept], fx.y[kept])
    features: list[Feature[ShiftProps]] = []
    for key, geom, m in zip(keys.tolist(), geoms, metric, strict=True):
        sel = fx.shift == key
        t = fx.t[sel]
        dropped = {name: int((fx.status[sel] == code).sum()) for code, name in REASONS.items()}
        length = float(shapely.length(m))
        duration = float(t[-1] - t[0])
        features.append({"type": "Feature", "geometry": mapping(geom),
                         "properties": {
                             "shift": int(key), "started_at": _iso(t[0], tz),
                             "ended_at": _iso(t[-1], tz),
                             "fixes": int(sel.sum()), "kept": int((fx.status[sel] == KEPT).sum()),
                             "good": int(good(fx.status[sel]).sum()), "dropped": dropped,
                             "length_m": round(length, 1), "duration_s": round(duration, 1),
                             "mean_speed_mps": round(length / duration, 3) if duration else 0.0}})
    return {"type": "FeatureCollection", "features": features,
            "properties": {"staff": staff["code"], "name": staff["name"], "date": day.isoformat(),
                           "crs": "EPSG:4490", "fixes": len(fx),
                           "dropped": {name: int((fx.status == code).sum())
                                       for code, name in REASONS.items()},
                           "shifts": len(features),
                           "length_m": round(sum(f["properties"]["length_m"]
                                                 for f in features), 1),
                           "rule": "shifts split at gaps > 30 min; accuracy > 100 m, "
                                   "speed > 30 m/s dropped; steps < 5 m collapsed"}}

