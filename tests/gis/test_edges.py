"""The outline-edge index (gis/edges.py) against a brute-force oracle: ``shapely`` distance from
each point to every polygon, the lowest index among the nearest, and ``shortest_line`` to it.

Polygons are random Voronoi cells clipped to a disc, densified, with cells taken out (gaps at the
rim and inside, one hole); points are random near and far (100 times the cover's size away), in
the gaps, and just off the outline's vertices where two polygons' outlines meet (exact ties).
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import gis.edges as edges_mod
from gis.edges import EdgeIndex, outline_edges


def cover(seed: int, n: int = 300, size: float = 0.1, *, densify: bool = False) -> np.ndarray:
    """Cells with gaps; ``densify``: each cell densified on its own, so that a shared edge is
    split from both ends and neighbours' vertices differ in the last bits (interior edges that
    look unshared, as where grids of two communities meet)."""
    rng = np.random.default_rng(seed)
    pts = shapely.multipoints(rng.uniform(0, size, (n, 2)))
    frame = shapely.box(0, 0, size, size)
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=frame))
    disc = shapely.Point(size / 2, size / 2).buffer(size * 0.45, quad_segs=32)
    cells = shapely.intersection(cells, disc)
    cells = cells[~shapely.is_empty(cells)]
    cells = np.delete(cells, rng.choice(len(cells), len(cells) // 10, replace=False))
    return shapely.segmentize(cells, size / 200) if densify else cells


def oracle(polys: np.ndarray, x: np.ndarray, y: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest polygon (lowest index on ties), nearest point on it, distance: every polygon."""
    pts = shapely.points(x, y)
    dist = shapely.distance(polys[None, :], pts[:, None])
    best = dist.argmin(axis=1)  # the first minimum: the lowest index
    ends = shapely.get_coordinates(shapely.shortest_line(polys[best], pts))[0::2]
    return best, ends[:, 0], ends[:, 1], dist.min(axis=1)


