"""Incidents on the map: heat bins, per-region counts and vector tiles, aggregated in PostGIS.

Nothing here ships every point to the browser (Ushahidi's map broke above ~30,000 points because
its GeoJSON endpoint did): heat is binned on the server, and raw points are only returned when
fewer than :data:`POINT_THRESHOLD` incidents match, or in vector tiles at zoom >= :data:`POINT_ZOOM`.

Square bins are ``floor(x / size)`` in Web Mercator (EPSG:3857), ``size`` being a fixed number of
screen pixels at the requested zoom, so bins line up with the screen and across tiles. Hexagons
use ``ST_HexagonGrid`` (about four times slower; see ``bench/heat_tiles.py``).

Every query is cut to the caller's jurisdiction (dispatchers city-wide, as for incident queries).
Tiles are cached per process in :data:`TILE_CACHE` and never served stale; see :class:`TileCache`.
"""

from __future__ import annotations

import gzip
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from gis.validate import check_bbox
from grids.access import Permission, Principal, Scope, prefix_of
from grids.city import profile
from grids.errors import GridError
from layers import map_tally
from layers.patrols import grid_cover

# Fewer matching incidents than this: heat may return the points themselves.
POINT_THRESHOLD = 500
# Incident points appear in vector tiles from this zoom on; below it the layer is empty (use bins).
POINT_ZOOM = 14
# A tile with more matching points than this gets bins instead (so a dense tile stays small).
MAX_POINTS_PER_TILE = 10_000
# Web Mercator: metres per pixel at zoom 0 with 256-pixel tiles.
EARTH_M = 2 * math.pi * 6378137.0
MVT_EXTENT = 4096
MVT_BUFFER = 64
LAYERS = ("grids", "incidents", "bins")
LEVEL_COLUMN = {"grid": "grid_code", "community": "community_code", "street": "street_code"}


class MapRequestError(GridError):
    code = "invalid_map_request"


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
        where = ["TRUE"]
        params: dict[str, Any] = {}
        if not scope.covers(None):
            where.append(f"{alias}.region_code LIKE ANY(:f_scope)")
            params["f_scope"] = scope.like_patterns()
        if self.states:
            where.append(f"{alias}.state = ANY(:f_states)")
            params["f_states"] = list(self.states)
        if self.categories:  # a group code selects its categories too
            where.append(f"{alias}.category_id IN (SELECT id FROM category WHERE code = "
                         "ANY(:f_cats) OR parent_id IN (SELECT id FROM category WHERE code = "
                         "ANY(:f_cats)))")
            params["f_cats"] = list(self.categories)
        if self.since:
            where.append(f"{alias}.received_at >= :f_since")
            params["f_since"] = self.since
        if self.until:
            where.append(f"{alias}.received_at < :f_until")
            params["f_until"] = self.until
        if self.region:
            where.append(f"{alias}.region_code LIKE :f_region")
            params["f_region"] = prefix_of(self.region) + "%"
        return " AND ".join(where), params


def _custom_plans(conn: Connection) -> None:
    """Plan the map queries for their actual values, for the rest of this transaction.

    psycopg prepares a statement run five times on a connection, and PostgreSQL then switches
    to a generic plan that cannot see the tile's size or the window's length: measured on the
    5M-incident city, a z14 grid tile went from ~10 ms to ~110 ms after ten runs.
    JIT is off too: these queries take milliseconds, and a misestimated one (a month's grid
    tile) spent 40 ms compiling itself for 40 ms of work.
    """
    conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    conn.execute(text("SET LOCAL jit = off"))


def _scope(principal: Principal) -> Scope:
    """Where a principal may see incidents on the map: the same rule as incident queries."""
    principal.require(Permission.MAPS_READ)
    return principal.locate_scope()


