"""Mapbox vector tiles of the incident map: grids (with counts and patrol coverage), incident
points and heat bins, aggregated in PostGIS.

Nothing here ships every point to the browser (Ushahidi's map broke above ~30,000 points because
its GeoJSON endpoint did): raw points are only in tiles at zoom >= :data:`POINT_ZOOM`, and a tile
with too many gets bins instead. Tiles are cached per process in
:data:`layers.maps.cache.TILE_CACHE` and never served stale.

Each query is built by one function here (``*_sql``) as SQL text whose values are bound
parameters; the fragments it is given (jurisdiction, counts, coverage window) are made by code
(:func:`layers.maps.filters.place_sql`, :mod:`layers.maps.choropleth`, :mod:`layers.patrols.grid_cover`).
"""

from __future__ import annotations

import gzip
from datetime import date
from typing import Any

from sqlalchemy import Connection, text

from gis.crs import EARTH_M
from grids.access import Principal, Scope
from grids.city import profile
from layers.maps import tally
from layers.maps.cache import TILE_CACHE, TileCache, data_version
from layers.maps.choropleth import grid_counts
from layers.maps.filters import NO_FILTER, IncidentFilter, MapRequestError, custom_plans, map_scope, place_sql
from layers.maps.heatmap import bins_sql
from layers.patrols import grid_cover

# Incident points appear in vector tiles from this zoom on; below it the layer is empty (use bins).
POINT_ZOOM = 14
# A tile with more matching points than this gets bins instead (so a dense tile stays small).
MAX_POINTS_PER_TILE = 10_000
MVT_EXTENT = 4096
MVT_BUFFER = 64
LAYERS = ("grids", "incidents", "bins")
# Grid outlines come pre-simplified per zoom band (migration 0008): the band's top zoom.
ZOOM_BANDS = (11, 13, 22)
# Up to this zoom they also come cut per tile (migration 0009): the tile only encodes them.
PRETILED_MAX_ZOOM = 13

# Up to this many grids in a tile, their counts are read grid by grid (each ~10 µs of index
# probes); more, and one pass over every grid's rows is cheaper (~20-35 ms for 10,000 grids).
FEW_GRIDS = 1500
# Below this zoom grid features carry no name (a city tile holds thousands of grids; names
# are read closer in): the name strings were half the tile's bytes and encoding time.
NAME_ZOOM = 12


def _grids_sql(g: str, *, geom: str, counts: str, cov_when: str, cov_days: int,
               cov_limit: str) -> str:
    """The ``grids`` layer: the grids of ``g`` (code, name, geom) with their incident counts
    (``counts``: code, incidents, open, overdue) and patrol coverage over the window's days
    (migration 0010: mean daily patrolled share); ``geom`` is the MVT geometry of ``g.geom``."""
    return (
        f"WITH g AS ({g}), n AS ({counts}), "
        f"c AS (SELECT c.grid_code AS code, sum(c.share) / {int(cov_days)} AS patrolled, "
        f"max(c.last_fix_at) AS last FROM patrol_grid_cover c WHERE {cov_when}{cov_limit} "
        "GROUP BY 1), "
        "mvt AS (SELECT g.code, g.name, coalesce(n.incidents, 0)::int AS incidents, "
        "coalesce(n.open, 0)::int AS open, coalesce(n.overdue, 0)::int AS overdue, "
        "round(coalesce(c.patrolled, 0)::numeric, 4)::real AS patrolled, "
        f"extract(epoch FROM c.last)::bigint AS last_patrol, {geom} AS geom "
        "FROM g LEFT JOIN n USING (code) LEFT JOIN c USING (code)) "
        # ST_AsMVT skips rows whose geometry is NULL (a WHERE here would cut every outline twice)
        "SELECT ST_AsMVT(mvt, 'grids', :extent, 'geom') FROM mvt")


def _grid_outlines_sql(*, name: str, band: int, rscope: str) -> str:
    """The grids meeting tile z/x/y, pre-simplified for zoom ``band``, to be cut here.

    The envelope is written out (not taken from a CTE) so the planner sees its size; the band
    is a literal so the planner picks that band's partial GiST index."""
    return (f"SELECT r.code, {name} AS name, b.geom FROM boundary_tile_geom b "
            "JOIN region_current r ON r.boundary_id = b.boundary_id "
            f"WHERE b.max_zoom = {int(band)} "
            "AND b.geom && ST_TileEnvelope(:z, :x, :y, margin => :margin) "
            f"AND r.level = 'grid' AND {rscope}")


def _grid_pieces_sql(*, name: str, rscope: str) -> str:
    """The grids of tile z/x/y as pre-cut MVT geometry (migration 0009)."""
    return (f"SELECT r.code, {name} AS name, p.geom FROM grid_tile_piece p "
            "JOIN region_current r ON r.boundary_id = p.boundary_id "
            f"WHERE p.z = :z AND p.x = :x AND p.y = :y AND r.level = 'grid' AND {rscope}")


def _points_tile_sql(where: str) -> str:
    """The ``incidents`` layer: the points matching ``where`` in tile z/x/y and its buffer."""
    return ("WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env, "
            "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4490) AS q), "
            "mvt AS (SELECT i.id, i.state, c.code AS category, i.grid_code AS grid, "
            "ST_AsMVTGeom(ST_Transform(i.geom, 3857), t.env, :extent, :buffer, true) AS geom "
            "FROM incident i JOIN category c ON c.id = i.category_id, t "
            f"WHERE i.geom && t.q AND {where}) "
            "SELECT ST_AsMVT(mvt, 'incidents', :extent, 'geom') FROM mvt")


