"""The city the database serves, read from its ``city_profile`` row (migration 0014).

Everything city-specific that code used to spell as a literal lives there: the city's code and
name, its time zone, the metric CRS in which areas, buffers and tolerances are measured, the staff
phone pattern and the city's extent (the map's first view). SQL reads it through
``citygrid_tz()`` / ``citygrid_metric_srid()``; Python through :func:`profile`.

A province deployment (migration 0030): the row is the ROOT region's, the province's (its
extent, its centre's zone), and each city keeps its own metric zone (``city_metric``): measure
inside one city in ``citygrid_metric_srid(code)`` / :meth:`CityProfile.metric_crs_for`.

Caching: :func:`profile` keeps the row per database connection (``Connection.info``, which lives
as long as the pooled DBAPI connection), tagged with a process-wide generation. :func:`invalidate`
bumps the generation; the API calls it when the database announces ``citygrid_change,
'city_profile'`` (the profile's trigger sends it on every change, whoever makes it), and
:func:`update_profile` calls it itself. A change made and rolled back inside one transaction is
dropped from that connection's cache on rollback.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, event, text

from gis.crs import gk_zone_srid
from grids.codes import level_of
from grids.errors import GridError

_KEY = "citygrid_city_profile"
_lock = threading.Lock()
_generation = 0

FIELDS = ("code", "name", "tz", "metric_auto", "metric_srid", "phone_pattern",
          "plan_approver_role")


@dataclass(frozen=True)
class CityProfile:
    """The city as configured.

    ``extent`` is ``(west, south, east, north)`` in CGCS2000 lon/lat, None before a city is
    loaded; ``metric_srid`` is None then too (nothing to measure yet).
    """

    code: str | None
    name: str | None
    tz: ZoneInfo
    metric_auto: bool
    metric_srid: int | None
    phone_pattern: str
    extent: tuple[float, float, float, float] | None
    #: The role that approves redraw plans (an admin always may; migration 0021).
    plan_approver_role: str = "admin"
    #: Each city's own metric SRID, ``(city code, srid)`` (``city_metric``, migration 0030):
    #: used when the deployment is a province with an automatic CRS.
    city_zones: tuple[tuple[str, int], ...] = ()

    @property
    def is_province(self) -> bool:
        """Is the deployment's root a province (many cities, one database)?"""
        return self.code is not None and level_of(self.code) == "province"

    def metric_srid_for(self, code: str | None) -> int | None:
        """The metric SRID in which region ``code`` is measured: its city's own zone in a
        province with an automatic CRS, else the profile's (as ``citygrid_metric_srid(code)``).

        >>> from zoneinfo import ZoneInfo
        >>> p = CityProfile(code="990000000000", name="P", tz=ZoneInfo("Asia/Shanghai"),
        ...                 metric_auto=True, metric_srid=4540, phone_pattern="", extent=None,
        ...                 city_zones=(("990001000000", 4539), ("990002000000", 4540)))
        >>> p.metric_srid_for("990001001001001"), p.metric_srid_for("990002000000")
        (4539, 4540)
        >>> p.metric_srid_for("990000000000"), p.metric_srid_for(None)
        (4540, 4540)
        """
        if code is None or not self.metric_auto or not self.is_province:
            return self.metric_srid
        return dict(self.city_zones).get(code[:6] + "000000", self.metric_srid)

    def metric_crs_for(self, code: str | None) -> str:
        """:meth:`metric_srid_for` as pyproj names it: ``'EPSG:<srid>'``."""
        srid = self.metric_srid_for(code)
        if srid is None:
            return self.metric_crs  # raises: nothing loaded
        return f"EPSG:{srid}"

    @property
    def metric_crs(self) -> str:
        """The metric CRS as pyproj names it: ``'EPSG:<srid>'``."""
        if self.metric_srid is None:
            raise GridError("No city is loaded yet, so there is no metric CRS to measure in.",
                            detail={"field": "city_profile"}, code="no_city")
        return f"EPSG:{self.metric_srid}"

    @property
    def region_prefix(self) -> str:
        """The prefix every region code of the deployment starts with: the 6-digit county code
        of a city, the 2 digits of a province ('' if none)."""
        return (self.code or "")[:2 if self.is_province else 6]

    def first_view(self) -> dict[str, Any]:
        """The map's first view: the extent's centre and a zoom that shows all of it at 1,000
        px (None when no city is loaded)."""
        return first_view(self.extent)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "tz": self.tz.key,
                "metric_auto": self.metric_auto, "metric_srid": self.metric_srid,
                "phone_pattern": self.phone_pattern,
                "plan_approver_role": self.plan_approver_role,
                "extent": list(self.extent) if self.extent else None,
                "city_zones": {c: z for c, z in self.city_zones} if self.is_province else None,
                "first_view": self.first_view()}


