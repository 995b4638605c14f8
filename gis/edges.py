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
every face of a tight box touches an edge), or than a first guess: the nearest edge of the leaf
reached by always stepping into the child with the least such bound. Nothing that could be
nearest is ever dropped, so a point 100 km outside, or one in a gap surrounded by polygons, gets
the exact answer; far points simply keep more boxes (more of the outline is about as near).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

FANOUT = 8  # edges per leaf, boxes per node (8 measured faster than 4 or 16)
CHUNK = 8192  # points per batch step (bounds the candidate pairs in memory)
STRIPE_COORDS = 400_000  # vertices per stripe of the outline-edge matching
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

    Memory: the matching runs stripe by stripe (west to east, :data:`STRIPE_COORDS` vertices
    each). An edge belongs to the stripe of its lower end point, and so does its twin (the same
    end points), so matching within a stripe is exact; only the polygons a stripe crosses are
    read for it, never the whole cover's vertices at once.
    """
    polys = np.asarray(polygons, dtype=object)
    if not polys.size:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    bounds = shapely.bounds(polys)
    total = int(shapely.get_num_coordinates(polys).sum())
    k = int(np.clip(total // STRIPE_COORDS, 1, 1024))
    xmin, xmax = float(bounds[:, 0].min()), float(bounds[:, 2].max())
    cuts = np.linspace(xmin, xmax, k + 1)
    seg_parts, poly_parts, pos_parts = [], [], []
    for j in range(k):
        cand = np.flatnonzero((bounds[:, 0] <= cuts[j + 1]) & (bounds[:, 2] >= cuts[j]))
        if not cand.size:
            continue
        seg, poly, pos = _stripe_edges(polys[cand], cuts, j)
        seg_parts.append(seg)
        poly_parts.append(cand[poly])
        pos_parts.append(pos)
    seg = np.concatenate(seg_parts) if seg_parts else np.zeros((0, 4))
    poly = np.concatenate(poly_parts) if poly_parts else np.zeros(0, dtype=np.int64)
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, dtype=np.int64)
    if not len(seg):  # every edge shared: keep them all
        seg, poly, pos = _stripe_edges(polys, np.array([xmin, xmax]), 0, keep_shared=True)
    order = np.lexsort((pos, poly))
    return seg[order], poly[order].astype(np.int64)


def _stripe_edges(polys: NDArray[np.object_], cuts: NDArray[np.float64], j: int, *,
                  keep_shared: bool = False
                  ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """The unshared edges of ``polys`` whose lower end point lies in stripe ``j`` of ``cuts``:
    segments (lower end point first is not promised: as drawn), the polygon (index into
    ``polys``) and the edge's position among its polygon's vertices."""
    parts, part_poly = shapely.get_parts(polys, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    coord_poly = part_poly[ring_part][ring]
    start = np.flatnonzero(ring[:-1] == ring[1:])  # edge: start → start + 1
    a, b = xy[start], xy[start + 1]
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    lo = np.where(swap[:, None], b, a)
    stripe = np.clip(np.searchsorted(cuts, lo[:, 0], side="right") - 1, 0, len(cuts) - 2)
    mine = np.flatnonzero(stripe == j)
    start, a, b, lo = start[mine], a[mine], b[mine], lo[mine]
    hi = np.where(swap[mine][:, None], a, b)
    key = np.hstack([lo, hi]) + 0.0  # -0.0 → 0.0
    if keep_shared:
        keep = np.ones(len(key), dtype=bool)
    else:
        order = np.lexsort(key.T[::-1])
        k = key[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = (k[1:] != k[:-1]).any(axis=1)
        group = np.cumsum(first) - 1
        keep = np.empty(len(k), dtype=bool)
        keep[order] = np.bincount(group)[group] == 1
    poly = coord_poly[start[keep]]
    # position within the polygon: vertices of one polygon are contiguous, parts and rings in
    # order, so the offset from the polygon's first vertex is its ring order
    first_vertex = np.zeros(len(polys), dtype=np.int64)
    u, at = np.unique(coord_poly, return_index=True)
    first_vertex[u] = at
    pos = start[keep] - first_vertex[poly]
    return np.hstack([a[keep], b[keep]]), poly.astype(np.int64), pos


def _morton(x: NDArray[np.float64], y: NDArray[np.float64],
            frame: tuple[float, float, float, float]) -> NDArray[np.uint64]:
    """Z-order key of points, 16 bits per axis over ``frame`` (xmin, ymin, xmax, ymax); points
    outside it are clamped to its edge."""

    def spread(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
        return (v | (v << np.uint64(1))) & np.uint64(0x55555555)

    def quantise(v: NDArray[np.float64], lo: float, hi: float) -> NDArray[np.uint64]:
        scale = 65535.0 / (hi - lo) if hi > lo else 0.0
        return np.clip((v - lo) * scale, 0, 65535).astype(np.uint64)

    return (spread(quantise(x, frame[0], frame[2]))
            | (spread(quantise(y, frame[1], frame[3])) << np.uint64(1)))


def _boxes(xmin: NDArray[np.float64], ymin: NDArray[np.float64], xmax: NDArray[np.float64],
           ymax: NDArray[np.float64]) -> NDArray[np.float64]:
    """Boxes of consecutive runs of :data:`FANOUT` items, as (k, 4) xmin, ymin, xmax, ymax."""
    starts = np.arange(0, len(xmin), FANOUT)
    return np.stack([np.minimum.reduceat(xmin, starts), np.minimum.reduceat(ymin, starts),
                     np.maximum.reduceat(xmax, starts), np.maximum.reduceat(ymax, starts)],
                    axis=1)


def _centred(b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Boxes (k, 4) as rows centre x, centre y, half width, half height (4, k'), k' padded to a
    multiple of :data:`FANOUT` with boxes at infinity (never near, never a bound). Half sizes are
    grown by a relative 1e-12 so that rounding can only make a box larger."""
    k = -(-len(b) // FANOUT) * FANOUT
    out = np.empty((4, k))
    out[:, len(b):] = [[np.inf], [np.inf], [0.0], [0.0]]
    out[0, :len(b)] = (b[:, 0] + b[:, 2]) / 2
    out[1, :len(b)] = (b[:, 1] + b[:, 3]) / 2
    out[2, :len(b)] = (b[:, 2] - b[:, 0]) / 2 * (1 + 1e-12) + 1e-300
    out[3, :len(b)] = (b[:, 3] - b[:, 1]) / 2 * (1 + 1e-12) + 1e-300
    return out


def _group_min(values: NDArray[np.generic], group: NDArray[np.int64], m: int
               ) -> NDArray[np.generic]:
    """Per group 0..m-1 (``group`` sorted, every group present), the least of ``values``."""
    if m == 1:
        return np.array([values.min()], dtype=values.dtype)
    starts = np.empty(len(group), dtype=bool)
    starts[0] = True
    np.not_equal(group[1:], group[:-1], out=starts[1:])
    return np.minimum.reduceat(values, np.flatnonzero(starts))


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

    ``cols[:, i]`` is edge ``i`` (x0, y0, x1, y1), ``poly[i]`` its polygon index, ``rank[i]``
    its position in :func:`outline_edges`' order (the tie-break). ``boxes[0]`` holds one box per
    leaf (edges ``F k`` to ``F k + F - 1``, ``F`` = :data:`FANOUT`), ``boxes[j]`` one per ``F``
    boxes of ``boxes[j - 1]``; the last level has at most ``F``. Each level is (4, k): centre x,
    centre y, half width, half height, padded with boxes at infinity to a multiple of ``F``.

    >>> from shapely import box
    >>> idx = EdgeIndex.from_polygons([box(0, 0, 1, 1), box(1, 0, 2, 1)])
    >>> len(idx)  # the shared edge x = 1 is inside the cover
    6
    >>> poly, cx, cy, d = idx.nearest([-1.0, 1.0, 3.0], [0.5, 3.0, 2.0])
    >>> poly.tolist(), cx.tolist(), cy.tolist(), d.round(3).tolist()
    ([0, 0, 1], [0.0, 1.0, 2.0], [0.5, 1.0, 1.0], [1.0, 2.0, 1.414])
    """

    poly: NDArray[np.int32]
    rank: NDArray[np.int32]
    boxes: tuple[NDArray[np.float64], ...]
    cols: NDArray[np.float64]  # (4, n): rows x0, y0, x1, y1, each contiguous (fast gathers)

    def __len__(self) -> int:
        return len(self.poly)

    @property
    def seg(self) -> NDArray[np.float64]:
        """The edges as (n, 4) x0, y0, x1, y1 (a view)."""
        return self.cols.T

    @property
    def nbytes(self) -> int:
        return int(self.cols.nbytes + self.poly.nbytes + self.rank.nbytes
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
            return cls(poly=np.zeros(0, np.int32), rank=np.zeros(0, np.int32), boxes=(),
                       cols=np.zeros((4, 0)))
        mx, my = (seg[:, 0] + seg[:, 2]) / 2, (seg[:, 1] + seg[:, 3]) / 2
        frame = (float(mx.min()), float(my.min()), float(mx.max()), float(my.max()))
        order = np.argsort(_morton(mx, my, frame), kind="stable")
        return cls._packed(np.ascontiguousarray(seg[order].T),
                           np.asarray(poly, dtype=np.int32)[order], order.astype(np.int32))

    @classmethod
    def _packed(cls, cols: NDArray[np.float64], poly: NDArray[np.int32], rank: NDArray[np.int32]
                ) -> EdgeIndex:
        """The index over edges in their final order: the tree's boxes, level by level."""
        x0, y0, x1, y1 = cols
        levels = [_boxes(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1),
                         np.maximum(y0, y1))]
        while len(levels[-1]) > FANOUT:
            b = levels[-1]
            levels.append(_boxes(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
        return cls(poly=poly, rank=rank, boxes=tuple(_centred(b) for b in levels), cols=cols)

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
        if ok.size == 1:  # a single lookup: the same search without the batch's bookkeeping
            at = ok
            e1, d1 = self._nearest_one(float(x[at[0]]), float(y[at[0]]))
            poly[at] = self.poly[e1]
            cx[at], cy[at] = closest_point(x[at], y[at], *self.cols[:, [e1]])
            dist[at] = d1
            return poly, cx, cy, dist
        for s in range(0, ok.size, CHUNK):
            at = ok[s:s + CHUNK]
            edge, d = self._nearest_edges(x[at], y[at])
            poly[at] = self.poly[edge]
            cx[at], cy[at] = closest_point(x[at], y[at], *self.cols[:, edge])
            dist[at] = d
        return poly, cx, cy, dist

    def _nearest_edges(self, px: NDArray[np.float64], py: NDArray[np.float64]
                       ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The winning edge (tree position) and its distance, per (finite) point."""
        m, n = len(px), len(self)
        # A first guess: walk down to the one leaf whose box is nearest at every level and take
        # its nearest edge. A real edge's distance is an upper bound, usually the answer.
        guess = self._greedy_guess(px, py)
        top = self.boxes[-1].shape[1]
        pt = np.repeat(np.arange(m), top)  # candidate pairs (point, node), sorted by point
        node = np.tile(np.arange(top), m)
        for level in range(len(self.boxes) - 1, -1, -1):
            cx, cy, hx, hy = self.boxes[level][:, node]
            ax, ay = np.abs(px[pt] - cx), np.abs(py[pt] - cy)
            sx, sy = ax - hx, ay - hy  # to the nearer faces (negative: between them)
            tx, ty = ax + hx, ay + hy  # to the farther faces
            ux, uy = np.maximum(sx, 0.0), np.maximum(sy, 0.0)
            least = ux * ux + uy * uy
            # min-max distance: the nearer face along one axis, the farther corner of it
            bound = np.minimum(sx * sx + ty * ty, sy * sy + tx * tx)
            guess = np.minimum(guess, _group_min(bound, pt, m))
            keep = least <= guess[pt] * (1 + _REL) + _ABS
            pt, node = pt[keep], node[keep]
            node = (node[:, None] * FANOUT + np.arange(FANOUT)).ravel()
            pt = np.repeat(pt, FANOUT)
        valid = node < n  # the last leaf may be short
        pt, node = pt[valid], node[valid]
        # the edges of the leaves kept: first their own boxes, then the exact distance
        x0, y0, x1, y1 = self.cols[:, node]
        qx, qy = px[pt], py[pt]
        dx = np.maximum(np.maximum(np.minimum(x0, x1) - qx, qx - np.maximum(x0, x1)), 0.0)
        dy = np.maximum(np.maximum(np.minimum(y0, y1) - qy, qy - np.maximum(y0, y1)), 0.0)
        keep = dx * dx + dy * dy <= guess[pt] * (1 + _REL) + _ABS
        pt, node = pt[keep], node[keep]
        x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
        d = segment_distance(px[pt], py[pt], x0, y0, x1, y1)
        dmin = _group_min(d, pt, m)
        rank = np.where(d == dmin[pt], self.rank[node], np.iinfo(np.int32).max)
        first = _group_min(rank, pt, m)
        win = np.flatnonzero(rank == first[pt])  # ranks are unique: one pair per point
        if len(win) != m:
            raise AssertionError("the edge search lost a point")  # pragma: no cover
        return node[win].astype(np.int64), d[win]

    def _nearest_one(self, x: float, y: float) -> tuple[int, float]:
        """:meth:`_nearest_edges` for one point (same pruning, same answer, fewer calls)."""
        node = np.arange(self.boxes[-1].shape[1])
        guess = np.inf
        step = np.arange(FANOUT)
        for level in range(len(self.boxes) - 1, -1, -1):
            cx, cy, hx, hy = self.boxes[level][:, node]
            ax, ay = np.abs(x - cx), np.abs(y - cy)
            sx, sy, tx, ty = ax - hx, ay - hy, ax + hx, ay + hy
            guess = min(guess, float(np.minimum(sx * sx + ty * ty, sy * sy + tx * tx).min()))
            ux, uy = np.maximum(sx, 0.0), np.maximum(sy, 0.0)
            node = node[ux * ux + uy * uy <= guess * (1 + _REL) + _ABS]
            node = (node[:, None] * FANOUT + step).ravel()
        node = node[node < len(self)]
        d = segment_distance(np.full(len(node), x), np.full(len(node), y), *self.cols[:, node])
        dmin = d.min()
        tied = node[d == dmin]
        return int(tied[np.argmin(self.rank[tied])]), float(dmin)

    def _greedy_guess(self, px: NDArray[np.float64], py: NDArray[np.float64]
                      ) -> NDArray[np.float64]:
        """An upper bound on each point's squared distance to its nearest edge: walk down, at
        every level into the child box with the least min-max distance (some edge is sure to be
        that close), and take the least of those bounds and of the reached leaf's edges."""
        m, n = len(px), len(self)
        step = np.arange(FANOUT)
        top = self.boxes[-1].shape[1]
        child = np.broadcast_to(np.arange(top), (m, top))
        guess = np.full(m, np.inf)
        qx, qy = px[:, None], py[:, None]
        rows = np.arange(m)
        for level in range(len(self.boxes) - 1, -1, -1):
            cx, cy, hx, hy = self.boxes[level][:, child]
            ax, ay = np.abs(qx - cx), np.abs(qy - cy)
            sx, sy, tx, ty = ax - hx, ay - hy, ax + hx, ay + hy
            bound = np.minimum(sx * sx + ty * ty, sy * sy + tx * tx)  # inf for padding
            pick = bound.argmin(axis=1)
            guess = np.minimum(guess, bound[rows, pick])
            child = child[rows, pick][:, None] * FANOUT + step
        edge = np.minimum(child, n - 1).ravel()  # a short last leaf repeats its last edge
        x0, y0, x1, y1 = self.cols[:, edge]
        d = segment_distance(np.repeat(px, FANOUT), np.repeat(py, FANOUT), x0, y0, x1, y1)
        d = d.reshape(m, FANOUT).min(axis=1)
        return np.minimum(guess, d * d)

    # -- arrays (a snapshot on disk) --------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, NDArray[np.generic]]:
        """The edges as plain arrays, in tree order (the boxes are rebuilt from them on load:
        milliseconds)."""
        return {f"{prefix}cols": self.cols, f"{prefix}poly": self.poly, f"{prefix}rank": self.rank}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[np.generic]], prefix: str,
                    n_polygons: int) -> EdgeIndex:
        """The index :meth:`to_arrays` wrote; ValueError when the arrays do not fit together
        (a damaged file) or name a polygon beyond ``n_polygons``."""
        cols = np.asarray(arrays[f"{prefix}cols"], dtype=np.float64)
        poly = np.asarray(arrays[f"{prefix}poly"], dtype=np.int32)
        rank = np.asarray(arrays[f"{prefix}rank"], dtype=np.int32)
        n = len(poly)
        if cols.shape != (4, n) or rank.shape != (n,):
            raise ValueError("edge columns differ in length")
        if not n:
            return cls.from_edges(cols.T, poly.astype(np.int64))
        if (int(poly.min()) < 0 or int(poly.max()) >= n_polygons
                or int(rank.min()) < 0 or int(rank.max()) >= n
                or int(np.bincount(rank, minlength=n).max()) != 1
                or not np.isfinite(cols).all()):
            raise ValueError("edges do not match their polygons")
        # Any order of the edges gives right answers (the boxes are computed from them); the
        # Z-order they were written in only makes the search fast.
        return cls._packed(np.ascontiguousarray(cols), poly, rank)