def cell_size_m(zoom: float, *, pixels: int = 32) -> float:
    """Side of a square bin in EPSG:3857 metres: ``pixels`` screen pixels at ``zoom``.

    >>> round(cell_size_m(12), 1), round(cell_size_m(12, pixels=16), 1)
    (1223.0, 611.5)
    """
    return pixels * EARTH_M / (256 * 2 ** zoom)


def _bbox_params(bbox: tuple[float, float, float, float] | None) -> tuple[str, dict[str, Any]]:
    if bbox is None:
        return "TRUE", {}
    x0, y0, x1, y1 = check_bbox(bbox, max_lat=85.0)  # Web Mercator underneath
    return ("i.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)",
            {"x0": x0, "y0": y0, "x1": x1, "y1": y1})


def heat(conn: Connection, *, principal: Principal, zoom: float,
         bbox: tuple[float, float, float, float] | None = None,
         filters: IncidentFilter = IncidentFilter(), shape: str = "square", pixels: int = 32,
         point_threshold: int = POINT_THRESHOLD) -> dict[str, Any]:
    """Incidents binned for ``zoom``, as GeoJSON (EPSG:4326); bins meeting ``bbox`` (lon/lat,
    CGCS2000 ≈ WGS84) come whole, so a bin's count does not depend on the viewport.

    Bins are polygons with a ``count`` (squares also carry ``ix_iy``, their index in EPSG:3857);
    the counts add up to ``total``. With fewer than ``point_threshold`` matches the features are
    the points (``kind = 'points'``). ``source`` says how the bins were counted: ``tally``
    (whole periods from migration 0008's tallies plus the raw rows at the window's ends) or
    ``raw``; the numbers are the same either way.
    """
    if shape not in ("square", "hex"):
        raise MapRequestError("shape is square or hex.", detail={"field": "shape"})
    if not 0 <= zoom <= 22:
        raise MapRequestError("zoom is 0..22.", detail={"field": "zoom", "value": zoom})
    scope = _scope(principal)
    _bbox_params(bbox)  # validates
    _custom_plans(conn)
    size = cell_size_m(zoom, pixels=pixels)
    out: dict[str, Any] = {"type": "FeatureCollection", "zoom": zoom, "crs": "EPSG:4326",
                           "shape": shape, "cell_m": round(size, 3)}
    if shape == "square":
        sql, params, source = _square_bins_sql(size, zoom, bbox, filters, scope,
                                                tz=profile(conn).tz)
        sql = ("SELECT b.n, b.ix, b.iy, ST_AsGeoJSON(ST_Transform(ST_MakeEnvelope(b.ix * :size, "
               "b.iy * :size, (b.ix + 1) * :size, (b.iy + 1) * :size, 3857), 4326), 6) "
               f"FROM ({sql}) b ORDER BY b.iy, b.ix")
        params["size"] = size
    else:
        sql, params, source = _hex_bins_sql(size, bbox, filters, scope)
    rows = conn.execute(text(sql), params).all()
    total = sum(int(r[0]) for r in rows)
    out |= {"total": total, "source": source}
    if total < point_threshold:
        where, params = filters.sql(scope)
        box = _bbox_cut(bbox, size, shape, params)
        pts = conn.execute(text(
            "SELECT i.id, i.state, c.code AS category, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat "
            "FROM incident i JOIN category c ON c.id = i.category_id "
            f"WHERE i.geom IS NOT NULL AND {where} AND {box} ORDER BY i.id"), params).mappings()
        out["kind"] = "points"
        out["features"] = [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
             "properties": {"id": r["id"], "state": r["state"], "category": r["category"],
                            "count": 1}} for r in pts]
        out["total"] = len(out["features"])
        return out
    import orjson

    out["kind"] = "bins"
    if shape == "square":
        out["features"] = [
            {"type": "Feature", "geometry": orjson.loads(geom),
             "properties": {"count": int(n), "ix_iy": [int(ix), int(iy)]}}
            for n, ix, iy, geom in rows]
    else:
        out["features"] = [
            {"type": "Feature", "geometry": orjson.loads(geom), "properties": {"count": int(n)}}
            for n, geom in rows]
    return out


