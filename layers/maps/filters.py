"""What every map query shares: the incident filters, the caller's jurisdiction and the
planner settings of a map transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, Scope, prefix_of
from grids.errors import GridError
from grids.sql import in_scope

LEVEL_COLUMN = {"grid": "grid_code", "community": "community_code", "street": "street_code"}


class MapRequestError(GridError):
    code = "invalid_map_request"


def place_sql(scope: Scope, region: str | None, *, column: str) -> tuple[str, dict[str, Any]]:
    """``column`` (a region code) in the jurisdiction ``scope`` and under ``region`` (None: any),
    and the bound parameters (``f_scope``, ``f_region``)."""
    cond, params = in_scope(scope, column, param="f_scope")
    if region:
        cond += f" AND {column} LIKE :f_region"
        params["f_region"] = prefix_of(region) + "%"
    return cond, params


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """The filters shared by heat, counts and tiles (as for ``GET /incidents``)."""

    since: datetime | None = None
    until: datetime | None = None
    categories: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    region: str | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.since and self.since.isoformat(), self.until and self.until.isoformat(),
                tuple(sorted(self.categories)), tuple(sorted(self.states)), self.region)

    def sql(self, scope: Scope, *, alias: str = "i") -> tuple[str, dict[str, Any]]:
        """A WHERE fragment over incident ``alias`` and its bound parameters."""
        where, params = place_sql(scope, self.region, column=f"{alias}.region_code")
        if self.states:
            where += f" AND {alias}.state = ANY(:f_states)"
            params["f_states"] = list(self.states)
        if self.categories:  # a group code selects its categories too
            where += (f" AND {alias}.category_id IN (SELECT id FROM category WHERE code = "
                      "ANY(:f_cats) OR parent_id IN (SELECT id FROM category WHERE code = "
                      "ANY(:f_cats)))")
            params["f_cats"] = list(self.categories)
        if self.since:
            where += f" AND {alias}.received_at >= :f_since"
            params["f_since"] = self.since
        if self.until:
            where += f" AND {alias}.received_at < :f_until"
            params["f_until"] = self.until
        return where, params


NO_FILTER = IncidentFilter()
"""Every incident the caller may see (the default of heat, counts and tiles)."""


def custom_plans(conn: Connection) -> None:
    """Plan the map queries for their actual values, for the rest of this transaction.

    psycopg prepares a statement run five times on a connection, and PostgreSQL then switches
    to a generic plan that cannot see the tile's size or the window's length: measured on the
    5M-incident city, a z14 grid tile went from ~10 ms to ~110 ms after ten runs.
    JIT is off too: these queries take milliseconds, and a misestimated one (a month's grid
    tile) spent 40 ms compiling itself for 40 ms of work.
    """
    conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    conn.execute(text("SET LOCAL jit = off"))


def map_scope(principal: Principal) -> Scope:
    """Where a principal may see incidents on the map: the same rule as incident queries."""
    principal.require(Permission.MAPS_READ)
    return principal.locate_scope()