def outside(polys: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hit = shapely.STRtree(polys).query(shapely.points(x, y), predicate="covered_by")[0]
    out = np.ones(len(x), dtype=bool)
    out[hit] = False
    return x[out], y[out]


def lattice(seed: int, n: int = 14, size: float = 0.1) -> np.ndarray:
    """Square cells on a lattice (exact shared vertices, straight outlines), some taken out."""
    rng = np.random.default_rng(seed)
    step = size / n
    ij = np.array([(i, j) for i in range(n) for j in range(n)])
    ij = ij[rng.random(len(ij)) > 0.2]
    return shapely.box(ij[:, 0] * step, ij[:, 1] * step, (ij[:, 0] + 1) * step,
                       (ij[:, 1] + 1) * step)


def tie_points(seg: np.ndarray, poly: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Points ``eps`` off (8 directions) every outline vertex that two polygons share."""
    ends = np.vstack([np.c_[seg[:, :2], poly], np.c_[seg[:, 2:], poly]])
    xy, inv = np.unique(ends[:, :2], axis=0, return_inverse=True)
    owners = np.unique(np.c_[inv.ravel(), ends[:, 2]], axis=0)[:, 0]
    shared = xy[np.flatnonzero(np.bincount(owners.astype(int)) > 1)]
    step = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)])
    p = (shared[:, None, :] + eps * step[None, :, :]).reshape(-1, 2)
    return p[:, 0], p[:, 1]


@pytest.fixture(scope="module", params=["voronoi", "densified", "lattice"])
def polys(request: pytest.FixtureRequest) -> np.ndarray:
    if request.param == "lattice":
        return lattice(20)
    return cover(20, densify=request.param == "densified")


@pytest.fixture(scope="module")
def index(polys: np.ndarray) -> EdgeIndex:
    return EdgeIndex.from_polygons(polys)


def test_outline_edges_drop_exactly_the_shared_ones() -> None:
    polys = cover(20)
    seg, poly = outline_edges(polys)
    # every outline edge lies on the boundary of the union, and no shared edge is left
    boundary = shapely.boundary(shapely.union_all(polys))
    mids = shapely.points((seg[:, :2] + seg[:, 2:]) / 2)
    assert shapely.distance(boundary, mids).max() < 1e-12
    key = np.sort(np.stack([seg[:, :2], seg[:, 2:]], axis=1).view(np.complex128)[..., 0], axis=1)
    assert len(np.unique(key, axis=0)) == len(seg)
    # in polygon, ring and vertex order; and the stripes change nothing
    assert np.all(np.diff(poly) >= 0)
    small = edges_mod.STRIPE_COORDS
    try:
        edges_mod.STRIPE_COORDS = 500  # many stripes
        seg2, poly2 = outline_edges(polys)
    finally:
        edges_mod.STRIPE_COORDS = small
    assert np.array_equal(seg, seg2) and np.array_equal(poly, poly2)


def test_nearest_is_the_brute_force_answer(polys: np.ndarray, index: EdgeIndex) -> None:
    rng = np.random.default_rng(7)
    size = 0.1
    near_x, near_y = rng.uniform(-0.05, 0.15, 3000), rng.uniform(-0.05, 0.15, 3000)
    far_x, far_y = rng.uniform(-10, 10, 300), rng.uniform(-10, 10, 300)  # 100 covers away
    gap = shapely.difference(shapely.Point(size / 2, size / 2).buffer(size * 0.45),
                             shapely.union_all(polys))
    gx, gy = rng.uniform(0, size, 20_000), rng.uniform(0, size, 20_000)
    in_gap = shapely.covered_by(shapely.points(gx, gy), gap)
    gx, gy = gx[in_gap], gy[in_gap]
    assert len(gx) > 200
    x, y = outside(polys, np.r_[near_x, far_x, gx], np.r_[near_y, far_y, gy])
    assert len(x) > 2000
    want = oracle(polys, x, y)
    got = index.nearest(x, y)
    for w, g in zip(want, got, strict=True):
        assert np.array_equal(w, g)  # bit for bit, not approximately


def test_ties_go_to_the_lowest_polygon() -> None:
    polys = lattice(21)
    index = EdgeIndex.from_polygons(polys)
    seg, poly = outline_edges(polys)
    x, y = tie_points(seg, poly, 1e-4)
    x, y = outside(polys, x, y)
    pts = shapely.points(x, y)
    dist = np.sort(shapely.distance(polys[None, :], pts[:, None]), axis=1)
    tied = dist[:, 0] == dist[:, 1]
    assert tied.sum() > 10  # the test does exercise ties
    want = oracle(polys, x, y)
    got = index.nearest(x, y)
    for w, g in zip(want, got, strict=True):
        assert np.array_equal(w, g)
    # the old path (an STRtree of LineStrings) names one of the tied polygons, not always ours
    lines = shapely.linestrings(np.stack([seg[:, :2], seg[:, 2:]], axis=1))
    pos, near = shapely.STRtree(lines).query_nearest(pts, all_matches=False)
    old = poly[near[np.argsort(pos, kind="stable")]]
    assert np.array_equal(old[~tied], got[0][~tied])


def test_batches_of_any_size_and_bad_points(polys: np.ndarray, index: EdgeIndex,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    x, y = outside(polys, rng.uniform(-1, 1, 500), rng.uniform(-1, 1, 500))
    whole = index.nearest(x, y)
    monkeypatch.setattr(edges_mod, "CHUNK", 7)
    for w, g in zip(whole, index.nearest(x, y), strict=True):
        assert np.array_equal(w, g)
    for i in range(0, len(x), 3):  # one point at a time takes its own path: the same answers
        one = index.nearest(x[i:i + 1], y[i:i + 1])
        assert [float(v[0]) for v in one] == [float(v[i]) for v in whole]
    poly, cx, cy, d = index.nearest([np.nan, 0.5, np.inf], [0.5, np.nan, 0.0])
    assert poly.tolist() == [-1, -1, -1] and np.isnan(d).all() and np.isnan(cx).all()
    empty = EdgeIndex.from_polygons([])
    assert len(empty) == 0 and empty.nearest([0.0], [0.0])[0].tolist() == [-1]


def test_arrays_round_trip_and_damage_is_refused(polys: np.ndarray, index: EdgeIndex) -> None:
    arrays = index.to_arrays("e_")
    back = EdgeIndex.from_arrays(arrays, "e_", len(polys))
    rng = np.random.default_rng(9)
    x, y = outside(polys, rng.uniform(-0.2, 0.3, 1000), rng.uniform(-0.2, 0.3, 1000))
    for w, g in zip(index.nearest(x, y), back.nearest(x, y), strict=True):
        assert np.array_equal(w, g)
    assert back.nbytes == index.nbytes
    bad_poly = dict(arrays, e_poly=np.where(arrays["e_poly"] == 0, len(polys), arrays["e_poly"]))
    dup_rank = dict(arrays, e_rank=np.zeros_like(arrays["e_rank"]))
    short = dict(arrays, e_cols=arrays["e_cols"][:, :-1])
    nan = dict(arrays, e_cols=np.where(np.arange(len(index)) == 3, np.nan, arrays["e_cols"]))
    for damaged in (bad_poly, dup_rank, short, nan):
        with pytest.raises(ValueError):
            EdgeIndex.from_arrays(damaged, "e_", len(polys))
    with pytest.raises(KeyError):
        EdgeIndex.from_arrays({k: v for k, v in arrays.items() if k != "e_rank"}, "e_",
                              len(polys))
    # edges in any order (a file written by hand) still answer right: only slower
    shuffled = rng.permutation(len(index))
    mixed = dict(arrays, e_cols=arrays["e_cols"][:, shuffled], e_poly=arrays["e_poly"][shuffled],
                 e_rank=arrays["e_rank"][shuffled])
    for w, g in zip(index.nearest(x, y), EdgeIndex.from_arrays(mixed, "e_", len(polys)).nearest(
            x, y), strict=True):
        assert np.array_equal(w, g)
