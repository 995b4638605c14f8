"""The in-memory point index: which polygon covers each point, for one point or a million.

Rule for points on a shared edge or vertex: *covers* semantics (a point on the boundary belongs to
every polygon whose closure holds it, as in ``ST_Covers``), then the polygon with the **lowest
index** wins. Callers order polygons so that index order is the documented tie-break (the locator
sorts grids by code, so the lowest grid code wins).

Two paths give the same answer:

- *exact*: an ``STRtree`` query with the ``covered_by`` predicate on prepared polygons;
- *raster*: a lookup table of small square cells. A cell that no polygon boundary touches lies
  wholly inside one polygon (or none), so its label is the answer for every point in it; points in
  cells a boundary touches go to the exact path. Boundary cells are found by sampling every
  boundary at steps no longer than a cell and dilating by one cell, which is conservative: a
  segment that clips a cell's corner is within one cell of a sample.

The table is *adaptive*, so it does not grow with the extent (a province is mostly land between
cities): a coarse top grid of tiles (:data:`TILE` × :data:`TILE` cells each) holds, per tile,
either one label for the whole tile (no boundary in it: open country, a city's interior, the
outside) or the number of a fine tile. A fine tile stores one byte per cell, an index into that
tile's own palette of labels. Only tiles that a boundary crosses cost memory. The table is built
block by block (:data:`BLOCK` × :data:`BLOCK` tiles), so building it never needs the whole extent
at full resolution either.

The raster is built on request (:meth:`PolygonIndex.build_raster`) because it costs about a second
for a city; single lookups don't need it. :meth:`PolygonIndex.to_arrays` and
:meth:`PolygonIndex.from_arrays` turn an index (polygons as WKB, and the table) into plain numpy
arrays and back, for a snapshot on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

NONE = -1
_BORDER = -2
TILE_SHIFT = 6
TILE = 1 << TILE_SHIFT  # cells per tile side (64: ~640 m at 10 m cells)
BLOCK = 16  # tiles per block side, the unit of the build (1024 × 1024 cells)
_PALETTE = 256  # labels a fine tile can name (one byte per cell)


@dataclass(frozen=True, slots=True)
class Raster:
    """The adaptive lookup table; published whole, so a reader never sees half of one.

    ``top[ty, tx]`` ≥ 0 is the number of the fine tile for that tile; < 0 is one label for the
    whole tile, stored as ``-label - 2`` (so -1 is :data:`NONE`). ``tiles[k]`` holds ``TILE²``
    bytes, row-major; cell byte ``b`` of tile ``k`` means label ``palette[offsets[k] + b]``.
    """

    x0: float
    y0: float
    cell: float
    top: NDArray[np.int32]
    tiles: NDArray[np.uint8]
    palette: NDArray[np.int32]
    offsets: NDArray[np.int64]

    @property
    def shape(self) -> tuple[int, int]:
        """The table's size in cells (rows, columns)."""
        return self.top.shape[0] << TILE_SHIFT, self.top.shape[1] << TILE_SHIFT

    @property
    def nbytes(self) -> int:
        return int(self.top.nbytes + self.tiles.nbytes + self.palette.nbytes
                   + self.offsets.nbytes)

    def labels(self, iy: NDArray[np.int64], ix: NDArray[np.int64]) -> NDArray[np.int32]:
        """Labels of cells (row, column), all inside the table; :data:`_BORDER` for the exact path."""
        v = self.top[iy >> TILE_SHIFT, ix >> TILE_SHIFT]
        out = -v - 2
        fine = np.flatnonzero(v >= 0)
        if fine.size:
            k = v[fine].astype(np.int64)
            local = ((iy[fine] & (TILE - 1)) << TILE_SHIFT) | (ix[fine] & (TILE - 1))
            out[fine] = self.palette[self.offsets[k] + self.tiles[k, local]]
        return out

    def label_one(self, iy: int, ix: int) -> int:
        v = int(self.top[iy >> TILE_SHIFT, ix >> TILE_SHIFT])
        if v < 0:
            return -v - 2
        b = int(self.tiles[v, ((iy & (TILE - 1)) << TILE_SHIFT) | (ix & (TILE - 1))])
        return int(self.palette[int(self.offsets[v]) + b])



