"""The nearest polygon to a point outside them all, from plain arrays: the outline-edge index.

For a point outside every polygon of a cover, the nearest point of the cover lies on its outline:
an edge that no other polygon shares (an edge shared by two polygons has both sides covered).
:func:`outline_edges` extracts those edges; :class:`EdgeIndex` holds them as plain ``float64``
arrays (``x0, y0, x1, y1``, the polygon index and the edge's rank) with a packed R-tree over them,
so a process can keep it, write it to disk and read it back without building one geometry object.

**Answers.** :meth:`EdgeIndex.nearest` gives, per point, the edge at the least planar distance
(in the polygons' units), the polygon it belongs to and the nearest point on it. Distances and
nearest points are computed with GEOS's own formulas (``Distance::pointToSegment`` and
``LineSegment::closestPoint``, the comp.graphics.algorithms projection), bit for bit, so the answer
is the one a ``shapely`` ``distance`` / ``shortest_line`` over every polygon gives.

**Ties.** Several edges at the same least distance (typically a vertex two polygons' outlines
share): the edge of the **lowest polygon index** wins, then the first edge in that polygon's ring
order. Callers order polygons so that index order is the tie-break they document (the locator:
the lowest grid code, as for a point on a shared edge).

**Search.** Edges are sorted along a Z-order curve of their midpoints and packed into leaves of
:data:`FANOUT` edges; every :data:`FANOUT` boxes of a level make one box of the level above. A
query walks the levels top down for a whole batch of points at once (numpy, no Python loop per
point): at each level it keeps, per point, the boxes whose least distance is at most the smallest
*min-max distance* among that point's boxes (a bound some edge in the box is sure to meet, as
every face of a tight box touches an edge). Nothing that could be nearest is ever dropped, so a
point 100 km outside, or one in a gap surrounded by polygons, gets the exact answer; far points
simply keep a few more boxes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

FANOUT = 16  # edges per leaf, boxes per node
CHUNK = 8192  # points per batch step (bounds the candidate pairs in memory)
# Pruning keeps a box when its least squared distance is at most the bound times (1 + _REL)
# plus _ABS: a margin far above the rounding of either (a few ulps), so rounding can never drop
# the edge the exact formulas would pick.
_REL = 1e-9
_ABS = 1e-18


def outline_edges(polygons: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The edges of ``polygons`` that no other edge repeats (either direction), in polygon, ring
    and vertex order: ``(segments (n, 4) as x0, y0, x1, y1; polygon index (n,))``.

    An edge that appears twice lies between two polygons and is dropped with its twin. When every
    edge is shared (no outline at all: overlapping copies), all are kept.
    """
    polys = np.asarray(polygons, dtype=object)
    if not polys.size:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    parts, part_poly = shapely.get_parts(polys, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_poly = part_poly[ring_part]
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[:-1] == ring[1:]
    a, b = xy[:-1][same], xy[1:][same]
    poly = ring_poly[ring[:-1][same]]
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    key = np.where(swap[:, None], np.hstack([b, a]), np.hstack([a, b]))
    order = np.lexsort(key.T[::-1])
    k = key[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = (k[1:] != k[:-1]).any(axis=1)
    group = np.cumsum(first) - 1
    count = np.bincount(group)
    keep = np.empty(len(k), dtype=bool)
    keep[order] = count[group] == 1
    if not keep.any():
        keep[:] = True
    return np.hstack([a[keep], b[keep]]), poly[keep].astype(np.int64)


def _morton(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.uint64]:
    """Z-order key of points, 16 bits per axis over their bounding box."""

    def spread(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
        return (v | (v << np.uint64(1))) & np.uint64(0x55555555)

    def quantise(v: NDArray[np.float64]) -> NDArray[np.uint64]:
        lo, hi = float(v.min()), float(v.max())
        scale = 65535.0 / (hi - lo) if hi > lo else 0.0
        return np.clip((v - lo) * scale, 0, 65535).astype(np.uint64)

    return spread(quantise(x)) | (spread(quantise(y)) << np.uint64(1))


def _boxes(xmin: NDArray[np.float64], ymin: NDArray[np.float64], xmax: NDArray[np.float64],
           ymax: NDArray[np.float64]) -> NDArray[np.float64]:
    """Boxes of consecutive runs of :data:`FANOUT` items, as (k, 4) xmin, ymin, xmax, ymax."""
    starts = np.arange(0, len(xmin), FANOUT)
    return np.stack([np.minimum.reduceat(xmin, starts), np.minimum.reduceat(ymin, starts),
                     np.maximum.reduceat(xmax, starts), np.maximum.reduceat(ymax, starts)],
                    axis=1)


def segment_distance(px: NDArray[np.float64], py: NDArray[np.float64], x0: NDArray[np.float64],
                     y0: NDArray[np.float64], x1: NDArray[np.float64], y1: NDArray[np.float64]
                     ) -> NDArray[np.float64]:
    """Planar point-segment distance, GEOS's ``Distance::pointToSegment`` formula (bit for bit)."""
    dx, dy = x1 - x0, y1 - y0
    len2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ((px - x0) * dx + (py - y0) * dy) / len2
        s = ((y0 - py) * dx - (x0 - px) * dy) / len2
        perp = np.abs(s) * np.sqrt(len2)
    ax, ay, bx, by = px - x0, py - y0, px - x1, py - y1
    da = np.sqrt(ax * ax + ay * ay)
    db = np.sqrt(bx * bx + by * by)
    return np.where((len2 == 0) | (r <= 0), da, np.where(r >= 1, db, perp))


def closest_point(px: NDArray[np.float64], py: NDArray[np.float64], x0: NDArray[np.float64],
                  y0: NDArray[np.float64], x1: NDArray[np.float64], y1: NDArray[np.float64]
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The nearest point of each segment, GEOS's ``LineSegment::closestPoint`` (bit for bit)."""
    dx, dy = x1 - x0, y1 - y0
    len2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ((px - x0) * dx + (py - y0) * dy) / len2
    inner = (r > 0) & (r < 1)
    ax, ay, bx, by = px - x0, py - y0, px - x1, py - y1
    near_a = np.sqrt(ax * ax + ay * ay) < np.sqrt(bx * bx + by * by)
    cx = np.where(inner, x0 + r * dx, np.where(near_a, x0, x1))
    cy = np.where(inner, y0 + r * dy, np.where(near_a, y0, y1))
    on_a = (px == x0) & (py == y0)
    on_b = (px == x1) & (py == y1)
    return (np.where(on_a, x0, np.where(on_b, x1, cx)),
            np.where(on_a, y0, np.where(on_b, y1, cy)))


@dataclass(frozen=True, slots=True)
class EdgeIndex:
    """Outline edges as plain arrays, in tree order, with the packed R-tree's boxes.

    ``seg[i]`` is edge ``i`` (x0, y0, x1, y1), ``poly[i]`` its polygon index, ``rank[i]`` its
    position in :func:`outline_edges`' order (the tie-break). ``boxes[0]`` holds one box per leaf
    (edges ``16 k`` to ``16 k + 15``), ``boxes[j]`` one per 16 boxes of ``boxes[j - 1]``; the last
    level has at most 16.

    >>> from shapely import box
    >>> idx = EdgeIndex.from_polygons([box(0, 0, 1, 1), box(1, 0, 2, 1)])
    >>> len(idx)  # the shared edge x = 1 is inside the cover
    6
    >>> poly, cx, cy, d = idx.nearest([-1.0, 1.0, 3.0], [0.5, 3.0, 2.0])
    >>> poly.tolist(), cx.tolist(), cy.tolist(), d.round(3).tolist()
    ([0, 0, 1], [0.0, 1.0, 2.0], [0.5, 1.0, 1.0], [1.0, 2.0, 1.414])
    """

    seg: NDArray[np.float64]
    poly: NDArray[np.int32]
    rank: NDArray[np.int32]
    boxes: tuple[NDArray[np.float64], ...]

    def __len__(self) -> int:
        return len(self.poly)

    @property
    def nbytes(self) -> int:
        return int(self.seg.nbytes + self.poly.nbytes + self.rank.nbytes
                   + sum(b.nbytes for b in self.boxes))

    @classmethod
    def from_polygons(cls, polygons: ArrayLike) -> EdgeIndex:
        seg, poly = outline_edges(polygons)
        return cls.from_edges(seg, poly)

    @classmethod
    def from_edges(cls, seg: NDArray[np.float64], poly: NDArray[np.int64]) -> EdgeIndex:
        """The index over edges given in tie-break order (``rank`` is their position)."""
        seg = np.asarray(seg, dtype=np.float64).reshape(-1, 4)
        if len(seg) >= 2**31:
            raise ValueError("too many edges for one index")
        if not len(seg):
            return cls(seg, np.zeros(0, np.int32), np.zeros(0, np.int32), ())
        order = np.argsort(_morton((seg[:, 0] + seg[:, 2]) / 2, (seg[:, 1] + seg[:, 3]) / 2),
                           kind="stable")
        seg = np.ascontiguousarray(seg[order])
        x0, y0, x1, y1 = seg.T
        levels = [_boxes(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1),
                         np.maximum(y0, y1))]
        while len(levels[-1]) > FANOUT:
            b = levels[-1]
            levels.append(_boxes(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
        return cls(seg, np.asarray(poly, dtype=np.int32)[order], order.astype(np.int32),
                   tuple(levels))

    # -- queries -----------------------------------------------------------------------------
    def nearest(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64],
                                                          NDArray[np.float64],
                                                          NDArray[np.float64]]:
        """Per point: the nearest edge's polygon index (-1 with no edges or a non-finite point),
        the nearest point on it (x, y) and the planar distance to it."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        n = len(x)
        poly = np.full(n, -1, dtype=np.int64)
        cx, cy, dist = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        if not len(self) or not ok.size:
            return poly, cx, cy, dist
        for s in range(0, ok.size, CHUNK):
            at = ok[s:s + CHUNK]
            edge, d = self._nearest_edges(x[at], y[at])
            e = self.seg[edge]
            poly[at] = self.poly[edge]
            cx[at], cy[at] = closest_point(x[at], y[at], e[:, 0], e[:, 1], e[:, 2], e[:, 3])
            dist[at] = d
        return poly, cx, cy, dist

    def _nearest_edges(self, px: NDArray[np.float64], py: NDArray[np.float64]
                       ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The winning edge (tree position) and its distance, per (finite) point."""
        m = len(px)
        top = len(self.boxes[-1])
        pt = np.repeat(np.arange(m), top)  # candidate pairs (point, node), sorted by point
        node = np.tile(np.arange(top), m)
        for level in range(len(self.boxes) - 1, -1, -1):
            b = self.boxes[level][node]
            qx, qy = px[pt], py[pt]
            lo_x, lo_y, hi_x, hi_y = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
            dx = np.maximum(np.maximum(lo_x - qx, qx - hi_x), 0.0)
            dy = np.maximum(np.maximum(lo_y - qy, qy - hi_y), 0.0)
            least = dx * dx + dy * dy
            # min-max distance: the nearer face along one axis, the farther corner of it
            left, low = qx <= (lo_x + hi_x) / 2, qy <= (lo_y + hi_y) / 2
            near_x, far_x = np.where(left, lo_x, hi_x) - qx, np.where(left, hi_x, lo_x) - qx
            near_y, far_y = np.where(low, lo_y, hi_y) - qy, np.where(low, hi_y, lo_y) - qy
            bound = np.minimum(near_x * near_x + far_y * far_y, near_y * near_y + far_x * far_x)
            starts = np.flatnonzero(np.r_[True, pt[1:] != pt[:-1]])
            best = np.minimum.reduceat(bound, starts)
            keep = least <= best[pt] * (1 + _REL) + _ABS
            pt, node = pt[keep], node[keep]
            below = len(self.boxes[level - 1]) if level else len(self)
            child = (node[:, None] * FANOUT + np.arange(FANOUT)).ravel()
            pt = np.repeat(pt, FANOUT)
            valid = child < below
            pt, node = pt[valid], child[valid]
        e = self.seg[node]
        d = segment_distance(px[pt], py[pt], e[:, 0], e[:, 1], e[:, 2], e[:, 3])
        starts = np.flatnonzero(np.r_[True, pt[1:] != pt[:-1]])
        dmin = np.minimum.reduceat(d, starts)
        rank = np.where(d == dmin[pt], self.rank[node], np.iinfo(np.int32).max)
        first = np.minimum.reduceat(rank, starts)
        win = np.flatnonzero(rank == first[pt])  # ranks are unique: one pair per point
        return node[win].astype(np.int64), d[win]

    # -- arrays (a snapshot on disk) --------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, NDArray[np.generic]]:
        out: dict[str, NDArray[np.generic]] = {
            f"{prefix}seg": self.seg, f"{prefix}poly": self.poly, f"{prefix}rank": self.rank,
            f"{prefix}levels": np.array([len(b) for b in self.boxes], dtype=np.int64),
        }
        if self.boxes:
            out[f"{prefix}boxes"] = np.concatenate(self.boxes)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[np.generic]], prefix: str,
                    n_polygons: int) -> EdgeIndex:
        """The index :meth:`to_arrays` wrote; ValueError when the arrays do not fit together
        (a damaged file) or name a polygon beyond ``n_polygons``."""
        seg = np.asarray(arrays[f"{prefix}seg"], dtype=np.float64)
        poly = np.asarray(arrays[f"{prefix}poly"], dtype=np.int32)
        rank = np.asarray(arrays[f"{prefix}rank"], dtype=np.int32)
        sizes = np.asarray(arrays[f"{prefix}levels"], dtype=np.int64).tolist()
        n = len(poly)
        if seg.shape != (n, 4) or rank.shape != (n,):
            raise ValueError("edge columns differ in length")
        if n and (int(poly.min()) < 0 or int(poly.max()) >= n_polygons
                  or int(rank.min()) < 0 or int(rank.max()) >= n
                  or int(np.bincount(rank, minlength=n).max()) != 1):
            raise ValueError("edges do not match their polygons")
        expect, k = [], n
        while k:
            k = -(-k // FANOUT)
            expect.append(k)
            if k <= FANOUT:
                break
        if sizes != expect:
            raise ValueError("edge tree levels do not match the edges")
        boxes: tuple[NDArray[np.float64], ...] = ()
        if n:
            flat = np.asarray(arrays[f"{prefix}boxes"], dtype=np.float64)
            if flat.shape != (sum(sizes), 4):
                raise ValueError("edge tree boxes do not match the edges")
            ends = np.cumsum(sizes)
            boxes = tuple(flat[e - s:e] for e, s in zip(ends.tolist(), sizes, strict=True))
        return cls(seg, poly, rank, boxes)