def _bbox_cut(bbox: tuple[float, float, float, float] | None, size: float, shape: str,
              params: dict[str, Any]) -> str:
    """For the points: the rows inside the bins that meet ``bbox`` (squares) or the bbox."""
    if bbox is None:
        return "TRUE"
    if shape == "hex":
        params |= {"x0": bbox[0], "y0": bbox[1], "x1": bbox[2], "y1": bbox[3]}
        return "i.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)"
    ix0, iy0, ix1, iy1 = map_tally.bin_box(bbox, size)
    params |= {"bsize": size, "ix0": ix0, "ix1": ix1, "iy0": iy0, "iy1": iy1}
    return ("floor(ST_X(ST_Transform(i.geom, 3857)) / :bsize) BETWEEN :ix0 AND :ix1 AND "
            "floor(ST_Y(ST_Transform(i.geom, 3857)) / :bsize) BETWEEN :iy0 AND :iy1")


def _square_bins_sql(size: float, zoom: float, bbox: tuple[float, float, float, float] | None,
                     filters: IncidentFilter, scope: Scope, *, tz: ZoneInfo
                     ) -> tuple[str, dict[str, Any], str]:
    """``(ix, iy, n)`` per square bin of ``size`` (bins meeting ``bbox``): tally or raw."""
    box = map_tally.bin_box(bbox, size) if bbox is not None else None
    return _bins_sql(size, zoom, box, filters, scope, tz=tz)


def _bins_sql(size: float, zoom: float, box: tuple[int, int, int, int] | None,
              filters: IncidentFilter, scope: Scope, *, tz: ZoneInfo, raw: bool = False
              ) -> tuple[str, dict[str, Any], str]:
    """``(ix, iy, n)`` per bin in ``box``: from the tallies when they can answer, else (or if
    ``raw``) from every matching row."""
    level = map_tally.level_for(size) if zoom == int(zoom) and not raw else None
    detail = bool(filters.categories or filters.states)
    if level is not None and map_tally.street_wide(scope, filters.region) and \
            (not detail or level[0] == map_tally.DETAIL_LEVEL):
        k, r = level
        rest = IncidentFilter(categories=filters.categories, states=filters.states,
                              region=filters.region)
        where, params = rest.sql(scope)
        sql, more = map_tally.cell_bins_sql(
            k=k, r=r, since=filters.since, until=filters.until, categories=filters.categories,
            states=filters.states, scope=scope, region=filters.region, raw_where=where, box=box,
            tz=tz)
        return sql, params | more, "tally"
    where, params = filters.sql(scope)
    params["size"] = size
    cond = "TRUE"
    if box is not None:
        params |= {"ix0": box[0], "ix1": box[2], "iy0": box[1], "iy1": box[3]}
        lon0, lat0 = map_tally.lonlat(box[0] * size, box[1] * size)
        lon1, lat1 = map_tally.lonlat((box[2] + 1) * size, (box[3] + 1) * size)
        params |= {"ex0": lon0 - 1e-7, "ey0": lat0 - 1e-7, "ex1": lon1 + 1e-7, "ey1": lat1 + 1e-7}
        where += " AND i.geom && ST_MakeEnvelope(:ex0, :ey0, :ex1, :ey1, 4490)"
        cond = ("floor(ST_X(g) / :size) BETWEEN :ix0 AND :ix1 "
                "AND floor(ST_Y(g) / :size) BETWEEN :iy0 AND :iy1")
    return ("SELECT floor(ST_X(g) / :size) AS ix, floor(ST_Y(g) / :size) AS iy, "
            "count(*)::bigint AS n FROM (SELECT ST_Transform(i.geom, 3857) AS g FROM incident i "
            f"WHERE i.geom IS NOT NULL AND {where}) p WHERE {cond} GROUP BY 1, 2"), params, "raw"


