"""Load a year of generated incidents (:mod:`data.incidents`) into PostGIS, fast, with COPY.

Ids: the loader reserves one ``incident.id`` per row from the table's own sequence
(``nextval`` over ``generate_series``) before writing, so every event can name its incident
without a round trip or a temporary table, and ids stay unique even if someone else inserts
incidents at the same time. Reserved ids are sorted, so ids ascend with ``received_at``; events
take ids from their own sequence in frame order (case by case, step by step).

Everything runs in the caller's transaction; nothing is committed here.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from data.divisions import DEFAULT_CITY, DEMO_SEED
from data.incidents import IncidentFrames

# The demo's year ends at the start of the current month (Beijing time), not "now": the same seed
# then gives the same ids, external ids, times and states on every machine and every day of a
# month, and the last full month before now (the one a monthly meeting looks at) always has cases.
# Open cases age against now(), so their traffic lights turn red as the month passes; pass
# ``end=`` to :func:`load_demo_incidents` for a demo that ends elsewhere.
DEMO_END = (datetime.now(timezone(timedelta(hours=8)))
            .replace(day=1, hour=0, minute=0, second=0, microsecond=0))

NULL = r"\N"
_CHUNK = 50_000  # rows per COPY write: text is made chunk by chunk, so memory stays bounded
# Column → how it is written in COPY's text format.
INCIDENT_COLUMNS: dict[str, str] = {
    "id": "int", "source": "text", "external_id": "free", "category_id": "int",
    "description": "free", "address": "free", "geom": "text", "crs_in": "text",
    "reporter_name": "free", "reporter_phone": "free", "state": "text", "region_code": "text",
    "grid_code": "text", "community_code": "text", "street_code": "text",
    "boundary_version_id": "int", "responsible_code": "text", "fallback": "text",
    "department_id": "int", "card": "text", "extension_hours": "float", "rework_count": "int",
    "score": "int", "received_at": "time", "state_since": "time", "due_at": "time",
    "closed_at": "time", "closed_on_time": "bool", "version": "int",
}
EVENT_COLUMNS: dict[str, str] = {
    "incident_id": "int", "at": "time", "actor": "free", "action": "text", "from_state": "text",
    "to_state": "text", "note": "free",
}


def load_incidents(conn: Connection, frames: IncidentFrames) -> dict[str, int]:
    """Write ``frames`` (from :func:`data.incidents.build_incidents`); returns row counts.

    Category and department codes are resolved to ids here; an unknown category code is an
    error (seed the catalogue first). Runs inside the caller's transaction and does not commit.
    """
    incidents, events = frames.incidents, frames.events
    n = len(incidents)
    if n == 0:
        return {"incidents": 0, "events": 0}
    category_ids = {code: id_ for code, id_ in conn.execute(text("SELECT code, id FROM category"))}
    department_ids = {code: id_
                      for code, id_ in conn.execute(text("SELECT code, id FROM department"))}
    unknown = set(incidents["category_code"].unique()) - set(category_ids)
    if unknown:
        raise ValueError(f"unknown category codes {sorted(unknown)[:5]}: seed the catalogue first")
    position = events["incident"].to_numpy()
    if position.size and not (position.min() >= 0 and position.max() < n):
        raise ValueError("events name incidents outside the incidents frame")

    sequence = conn.execute(text("SELECT pg_get_serial_sequence('incident', 'id')")).scalar_one()
    reserved = conn.execute(text("SELECT array_agg(nextval(CAST(:seq AS regclass))) "
                                 "FROM generate_series(1, :n)"), {"seq": sequence, "n": n})
    ids = np.sort(np.asarray(reserved.scalar_one(), dtype=np.int64))

    geom = np.full(n, None, dtype=object)
    lon = incidents["lon"].to_numpy(dtype=float)
    lat = incidents["lat"].to_numpy(dtype=float)
    has = np.isfinite(lon) & np.isfinite(lat)
    points = shapely.set_srid(shapely.points(lon[has], lat[has]), 4490)
    geom[has] = shapely.to_wkb(points, hex=True, include_srid=True)
    incident_rows = incidents.assign(
        id=ids, geom=pd.Series(geom, index=incidents.index, dtype=object),
        category_id=incidents["category_code"].map(category_ids),
        department_id=incidents["department_code"].map(department_ids))
    event_rows = events.assign(incident_id=ids[position])

    raw = conn.connection.driver_connection
    assert raw is not None  # a live connection inside the caller's transaction
    with raw.cursor() as cur:
        _copy(cur, "incident", INCIDENT_COLUMNS, incident_rows)
        _copy(cur, "incident_event", EVENT_COLUMNS, event_rows)
    # fresh statistics, or the first dashboards plan for empty tables
    conn.execute(text("ANALYZE incident, incident_event"))
    return {"incidents": n, "events": len(events)}


def load_demo_incidents(conn: Connection, *, n: int = 220_000, seed: int = DEMO_SEED,
                        end: datetime = DEMO_END, days: int = 365) -> dict[str, int]:
    """Generate and load the demo year of incidents for the city in the database.

    Seeds the category catalogue if it is missing (existing edits are kept), places incidents
    with the boundaries and staff in force at ``end``, and refuses to run on a database that
    already holds incidents (the demo's external ids would collide).
    """
    from data.incidents import build_incidents
    from grids.locate import load_snapshot
    from layers.incidents.catalogue import list_categories
    from layers.incidents.catalogue import seed as seed_catalogue

    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one():
        raise ValueError("the database already holds incidents; load the demo year into one "
                         "without any")
    seed_catalogue(conn)
    snapshot = load_snapshot(conn, at=end)
    if not len(snapshot.grids):
        raise ValueError("no grids in force: load the city first (app.seed.load_demo)")
    categories = list_categories(conn)
    from data.incidents import LANDMARKS
    from grids.city import profile

    # the landmarks are the default demo city's: another city draws random hot spots only
    city = profile(conn).region_prefix
    landmarks = LANDMARKS if city == DEFAULT_CITY else []
    frames = build_incidents(snapshot, categories, n=n, end=end, days=days, seed=seed,
                             landmarks=landmarks)
    counts = load_incidents(conn, frames)
    return {**counts, "categories": sum(1 for c in categories if c["parent_code"])}


# -- COPY text format ----------------------------------------------------------------------------
def _copy(cur: Any, table: str, columns: dict[str, str], frame: pd.DataFrame) -> None:
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"  # names are constants, not values
    with cur.copy(sql) as copy:
        for start in range(0, len(frame), _CHUNK):
            part = frame.iloc[start:start + _CHUNK]
            texts = [_COLUMN_TEXT[kind](part[name]) for name, kind in columns.items()]
            copy.write(("\n".join(map("\t".join, zip(*texts, strict=True))) + "\n").encode())


def _texts(series: pd.Series, *, escape: bool) -> list[str]:
    """Text values for COPY; backslash, tab, newline and CR escaped if any value holds one."""
    if series.dtype == object or not pd.api.types.is_string_dtype(series.dtype):
        series = series.astype("str")
    if escape and series.str.contains(r"[\\\t\n\r]", regex=True, na=False).any():
        for char, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
            series = series.str.replace(char, escaped, regex=False)
    return series.to_numpy(dtype=object, na_value=NULL).tolist()


def _ints(series: pd.Series) -> list[str]:
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy(dtype=np.int64).astype(str).tolist()
    values = series.astype(object).where(series.notna(), None).tolist()
    return [NULL if v is None or (isinstance(v, float) and math.isnan(v)) else str(int(v))
            for v in values]


def _bools(series: pd.Series) -> list[str]:
    values = series.astype(object).where(series.notna(), None).tolist()
    return [NULL if v is None else ("t" if v else "f") for v in values]


def _floats(series: pd.Series) -> list[str]:
    return [NULL if math.isnan(v) else repr(v) for v in series.to_numpy(dtype=float).tolist()]


def _timestamps(series: pd.Series) -> list[str]:
    """ISO 8601 in UTC with an explicit offset, microseconds kept; NaT → NULL."""
    utc = pd.to_datetime(series, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text_ = np.char.add(np.datetime_as_string(utc, unit="us"), "+00").astype(object)
    text_[np.isnat(utc)] = NULL
    return text_.tolist()


_COLUMN_TEXT = {"text": lambda s: _texts(s, escape=False), "free": lambda s: _texts(s, escape=True),
                "int": _ints, "float": _floats, "bool": _bools, "time": _timestamps}
