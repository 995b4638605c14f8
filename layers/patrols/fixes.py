"""Reading stored fixes as columns and cleaning them worker by worker (see :mod:`.tracks`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gis.transform import transformer
from grids.city import profile
from layers.patrols.tracks import RULES, TrackRules, filter_fixes


@dataclass
class Fixes:
    """A window of fixes, sorted by worker then time, with the filter's verdict."""

    staff_id: np.ndarray  # int64
    t: np.ndarray  # seconds since the epoch
    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray  # metres in ``crs``, the city's metric CRS
    y: np.ndarray
    accuracy: np.ndarray  # NaN: not reported
    status: np.ndarray  # tracks.KEPT / ACCURACY / JITTER / SPEED
    shift: np.ndarray  # shift number within the worker (0, 1, …)
    crs: str  # the metric CRS of x and y ('EPSG:…', grids.city)

    def __len__(self) -> int:
        return int(self.t.size)

    def track_keys(self) -> np.ndarray:
        """One ascending key per (worker, shift): groups the fixes of one track."""
        return self.staff_id * 10_000 + self.shift


def read_fixes(conn: Connection, *, since: datetime, until: datetime,
               staff_ids: list[int] | None = None,
               envelope: tuple[float, float, float, float] | None = None,
               rules: TrackRules = RULES) -> Fixes:
    """Fixes with ``since <= at < until``, cleaned.

    ``staff_ids`` limits the workers; ``envelope`` (lon/lat min/max) keeps the *whole* window of
    every worker with at least one fix inside it, so a track is filtered the same way whatever
    region is asked about.
    """
    where = ["f.at >= :since", "f.at < :until"]
    params: dict[str, Any] = {"since": since, "until": until}
    if staff_ids is not None:
        where.append("f.staff_id = ANY(:ids)")
        params["ids"] = list(staff_ids)
    if envelope is not None:
        where.append(
            "f.staff_id IN (SELECT DISTINCT e.staff_id FROM patrol_fix e WHERE e.at >= :since "
            "AND e.at < :until AND e.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490))")
        params.update(x0=envelope[0], y0=envelope[1], x1=envelope[2], y1=envelope[3])
    # One bytea of packed big-endian rows, read straight into numpy: no Python object per value.
    sql = text(
        "SELECT string_agg(int8send(f.staff_id::int8) || float8send(extract(epoch FROM f.at)"
        "::float8) || float8send(ST_X(f.geom)) || float8send(ST_Y(f.geom)) || "
        "float8send(coalesce(f.accuracy_m, 'NaN')::float8), ''::bytea) "
        "FROM patrol_fix f WHERE " + " AND ".join(where)).compile(dialect=conn.dialect)
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(str(sql), {k: params[k] for k in sql.params})
        row = cur.fetchone()
    data = b"" if row is None or row[0] is None else bytes(row[0])
    rows = np.frombuffer(data, dtype=_ROW)
    rows = rows[np.lexsort((rows["t"], rows["staff_id"]))]  # cheaper here than in the aggregate
    return clean(rows["staff_id"].astype(np.int64), rows["t"].astype(np.float64),
                 rows["lon"].astype(np.float64), rows["lat"].astype(np.float64),
                 rows["accuracy"].astype(np.float64), rules=rules,
                 crs=profile(conn).metric_crs)


_ROW = np.dtype([("staff_id", ">i8"), ("t", ">f8"), ("lon", ">f8"), ("lat", ">f8"),
                 ("accuracy", ">f8")])


def clean(staff_id: np.ndarray, t: np.ndarray, lon: np.ndarray, lat: np.ndarray,
          accuracy: np.ndarray, *, crs: str, rules: TrackRules = RULES) -> Fixes:
    """Project to the metric ``crs`` and filter fixes already sorted by (staff_id, t)."""
    x, y = transformer("EPSG:4490", crs).transform(lon, lat)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    status = np.zeros(t.size, dtype=np.int8)
    shift = np.zeros(t.size, dtype=np.int32)
    if t.size:
        bounds = np.flatnonzero(np.diff(staff_id)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, t.size], strict=True):
            status[lo:hi], shift[lo:hi] = filter_fixes(t[lo:hi], x[lo:hi], y[lo:hi],
                                                       accuracy[lo:hi], rules=rules)
    return Fixes(staff_id=staff_id, t=t, lon=lon, lat=lat, x=x, y=y, accuracy=accuracy,
                 status=status, shift=shift, crs=crs)
