"""Exact incident counts from the tallies of migration 0008, plus the raw rows they cannot cover.

The tallies count incidents per period (local month ``m``, day ``d``) and per Web
Mercator cell (``incident_cell_tally``) or per place assigned at intake (``incident_grid_tally``).
A query's time window is split (:func:`split_window`) into whole months (and days where the
tally keeps them), read from a tally, and the remainder at its ends, read from ``incident``
itself; the two are added. So every answer equals the raw query's, whatever the window; only the cost changes.

A cell tally answers when:

* the bins are a whole number of cells: integer zoom, power-of-two pixel size (then
  ``floor(floor(x / cell) / r) == floor(x / (cell * r))`` holds exactly in floating point);
* the caller's jurisdiction and the region filter are a street or wider (the tally keeps the
  street part of ``region_code`` only);
* category or state filters are only answered at level 8 (611.5 m cells), the only level that
  keeps rows per category and state.

Otherwise the callers bin the raw rows (:func:`raw_heat_bins` is that reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from gis.crs import EARTH_M, WEB_MERCATOR_RADIUS_M
from grids.access import Scope, prefix_of
from layers.maps.filters import place_sql

CELL_LEVELS = (8, 10, 12)
DETAIL_LEVEL = 8  # the only cell level with rows per category and state, and with days
HALF = EARTH_M / 2


def cell_m(k: int) -> float:
    """Side of a level-``k`` tally cell in EPSG:3857 metres.

    >>> round(cell_m(8), 2), round(cell_m(12), 3)
    (611.5, 38.219)
    """
    return EARTH_M / 256 / 2 ** k


def mercator(lon: float, lat: float) -> tuple[float, float]:
    """EPSG:4326 → EPSG:3857 (spherical formula, as PROJ uses for 3857)."""
    return (math.radians(lon) * WEB_MERCATOR_RADIUS_M,
            math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * WEB_MERCATOR_RADIUS_M)


def lonlat(x: float, y: float) -> tuple[float, float]:
    """EPSG:3857 → EPSG:4326 (the inverse of :func:`mercator`)."""
    return (math.degrees(x / WEB_MERCATOR_RADIUS_M),
            math.degrees(2 * math.atan(math.exp(y / WEB_MERCATOR_RADIUS_M)) - math.pi / 2))


def level_for(size: float) -> tuple[int, int] | None:
    """The coarsest tally level whose cells tile a bin of ``size`` metres, and how many cells
    make one side of the bin; None if no level does (non power-of-two sizes)."""
    for k in CELL_LEVELS:
        r = size / cell_m(k)
        if r >= 1 and r == int(r) and int(r) & (int(r) - 1) == 0:
            return k, int(r)
    return None


@dataclass
class Window:
    """Whole periods ``(span, first t0, end t0)`` (None: unbounded) and raw ``[lo, hi)`` ends."""

    spans: list[tuple[str, date | None, date | None]] = field(default_factory=list)
    raw: list[tuple[datetime | None, datetime | None]] = field(default_factory=list)


def _floor_month(t: datetime) -> datetime:
    return datetime.combine(t.date().replace(day=1), time(0), t.tzinfo)


def _ceil_month(t: datetime) -> datetime:
    f = _floor_month(t)
    return f if f == t else _floor_month(f + timedelta(days=32))


def _floor_day(t: datetime) -> datetime:
    return datetime.combine(t.date(), time(0), t.tzinfo)


def _ceil_day(t: datetime) -> datetime:
    f = _floor_day(t)
    return f if f == t else f + timedelta(days=1)


def split_window(since: datetime | None, until: datetime | None, *, tz: ZoneInfo, days: bool,
                 years: bool = False) -> Window:
    """Split ``[since, until)`` into whole local (in ``tz``: ``years``) years, months,
    (``days``) days and raw ends.

    >>> tz = ZoneInfo("Asia/Urumqi")
    >>> w = split_window(datetime(2025, 9, 15, 12, tzinfo=tz),
    ...                  datetime(2027, 3, 1, tzinfo=tz), tz=tz, days=True)
    >>> [(s, str(a), str(b)) for s, a, b in w.spans]
    [('m', '2025-10-01', '2027-03-01'), ('d', '2025-09-16', '2025-10-01')]
    >>> [(a.isoformat(), b.isoformat()) for a, b in w.raw]
    [('2025-09-15T12:00:00+06:00', '2025-09-16T00:00:00+06:00')]
    """
    s = since.astimezone(tz) if since else None
    u = until.astimezone(tz) if until else None
    out = Window()
    if s is not None and u is not None and s >= u:
        return out
    ms = _ceil_month(s) if s else None
    me = _floor_month(u) if u else None
    if ms is not None and me is not None and ms >= me:  # no whole month
        _ends(out, s, u, days)
        return out
    ys = (ms if ms.month == 1 else ms.replace(year=ms.year + 1, month=1)) if ms else None
    ye = me.replace(month=1) if me else None
    if years and (ys is None or ye is None or ys < ye):
        out.spans.append(("y", ys.date() if ys else None, ye.date() if ye else None))
        if ms is not None and ys is not None and ms < ys:
            out.spans.append(("m", ms.date(), ys.date()))
        if ye is not None and me is not None and ye < me:
            out.spans.append(("m", ye.date(), me.date()))
    else:
        out.spans.append(("m", ms.date() if ms else None, me.date() if me else None))
    if s is not None and ms is not None and s < ms:
        _ends(out, s, ms, days)
    if u is not None and me is not None and me < u:
        _ends(out, me, u, days)
    return out


def _ends(out: Window, s: datetime | None, u: datetime | None, days: bool) -> None:
    """``[s, u)`` (shorter than a month, or unbounded on neither side) as days and raw ends."""
    assert s is not None and u is not None
    ds, de = _ceil_day(s), _floor_day(u)
    if days and ds < de:
        out.spans.append(("d", ds.date(), de.date()))
        if s < ds:
            out.raw.append((s, ds))
        if de < u:
            out.raw.append((de, u))
    else:
        out.raw.append((s, u))


def span_sql(window: Window, params: dict[str, Any], *, alias: str = "t") -> list[str]:
    """One WHERE fragment per whole-period range of ``window`` (parameters added to params)."""
    out = []
    for n, (span, lo, hi) in enumerate(window.spans):
        cond = [f"{alias}.span = :sp{n}"]
        params[f"sp{n}"] = span
        if lo is not None:
            cond.append(f"{alias}.t0 >= :lo{n}")
            params[f"lo{n}"] = lo
        if hi is not None:
            cond.append(f"{alias}.t0 < :hi{n}")
            params[f"hi{n}"] = hi
        out.append(" AND ".join(cond))
    return out


def raw_time_sql(window: Window, params: dict[str, Any], *, alias: str = "i") -> str | None:
    """A WHERE fragment for the raw ends of ``window``; None if there are none."""
    if not window.raw:
        return None
    parts = []
    for n, (lo, hi) in enumerate(window.raw):
        cond = []
        if lo is not None:
            cond.append(f"{alias}.received_at >= :rlo{n}")
            params[f"rlo{n}"] = lo
        if hi is not None:
            cond.append(f"{alias}.received_at < :rhi{n}")
            params[f"rhi{n}"] = hi
        parts.append("(" + (" AND ".join(cond) or "TRUE") + ")")
    return "(" + " OR ".join(parts) + ")"


def category_sql(categories: tuple[str, ...], params: dict[str, Any], *, alias: str) -> str:
    params["f_cats"] = list(categories)
    return (f"{alias}.category_id IN (SELECT id FROM category WHERE code = ANY(:f_cats) OR "
            "parent_id IN (SELECT id FROM category WHERE code = ANY(:f_cats)))")


def street_wide(scope: Scope, region: str | None) -> bool:
    """True if the jurisdiction and region filter cut no finer than a street (cell tally)."""
    if region and len(prefix_of(region)) > 9:
        return False
    return scope.covers(None) or all(len(p) <= 9 for p in scope.prefixes)


def detail_sql(categories: tuple[str, ...], states: tuple[str, ...], params: dict[str, Any],
               *, alias: str = "t") -> str:
    """Which tally rows to sum: the all-rows, or the detail rows matching the filters."""
    if not categories and not states:
        return f"{alias}.category_id = 0 AND {alias}.n <> 0"  # everything-rows (state '*')
    cond = [f"{alias}.category_id <> 0", f"{alias}.state <> '*'"]
    if categories:
        cond.append(category_sql(categories, params, alias=alias))
    if states:
        cond.append(f"{alias}.state = ANY(:f_states)")
        params["f_states"] = list(states)
    return " AND ".join(cond)


def scope_sql(scope: Scope, region: str | None, params: dict[str, Any], *, column: str) -> str:
    """:func:`layers.maps.filters.place_sql`, its parameters added to ``params``."""
    cond, more = place_sql(scope, region, column=column)
    params |= more
    return cond


def cell_bins_sql(*, k: int, r: int, since: datetime | None, until: datetime | None,
                  categories: tuple[str, ...], states: tuple[str, ...], scope: Scope,
                  region: str | None, raw_where: str,
                  box: tuple[int, int, int, int] | None,
                  tz: ZoneInfo) -> tuple[str, dict[str, Any]]:
    """SQL giving ``(ix, iy, n)`` per bin of ``r`` × ``r`` level-``k`` cells, exactly.

    ``raw_where`` is the caller's WHERE fragment over ``incident i`` for everything but the
    time window (jurisdiction, categories, states, region): the raw ends use it. ``box`` keeps
    bins ``ix0 <= ix <= ix1, iy0 <= iy <= iy1``.
    """
    params: dict[str, Any] = {"k": k, "r": r, "size": cell_m(k) * r}
    window = split_window(since, until, tz=tz, days=(k == DETAIL_LEVEL))
    common = [f"t.k = {k}", detail_sql(categories, states, params),
              scope_sql(scope, region, params, column="t.rkey")]
    if box is not None:
        params |= {"cx0": box[0] * r, "cx1": box[2] * r + r - 1,
                   "cy0": box[1] * r, "cy1": box[3] * r + r - 1}
        params |= {"bx0": params["cx0"] >> 5, "bx1": params["cx1"] >> 5,
                   "by0": params["cy0"] >> 5, "by1": params["cy1"] >> 5}
        common.append("t.cx BETWEEN :cx0 AND :cx1 AND t.cy BETWEEN :cy0 AND :cy1 "
                      "AND (t.cx >> 5) BETWEEN :bx0 AND :bx1 AND (t.cy >> 5) BETWEEN :by0 AND :by1")
    parts = [f"SELECT floor(t.cx::float8 / :r) AS ix, floor(t.cy::float8 / :r) AS iy, t.n "
             f"FROM incident_cell_tally t WHERE {' AND '.join(common)} AND {span}"
             for span in span_sql(window, params)]
    raw_time = raw_time_sql(window, params)
    if raw_time is not None:
        rbox = "TRUE"
        if box is not None:
            params |= {"ix0": box[0], "ix1": box[2], "iy0": box[1], "iy1": box[3]}
            rbox = ("floor(ST_X(g) / :size) BETWEEN :ix0 AND :ix1 "
                    "AND floor(ST_Y(g) / :size) BETWEEN :iy0 AND :iy1")
        parts.append(
            "SELECT floor(ST_X(g) / :size) AS ix, floor(ST_Y(g) / :size) AS iy, 1 AS n FROM (SELECT "
            f"ST_Transform(i.geom, 3857) AS g FROM incident i WHERE i.geom IS NOT NULL AND "
            f"{raw_time} AND {raw_where}) p WHERE {rbox}")
    if not parts:
        return "SELECT 0::float8 AS ix, 0::float8 AS iy, 0::bigint AS n WHERE false", params
    # int4 sums (a bin's count fits): sum(int8) would accumulate in numeric, measurably slower
    return ("SELECT ix, iy, sum(n::int) AS n FROM (" + " UNION ALL ".join(parts)
            + ") c GROUP BY 1, 2 HAVING sum(n::int) > 0"), params


def raw_heat_bins(conn: Connection, *, zoom: float, pixels: int,
                  bbox: tuple[float, float, float, float] | None, filters: Any,
                  scope: Scope | None = None) -> dict[tuple[int, int], int]:
    """The reference: square bins of every matching raw row, whole bins meeting ``bbox``."""
    scope = scope or Scope.everything()
    size = pixels * EARTH_M / (256 * 2 ** zoom)
    where, params = filters.sql(scope)
    params["size"] = size
    cond = "TRUE"
    if bbox is not None:
        ix0, iy0, ix1, iy1 = bin_box(bbox, size)
        params |= {"ix0": ix0, "ix1": ix1, "iy0": iy0, "iy1": iy1}
        cond = ("floor(ST_X(g) / :size) BETWEEN :ix0 AND :ix1 "
                "AND floor(ST_Y(g) / :size) BETWEEN :iy0 AND :iy1")
    rows = conn.execute(text(
        "SELECT floor(ST_X(g) / :size) AS ix, floor(ST_Y(g) / :size) AS iy, count(*) FROM "
        "(SELECT ST_Transform(i.geom, 3857) AS g FROM incident i WHERE i.geom IS NOT NULL AND "
        f"{where}) p WHERE {cond} GROUP BY 1, 2"), params).all()
    return {(int(a), int(b)): int(n) for a, b, n in rows}


def bin_box(bbox: tuple[float, float, float, float], size: float) -> tuple[int, int, int, int]:
    """Index range ``(ix0, iy0, ix1, iy1)`` of the bins of ``size`` meeting a lon/lat bbox."""
    x0, y0 = mercator(bbox[0], bbox[1])
    x1, y1 = mercator(bbox[2], bbox[3])
    return (math.floor(x0 / size), math.floor(y0 / size), math.floor(x1 / size),
            math.floor(y1 / size))


def tile_bin_box(z: int, x: int, y: int, bins_per_tile: int) -> tuple[int, int, int, int]:
    """Index range of the bins (``bins_per_tile`` a side) inside tile z/x/y (aligned exactly).

    >>> tile_bin_box(1, 1, 0, 16)
    (0, 0, 15, 15)
    """
    half = 2 ** z * bins_per_tile // 2
    ix0 = x * bins_per_tile - half
    iy0 = half - (y + 1) * bins_per_tile
    return ix0, iy0, ix0 + bins_per_tile - 1, iy0 + bins_per_tile - 1


def grid_counts_sql(*, since: datetime | None, until: datetime | None,
                    categories: tuple[str, ...], states: tuple[str, ...], scope: Scope,
                    region: str | None, raw_where: str, column: str,
                    tz: ZoneInfo, codes_sql: str | None = None) -> tuple[str, dict[str, Any]]:
    """SQL giving ``(code, incidents, open, overdue)`` per ``column`` (grid_code,
    community_code or street_code; '' for none), exactly: tally periods plus raw ends.

    ``overdue`` (open and due before now) comes from the detail rows' due day for days before
    today, and from ``incident`` (partial index on open ``due_at``) for what falls due today.
    ``codes_sql`` limits the codes (a subquery giving ``code``).
    """
    from layers.incidents.workflow import OPEN_STATES

    params: dict[str, Any] = {"open": sorted(OPEN_STATES), "city_tz": tz.key}
    today = datetime.now(tz).date()
    params["today"] = today
    params["today_start"] = datetime.combine(today, time(0), tz)
    filtered = bool(categories or states)
    # Days are kept as everything-rows only: a filtered count reads partial months raw.
    window = split_window(since, until, tz=tz, days=not filtered, years=not filtered)
    place = scope_sql(scope, region, params, column="t.region_code")
    limit = f" AND t.{column} IN ({codes_sql})" if codes_sql else ""
    ilimit = f" AND coalesce(i.{column}, '') IN ({codes_sql})" if codes_sql else ""
    spans = span_sql(window, params)
    months = [c for c, sp in zip(spans, window.spans, strict=True) if sp[0] == "m"]
    years = [c for c, sp in zip(spans, window.spans, strict=True) if sp[0] == "y"]
    # the months of those years, for their open cases (years keep everything-rows only)
    year_months = [" AND ".join(["t.span = 'm'"] + ([f"t.t0 >= :lo{n}"] if sp[1] else [])
                                + ([f"t.t0 < :hi{n}"] if sp[2] else []))
                   for n, sp in enumerate(window.spans) if sp[0] == "y"]
    days = [c for c, sp in zip(spans, window.spans, strict=True) if sp[0] == "d"]
    parts = []

    def ranges(kind: str) -> str:  # received_at inside the window's whole periods of ``kind``
        return " OR ".join(f"({_t0_range(n, sp)})" for n, sp in enumerate(window.spans)
                           if sp[0] == kind)

    def due_today(kind: str) -> str:  # open cases of those periods falling due today, before now
        return (f"SELECT coalesce(i.{column}, '') AS code, 0, 0, count(*) FROM incident i "
                f"WHERE i.state = ANY(:open) AND i.due_at >= :today_start AND i.due_at < now() "
                f"AND ({ranges(kind)}) AND {raw_where}{ilimit} GROUP BY 1")

    def totals(spans: list[str]) -> str:  # everything-rows of those periods
        return (f"SELECT t.{column} AS code, sum(t.n::int) AS incidents, 0 AS open, 0 AS overdue "
                f"FROM incident_grid_tally t WHERE ({' OR '.join(f'({c})' for c in spans)}) "
                f"AND {everything} AND {place}{limit} GROUP BY 1")

    # open detail rows, in the words of the partial index incident_grid_tally_open_idx
    opened = ("(t.state IN (" + ", ".join(f"'{s}'" for s in sorted(OPEN_STATES))
              + ") AND t.n <> 0)")
    everything = "(t.category_id = 0 AND t.n <> 0)"
    if months:
        when = "(" + " OR ".join(f"({c})" for c in months) + ")"
        if filtered:
            rows = total = filt = detail_sql(categories, states, params)
        else:
            total, filt = everything, "TRUE"
            rows = f"({total} OR {opened})"
        parts.append(
            f"SELECT t.{column} AS code, "
            f"coalesce(sum(t.n::int) FILTER (WHERE {total}), 0) AS incidents, "
            f"coalesce(sum(t.n::int) FILTER (WHERE {filt} AND {opened}), 0) AS open, "
            f"coalesce(sum(t.n::int) FILTER (WHERE {filt} AND {opened} "
            "AND t.due_day < :today), 0) AS overdue "
            f"FROM incident_grid_tally t WHERE {when} AND {rows} AND {place}{limit} GROUP BY 1")
        parts.append(due_today("m"))
    if years:  # unfiltered only: totals from year rows, open and overdue from month rows
        parts.append(totals(years))
        parts.append(
            f"SELECT t.{column} AS code, 0, sum(t.n::int), "
            "coalesce(sum(t.n::int) FILTER (WHERE t.due_day < :today), 0) "
            f"FROM incident_grid_tally t WHERE ({' OR '.join(f'({c})' for c in year_months)}) "
            f"AND {opened} AND {place}{limit} GROUP BY 1")
        parts.append(due_today("y"))
    if days:  # unfiltered only: totals from the tally, open and overdue from open rows
        parts.append(totals(days))
        rng = ranges("d")
        opens = "i.state IN (" + ", ".join(f"'{s}'" for s in sorted(OPEN_STATES)) + ")"
        parts.append(
            f"SELECT coalesce(i.{column}, '') AS code, 0, count(*), "
            f"count(*) FILTER (WHERE i.due_at < now()) FROM incident i WHERE {opens} "
            f"AND ({rng}) AND {raw_where}{ilimit} GROUP BY 1")
    raw_time = raw_time_sql(window, params)
    if raw_time is not None:
        parts.append(
            f"SELECT coalesce(i.{column}, '') AS code, count(*), "
            "count(*) FILTER (WHERE i.state = ANY(:open)), "
            "count(*) FILTER (WHERE i.state = ANY(:open) AND i.due_at < now()) "
            f"FROM incident i WHERE {raw_time} AND {raw_where}{ilimit} GROUP BY 1")
    if not parts:
        return ("SELECT ''::text AS code, 0::bigint AS incidents, 0::bigint AS open, "
                "0::bigint AS overdue WHERE false"), params
    # int4 sums (a region's count fits): sum(int8) would accumulate in numeric, ~30 ms slower
    # for a city's 10,000 grids
    return ("SELECT code, sum(incidents::int) AS incidents, sum(open::int) AS open, "
            "sum(overdue::int) AS overdue FROM (" + " UNION ALL ".join(parts)
            + ") c(code, incidents, open, overdue) GROUP BY 1"), params  # named: any part may come first


def _t0_range(n: int, span: tuple[str, date | None, date | None]) -> str:
    """``received_at`` inside whole-period range ``n`` (its bounds are :func:`span_sql`'s)."""
    _, lo, hi = span
    cond = []
    if lo is not None:
        cond.append(f"i.received_at >= CAST(:lo{n} AS date)::timestamp "
                    "AT TIME ZONE CAST(:city_tz AS text)")
    if hi is not None:
        cond.append(f"i.received_at < CAST(:hi{n} AS date)::timestamp "
                    "AT TIME ZONE CAST(:city_tz AS text)")
    return " AND ".join(cond) or "TRUE"
