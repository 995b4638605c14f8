"""Alerts: workers who stayed outside their own grids too long while on duty.

A worker's own grids are the grids of their primary and backup assignments in force during the
window (current boundaries). On duty means within a shift (:mod:`.tracks`: fixes no more than
30 minutes apart). A **stay outside** is a run of consecutive good fixes (kept or jitter: the
filter's outliers never raise an alarm) of one shift that all lie outside every own grid (a fix on
a grid's edge is inside: covers semantics); it lasts from its first to its last fix and is
reported when that is longer than ``minutes``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, text

from gis.transform import transformer
from grids.access import Permission, Principal, prefix_of
from grids.codes import normalise
from layers.patrols.coverage import window
from layers.patrols.fixes import read_fixes
from layers.patrols.tracks import good


def stays_outside(t: np.ndarray, shift: np.ndarray, outside: np.ndarray,
                  min_seconds: float) -> list[tuple[int, int]]:
    """(first, last) index of each run of ``outside`` fixes within one shift lasting longer.

    >>> t = np.arange(6) * 600.0
    >>> stays_outside(t, np.zeros(6, int), np.array([0, 1, 1, 1, 0, 1], bool), 1000)
    [(1, 3)]
    """
    if t.size == 0:
        return []
    start = outside & np.r_[True, ~outside[:-1] | (shift[1:] != shift[:-1])]
    end = outside & np.r_[~outside[1:] | (shift[1:] != shift[:-1]), True]
    firsts, lasts = np.flatnonzero(start), np.flatnonzero(end)
    keep = t[lasts] - t[firsts] > min_seconds
    return list(zip(firsts[keep].tolist(), lasts[keep].tolist(), strict=True))


def alerts(conn: Connection, *, since: datetime | None = None, until: datetime | None = None,
           minutes: float = 20, region: str | None = None,
           principal: Principal) -> dict[str, Any]:
    """Every stay outside own grids longer than ``minutes`` in the window, by worker."""
    principal.require(Permission.PATROLS_READ)
    since, until = window(since, until)
    prefix = prefix_of(normalise(region)) if region else ""
    staff = conn.execute(text(
        "SELECT a.staff_id, s.code, s.name, array_agg(DISTINCT r.code ORDER BY r.code) AS grids, "
        "ST_AsBinary(ST_Union(r.geom)) AS g FROM assignment a JOIN staff s ON s.id = a.staff_id "
        "JOIN region_current r ON r.id = a.region_id WHERE r.level = 'grid' "
        "AND a.duty IN ('primary', 'backup') AND a.valid_from < :until "
        "AND (a.valid_to IS NULL OR a.valid_to > :since) AND r.code LIKE :p "
        "AND r.code LIKE ANY(:patterns) GROUP BY a.staff_id, s.code, s.name ORDER BY s.code"),
        {"since": since, "until": until, "p": prefix + "%",
         "patterns": principal.scope.like_patterns()}).all()
    by_id = {r.staff_id: r for r in staff}
    fx = read_fixes(conn, since=since, until=until, staff_ids=list(by_id))
    to_metric = transformer("EPSG:4490", fx.crs)
    out = []
    bounds = np.flatnonzero(np.diff(fx.staff_id)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(fx)], strict=True):
        if hi <= lo:
            continue
        row = by_id[int(fx.staff_id[lo])]
        sel = np.arange(lo, hi)[good(fx.status[lo:hi])]
        own = shapely.from_wkb(bytes(row.g))
        outside = ~shapely.intersects_xy(own, fx.lon[sel], fx.lat[sel])
        stays = stays_outside(fx.t[sel], fx.shift[sel], outside, minutes * 60)
        if not stays:
            continue
        own_m = shapely.transform(
            own, lambda xy, tr=to_metric: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        for a, b in stays:
            idx = sel[a:b + 1]
            far = shapely.distance(own_m, shapely.points(fx.x[idx], fx.y[idx]))
            out.append({"staff": row.code, "name": row.name, "grids": list(row.grids),
                        "started_at": _iso(fx.t[idx[0]]), "ended_at": _iso(fx.t[idx[-1]]),
                        "minutes": round((fx.t[idx[-1]] - fx.t[idx[0]]) / 60, 1),
                        "fixes": int(idx.size), "max_distance_m": round(float(far.max()), 1)})
    return {"since": since.isoformat(), "until": until.isoformat(), "minutes": minutes,
            "region": normalise(region) if region else None, "workers": len(by_id),
            "alerts": out}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat()