def _hex_bins_sql(size: float, bbox: tuple[float, float, float, float] | None,
                  filters: IncidentFilter, scope: Scope) -> tuple[str, dict[str, Any], str]:
    """``(n, geojson)`` per hexagon of edge ``size`` in ``ST_HexagonGrid``'s layout; each point
    goes to the hexagon holding it: the nearer centre of two candidate columns, one rounding
    each (``citygrid_hex`` of migration 0008 written out, so that each intermediate is computed
    once per point), instead of joining the points to a generated grid (the old way: ~14 s
    city-wide on 220,000 incidents).

    The point subquery is fenced (``OFFSET 0``): flattened, each use of x and y re-ran
    ``ST_Transform`` (a month of 424,598 points: 0.8 s fenced, 3.6 s flattened).

    Always from the rows: hexagons do not align with the tallies' square cells. (Whole 38 m
    cells inside one hexagon plus the points of cells on hexagon edges was tried: exact, but
    slower, because the edge cells' points are found through the all-time GiST index.)
    """
    where, params = filters.sql(scope)
    box, bparams = _bbox_params(bbox)
    params |= bparams | {"size": size}
    return ("WITH b AS (SELECT CASE WHEN d.d0 <= d.d1 THEN a.i0 ELSE a.i0 + 1 END AS hi, "
            "CASE WHEN d.d0 <= d.d1 THEN c.j0 ELSE c.j1 END AS hj, count(*) AS n "
            "FROM (SELECT ST_X(g) AS x, ST_Y(g) AS y FROM (SELECT ST_Transform(i.geom, 3857) AS g "
            f"FROM incident i WHERE i.geom IS NOT NULL AND {box} AND {where} OFFSET 0) p "
            "OFFSET 0) q, "
            "LATERAL (SELECT floor(q.x / (1.5 * :size))::int AS i0, sqrt(3) * :size AS h) a, "
            "LATERAL (SELECT CASE WHEN a.i0 % 2 <> 0 THEN a.h / 2 ELSE 0 END AS o0) o, "
            "LATERAL (SELECT round((q.y - o.o0) / a.h)::int AS j0, "
            "round((q.y - (a.h / 2 - o.o0)) / a.h)::int AS j1) c, "
            "LATERAL (SELECT power(q.x - 1.5 * :size * a.i0, 2) "
            "+ power(q.y - o.o0 - a.h * c.j0, 2) AS d0, "
            "power(q.x - 1.5 * :size * (a.i0 + 1), 2) "
            "+ power(q.y - (a.h / 2 - o.o0) - a.h * c.j1, 2) AS d1) d GROUP BY 1, 2) "
            "SELECT b.n, ST_AsGeoJSON(ST_Transform(ST_Hexagon(:size, b.hi, b.hj, "
            "ST_SetSRID(ST_MakePoint(0, 0), 3857)), 4326), 6) FROM b ORDER BY b.hj, b.hi"),\
        params, "raw"


