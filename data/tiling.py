"""Split a polygon into cells that tile it exactly, with shared, natural-looking edges.

The recipe (all in a projected CRS, metres):

1. Place ``k`` seeds inside the parent by weighted Lloyd relaxation (k-means on sample points),
   so cells are compact and smaller where the density weight is high (:func:`place_seeds`).
2. Take the Voronoi *edges* of the seeds (each edge exists once), and bend each edge once by
   midpoint displacement with its end points fixed (:func:`wiggle_edges`). Neighbouring cells
   later use this one bent edge, so they share every vertex.
3. Node the bent edges together with the parent's boundary (``union_all``) and polygonize. The
   faces inside the parent tile it exactly: the parent's own vertices are kept and every new
   vertex is a node shared by all faces that meet there.
4. Give each face to the Voronoi cell it overlaps most, dissolve the faces per cell
   (``coverage_union_all``), and hand detached scraps of a cell to the neighbour with which they
   share the longest border, so that children are single polygons where the geometry allows.

Children never come from intersecting each cell with the parent on its own, which would leave
slivers and gaps between neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class Wiggle:
    """How much to bend partition edges at one level.

    ``amplitude`` is the first midpoint offset as a fraction of the edge length; each further
    halving multiplies it by ``roughness``, so the largest possible offset is
    ``amplitude / (1 - roughness)`` of the edge length. ``max_depth`` halvings give at most
    ``2**max_depth`` segments per edge; edges are not cut below ``min_segment`` metres.
    """

    amplitude: float = 0.035
    roughness: float = 0.4
    max_depth: int = 4
    min_segment: float = 15.0


def sample_points(parent: BaseGeometry, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``n`` uniform random points inside ``parent`` (rejection sampling in its bounding box)."""
    xmin, ymin, xmax, ymax = parent.bounds
    shapely.prepare(parent)
    chunks: list[NDArray[np.float64]] = []
    have = 0
    ratio = max(parent.area / ((xmax - xmin) * (ymax - ymin)), 0.05)
    while have < n:
        m = int((n - have) / ratio * 1.3) + 16
        xy = rng.uniform((xmin, ymin), (xmax, ymax), size=(m, 2))
        xy = xy[shapely.contains_xy(parent, xy[:, 0], xy[:, 1])]
        chunks.append(xy)
        have += len(xy)
    return np.concatenate(chunks)[:n]


