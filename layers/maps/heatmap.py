"""Incidents binned on the server for the heat map: squares aligned with the screen, or hexagons.

Square bins are ``floor(x / size)`` in Web Mercator (EPSG:3857), ``size`` being a fixed number of
screen pixels at the requested zoom, so bins line up with the screen and across tiles. Hexagons
use ``ST_HexagonGrid``'s layout (about four times slower; see ``bench/heat_tiles.py``). With few
matches the points themselves are returned.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, text

from gis.crs import EARTH_M
from gis.validate import check_bbox
from grids.access import Principal, Scope
from grids.city import profile
from layers.maps import tally
from layers.maps.filters import NO_FILTER, IncidentFilter, MapRequestError, custom_plans, map_scope

# Fewer matching incidents than this: heat may return the points themselves.
POINT_THRESHOLD = 500


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
         filters: IncidentFilter = NO_FILTER, shape: str = "square", pixels: int = 32,
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
    scope = map_scope(principal)
    _bbox_params(bbox)  # validates
    custom_plans(conn)
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
    ix0, iy0, ix1, iy1 = tally.bin_box(bbox, size)
    params |= {"bsize": size, "ix0": ix0, "ix1": ix1, "iy0": iy0, "iy1": iy1}
    return ("floor(ST_X(ST_Transform(i.geom, 3857)) / :bsize) BETWEEN :ix0 AND :ix1 AND "
            "floor(ST_Y(ST_Transform(i.geom, 3857)) / :bsize) BETWEEN :iy0 AND :iy1")


def _square_bins_sql(size: float, zoom: float, bbox: tuple[float, float, float, float] | None,
                     filters: IncidentFilter, scope: Scope, *, tz: ZoneInfo
                     ) -> tuple[str, dict[str, Any], str]:
    """``(ix, iy, n)`` per square bin of ``size`` (bins meeting ``bbox``): tally or raw."""
    box = tally.bin_box(bbox, size) if bbox is not None else None
    return bins_sql(size, zoom, box, filters, scope, tz=tz)


def bins_sql(size: float, zoom: float, box: tuple[int, int, int, int] | None,
              filters: IncidentFilter, scope: Scope, *, tz: ZoneInfo, raw: bool = False
              ) -> tuple[str, dict[str, Any], str]:
    """``(ix, iy, n)`` per bin in ``box``: from the tallies when they can answer, else (or if
    ``raw``) from every matching row."""
    level = tally.level_for(size) if zoom == int(zoom) and not raw else None
    detail = bool(filters.categories or filters.states)
    if level is not None and tally.street_wide(scope, filters.region) and \
            (not detail or level[0] == tally.DETAIL_LEVEL):
        k, r = level
        rest = IncidentFilter(categories=filters.categories, states=filters.states,
                              region=filters.region)
        where, params = rest.sql(scope)
        sql, more = tally.cell_bins_sql(
            k=k, r=r, since=filters.since, until=filters.until, categories=filters.categories,
            states=filters.states, scope=scope, region=filters.region, raw_where=where, box=box,
            tz=tz)
        return sql, params | more, "tally"
    where, params = filters.sql(scope)
    params["size"] = size
    cond = "TRUE"
    if box is not None:
        params |= {"ix0": box[0], "ix1": box[2], "iy0": box[1], "iy1": box[3]}
        lon0, lat0 = tally.lonlat(box[0] * size, box[1] * size)
        lon1, lat1 = tally.lonlat((box[2] + 1) * size, (box[3] + 1) * size)
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

