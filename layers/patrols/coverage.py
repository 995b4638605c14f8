"""Patrol coverage: how much of each grid the tracks of a time window came near.

- A grid's **patrolled area** is the part of it within ``buffer_m`` (default 50 m) of any worker's
  filtered track in the window (:mod:`.tracks`; whoever walked it): tracks are joined per shift,
  the pieces near the grids buffered in the city's metric CRS, unioned once and intersected with
  each grid.
  Shapely on arrays (GEOS, as PostGIS would run it) after one indexed read of the window's fixes; see
  ``bench/patrol_coverage.py`` for the timing against a naive baseline.
- **Last patrolled**: the latest good fix (kept or collapsed jitter) covered by the grid in the
  window; ``seconds_since`` counts to the end of the window.
- **Totals** for each community, street and the city above the grids asked about: area-weighted
  (patrolled m² over grid m²), over the grids the caller may see.
- Jurisdiction: only grids in the caller's scope are considered; a region with none is not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import numpy as np
import shapely
from shapely.geometry import mapping
from sqlalchemy import Connection, text

from gis.geojson import Feature, FeatureCollection
from gis.transform import transformer
from grids.access import Permission, Principal, prefix_of
from grids.city import profile
from grids.codes import normalise
from grids.errors import GridError, RegionNotFound
from layers.patrols.fixes import Fixes, read_fixes
from layers.patrols.tracks import KEPT, good, lines

MAX_WINDOW = timedelta(days=31)
MARGIN_M = 300.0  # fixes this far around the region still feed it (a segment may cross it)
DEG_PER_M = 1 / 90_000  # generous: a degree of longitude is ~97 km at 29° N
CHUNK = 16  # segments per buffered piece of track
THREADS = 2
_POOL = ThreadPoolExecutor(THREADS, thread_name_prefix="coverage")


class WindowError(GridError):
    code = "invalid_window"


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The window, defaulting to the 24 hours before now, at most 31 days long."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=1)
    if since.tzinfo is None or until.tzinfo is None:
        raise WindowError("since and until need an offset (+08:00 or Z).",
                          detail={"field": "since"})
    if until <= since or until - since > MAX_WINDOW:
        raise WindowError("The window must end after it starts and span at most 31 days.",
                          detail={"field": "until", "expected": "since < until ≤ since + 31 d"})
    return since, until


@dataclass
class Grids:
    code: list[str]
    name: list[str]
    geom: np.ndarray  # the city's metric CRS
    box: tuple[float, float, float, float]  # lon/lat extent


def visible_grids(conn: Connection, region: str | None, *, principal: Principal) -> Grids:
    """The grids in force under ``region`` (default: the whole jurisdiction) the caller sees."""
    principal.require(Permission.PATROLS_READ)
    prefix = prefix_of(normalise(region)) if region else ""
    rows = conn.execute(text(
        f"SELECT {GRID_COLUMNS} FROM region_current "
        "WHERE level = 'grid' AND code LIKE :p AND code LIKE ANY(:patterns) ORDER BY code"),
        {"p": prefix + "%", "patterns": principal.scope.like_patterns()}).all()
    if not rows:
        raise RegionNotFound(f"No region {str(region)[:20]} with grids in your jurisdiction.",
                             detail={"field": "region", "value": str(region)[:20]})
    return grids_of(rows)


# the columns :func:`grids_of` reads, from ``region_current``
GRID_COLUMNS = ("code, name, ST_AsBinary(ST_Transform(geom, (SELECT citygrid_metric_srid()))) AS g, "
                "ST_XMin(geom) AS x0, ST_YMin(geom) AS y0, ST_XMax(geom) AS x1, ST_YMax(geom) AS y1")


def grids_of(rows: Sequence[Any]) -> Grids:
    """Grids from ``region_current`` rows selected with :data:`GRID_COLUMNS` (at least one)."""
    return Grids(code=[r.code for r in rows], name=[r.name for r in rows],
                 geom=shapely.from_wkb([bytes(r.g) for r in rows]),
                 box=(min(r.x0 for r in rows), min(r.y0 for r in rows),
                      max(r.x1 for r in rows), max(r.y1 for r in rows)))


def window_fixes(conn: Connection, grids: Grids, since: datetime, until: datetime,
                 buffer_m: float) -> Fixes:
    pad = (buffer_m + MARGIN_M) * DEG_PER_M
    x0, y0, x1, y1 = grids.box
    return read_fixes(conn, since=since, until=until,
                      envelope=(x0 - pad, y0 - pad, x1 + pad, y1 + pad))


def _chunks(keys: np.ndarray, x: np.ndarray, y: np.ndarray,
            k: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each track into pieces of ``k`` segments sharing their end vertices.

    The buffer of a union is the union of the buffers, so the result is the same; but GEOS
    buffers a long self-crossing walk far more slowly than many short pieces of it.
    """
    idx = np.arange(keys.size)
    first = np.maximum.accumulate(np.where(np.r_[True, keys[1:] != keys[:-1]], idx, 0))
    pos = idx - first
    piece = keys * 1_000_000 + pos // k
    seam = (pos % k == 0) & (pos > 0)  # also the last vertex of the previous piece
    order = np.lexsort((np.r_[idx, idx[seam] - 0.5], np.r_[piece, piece[seam] - 1]))
    return (np.r_[piece, piece[seam] - 1][order], np.r_[x, x[seam]][order],
            np.r_[y, y[seam]][order])