def _points_count_sql(where: str) -> str:
    """How many points matching ``where`` tile z/x/y holds, counting no further than the cap."""
    return ("SELECT count(*) FROM (SELECT 1 FROM incident i WHERE i.geom && "
            f"ST_Transform(ST_TileEnvelope(:z, :x, :y), 4490) AND {where} "
            "LIMIT :max_points + 1) s")


def _bins_tile_sql(bins: str) -> str:
    """The ``bins`` layer: the square bins ``(ix, iy, n)`` of ``bins`` as MVT polygons."""
    return ("WITH t AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env), "
            "mvt AS (SELECT b.n::int AS count, ST_AsMVTGeom(ST_MakeEnvelope(b.ix * :size, "
            "b.iy * :size, (b.ix + 1) * :size, (b.iy + 1) * :size, 3857), t.env, :extent, 0, "
            f"true) AS geom FROM ({bins}) b, t) "
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
                 principal: Principal, filters: IncidentFilter = NO_FILTER,
                 bin_pixels: int = 16, cache: TileCache | None = TILE_CACHE) -> bytes:
    """:func:`tile`, gzip-compressed (level 1: the densest z10 grid tile, 517 kB, becomes
    253 kB in 9 ms) and cached beside the plain tile, so a cached answer costs no compression.
    An empty tile stays empty."""
    generation = cache.generation if cache is not None else 0
    key = ("gzip", *_tile_key(conn, layer, z, x, y, filters, map_scope(principal), bin_pixels))
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    data = tile(conn, layer, z, x, y, principal=principal, filters=filters,
                bin_pixels=bin_pixels, cache=cache)
    packed = gzip.compress(data, compresslevel=1, mtime=0) if data else b""
    if cache is not None:
        cache.put(key, packed, generation)
    return packed


def tile(conn: Connection, layer: str, z: int, x: int, y: int, *, principal: Principal,
         filters: IncidentFilter = NO_FILTER, bin_pixels: int = 16,
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
    scope = map_scope(principal)
    if layer == "incidents" and z < POINT_ZOOM:
        return b""
    # grid tiles carry patrol coverage over the window's days (no window: this month so far)
    tz = profile(conn).tz
    cover_days = grid_cover.window_days(filters.since, filters.until, tz=tz)
    key = _tile_key(conn, layer, z, x, y, filters, scope, bin_pixels, cover_days)
    generation = cache.generation if cache is not None else 0
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    custom_plans(conn)
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
        whole, cparams, source = bins_sql(EARTH_M / 2 ** z, z,
                                          tally.tile_bin_box(z, x, y, 1), filters, scope,
                                          tz=tz)
        if source == "tally":
            n = conn.execute(text(f"SELECT coalesce(sum(n), 0) FROM ({whole}) c"),
                             cparams).scalar_one()
        else:
            n = conn.execute(text(_points_count_sql(where)), params).scalar_one()
        if n <= MAX_POINTS_PER_TILE:
            data = bytes(conn.execute(text(_points_tile_sql(where)), params).scalar()
                         or b"")
        else:
            layer = "bins"
    if layer == "bins":
        size = EARTH_M / 2 ** z * bin_pixels / 256
        box = tally.tile_bin_box(z, x, y, 256 // bin_pixels)
        bins, params, _ = bins_sql(size, z, box, filters, scope, tz=tz)
        params |= base | {"size": size}
        data = bytes(conn.execute(text(_bins_tile_sql(bins)), params).scalar() or b"")
    elif layer == "grids":
        # Few grids in a tile: count just those (index probes); many: one pass over the
        # period's rows of every grid (covering partial indexes), joined by hash. A pre-cut
        # tile says how many it holds (an index-only count); a deeper one holds few.
        pieces = FEW_GRIDS
        if pretiled and z <= PRETILED_MAX_ZOOM:
            pieces = conn.execute(text(
                "SELECT count(*) FROM grid_tile_piece WHERE z = :z AND x = :x AND y = :y"),
                base).scalar_one()
        counts, params = grid_counts(filters, scope, "grid_code", tz=tz,
                                     codes_sql="SELECT code FROM g" if pieces <= FEW_GRIDS
                                     else None)
        rscope, more = place_sql(scope, filters.region, column="r.code")
        params |= more | base
        name = "r.name" if z >= NAME_ZOOM else "NULL::text"
        cov_when, cov_days = grid_cover.window_sql(*cover_days, params)
        cov_limit = " AND c.grid_code IN (SELECT code FROM g)" if pieces <= FEW_GRIDS else ""
        if pretiled and z <= PRETILED_MAX_ZOOM:
            g, geom = _grid_pieces_sql(name=name, rscope=rscope), "g.geom"
        else:
            g = _grid_outlines_sql(name=name, rscope=rscope,
                                   band=next(b for b in ZOOM_BANDS if z <= b))
            geom = "ST_AsMVTGeom(g.geom, ST_TileEnvelope(:z, :x, :y), :extent, :buffer, true)"
        sql = _grids_sql(g, geom=geom, counts=counts, cov_when=cov_when, cov_days=cov_days,
                         cov_limit=cov_limit)
        data = bytes(conn.execute(text(sql), params).scalar() or b"")
    if cache is not None:
        cache.put(key, data, generation)
    return data