def counts(conn: Connection, *, principal: Principal, level: str,
           filters: IncidentFilter = IncidentFilter(), geometry: bool = False) -> dict[str, Any]:
    """Incidents per grid, community or street in force now, with rates, for choropleths.

    Incidents are counted by the region they were assigned at intake (kept across redraws).
    Regions outside the caller's jurisdiction are left out; regions with no incident are listed
    with zero. Rates per 1,000 households are null: household counts are not held.
    """
    column = LEVEL_COLUMN.get(level)
    if column is None:
        raise MapRequestError("level is grid, community or street.",
                              detail={"field": "level", "expected": list(LEVEL_COLUMN)})
    scope = _scope(principal)
    _custom_plans(conn)
    sql, params = _grid_counts(filters, scope, column, tz=profile(conn).tz)
    rscope = "TRUE"
    if not scope.covers(None):
        rscope = "r.code LIKE ANY(:f_scope)"
        params["f_scope"] = scope.like_patterns()
    if filters.region:
        rscope += " AND r.code LIKE :f_region"
        params["f_region"] = prefix_of(filters.region) + "%"
    geom = ", ST_AsGeoJSON(r.geom, 6) AS geom" if geometry else ""
    params["level"] = level
    rows = conn.execute(text(
        f"WITH n AS ({sql}) "
        "SELECT r.code, r.name, r.area_m2, coalesce(n.incidents, 0) AS incidents, "
        "coalesce(n.open, 0) AS open, coalesce(n.overdue, 0) AS overdue" + geom + " "
        f"FROM region_current r LEFT JOIN n ON n.code = r.code "
        f"WHERE r.level = :level AND {rscope} ORDER BY r.code"), params).mappings().all()
    items = []
    for r in rows:
        km2 = r["area_m2"] / 1e6
        item = {"code": r["code"], "name": r["name"], "area_km2": round(km2, 4),
                "incidents": r["incidents"], "open": r["open"], "overdue": r["overdue"],
                "per_km2": round(r["incidents"] / km2, 3) if km2 > 0 else None,
                "per_1000_households": None}
        if geometry:
            import orjson

            item["geometry"] = orjson.loads(r["geom"])
        items.append(item)
    return {"level": level, "items": items, "total": sum(i["incidents"] for i in items),
            "notes": {"per_1000_households": "null: household counts per region are not held "
                                             "in CityGrid yet",
                      "counted_by": "the region assigned at intake (kept across redraws)",
                      "overdue": "open and past due_at now"}}


# -- vector tiles ------------------------------------------------------------------------------