class RasterStats(TypedDict):
    cells: int  # 0 when no lookup table is built
    cell_size: NotRequired[float]  # degrees; only with a table
    border_share: float  # share of cells that need the exact test
    fine_tiles: NotRequired[int]  # tiles a boundary crosses (one byte per cell each)
    top_tiles: NotRequired[int]  # tiles of the coarse grid over the extent
    bytes: NotRequired[int]  # memory of the lookup table


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
        self._raster: Raster | None = None

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
            fx = (x - raster.x0) / raster.cell
            fy = (y - raster.y0) / raster.cell
            ny, nx = raster.shape
            if 0 <= fx < nx and 0 <= fy < ny:  # False for NaN
                label = raster.label_one(int(fy), int(fx))
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

    @property
    def raster(self) -> Raster | None:
        return self._raster

    def build_raster(self, cell_size: float) -> None:
        """Build the lookup table with square cells of ``cell_size`` (in the polygons' units)."""
        if not len(self.polygons):
            return
        xmin, ymin, xmax, ymax = shapely.total_bounds(self.polygons)
        xmin, ymin = xmin - cell_size, ymin - cell_size
        nx = int(np.ceil((xmax - xmin) / cell_size)) + 2
        ny = int(np.ceil((ymax - ymin) / cell_size)) + 2
        ntx, nty = -(-nx // TILE), -(-ny // TILE)
        top = np.full((nty, ntx), -NONE - 2, dtype=np.int32)  # everything: no polygon
        tiles: list[NDArray[np.uint8]] = []
        palettes: list[NDArray[np.int32]] = []
        counts: list[NDArray[np.int64]] = []
        n_tiles = 0
        side = TILE * BLOCK
        boundaries = shapely.boundary(self.polygons)
        for by in range(0, nty, BLOCK):
            for bx in range(0, ntx, BLOCK):
                bx0 = xmin + bx * TILE * cell_size
                by0 = ymin + by * TILE * cell_size
                window = shapely.box(bx0 - 2 * cell_size, by0 - 2 * cell_size,
                                     bx0 + (side + 2) * cell_size, by0 + (side + 2) * cell_size)
                cand = self.tree.query(window)
                if not cand.size:
                    continue  # no polygon near: the tiles stay 'none'
                table = self._block_table(boundaries[cand], bx0, by0, cell_size, side)
                tw, th = min(BLOCK, ntx - bx), min(BLOCK, nty - by)
                block_tiles = (table[: th * TILE, : tw * TILE]
                               .reshape(th, TILE, tw, TILE).swapaxes(1, 2)
                               .reshape(th * tw, TILE * TILE))
                codes, fine = _encode_tiles(block_tiles)
                ids = np.full(th * tw, -1, dtype=np.int32)
                ids[fine.indices] = np.arange(n_tiles, n_tiles + fine.indices.size,
                                              dtype=np.int32)
                n_tiles += fine.indices.size
                top[by:by + th, bx:bx + tw] = np.where(ids >= 0, ids, codes).reshape(th, tw)
                if fine.indices.size:
                    tiles.append(fine.bytes)
                    palettes.append(fine.palette)
                    counts.append(fine.counts)
        palette = np.concatenate(palettes) if palettes else np.zeros(0, dtype=np.int32)
        count = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(count.size, dtype=np.int64)
        np.cumsum(count[:-1], out=offsets[1:])
        raster = Raster(
            x0=float(xmin), y0=float(ymin), cell=float(cell_size), top=top,
            tiles=(np.concatenate(tiles) if tiles else np.zeros((0, TILE * TILE), np.uint8)),
            palette=palette, offsets=offsets)
        # Publish the table last and whole: a lookup in another thread sees the old one or this.
        self._raster = raster

    def _block_table(self, boundaries: NDArray[np.object_], x0: float, y0: float, cell: float,
                     side: int) -> NDArray[np.int32]:
        """Labels of the ``side`` × ``side`` cells from (x0, y0): a polygon, none or border."""
        # one cell of halo round the block, so that dilation sees boundaries just outside it
        border = np.zeros((side + 2, side + 2), dtype=bool)
        coords = shapely.get_coordinates(shapely.segmentize(boundaries, cell))
        ix = np.floor((coords[:, 0] - x0) / cell).astype(np.int64) + 1
        iy = np.floor((coords[:, 1] - y0) / cell).astype(np.int64) + 1
        ok = (ix >= 0) & (ix < side + 2) & (iy >= 0) & (iy < side + 2)
        border[iy[ok], ix[ok]] = True
        border = ndimage.binary_dilation(border, structure=np.ones((3, 3), dtype=bool))
        border = border[1:-1, 1:-1]
        # Each 4-connected run of non-border cells lies in one polygon or in none: label it from
        # one cell centre.
        components, n = ndimage.label(~border)
        flat = components.ravel()
        _, first = np.unique(flat, return_index=True)
        comp_ids = flat[first]
        keep = comp_ids > 0
        first, comp_ids = first[keep], comp_ids[keep]
        cy, cx = np.divmod(first, side)
        labels = self.query_exact(x0 + (cx + 0.5) * cell, y0 + (cy + 0.5) * cell)
        lut = np.full(n + 1, NONE, dtype=np.int32)
        lut[comp_ids] = labels
        lut[0] = _BORDER
        return lut[components]

    def raster_stats(self) -> RasterStats:
        """Size of the lookup table and the share of its cells that need the exact test."""
        r = self._raster
        if r is None:
            return {"cells": 0, "border_share": 1.0}
        ny, nx = r.shape
        border_fine = 0
        step = 1024  # fine tiles at a time: the lookup is int64 per cell (~1.3 GB at once for
        for i in range(0, r.tiles.shape[0], step):  # a province's tiles; 32 MB a step)
            t = r.tiles[i:i + step]
            border_fine += int((r.palette[r.offsets[i:i + step, None] + t] == _BORDER).sum())
        return {"cells": int(nx * ny), "cell_size": r.cell,
                "border_share": border_fine / float(nx * ny),
                "fine_tiles": int(r.tiles.shape[0]), "top_tiles": int(r.top.size),
                "bytes": r.nbytes}

    def query(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.int32]:
        """Vectorised lookup; uses the raster when built, else the exact path. Same answers."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        raster = self._raster
        if raster is None:
            return self.query_exact(x, y)
        ny, nx = raster.shape
        fx = (x - raster.x0) / raster.cell
        fy = (y - raster.y0) / raster.cell
        inside = (fx >= 0) & (fx < nx) & (fy >= 0) & (fy < ny)  # NaN compares False
        out = np.full(x.shape, NONE, dtype=np.int32)
        out[inside] = raster.labels(fy[inside].astype(np.int64), fx[inside].astype(np.int64))
        need = np.flatnonzero(out == _BORDER)
        if need.size:
            out[need] = self.query_exact(x[need], y[need])
        return out

    # -- arrays (a snapshot on disk) --------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, NDArray[np.generic]]:
        """The polygons (WKB) and the table as plain arrays, keys starting with ``prefix``."""
        wkb = shapely.to_wkb(self.polygons) if len(self.polygons) else np.zeros(0, dtype=object)
        sizes = np.fromiter((len(b) for b in wkb), dtype=np.int64, count=len(wkb))
        out: dict[str, NDArray[np.generic]] = {
            f"{prefix}wkb": np.frombuffer(b"".join(wkb), dtype=np.uint8),
            f"{prefix}wkb_sizes": sizes,
        }
        r = self._raster
        if r is not None:
            out |= {f"{prefix}r_origin": np.array([r.x0, r.y0, r.cell]), f"{prefix}r_top": r.top,
                    f"{prefix}r_tiles": r.tiles, f"{prefix}r_palette": r.palette,
                    f"{prefix}r_offsets": r.offsets}
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[np.generic]], prefix: str
                    ) -> PolygonIndex:
        """The index :meth:`to_arrays` wrote (polygons prepared again, the table as it was)."""
        sizes = np.asarray(arrays[f"{prefix}wkb_sizes"], dtype=np.int64)
        blob = np.asarray(arrays[f"{prefix}wkb"], dtype=np.uint8).tobytes()
        if int(sizes.sum()) != len(blob):
            raise ValueError("polygon bytes do not add up")
        ends = np.cumsum(sizes)
        parts = [blob[e - n:e] for e, n in zip(ends.tolist(), sizes.tolist(), strict=True)]
        polys = shapely.from_wkb(parts) if parts else np.zeros(0, dtype=object)
        index = cls(polys)
        if f"{prefix}r_top" in arrays:
            x0, y0, cell = (float(v) for v in arrays[f"{prefix}r_origin"])
            r = Raster(x0=x0, y0=y0, cell=cell,
                       top=np.asarray(arrays[f"{prefix}r_top"], dtype=np.int32),
                       tiles=np.asarray(arrays[f"{prefix}r_tiles"], dtype=np.uint8),
                       palette=np.asarray(arrays[f"{prefix}r_palette"], dtype=np.int32),
                       offsets=np.asarray(arrays[f"{prefix}r_offsets"], dtype=np.int64))
            _check_raster(r, len(polys))
            index._raster = r
        return index

    def nearest(self, x: float, y: float) -> int:
        """Index of the polygon nearest to a point (planar distance in the polygons' units)."""
        return int(self.tree.nearest(shapely.Point(x, y)))


@dataclass(frozen=True, slots=True)
class _Fine:
    indices: NDArray[np.int64]  # which tiles of the block need a fine table
    bytes: NDArray[np.uint8]  # (k, TILE²) palette indices
    palette: NDArray[np.int32]  # the palettes, one after another
    counts: NDArray[np.int64]  # palette length per fine tile


def _encode_tiles(block: NDArray[np.int32]) -> tuple[NDArray[np.int32], _Fine]:
    """Per tile (rows of ``block``): the top code of a uniform tile, and the fine tables.

    A tile is uniform when every cell has the same label and it is not the border; its code is
    ``-label - 2``. A fine tile with more than 256 labels (polygons smaller than a few cells)
    sends its rarest labels' cells to the exact path: the border, which is always right.
    """
    head = block[:, :1]
    uniform = (block == head).all(axis=1) & (head[:, 0] != _BORDER)
    codes = (-head[:, 0] - 2).astype(np.int32)
    idx = np.flatnonzero(~uniform)
    if not idx.size:
        empty = _Fine(idx, np.zeros((0, TILE * TILE), np.uint8), np.zeros(0, np.int32),
                      np.zeros(0, np.int64))
        return codes, empty
    sub = block[idx]
    k = sub.shape[0]
    # one unique over the whole block: key = (tile row, label), contiguous per row once sorted
    span = np.int64(int(sub.max()) - _BORDER + 1)
    rows = np.arange(k, dtype=np.int64)[:, None]
    keys = rows * span + (sub.astype(np.int64) - _BORDER)
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    urow = uniq // span
    start = np.searchsorted(urow, np.arange(k))
    counts = np.diff(np.append(start, uniq.size)).astype(np.int64)
    local = inverse.reshape(k, -1) - start[:, None]
    palette = (uniq % span + _BORDER).astype(np.int32)
    if (counts > _PALETTE).any():
        palettes = []
        for i in range(k):
            p = palette[start[i]:start[i] + counts[i]]
            if counts[i] > _PALETTE:
                freq = np.bincount(local[i], minlength=counts[i])
                keep = np.sort(np.argsort(-freq, kind="stable")[: _PALETTE - 1])
                remap = np.full(counts[i], _PALETTE - 1, dtype=np.int64)
                remap[keep] = np.arange(keep.size)
                local[i] = remap[local[i]]
                p = np.append(p[keep], np.int32(_BORDER))
                counts[i] = p.size
            palettes.append(p)
        palette = np.concatenate(palettes).astype(np.int32)
    return codes, _Fine(idx, local.astype(np.uint8), palette, counts)


def _check_raster(r: Raster, n: int) -> None:
    """Refuse a table that could index out of bounds or name a polygon that is not there."""
    k = r.tiles.shape[0]
    ok = (r.tiles.ndim == 2 and r.tiles.shape[1] == TILE * TILE and r.top.ndim == 2
          and r.offsets.shape == (k,) and r.cell > 0
          and int(r.top.max(initial=-1)) < k
          and int(r.top.min(initial=-1)) >= -(n - 1) - 2
          and int(r.palette.min(initial=0)) >= _BORDER and int(r.palette.max(initial=0)) < n)
    if ok and k:
        ok = (int(r.offsets.min()) >= 0
              and int((r.offsets + r.tiles.max(axis=1)).max()) < r.palette.size)
    if not ok:
        raise ValueError("the lookup table does not match its polygons")
