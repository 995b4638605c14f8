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

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, Principal, Scope, prefix_of
from grids.errors import GridError
from layers.incidents.workflow import OPEN_STATES

# Fewer matching incidents than this: heat may return the points themselves.
POINT_THRESHOLD = 500
# Incident points appear in vector tiles from this zoom on; below it the layer is empty (use bins).
POINT_ZOOM = 14
# Cap on points in one tile, so a dense tile cannot grow without bound.
MAX_POINTS_PER_TILE = 20_000
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
    x0, y0, x1, y1 = bbox
    if not (-180 <= x0 < x1 <= 180 and -85 <= y0 < y1 <= 85):
        raise MapRequestError("bbox must be minlon,minlat,maxlon,maxlat with min < max.",
                              detail={"field": "bbox", "value": list(bbox)})
    return ("i.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)",
            {"x0": x0, "y0": y0, "x1": x1, "y1": y1})


def heat(conn: Connection, *, principal: Principal, zoom: float,
         bbox: tuple[float, float, float, float] | None = None,
         filters: IncidentFilter = IncidentFilter(), shape: str = "square", pixels: int = 32,
         point_threshold: int = POINT_THRESHOLD) -> dict[str, Any]:
    """Incidents in ``bbox`` (lon/lat, CGCS2000 ≈ WGS84) binned for ``zoom``, as GeoJSON.

    Bins are polygons in EPSG:4326 with a ``count``; the counts add up to ``total``. With fewer
    than ``point_threshold`` matches the features are the points (``kind = 'points'``).
    """
    if shape not in ("square", "hex"):
        raise MapRequestError("shape is square or hex.", detail={"field": "shape"})
    if not 0 <= zoom <= 22:
        raise MapRequestError("zoom is 0..22.", detail={"field": "zoom", "value": zoom})
    where, params = filters.sql(_scope(principal))
    box, bparams = _bbox_params(bbox)
    params |= bparams
    base = f"FROM incident i WHERE i.geom IS NOT NULL AND {box} AND {where}"
    total = conn.execute(text(f"SELECT count(*) {base}"), params).scalar_one()
    size = cell_size_m(zoom, pixels=pixels)
    out: dict[str, Any] = {"type": "FeatureCollection", "total": total, "zoom": zoom,
                           "crs": "EPSG:4326", "shape": shape, "cell_m": round(size, 3)}
    if total < point_threshold:
        rows = conn.execute(text(
            "SELECT i.id, i.state, c.code AS category, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat "
            f"FROM incident i JOIN category c ON c.id = i.category_id "
            f"WHERE i.geom IS NOT NULL AND {box} AND {where} ORDER BY i.id"), params).mappings()
        out["kind"] = "points"
        out["features"] = [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
             "properties": {"id": r["id"], "state": r["state"], "category": r["category"],
                            "count": 1}} for r in rows]
        return out
    params["size"] = size
    if shape == "square":
        sql = (
            "WITH p AS (SELECT ST_Transform(i.geom, 3857) AS g " + base + "), "
            "b AS (SELECT floor(ST_X(g) / :size) AS ix, floor(ST_Y(g) / :size) AS iy, "
            "count(*) AS n FROM p GROUP BY 1, 2) "
            "SELECT n, ST_AsGeoJSON(ST_Transform(ST_MakeEnvelope(ix * :size, iy * :size, "
            "(ix + 1) * :size, (iy + 1) * :size, 3857), 4326), 6) AS geom FROM b ORDER BY iy, ix")
    else:
        # Each point goes to exactly one hexagon: a point on a shared edge picks the first.
        sql = (
            "WITH p AS (SELECT i.id, ST_Transform(i.geom, 3857) AS g " + base + "), "
            "h AS (SELECT hg.i, hg.j, hg.geom FROM ST_HexagonGrid(:size, "
            "(SELECT ST_SetSRID(ST_Expand(ST_Extent(g)::geometry, :size), 3857) FROM p)) hg), "
            "one AS (SELECT DISTINCT ON (p.id) h.i, h.j FROM p JOIN h ON ST_Intersects(h.geom, p.g) "
            "ORDER BY p.id, h.i, h.j), "
            "b AS (SELECT i, j, count(*) AS n FROM one GROUP BY i, j) "
            "SELECT b.n, ST_AsGeoJSON(ST_Transform(h.geom, 4326), 6) AS geom "
            "FROM b JOIN h USING (i, j) ORDER BY b.j, b.i")
    import orjson

    out["kind"] = "bins"
    out["features"] = [
        {"type": "Feature", "geometry": orjson.loads(geom), "properties": {"count": n}}
        for n, geom in conn.execute(text(sql), params)]
    return out


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
    where, params = filters.sql(scope)
    rscope = "TRUE"
    if not scope.covers(None):
        rscope = "r.code LIKE ANY(:f_scope)"
    if filters.region:
        rscope += " AND r.code LIKE :f_region"
    geom = ", ST_AsGeoJSON(r.geom, 6) AS geom" if geometry else ""
    params["level"] = level
    params["open"] = sorted(OPEN_STATES)
    rows = conn.execute(text(
        f"WITH n AS (SELECT i.{column} AS code, count(*) AS incidents, "
        "count(*) FILTER (WHERE i.state = ANY(:open)) AS open, "
        "count(*) FILTER (WHERE i.state = ANY(:open) AND i.due_at < now()) AS overdue "
        f"FROM incident i WHERE {where} GROUP BY 1) "
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

_TILE_SQL = {
    "grids": (
        "WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env, "
        "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4490) AS q), "
        "g AS (SELECT r.code, r.name, r.geom FROM region_current r, t "
        "WHERE r.level = 'grid' AND r.geom && t.q AND {rscope}), "
        "e AS (SELECT ST_Extent(geom)::geometry AS box FROM g), "
        "n AS (SELECT i.grid_code AS code, count(*) AS incidents, "
        "count(*) FILTER (WHERE i.state = ANY(:open)) AS open, "
        "count(*) FILTER (WHERE i.state = ANY(:open) AND i.due_at < now()) AS overdue "
        "FROM incident i, e WHERE i.geom && e.box AND i.grid_code IN (SELECT code FROM g) "
        "AND {where} GROUP BY 1), "
        "mvt AS (SELECT g.code, g.name, coalesce(n.incidents, 0)::int AS incidents, "
        "coalesce(n.open, 0)::int AS open, coalesce(n.overdue, 0)::int AS overdue, "
        "ST_AsMVTGeom(ST_Transform(g.geom, 3857), t.env, :extent, :buffer, true) AS geom "
        "FROM g LEFT JOIN n USING (code), t) "
        "SELECT ST_AsMVT(mvt, 'grids', :extent, 'geom') FROM mvt WHERE geom IS NOT NULL"),
    "incidents": (
        "WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env, "
        "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4490) AS q), "
        "mvt AS (SELECT i.id, i.state, c.code AS category, i.grid_code AS grid, "
        "ST_AsMVTGeom(ST_Transform(i.geom, 3857), t.env, :extent, :buffer, true) AS geom "
        "FROM incident i JOIN category c ON c.id = i.category_id, t "
        "WHERE i.geom && t.q AND {where} ORDER BY i.id LIMIT :max_points) "
        "SELECT ST_AsMVT(mvt, 'incidents', :extent, 'geom') FROM mvt WHERE geom IS NOT NULL"),
    "bins": (
        "WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env), "
        "p AS (SELECT ST_Transform(i.geom, 3857) AS g FROM incident i, t "
        "WHERE i.geom && ST_Transform(t.env, 4490) AND {where}), "
        "b AS (SELECT floor(ST_X(g) / :size) AS ix, floor(ST_Y(g) / :size) AS iy, "
        "count(*)::int AS count FROM p, t WHERE g && t.env GROUP BY 1, 2), "
        "mvt AS (SELECT b.count, ST_AsMVTGeom(ST_MakeEnvelope(ix * :size, iy * :size, "
        "(ix + 1) * :size, (iy + 1) * :size, 3857), t.env, :extent, 0, true) AS geom FROM b, t) "
        "SELECT ST_AsMVT(mvt, 'bins', :extent, 'geom') FROM mvt WHERE geom IS NOT NULL"),
}


def tile(conn: Connection, layer: str, z: int, x: int, y: int, *, principal: Principal,
         filters: IncidentFilter = IncidentFilter(), bin_pixels: int = 16,
         cache: TileCache | None = TILE_CACHE) -> bytes:
    """One Mapbox vector tile of ``layer`` (grids, incidents, bins) at z/x/y, possibly empty.

    ``grids`` carries code, name and, for incidents matching ``filters``: incidents, open and
    overdue. ``incidents`` holds points only from zoom :data:`POINT_ZOOM` on. ``bins`` holds square
    heat bins of ``bin_pixels`` screen pixels, aligned across tiles, with a ``count``.
    """
    if layer not in LAYERS:
        raise MapRequestError(f"Unknown layer {layer[:20]!r}.",
                              detail={"field": "layer", "expected": list(LAYERS)})
    if not (0 <= z <= 22 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise MapRequestError("No such tile.", detail={"field": "z/x/y", "value": [z, x, y]})
    scope = _scope(principal)
    if layer == "incidents" and z < POINT_ZOOM:
        return b""
    key = (layer, z, x, y, filters.key(), scope.prefixes, bin_pixels, data_version(conn))
    generation = cache.generation if cache is not None else 0
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    where, params = filters.sql(scope)
    rscope = "r.code LIKE ANY(:f_scope)" if not scope.covers(None) else "TRUE"
    if filters.region:
        rscope += " AND r.code LIKE :f_region"
    params |= {"z": z, "x": x, "y": y, "extent": MVT_EXTENT, "buffer": MVT_BUFFER,
               "margin": MVT_BUFFER / MVT_EXTENT, "open": sorted(OPEN_STATES),
               "max_points": MAX_POINTS_PER_TILE,
               "size": EARTH_M / 2 ** z * bin_pixels / 256}
    sql = _TILE_SQL[layer].format(where=where, rscope=rscope)
    data = bytes(conn.execute(text(sql), params).scalar() or b"")
    if cache is not None:
        cache.put(key, data, generation)
    return data
