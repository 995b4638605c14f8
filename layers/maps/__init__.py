"""Incidents on the map: heat bins, per-region counts and vector tiles, aggregated in PostGIS.

Nothing here ships every point to the browser (Ushahidi's map broke above ~30,000 points because
its GeoJSON endpoint did): heat is binned on the server, and raw points are only returned when
fewer than :data:`POINT_THRESHOLD` incidents match, or in vector tiles at zoom >= :data:`POINT_ZOOM`.

Every query is cut to the caller's jurisdiction (dispatchers city-wide, as for incident queries).
Tiles are cached per process in :data:`TILE_CACHE` and never served stale; see :class:`TileCache`.

Modules: :mod:`~layers.maps.filters` (the filters, the jurisdiction, planner settings),
:mod:`~layers.maps.heatmap` (heat bins), :mod:`~layers.maps.choropleth` (counts per region),
:mod:`~layers.maps.tiles` (vector tiles), :mod:`~layers.maps.cache` (the tile cache),
:mod:`~layers.maps.tally` (exact counts from the tallies of migrations 0008 and 0011).
"""

from layers.maps.cache import TILE_CACHE, TileCache, data_version
from layers.maps.choropleth import counts
from layers.maps.filters import LEVEL_COLUMN, IncidentFilter, MapRequestError
from layers.maps.heatmap import POINT_THRESHOLD, cell_size_m, heat
from layers.maps.tiles import (
    LAYERS,
    MAX_POINTS_PER_TILE,
    MVT_BUFFER,
    MVT_EXTENT,
    NAME_ZOOM,
    POINT_ZOOM,
    PRETILED_MAX_ZOOM,
    ZOOM_BANDS,
    gzipped_tile,
    tile,
)

__all__ = [
    "LAYERS", "LEVEL_COLUMN", "MAX_POINTS_PER_TILE", "MVT_BUFFER", "MVT_EXTENT", "NAME_ZOOM",
    "POINT_THRESHOLD", "POINT_ZOOM", "PRETILED_MAX_ZOOM", "TILE_CACHE", "ZOOM_BANDS",
    "IncidentFilter", "MapRequestError", "TileCache", "cell_size_m", "counts", "data_version",
    "gzipped_tile", "heat", "tile",
]