def place_seeds(
    samples: NDArray[np.float64],
    weights: NDArray[np.float64],
    k: int,
    rng: np.random.Generator,
    *,
    iterations: int = 20,
    init: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Weighted k-means (Lloyd) seeds; each seed is finally snapped to a sample of its cluster.

    Snapping keeps every seed inside the parent even when it is concave.
    """
    if init is None:
        p = weights / weights.sum()
        centres = samples[rng.choice(len(samples), size=k, replace=False, p=p)]
    else:
        centres = np.array(init, dtype=float)
    labels = np.zeros(len(samples), dtype=np.intp)
    for _ in range(iterations):
        labels = _nearest(samples, centres)
        mass = np.bincount(labels, weights=weights, minlength=k)
        sx = np.bincount(labels, weights=weights * samples[:, 0], minlength=k)
        sy = np.bincount(labels, weights=weights * samples[:, 1], minlength=k)
        empty = mass <= 0
        if empty.any():
            # re-seed an empty cluster at the sample farthest from its centre
            far = np.argsort(-np.sum((samples - centres[labels]) ** 2, axis=1))
            centres[empty] = samples[far[: int(empty.sum())]]
            continue
        centres = np.column_stack([sx / mass, sy / mass])
    labels = _nearest(samples, centres)
    snapped = centres.copy()
    for i in range(k):
        members = np.flatnonzero(labels == i)
        if len(members) == 0:
            continue
        d = np.sum((samples[members] - centres[i]) ** 2, axis=1)
        snapped[i] = samples[members[np.argmin(d)]]
    return snapped


def _nearest(points: NDArray[np.float64], centres: NDArray[np.float64]) -> NDArray[np.intp]:
    d = (
        np.sum(points**2, axis=1)[:, None]
        - 2.0 * points @ centres.T
        + np.sum(centres**2, axis=1)[None, :]
    )
    return np.argmin(d, axis=1)


def wiggle_edges(
    starts: NDArray[np.float64],
    ends: NDArray[np.float64],
    rng: np.random.Generator,
    wiggle: Wiggle,
) -> NDArray[np.object_]:
    """Bend straight edges by midpoint displacement; end points are kept bit for bit."""
    vec = ends - starts
    length = np.hypot(vec[:, 0], vec[:, 1])
    safe = np.where(length > 0, length, 1.0)
    normal = np.column_stack([-vec[:, 1], vec[:, 0]]) / safe[:, None]
    with np.errstate(divide="ignore"):
        depth = np.floor(np.log2(np.maximum(length, 1e-9) / wiggle.min_segment))
    depth = np.clip(depth, 0, wiggle.max_depth).astype(int)
    out = np.empty(len(starts), dtype=object)
    for d in np.unique(depth):
        idx = np.flatnonzero(depth == d)
        m = len(idx)
        offsets = np.zeros((m, 2))
        for level in range(d):
            mid = 0.5 * (offsets[:, :-1] + offsets[:, 1:])
            mid += rng.uniform(-1.0, 1.0, size=mid.shape) * (
                wiggle.amplitude * wiggle.roughness**level
            )
            grown = np.empty((m, 2 * offsets.shape[1] - 1))
            grown[:, ::2] = offsets
            grown[:, 1::2] = mid
            offsets = grown
        t = np.linspace(0.0, 1.0, offsets.shape[1])
        pts = (
            starts[idx, None, :]
            + t[None, :, None] * vec[idx, None, :]
            + (offsets * length[idx, None])[:, :, None] * normal[idx, None, :]
        )
        pts[:, 0] = starts[idx]
        pts[:, -1] = ends[idx]
        out[idx] = shapely.linestrings(pts)
    return out


def partition(
    parent: BaseGeometry,
    seeds: NDArray[np.float64],
    rng: np.random.Generator,
    wiggle: Wiggle,
) -> list[BaseGeometry]:
    """Cells of ``seeds`` inside ``parent`` that tile it exactly, in seed order.

    Each result is a Polygon where possible (a MultiPolygon only if a piece could not be given
    to a neighbour). Raises ``ValueError`` if a seed ends up with no area at all.
    """
    k = len(seeds)
    if k == 1:
        return [parent]
    xmin, ymin, xmax, ymax = parent.bounds
    pad = max(xmax - xmin, ymax - ymin)
    frame = shapely.box(xmin - pad, ymin - pad, xmax + pad, ymax + pad)
    points = shapely.multipoints(seeds)
    edges = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=frame, only_edges=True))
    near = shapely.intersects(edges, shapely.envelope(parent).buffer(0.2 * pad))
    edges = edges[near]
    coords = shapely.get_coordinates(edges).reshape(-1, 2, 2)
    bent = wiggle_edges(coords[:, 0], coords[:, 1], rng, wiggle)

    noded = shapely.union_all(np.concatenate([[shapely.boundary(parent)], bent]))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    shapely.prepare(parent)
    inner = shapely.point_on_surface(faces)
    faces = faces[shapely.contains_xy(parent, shapely.get_x(inner), shapely.get_y(inner))]

    owner = _assign_faces(faces, seeds, points, frame)
    result: list[BaseGeometry | None] = []
    for i in range(k):
        mine = faces[owner == i]
        result.append(shapely.coverage_union_all(mine) if len(mine) else None)
    missing = [i for i, g in enumerate(result) if g is None or g.is_empty]
    if missing:
        raise ValueError(f"{len(missing)} of {k} seeds got no area")
    return _attach_scraps([g for g in result if g is not None])


def _assign_faces(
    faces: NDArray[np.object_],
    seeds: NDArray[np.float64],
    points: BaseGeometry,
    frame: BaseGeometry,
) -> NDArray[np.intp]:
    """Index of the cell owning each face.

    A face holding exactly one seed belongs to that seed (the bent edges stay far from the
    seeds). Any other face goes to the Voronoi cell it overlaps most.
    """
    owner = np.full(len(faces), -1)
    seed_idx, face_idx = shapely.STRtree(faces).query(shapely.points(seeds), predicate="within")
    holding = np.bincount(face_idx, minlength=len(faces))
    single = holding[face_idx] == 1
    owner[face_idx[single]] = seed_idx[single]
    rest = np.flatnonzero(owner < 0)
    if len(rest):
        cells = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=frame, ordered=True))
        pair_face, pair_cell = shapely.STRtree(cells).query(faces[rest], predicate="intersects")
        overlap = shapely.area(shapely.intersection(faces[rest][pair_face], cells[pair_cell]))
        order = np.lexsort((-overlap, pair_face))
        first = np.unique(pair_face[order], return_index=True)[1]
        owner[rest[pair_face[order][first]]] = pair_cell[order][first]
    if (owner < 0).any():  # pragma: no cover - every face overlaps some Voronoi cell
        raise ValueError("a face overlaps no Voronoi cell")
    return owner


def _attach_scraps(cells: list[BaseGeometry], rounds: int = 4) -> list[BaseGeometry]:
    """Give each detached piece of a cell to the neighbour sharing its longest border."""
    cells = list(cells)
    for _ in range(rounds):
        multi = [i for i, g in enumerate(cells) if g.geom_type == "MultiPolygon"]
        if not multi:
            break
        changed = False
        for i in multi:
            parts = shapely.get_parts(cells[i])
            if len(parts) < 2:
                continue
            keep = int(np.argmax(shapely.area(parts)))
            leftovers = []
            for j, part in enumerate(parts):
                if j == keep:
                    continue
                ring = shapely.boundary(part)
                shared = np.array(
                    [
                        shapely.length(shapely.intersection(ring, shapely.boundary(cells[n])))
                        if n != i
                        else 0.0
                        for n in range(len(cells))
                    ]
                )
                best = int(np.argmax(shared))
                if shared[best] <= 0:
                    leftovers.append(part)
                    continue
                cells[best] = shapely.coverage_union_all([cells[best], part])
                changed = True
            cells[i] = (
                shapely.multipolygons([parts[keep], *leftovers]) if leftovers else parts[keep]
            )
        if not changed:
            break
    return cells
