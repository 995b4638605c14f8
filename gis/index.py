"""The in-memory point index: which polygon covers each point, for one point or a million.

Rule for points on a shared edge or vertex: *covers* semantics (a point on the boundary belongs to
every polygon whose closure holds it, as in ``ST_Covers``), then the polygon with the **lowest
index** wins. Callers order polygons so that index order is the documented tie-break (the locator
sorts grids by code, so the lowest grid code wins).

Two paths give the same answer:

- *exact*: an ``STRtree`` query with the ``covered_by`` predicate on prepared polygons;
- *raster*: a lookup table of small square cells over the extent. A cell that no polygon boundary
  touches lies wholly inside one polygon (or none), so its label is the answer for every point in
  it; points in cells a boundary touches go to the exact path. Boundary cells are found by sampling
  every boundary at steps no longer than a cell and dilating by one cell, which is conservative:
  a segment that clips a cell's corner is within one cell of a sample.

The raster is built on request (:meth:`PolygonIndex.build_raster`) because it costs about a second
for a city; single lookups don't need it.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

NONE = -1
_BORDER = -2



class RasterStats(TypedDict):
    cells: int  # 0 when no lookup table is built
    cell_size: NotRequired[float]  # degrees; only with a table
    border_share: float  # share of cells that need the exact test


class PolygonIndex:
    """Point-in-polygon over a fixed array of polygons.

    Parameters
    ----------
    polygons
        Polygons or multipolygons; their order is the tie-break for points on shared edges.

    Examples
    --------
    >>> from shapely import box
    >>> idx = PolygonIndex([box(0, 0, 1, 1), box(1, 0, 2, 1)])
    >>> idx.query([0.5, 1.0, 1.5, 5.0], [0.5, 0.5, 0.5, 5.0]).tolist()
    [0, 0, 1, -1]
    >>> idx.query_one(1.5, 0.5)
    1
    """

    def __init__(self, polygons: ArrayLike) -> None:
        self.polygons = np.asarray(polygons, dtype=object)
        shapely.prepare(self.polygons)
        self.tree = shapely.STRtree(self.polygons)
        self._raster: NDArray[np.int32] | None = None
        self._origin = (0.0, 0.0)
        self._cell = 0.0

    def __len__(self) -> int:
        return len(self.polygons)

    # -- exact -------------------------------------------------------------------------------
    def query_one(self, x: float, y: float) -> int:
        """The covering polygon of one point (lowest index on ties), or -1.

        With the raster built, a point in a cell no boundary touches is answered from the table
        (about a microsecond); others take the exact path.
        """
        raster = self._raster
        if raster is not None:
            fx = (x - self._origin[0]) / self._cell
            fy = (y - self._origin[1]) / self._cell
            ny, nx = raster.shape
            if 0 <= fx < nx and 0 <= fy < ny:  # False for NaN
                label = int(raster[int(fy), int(fx)])
                if label != _BORDER:
                    return label
            elif fx == fx and fy == fy:  # finite and off the table: no polygon is there
                return NONE
        # shapely.points, not shapely.Point: the class's constructor costs more than the query
        hits = self.tree.query(shapely.points(x, y), predicate="covered_by")
        return int(hits.min()) if hits.size else NONE

    def covering(self, x: float, y: float) -> list[int]:
        """Every polygon covering a point, in index order (more than one on a shared edge)."""
        return sorted(int(i) for i in self.tree.query(shapely.Point(x, y), predicate="covered_by"))

    def query_exact(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.int32]:
        """Vectorised exact lookup: index of the covering polygon per point, -1 for none."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        out = np.full(x.shape, np.iinfo(np.int32).max, dtype=np.int32)
        if x.size:
            pts, geom_idx = self.tree.query(shapely.points(x, y), predicate="covered_by")
            np.minimum.at(out, pts, geom_idx.astype(np.int32))
        out[out == np.iinfo(np.int32).max] = NONE
        return out

    # -- raster ------------------------------------------------------------------------------
    @property
    def has_raster(self) -> bool:
        return self._raster is not None

    def build_raster(self, cell_size: float) -> None:
        """Build the lookup table with square cells of ``cell_size`` (in the polygons' units)."""
        xmin, ymin, xmax, ymax = shapely.total_bounds(self.polygons)
        xmin, ymin = xmin - cell_size, ymin - cell_size
        nx = int(np.ceil((xmax - xmin) / cell_size)) + 2
        ny = int(np.ceil((ymax - ymin) / cell_size)) + 2

        border = np.zeros((ny, nx), dtype=bool)
        edges = shapely.segmentize(shapely.boundary(self.polygons), cell_size)
        coords = shapely.get_coordinates(edges)
        ix = ((coords[:, 0] - xmin) / cell_size).astype(np.int64)
        iy = ((coords[:, 1] - ymin) / cell_size).astype(np.int64)
        border[iy, ix] = True
        border = ndimage.binary_dilation(border, structure=np.ones((3, 3), dtype=bool))

        # Each 4-connected run of non-border cells lies in one polygon or in none: label it from
        # one cell centre.
        components, n = ndimage.label(~border)
        flat = components.ravel()
        _, first = np.unique(flat, return_index=True)
        comp_ids = flat[first]
        keep = comp_ids > 0
        first, comp_ids = first[keep], comp_ids[keep]
        cy, cx = np.divmod(first, nx)
        labels = self.query_exact(xmin + (cx + 0.5) * cell_size, ymin + (cy + 0.5) * cell_size)
        lut = np.full(n + 1, NONE, dtype=np.int32)
        lut[comp_ids] = labels
        lut[0] = _BORDER
        table = lut[components]
        # Publish the table last: a lookup in another thread must never see it with a stale
        # origin or cell size.
        self._origin = (xmin, ymin)
        self._cell = cell_size
        self._raster = table

    def raster_stats(self) -> RasterStats:
        """Size of the lookup table and the share of its cells that need the exact test."""
        if self._raster is None:
            return {"cells": 0, "border_share": 1.0}
        return {"cells": int(self._raster.size), "cell_size": self._cell,
                "border_share": float((self._raster == _BORDER).mean())}

    def query(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.int32]:
        """Vectorised lookup; uses the raster when built, else the exact path. Same answers."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        raster = self._raster
        if raster is None:
            return self.query_exact(x, y)
        ny, nx = raster.shape
        fx = (x - self._origin[0]) / self._cell
        fy = (y - self._origin[1]) / self._cell
        inside = (fx >= 0) & (fx < nx) & (fy >= 0) & (fy < ny)  # NaN compares False
        out = np.full(x.shape, NONE, dtype=np.int32)
        out[inside] = raster[fy[inside].astype(np.int64), fx[inside].astype(np.int64)]
        need = np.flatnonzero(out == _BORDER)
        if need.size:
            out[need] = self.query_exact(x[need], y[need])
        return out

    def nearest(self, x: float, y: float) -> int:
        """Index of the polygon nearest to a point (planar distance in the polygons' units)."""
        return int(self.tree.nearest(shapely.Point(x, y)))
