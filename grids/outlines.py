"""Region outlines for the map, cut to the view and simplified for the zoom.

The portal never asks for the whole city at grid level: it asks for the outlines in its view
(``bbox``) at its zoom, and the level follows the zoom (:func:`level_for_zoom`): streets when the
whole city is on screen, communities closer in, grids closer still. Geometries are simplified to
half a screen pixel (:func:`tolerance_deg`) and written with just enough decimals for the zoom,
so a city-wide view of 14 streets weighs tens of kilobytes, not the megabytes of the raw
2,634 grids. Each feature carries a label point inside its polygon (``ST_PointOnSurface``) so
the page can place labels without computing centroids of simplified shapes.

Simplification is per polygon (``ST_SimplifyPreserveTopology``), so neighbours' shared edges may
differ by up to the tolerance: half a pixel, which nobody sees.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from sqlalchemy import Connection, text

from gis.validate import check_bbox
from grids.access import Scope
from grids.errors import GridError
from grids.sql import in_scope

LEVELS = ("street", "community", "grid")
# The most features one response may carry (a phone at grid level over a whole street is ~400).
MAX_FEATURES = 5000


class OutlineRequestError(GridError):
    code = "invalid_outline_request"


def level_for_zoom(zoom: float) -> str:
    """The level drawn at ``zoom`` (Web Mercator, 256-pixel tiles).

    >>> [level_for_zoom(z) for z in (10, 12, 13, 14, 17)]
    ['street', 'street', 'community', 'grid', 'grid']
    """
    if zoom < 13:
        return "street"
    if zoom < 14:
        return "community"
    return "grid"


def tolerance_deg(zoom: float, *, pixels: float = 0.5) -> float:
    """``pixels`` screen pixels at ``zoom``, in degrees of longitude.

    >>> round(tolerance_deg(11), 6)
    0.000343
    """
    return pixels * 360.0 / (256 * 2 ** zoom)


def decimals_for_zoom(zoom: float) -> int:
    """Decimals of a degree that keep a tenth of a pixel (at most 7, about 1 cm).

    >>> decimals_for_zoom(11), decimals_for_zoom(15), decimals_for_zoom(22)
    (5, 6, 7)
    """
    return max(3, min(7, math.ceil(-math.log10(tolerance_deg(zoom, pixels=0.1)))))


def outlines(conn: Connection, *, scope: Scope, zoom: float,
             bbox: tuple[float, float, float, float] | None = None, level: str | None = None,
             parent: str | None = None) -> dict[str, Any]:
    """Current outlines of ``level`` (default: by zoom) in ``bbox`` and ``scope``, as GeoJSON.

    Features have ``code``, ``name``, ``level``, ``parent`` and ``label`` ([lon, lat] inside the
    polygon). ``parent`` restricts to one region's subtree (a code prefix).
    """
    if not 0 <= zoom <= 22:
        raise OutlineRequestError("zoom is 0..22.", detail={"field": "zoom", "value": zoom})
    level = level or level_for_zoom(zoom)
    if level not in LEVELS:
        raise OutlineRequestError("level is street, community or grid.",
                                  detail={"field": "level", "expected": list(LEVELS)})
    where = ["r.level = :level"]
    params: dict[str, Any] = {"level": level, "tol": tolerance_deg(zoom),
                              "digits": decimals_for_zoom(zoom), "max": MAX_FEATURES + 1}
    if bbox is not None:
        x0, y0, x1, y1 = check_bbox(bbox)
        where.append("r.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)")
        params |= {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
    cond, scoped = in_scope(scope, "r.code")
    where.append(cond)
    params |= scoped
    if parent:
        from grids.access import prefix_of

        where.append("r.code LIKE :parent")
        params["parent"] = prefix_of(parent) + "%"
    rows = conn.execute(text(
        "SELECT r.code, r.name, r.parent_code, "
        "ST_AsGeoJSON(ST_SimplifyPreserveTopology(r.geom, :tol), :digits) AS geom, "
        "ST_X(l) AS lx, ST_Y(l) AS ly FROM region_current r, "
        "LATERAL ST_PointOnSurface(r.geom) l "
        f"WHERE {' AND '.join(where)} ORDER BY r.code LIMIT :max"), params).all()
    if len(rows) > MAX_FEATURES:
        raise OutlineRequestError(
            f"More than {MAX_FEATURES} outlines in view: zoom in or choose a higher level.",
            detail={"field": "bbox", "max": MAX_FEATURES})
    digits = params["digits"]
    features = [
        {"type": "Feature", "geometry": orjson.Fragment(geom),
         "properties": {"code": code, "name": name, "level": level, "parent": parent_code,
                        "label": [round(lx, digits), round(ly, digits)]}}
        for code, name, parent_code, geom, lx, ly in rows if geom is not None]
    return {"type": "FeatureCollection", "level": level, "zoom": zoom,
            "tolerance_deg": params["tol"], "crs": "EPSG:4490", "features": features}