def first_view(extent: tuple[float, float, float, float] | None, *, px: int = 1000
               ) -> dict[str, Any]:
    """Centre and zoom (web-mercator, 256 px tiles) at which ``extent`` fits ``px`` pixels.

    >>> first_view((103.9, 30.5, 104.3, 30.8))
    {'center': [30.65, 104.1], 'zoom': 11, 'bounds': [[30.5, 103.9], [30.8, 104.3]]}
    >>> first_view(None)
    {'center': None, 'zoom': None, 'bounds': None}
    """
    if extent is None:
        return {"center": None, "zoom": None, "bounds": None}
    west, south, east, north = extent

    def merc_y(lat: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    span = max((east - west) / 360, (merc_y(north) - merc_y(south)) / (2 * math.pi), 1e-9)
    zoom = int(max(0, min(18, math.floor(math.log2(px / 256 / span)))))
    return {"center": [round((south + north) / 2, 6), round((west + east) / 2, 6)],
            "zoom": zoom, "bounds": [[south, west], [north, east]]}


def metric_crs_for(extent: Any) -> str:
    """The metric CRS a city with this lon/lat extent ``(west, south, east, north)`` gets by
    default, as pyproj names it: for measuring before (or without) a database profile, e.g. a
    file being checked for import.

    >>> metric_crs_for((103.3, 30.1, 103.7, 30.4))
    'EPSG:4544'
    """
    west, south, east, north = (float(v) for v in extent)
    return f"EPSG:{gk_zone_srid((west, south, east, north))}"


_SELECT = text("SELECT code, name, tz, metric_auto, metric_srid, phone_pattern, "
               "west, south, east, north, plan_approver_role FROM city_profile")


_ZONES = text("SELECT code, metric_srid FROM city_metric ORDER BY code")


def read_profile(conn: Connection) -> CityProfile:
    """The profile as stored now (no cache)."""
    row = conn.execute(_SELECT).mappings().one()
    extent = None
    if row["west"] is not None:
        extent = (row["west"], row["south"], row["east"], row["north"])
    return CityProfile(code=row["code"], name=row["name"], tz=ZoneInfo(row["tz"]),
                       metric_auto=row["metric_auto"], metric_srid=row["metric_srid"],
                       phone_pattern=row["phone_pattern"], extent=extent,
                       plan_approver_role=row["plan_approver_role"],
                       city_zones=tuple(tuple(z) for z in conn.execute(_ZONES).all()))


def profile(conn: Connection) -> CityProfile:
    """The profile, cached on the connection until :func:`invalidate` or a rollback."""
    cached = conn.info.get(_KEY)
    if cached is not None and cached[0] == _generation:
        return cached[1]
    generation = _generation
    value = read_profile(conn)
    conn.info[_KEY] = (generation, value)
    return value


def invalidate(*_: Any) -> None:
    """Forget every cached profile in this process (the profile changed)."""
    global _generation
    with _lock:
        _generation += 1


def _forget(conn: Connection, *_: Any) -> None:
    conn.info.pop(_KEY, None)


def update_profile(conn: Connection, **changes: Any) -> CityProfile:
    """Change the profile in the caller's transaction: any of ``code``, ``name``, ``tz``,
    ``metric_auto``, ``metric_srid`` (giving an SRID turns ``metric_auto`` off unless it is
    passed), ``phone_pattern``. The database checks the values (an unknown zone, a CRS that is
    not projected in metres, a bad pattern are refused) and, on a new SRID, measures every
    boundary again; on a new zone, rebuilds the incident tallies."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise GridError(f"Unknown city profile field(s): {', '.join(sorted(unknown))}.",
                        detail={"field": sorted(unknown)[0], "expected": ", ".join(FIELDS)},
                        code="bad_profile_field")
    values = {k: v for k, v in changes.items() if v is not None}
    if "metric_srid" in values and "metric_auto" not in values:
        values["metric_auto"] = False
    if values:
        sets = ", ".join(f"{k} = :{k}" for k in values)  # keys from FIELDS
        conn.execute(text(f"UPDATE city_profile SET {sets}"), values)
        # a rollback must not leave this connection with the changed profile cached
        event.listen(conn, "rollback", _forget, once=True)
        event.listen(conn, "rollback_savepoint", _forget, once=True)
    invalidate()
    return profile(conn)