def _parallel(fn, *arrays: np.ndarray) -> np.ndarray:
    """``fn`` over the arrays split in THREADS parts (shapely releases the GIL)."""
    if arrays[0].size < 256:
        return fn(*arrays)
    parts = zip(*(np.array_split(a, THREADS) for a in arrays), strict=True)
    return np.concatenate(list(_POOL.map(lambda p: fn(*p), parts)))


def covered_parts(grid_geoms: np.ndarray, fx: Fixes, buffer_m: float) -> np.ndarray:
    """Per grid (the city's metric CRS), the part within ``buffer_m`` of a track (None: nothing).

    Only the pieces of track whose box comes within ``buffer_m`` of a grid's box are buffered;
    their buffers are unioned once (in two spatial halves, in parallel) and the union is
    intersected with each grid: the same area as clipping piece by piece and unioning per grid,
    at a fraction of the cost.
    """
    out = np.full(len(grid_geoms), None, dtype=object)
    kept = fx.status == KEPT
    _, tracks = lines(*_chunks(fx.track_keys()[kept], fx.x[kept], fx.y[kept]))
    if tracks.size == 0 or len(grid_geoms) == 0:
        return out
    x0, y0, x1, y1 = shapely.bounds(grid_geoms).T
    near = shapely.box(x0 - buffer_m, y0 - buffer_m, x1 + buffer_m, y1 + buffer_m)
    tracks = tracks[np.unique(shapely.STRtree(tracks).query(near)[1])]
    if tracks.size == 0:
        return out
    buffers = _parallel(lambda a: shapely.buffer(a, buffer_m, quad_segs=8), tracks)
    buffers = buffers[np.argsort(shapely.bounds(buffers)[:, 0], kind="stable")]
    halves = list(_POOL.map(shapely.union_all, np.array_split(buffers, THREADS)))
    cover = shapely.union_all(halves)
    shapely.prepare(cover)
    hit = shapely.intersects(grid_geoms, cover)
    if hit.any():
        parts = _parallel(lambda g: shapely.intersection(g, cover), grid_geoms[hit])
        parts[shapely.is_empty(parts)] = None
        out[hit] = parts
    return out


def last_patrolled(grid_geoms: np.ndarray, fx: Fixes) -> np.ndarray:
    """Per grid, the time (epoch s) of the latest good fix it covers; NaN if none."""
    last = np.full(len(grid_geoms), np.nan)
    ok = good(fx.status)
    if not ok.any() or len(grid_geoms) == 0:
        return last
    x0, y0, x1, y1 = shapely.total_bounds(grid_geoms)
    ok &= (fx.x >= x0) & (fx.x <= x1) & (fx.y >= y0) & (fx.y <= y1)
    pi, gi = shapely.STRtree(grid_geoms).query(shapely.points(fx.x[ok], fx.y[ok]),
                                               predicate="intersects")
    filled = np.full(len(grid_geoms), -np.inf)
    np.maximum.at(filled, gi, fx.t[ok][pi])
    last[np.isfinite(filled)] = filled[np.isfinite(filled)]
    return last


def _iso(t: float) -> str | None:
    return None if np.isnan(t) else datetime.fromtimestamp(t, UTC).isoformat()


