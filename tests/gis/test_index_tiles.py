"""The adaptive lookup table (gis/index.py) against the exact path, and its arrays round trip.

Polygons are random Voronoi cells (no hand-picked answers): every answer from the table is checked
against the STRtree ``covered_by`` path on the same points.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from gis.index import BLOCK, TILE, PolygonIndex, _encode_tiles


def voronoi_cells(n: int, extent: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, extent, size=(n, 2))
    frame = shapely.box(0, 0, extent, extent)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame))
    return shapely.intersection(cells, frame)


def two_islands(seed: int) -> np.ndarray:
    """Two clusters of cells far apart (a province: cities with open country between)."""
    a = voronoi_cells(800, 1.0, seed)
    b = shapely.transform(voronoi_cells(800, 1.0, seed + 1), lambda xy: xy + [30.0, 12.0])
    return np.concatenate([a, b])


def probe(idx: PolygonIndex, xy: np.ndarray) -> None:
    exact = idx.query_exact(xy[:, 0], xy[:, 1])
    table = idx.query(xy[:, 0], xy[:, 1])
    assert np.array_equal(exact, table)
    sample = np.random.default_rng(1).choice(len(xy), 3000, replace=False)
    assert [idx.query_one(*xy[i]) for i in sample] == exact[sample].tolist()


def test_table_agrees_with_exact_and_only_stores_tiles_near_polygons() -> None:
    polys = two_islands(7)
    idx = PolygonIndex(polys)
    cell = 0.002
    idx.build_raster(cell)
    rng = np.random.default_rng(3)
    # random points over both islands, the open country between and beyond, and every vertex
    xy = np.concatenate([
        rng.uniform([-0.5, -0.5], [1.5, 1.5], size=(100_000, 2)),
        rng.uniform([29.5, 11.5], [31.5, 13.5], size=(100_000, 2)),
        rng.uniform([-2, -2], [33, 15], size=(50_000, 2)),
        shapely.get_coordinates(polys)[::3],
    ])
    probe(idx, xy)
    stats = idx.raster_stats()
    # the extent is 31 × 13 units = 15,500 × 6,500 cells; more than one build block each way
    assert stats["cells"] > (BLOCK * TILE) ** 2
    # only tiles with a boundary in them are stored: two islands of ~500² cells, not the extent
    fine_cells = stats["fine_tiles"] * TILE * TILE
    assert fine_cells < 0.02 * stats["cells"]
    assert 0 < stats["border_share"] < 0.05


def test_many_small_polygons_agree_with_exact() -> None:
    # 6,000 cells in a square the size of a few tiles: up to ~70 polygons in a tile
    polys = voronoi_cells(6000, 1.0, 11)
    idx = PolygonIndex(polys)
    idx.build_raster(1.0 / 300)
    xy = np.random.default_rng(5).uniform(-0.1, 1.1, size=(100_000, 2))
    probe(idx, xy)


def test_a_tile_with_more_labels_than_a_byte_sends_the_rarest_to_the_exact_path() -> None:
    # Not reachable from real polygons with a one-cell dilation (16 × 16 interiors at most), so
    # the encoder is driven directly: tile 0 names 400 labels, tile 1 is uniform, tile 2 has two.
    rng = np.random.default_rng(4)
    tiles = np.zeros((3, TILE * TILE), dtype=np.int32)
    tiles[0] = rng.integers(-2, 398, TILE * TILE)
    tiles[0, :1000] = 7  # the most frequent label must survive
    tiles[1] = 5
    tiles[2, :100] = -1
    tiles[2, 100:] = 3
    codes, fine = _encode_tiles(tiles)
    assert codes[1] == -5 - 2
    assert fine.indices.tolist() == [0, 2]
    offsets = np.r_[0, np.cumsum(fine.counts)[:-1]]
    decoded = fine.palette[offsets[:, None] + fine.bytes]
    kept = decoded[0] != -2
    assert np.array_equal(decoded[0][kept], tiles[0][kept])  # never a wrong label
    assert (decoded[0][:1000] == 7).all()
    assert fine.counts[0] == 256 and kept.mean() > 0.5
    assert np.array_equal(decoded[1], tiles[2])


def test_arrays_round_trip_gives_the_same_answers_and_bad_tables_are_refused() -> None:
    idx = PolygonIndex(two_islands(21))
    idx.build_raster(0.002)
    arrays = idx.to_arrays("g_")
    again = PolygonIndex.from_arrays(arrays, "g_")
    assert again.has_raster
    xy = np.random.default_rng(8).uniform([-0.5, -0.5], [31.5, 13.5], size=(200_000, 2))
    assert np.array_equal(idx.query(xy[:, 0], xy[:, 1]), again.query(xy[:, 0], xy[:, 1]))
    assert np.array_equal(idx.query_exact(xy[:, 0], xy[:, 1]),
                          again.query_exact(xy[:, 0], xy[:, 1]))
    # a table that names polygons the index does not have, or points past its palette
    bad = dict(arrays)
    bad["g_r_palette"] = arrays["g_r_palette"] + len(idx)
    with pytest.raises(ValueError):
        PolygonIndex.from_arrays(bad, "g_")
    bad = dict(arrays)
    bad["g_r_offsets"] = arrays["g_r_offsets"] + 10**9
    with pytest.raises(ValueError):
        PolygonIndex.from_arrays(bad, "g_")
    bad = dict(arrays)
    bad["g_wkb_sizes"] = arrays["g_wkb_sizes"][:-1]
    with pytest.raises(ValueError):
        PolygonIndex.from_arrays(bad, "g_")