def _grid_counts(filters: IncidentFilter, scope: Scope, column: str, *, tz: ZoneInfo,
                 codes_sql: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(code, incidents, open, overdue)`` per ``column``: grid tally plus raw ends (exact)."""
    rest = IncidentFilter(categories=filters.categories, states=filters.states,
                          region=filters.region)
    where, params = rest.sql(scope)
    sql, more = map_tally.grid_counts_sql(
        since=filters.since, until=filters.until, categories=filters.categories,
        states=filters.states, scope=scope, region=filters.region, raw_where=where,
        column=column, codes_sql=codes_sql, tz=tz)
    return sql, params | more


def data_version(conn: Connection) -> int | None:
    """The map data version (migration 0006); None if that migration is not there."""
    return conn.execute(text(
        "SELECT pg_sequence_last_value(to_regclass('map_data_version'))")).scalar()


class TileCache:
    """An in-process LRU of rendered tiles that is never stale.

    Keys carry the map data version (a sequence every write to incident and the boundaries
    bumps before it commits) and a local generation that :meth:`invalidate` bumps when NOTIFY
    reports a committed change. A tile drawn from a snapshot that did not yet see a write is
    either keyed by the old version, or (drawn during the writer's transaction) dropped by the
    NOTIFY that follows the commit.
    """

    def __init__(self, *, max_entries: int = 4096, max_bytes: int = 256 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._bytes = 0
        self._data: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def invalidate(self, conn: Any = None) -> None:
        """Drop everything (``LocatorService.subscribe`` passes a connection: unused)."""
        with self._lock:
            self.generation += 1
            self._data.clear()
            self._bytes = 0

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            tile = self._data.get(key)
            if tile is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return tile

    def put(self, key: tuple[Any, ...], tile: bytes, generation: int) -> None:
        with self._lock:
            if generation != self.generation:  # invalidated while it was being drawn
                return
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._data[key] = tile
            self._bytes += len(tile)
            while self._data and (len(self._data) > self.max_entries
                                  or self._bytes > self.max_bytes):
                _, dropped = self._data.popitem(last=False)
                self._bytes -= len(dropped)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._data), "bytes": self._bytes, "hits": self.hits,
                "misses": self.misses, "generation": self.generation}


TILE_CACHE = TileCache()

# Grid outlines come pre-simplified per zoom band (migration 0008): the band's top zoom.
ZOOM_BANDS = (11, 13, 22)
# Up to this zoom they also come cut per tile (migration 0009): the tile only encodes them.
PRETILED_MAX_ZOOM = 13

# Up to this many grids in a tile, their counts are read grid by grid (each ~10 µs of index
# probes); more, and one pass over every grid's rows is cheaper (~20-35 ms for 10,000 grids).
FEW_GRIDS = 1500

_GRIDS_FEATURES = (
    # patrol coverage: mean daily patrolled share over the window's days (migration 0010)
    "c AS (SELECT c.grid_code AS code, sum(c.share) / {{cov_days}} AS patrolled, "
    "max(c.last_fix_at) AS last FROM patrol_grid_cover c WHERE {{cov_when}}{{cov_limit}} "
    "GROUP BY 1), "
    "mvt AS (SELECT g.code, g.name, coalesce(n.incidents, 0)::int AS incidents, "
    "coalesce(n.open, 0)::int AS open, coalesce(n.overdue, 0)::int AS overdue, "
    "round(coalesce(c.patrolled, 0)::numeric, 4)::real AS patrolled, "
    "extract(epoch FROM c.last)::bigint AS last_patrol, {geom} AS geom "
    "FROM g LEFT JOIN n USING (code) LEFT JOIN c USING (code)) "
    # ST_AsMVT skips rows whose geometry is NULL (a WHERE here would cut every outline twice)
    "SELECT ST_AsMVT(mvt, 'grids', :extent, 'geom') FROM mvt")
_GRIDS_TILE = (
    # The envelope is written out (not taken from a CTE) so the planner sees its size.
    "WITH g AS (SELECT r.code, {name} AS name, b.geom FROM boundary_tile_geom b "
    "JOIN region_current r ON r.boundary_id = b.boundary_id "
    "WHERE b.max_zoom = {band} AND b.geom && ST_TileEnvelope(:z, :x, :y, margin => :margin) "
    "AND r.level = 'grid' AND {rscope}), "
    "n AS ({counts}), "
    + _GRIDS_FEATURES.format(
        geom="ST_AsMVTGeom(g.geom, ST_TileEnvelope(:z, :x, :y), :extent, :buffer, true)"))
_GRIDS_PIECES = (
    "WITH g AS (SELECT r.code, {name} AS name, p.geom FROM grid_tile_piece p "
    "JOIN region_current r ON r.boundary_id = p.boundary_id "
    "WHERE p.z = :z AND p.x = :x AND p.y = :y AND r.level = 'grid' AND {rscope}), "
    "n AS ({counts}), " + _GRIDS_FEATURES.format(geom="g.geom"))
# Below this zoom grid features carry no name (a city tile holds thousands of grids; names
# are read closer in): the name strings were half the tile's bytes and encoding time.
NAME_ZOOM = 12
_POINTS_TILE = (
    "WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env, "
    "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4490) AS q), "
    "mvt AS (SELECT i.id, i.state, c.code AS category, i.grid_code AS grid, "
    "ST_AsMVTGeom(ST_Transform(i.geom, 3857), t.env, :extent, :buffer, true) AS geom "
    "FROM incident i JOIN category c ON c.id = i.category_id, t "
    "WHERE i.geom && t.q AND {where}) "
    "SELECT ST_AsMVT(mvt, 'incidents', :extent, 'geom') FROM mvt")
_POINTS_COUNT = (
    "SELECT count(*) FROM (SELECT 1 FROM incident i WHERE i.geom && "
    "ST_Transform(ST_TileEnvelope(:z, :x, :y), 4490) AND {where} LIMIT :max_points + 1) s")
_BINS_TILE = (
    "WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env), "
    "mvt AS (SELECT b.n::int AS count, ST_AsMVTGeom(ST_MakeEnvelope(b.ix * :size, b.iy * :size, "
    "(b.ix + 1) * :size, (b.iy + 1) * :size, 3857), t.env, :extent, 0, true) AS geom "
    "FROM ({bins}) b, t) "
    "SELECT ST_AsMVT(mvt, 'bins', :extent, 'geom') FROM mvt")


def _tile_key(conn: Connection, layer: str, z: int, x: int, y: int, filters: IncidentFilter,
              scope: Scope, bin_pixels: int,
              cover_days: tuple[date, date] | None = None) -> tuple[Any, ...]:
    """What a tile depends on: the request, the caller's jurisdiction, the coverage days (they
    move with the clock when no window is given) and the map data version."""
    return (layer, z, x, y, filters.key(), scope.prefixes, bin_pixels,
            cover_days or grid_cover.window_days(filters.since, filters.until,
                                                 tz=profile(conn).tz),
            data_version(conn))


def gzipped_tile(conn: Connection, layer: str, z: int, x: int, y: int, *,
                 principal: Principal, filters: IncidentFilter = IncidentFilter(),
                 bin_pixels: int = 16, cache: TileCache | None = TILE_CACHE) -> bytes:
    """:func:`tile`, gzip-compressed (level 1: the densest z10 grid tile, 517 kB, becomes
    253 kB in 9 ms) and cached beside the plain tile, so a cached answer costs no compression.
    An empty tile stays empty."""
    generation = cache.generation if cache is not None else 0
    key = ("gzip", *_tile_key(conn, layer, z, x, y, filters, _scope(principal), bin_pixels))
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    data = tile(conn, layer, z, x, y, principal=principal, filters=filters,
                bin_pixels=bin_pixels, cache=cache)
    packed = gzip.compress(data, compresslevel=1, mtime=0) if data else b""
    if cache is not None:
        cache.put(key, packed, generation)
    return packed


def tile(conn: Connection, layer: str, z: int, x: int, y: int, *, principal: Principal,
         filters: IncidentFilter = IncidentFilter(), bin_pixels: int = 16,
         cache: TileCache | None = TILE_CACHE, pretiled: bool = True) -> bytes:
    """One Mapbox vector tile of ``layer`` (grids, incidents, bins) at z/x/y, possibly empty.

    ``grids`` carries code, name (from zoom :data:`NAME_ZOOM` on) and, for incidents matching
    ``filters`` (counted by the grid assigned at intake): incidents, open and overdue; and patrol
    coverage over the window's city days (no window: this month so far), ``patrolled``: the mean
    daily patrolled share (0-1) and ``last_patrol``: the latest good fix in the grid (Unix
    seconds; absent if none) (:mod:`layers.patrols.grid_cover`); outlines
    are pre-simplified per zoom band and, up to :data:`PRETILED_MAX_ZOOM`, pre-cut per tile
    (``pretiled=False`` cuts them here instead: the tests compare the two).
    ``bins`` holds square heat bins of ``bin_pixels`` screen pixels (a power of two), aligned
    across tiles, with a ``count``. ``incidents`` holds points (with those in the tile's buffer)
    from zoom :data:`POINT_ZOOM` on, if the tile itself holds at most
    :data:`MAX_POINTS_PER_TILE` of them; a denser tile holds its ``bins`` layer instead, never a
    cut-off sample of points.
    """
    if layer not in LAYERS:
        raise MapRequestError(f"Unknown layer {layer[:20]!r}.",
                              detail={"field": "layer", "expected": list(LAYERS)})
    if not (0 <= z <= 22 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise MapRequestError("No such tile.", detail={"field": "z/x/y", "value": [z, x, y]})
    if bin_pixels not in (4, 8, 16, 32, 64, 128, 256):
        raise MapRequestError("bin_pixels is a power of two from 4 to 256.",
                              detail={"field": "bin_pixels", "value": bin_pixels})
    scope = _scope(principal)
    if layer == "incidents" and z < POINT_ZOOM:
        return b""
    # grid tiles carry patrol coverage over the window's days (no window: this month so far)
    tz = profile(conn).tz
    cover_days = grid_cover.window_days(filters.since, filters.until, tz=tz)
    key = _tile_key(conn, layer, z, x, y, filters, scope, bin_pixels, cover_days)
    generation = cache.generation if cache is not None else 0
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    _custom_plans(conn)
    # One process per tile: a parallel ST_AsMVT merges partial tiles, and on a hot spot (1,938
    # points at z16) that took 80 ms against 25 ms serially. Parallel workers pay off for big
    # scans (heat from raw rows), not for one tile.
    conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    base = {"z": z, "x": x, "y": y, "extent": MVT_EXTENT, "buffer": MVT_BUFFER,
            "margin": MVT_BUFFER / MVT_EXTENT, "max_points": MAX_POINTS_PER_TILE}
    if layer == "incidents":
        where, params = filters.sql(scope)
        params |= base
        # How many points the tile holds: the tally's count of the tile as one bin when it
        # can answer, else a count that stops at the cap.
        whole, cparams, source = _bins_sql(EARTH_M / 2 ** z, z,
                                           map_tally.tile_bin_box(z, x, y, 1), filters, scope,
                                           tz=tz)
        if source == "tally":
            n = conn.execute(text(f"SELECT coalesce(sum(n), 0) FROM ({whole}) c"),
                             cparams).scalar_one()
        else:
            n = conn.execute(text(_POINTS_COUNT.format(where=where)), params).scalar_one()
        if n <= MAX_POINTS_PER_TILE:
            data = bytes(conn.execute(text(_POINTS_TILE.format(where=where)), params).scalar()
                         or b"")
        else:
            layer = "bins"
    if layer == "bins":
        size = EARTH_M / 2 ** z * bin_pixels / 256
        box = map_tally.tile_bin_box(z, x, y, 256 // bin_pixels)
        bins, params, _ = _bins_sql(size, z, box, filters, scope, tz=tz)
        params |= base | {"size": size}
        data = bytes(conn.execute(text(_BINS_TILE.format(bins=bins)), params).scalar() or b"")
    elif layer == "grids":
        # Few grids in a tile: count just those (index probes); many: one pass over the
        # period's rows of every grid (covering partial indexes), joined by hash. A pre-cut
        # tile says how many it holds (an index-only count); a deeper one holds few.
        pieces = FEW_GRIDS
        if pretiled and z <= PRETILED_MAX_ZOOM:
            pieces = conn.execute(text(
                "SELECT count(*) FROM grid_tile_piece WHERE z = :z AND x = :x AND y = :y"),
                base).scalar_one()
        counts, params = _grid_counts(filters, scope, "grid_code", tz=tz,
                                      codes_sql="SELECT code FROM g" if pieces <= FEW_GRIDS
                                      else None)
        rscope = "r.code LIKE ANY(:f_scope)" if not scope.covers(None) else "TRUE"
        if not scope.covers(None):
            params["f_scope"] = scope.like_patterns()
        if filters.region:
            rscope += " AND r.code LIKE :f_region"
            params["f_region"] = prefix_of(filters.region) + "%"
        params |= base
        name = "r.name" if z >= NAME_ZOOM else "NULL::text"
        cov_when, cov_days = grid_cover.window_sql(*cover_days, params)
        cover = {"cov_when": cov_when, "cov_days": cov_days,
                 "cov_limit": " AND c.grid_code IN (SELECT code FROM g)"
                 if pieces <= FEW_GRIDS else ""}
        if pretiled and z <= PRETILED_MAX_ZOOM:
            sql = _GRIDS_PIECES.format(rscope=rscope, counts=counts, name=name, **cover)
        else:
            # the band is a literal so the planner picks that band's partial GiST index
            sql = _GRIDS_TILE.format(rscope=rscope, counts=counts, name=name, **cover,
                                     band=int(next(b for b in ZOOM_BANDS if z <= b)))
        data = bytes(conn.execute(text(sql), params).scalar() or b"")
    if cache is not None:
        cache.put(key, data, generation)
    return data