def coverage(conn: Connection, *, region: str | None, since: datetime | None = None,
             until: datetime | None = None, buffer_m: float = 50.0,
             principal: Principal) -> dict[str, Any]:
    """Coverage per grid under ``region`` and area-weighted totals per community/street/city."""
    since, until = window(since, until)
    grids = visible_grids(conn, region, principal=principal)
    fx = window_fixes(conn, grids, since, until, buffer_m)
    parts = covered_parts(grids.geom, fx, buffer_m)
    area = shapely.area(grids.geom)
    done = np.array([0.0 if p is None else shapely.area(p) for p in parts])
    last = last_patrolled(grids.geom, fx)
    end = until.timestamp()
    rows = [{"code": c, "name": n, "area_m2": round(float(a), 1),
             "patrolled_m2": round(float(d), 1), "share": round(float(d / a), 6) if a else 0.0,
             "last_patrolled_at": _iso(t),
             "seconds_since": None if np.isnan(t) else round(end - float(t), 1)}
            for c, n, a, d, t in zip(grids.code, grids.name, area, done, last, strict=True)]
    return {"region": normalise(region) if region else None, "since": since.isoformat(),
            "until": until.isoformat(), "buffer_m": buffer_m, "grids": rows,
            "totals": _totals(conn, grids.code, area, done)}


def _totals(conn: Connection, codes: list[str], area: np.ndarray,
            done: np.ndarray) -> list[dict[str, Any]]:
    sums: dict[str, list[float]] = {}
    for code, a, d in zip(codes, area.tolist(), done.tolist(), strict=True):
        for parent in (code[:12], code[:9] + "000", code[:6] + "000000"):
            s = sums.setdefault(parent, [0.0, 0.0, 0])
            s[0] += a
            s[1] += d
            s[2] += 1
    names: dict[str, str] = dict(conn.execute(text("SELECT code, name FROM region WHERE code = ANY(:c)"),
                              {"c": list(sums)}).all())
    level = {15: "grid", 12: "community"}
    return [{"code": c, "name": names.get(c),
             "level": "city" if c.endswith("000000") else "street" if c.endswith("000")
             else level[len(c)], "grids": int(s[2]), "area_m2": round(s[0], 1),
             "patrolled_m2": round(s[1], 1), "share": round(s[1] / s[0], 6) if s[0] else 0.0}
            for c, s in sorted(sums.items())]


class PartProps(TypedDict):
    area_m2: float


class UnpatrolledProps(TypedDict):
    grid: str
    name: str
    since: str
    until: str
    buffer_m: float
    crs: str
    area_m2: float
    unpatrolled_m2: float
    unpatrolled_share: float


class Unpatrolled(FeatureCollection[Feature[PartProps]]):
    """The polygons of a grid no track came near; the grid and the window as ``properties``."""

    properties: UnpatrolledProps


def unpatrolled(conn: Connection, grid: str, *, since: datetime | None = None,
                until: datetime | None = None, buffer_m: float = 50.0,
                principal: Principal) -> Unpatrolled:
    """The part of one grid no track came within ``buffer_m`` of: GeoJSON polygons (EPSG:4490)."""
    since, until = window(since, until)
    code = normalise(grid)
    grids = visible_grids(conn, code, principal=principal)
    if grids.code != [code]:
        raise RegionNotFound(f"No grid {code[:20]} in your jurisdiction.",
                             detail={"field": "grid", "value": code[:20]})
    fx = window_fixes(conn, grids, since, until, buffer_m)
    part = covered_parts(grids.geom, fx, buffer_m)[0]
    shape = grids.geom[0]
    rest = shape if part is None else shapely.difference(shape, part)
    polys = [g for g in shapely.get_parts(rest) if g.geom_type == "Polygon" and not g.is_empty]
    to_lonlat = transformer(profile(conn).metric_crs, "EPSG:4490")
    features: list[Feature[PartProps]] = [
        {"type": "Feature", "properties": {"area_m2": round(float(p.area), 1)},
         "geometry": mapping(shapely.transform(
             p, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))))}
        for p in polys]
    total = float(shapely.area(shape))
    left = float(sum(p.area for p in polys))
    return {"type": "FeatureCollection", "features": features,
            "properties": {"grid": code, "name": grids.name[0], "since": since.isoformat(),
                           "until": until.isoformat(), "buffer_m": buffer_m, "crs": "EPSG:4490",
                           "area_m2": round(total, 1), "unpatrolled_m2": round(left, 1),
                           "unpatrolled_share": round(left / total, 6) if total else 0.0}}
