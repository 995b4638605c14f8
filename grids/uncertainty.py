"""How sure is a lookup? The distance to the grid's edge, the runner-up grid, the datum doubt.

A point a GPS put 8 m from the line between two grids may well be in the other one: a phone's
fix is good to 5–30 m, an address geocoded from a phone call to tens of metres. The locator's
answer names one grid; :func:`uncertainty` says how far the point is from that grid's edge
(metres, in the city's metric CRS), and names the **runner-up** — the nearest other grid — when
it lies within ``accuracy_m`` of the point (the caller's GPS accuracy, 30 m by default).

The datum doubt: Chinese phones and web maps write GCJ-02, GPS receivers WGS84, and the numbers
differ by a few hundred metres, the width of a grid. A pasted coordinate read both ways that lands
in different grids is flagged with both answers (:func:`datum_doubt`).

Only computed when asked (``/locate?detail=edges`` or ``accuracy=``): the plain lookup stays the
cached in-memory answer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from gis.crs import parse_crs, to_lonlat
from grids.access import Principal
from grids.locate import Snapshot, mask_answer

DEFAULT_ACCURACY_M = 30.0
MAX_ACCURACY_M = 500.0


@lru_cache(maxsize=8)
def _to_metric(srid: int) -> Transformer:
    return Transformer.from_crs("EPSG:4490", f"EPSG:{srid}", always_xy=True)


def _metric(geom: Any, srid: int) -> Any:
    tr = _to_metric(srid)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def uncertainty(snap: Snapshot, lon: float, lat: float, *,
                accuracy_m: float = DEFAULT_ACCURACY_M) -> dict[str, Any]:
    """``edge_m`` (metres from the point to the edge of the grid it is in; for a point in no
    grid, to the nearest grid), ``runner_up`` (the nearest other grid if within ``accuracy_m``,
    else None), ``accuracy_m`` and ``metric_crs`` (tests: ``tests/grids/test_uncertainty.py``).
    """
    srid = snap.metric_srid
    if srid is None or not len(snap.grids):
        return {"edge_m": None, "runner_up": None, "accuracy_m": accuracy_m, "metric_crs": None}
    own = snap.grids.query_one(lon, lat)
    pt = _metric(shapely.Point(lon, lat), srid)
    # Only the pieces of grids inside a window around the point are projected: a distance up to
    # ``half`` metres is exact on the clipped piece (the window is a little wider than that).
    half = max(accuracy_m, 1.0) * 3
    dlat = half / 110_000.0
    dlon = dlat / max(float(np.cos(np.radians(lat))), 0.2)
    win = (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
    polys = snap.grids.polygons
    dist: dict[int, float] = {}
    for j in snap.grids.tree.query(shapely.box(*win)).tolist():
        if j == own:
            continue
        piece = shapely.clip_by_rect(polys[j], *win)
        if not piece.is_empty:
            d = float(_metric(piece, srid).distance(pt))
            if d <= half:
                dist[j] = d
    edge: float
    if own >= 0:
        ring = shapely.clip_by_rect(shapely.boundary(polys[own]), *win)
        edge = float(_metric(ring, srid).distance(pt)) if not ring.is_empty else np.inf
        if edge > half:  # deep inside: the whole outline
            edge = float(shapely.boundary(_metric(polys[own], srid)).distance(pt))
    elif dist:
        edge = min(dist.values())
    else:  # far from every grid: the geodesic distance to the nearest one
        edge = snap.nearest_grid(lon, lat)[1]
    runner = min(dist, key=dist.__getitem__) if dist else -1
    runner_up = None
    if runner >= 0 and dist[runner] <= accuracy_m:
        r = snap.regions[int(snap.grid_ids[runner])]
        runner_up = {"code": r.code, "name": r.name, "level": r.level,
                     "distance_m": round(dist[runner], 1)}
    return {"edge_m": round(edge, 1) if np.isfinite(edge) else None, "runner_up": runner_up,
            "accuracy_m": accuracy_m, "metric_crs": f"EPSG:{srid}"}


_OTHER_READING = {"EPSG:4326": "GCJ-02", "EPSG:4490": "GCJ-02", "GCJ-02": "EPSG:4326"}


def datum_doubt(snap: Snapshot, x: float, y: float, crs: str, grid_code: str | None, *,
                principal: Principal) -> dict[str, Any] | None:
    """If the numbers ``x, y`` read in the other of WGS84/GCJ-02 (than ``crs``) fall in another
    grid than ``grid_code``: that reading's point, grid and responsible worker (masked as the
    lookup is), else None. Other CRSs (BD-09, projected) have no such twin."""
    name = parse_crs(crs).name
    other = _OTHER_READING.get(name)
    if other is None:
        return None
    lo, la = to_lonlat(x, y, other)
    lon, lat = float(lo), float(la)
    g = snap.grids.query_one(lon, lat)
    code = snap.regions[int(snap.grid_ids[g])].code if g >= 0 else None
    if code == grid_code or (code is None and grid_code is None):
        return None
    out: dict[str, Any] = {"read_as": other, "point": {"lon": round(lon, 8), "lat": round(lat, 8)},
                           "grid": None, "responsible": None}
    if g >= 0 and principal.locate_scope().covers(code):
        answer = snap.answer(int(snap.grid_ids[g]))
        if not principal.sees_personal_data(code):
            answer = mask_answer(answer, principal)
        out["grid"] = answer["grid"]
        out["responsible"] = answer["responsible"]
    elif g >= 0:
        out["grid"] = {"code": None, "name": None, "level": "grid"}  # outside the caller's scope
    return out
