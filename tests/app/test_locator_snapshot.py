"""The locator's snapshot file: a cold start from it answers as a rebuild would, a file for other
boundaries is not used, and a damaged file means a rebuild, not an error.

Real PostGIS: the demo city (read only) and a scratch tiny city whose boundaries the test changes
with psql, as an operator would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from sqlalchemy import Engine

from app.locator_service import LocatorService
from grids.locate_cache import snapshot_path
from tests.conftest import psql, tiny_city_engine
from tests.tiny_city import G3, at


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    engine = tiny_city_engine("citygrid_test_locator_snapshot")
    yield engine
    engine.dispose()


def started(engine: Engine, folder: Path) -> LocatorService:
    service = LocatorService(engine, snapshot_dir=folder)
    service.reload()
    service.wait_raster(timeout=120)  # the rasters, then the file
    return service


def test_cold_start_from_the_file_answers_like_the_rebuild(engine: Engine, tmp_path: Path) -> None:
    built = started(engine, tmp_path)
    assert built.source == "sql" and snapshot_path(tmp_path).exists()
    cold = started(engine, tmp_path)
    assert cold.source == "file"
    a, b = built.snapshot, cold.snapshot
    assert a is not None and b is not None
    assert b.grids.has_raster and b.areas.has_raster  # came with the file, nothing built
    assert b.edges is not None and len(b.edges) == len(a.outline_edges()) > 0  # so did the edges
    for k, v in a.outline_edges().to_arrays("e_").items():
        assert np.array_equal(v, b.edges.to_arrays("e_")[k]), k
    assert b.version_id == a.version_id and b.metric_srid == a.metric_srid

    city = a.areas.polygons[-1]
    xmin, ymin, xmax, ymax = shapely.bounds(city)
    rng = np.random.default_rng(20)
    lon = rng.uniform(xmin - 0.05, xmax + 0.05, 200_000)
    lat = rng.uniform(ymin - 0.05, ymax + 0.05, 200_000)
    coords = shapely.get_coordinates(a.grids.polygons)  # shared vertices: the tie-break
    pick = rng.choice(len(coords), 5000, replace=False)
    lon, lat = np.r_[lon, coords[pick, 0]], np.r_[lat, coords[pick, 1]]
    ra, sa = a.locate_many(lon, lat)
    rb, sb = b.locate_many(lon, lat)
    assert np.array_equal(ra, rb) and np.array_equal(sa, sb)
    assert {0, 2} <= set(sa.tolist())  # inside and outside exercised (gaps: the tiny city)
    # the same regions by code, and the full answers (staff from SQL) on a sample
    assert [a.regions[i].code for i in ra[ra >= 0][:5000]] == \
        [b.regions[i].code for i in rb[rb >= 0][:5000]]
    for i in rng.choice(len(lon), 300, replace=False):
        assert a.locate(lon[i], lat[i]) == b.locate(lon[i], lat[i])
    # outside: the nearest grid and metres from the file's edge index, as from the rebuild
    out = np.flatnonzero(sa == 2)[:3000]
    assert len(out) == 3000
    na, da = a.nearest_many(lon[out], lat[out])
    nb, db = b.nearest_many(lon[out], lat[out])
    assert np.array_equal(na, nb) and np.array_equal(da, db)


def test_an_old_format_file_is_rebuilt(scratch: Engine, tmp_path: Path) -> None:
    """A format-1 file (no edge index) for the same boundaries: stale, rebuilt, no error."""
    started(scratch, tmp_path)
    path = snapshot_path(tmp_path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("e_")}
    header = json.loads(arrays["header"].tobytes().decode())
    header["format"] = 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    service = started(scratch, tmp_path)
    assert service.source == "sql" and service.failure is None
    assert service.snapshot is not None
    assert service.snapshot.locate(*at(3.5, 0.25))["nearest"]["code"] == G3
    again = started(scratch, tmp_path)
    assert again.source == "file" and again.snapshot is not None
    assert again.snapshot.edges is not None  # the rewritten file has them
    assert again.snapshot.locate(*at(3.5, 0.25))["nearest"]["code"] == G3


@pytest.mark.parametrize("damage", ["no_edges", "edge_names_no_grid", "edges_cut_short"])
def test_a_file_with_a_damaged_edge_index_means_a_rebuild(scratch: Engine, tmp_path: Path,
                                                          damage: str) -> None:
    """The right format and etag, but the edge arrays are missing or do not fit."""
    started(scratch, tmp_path)
    path = snapshot_path(tmp_path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if damage == "no_edges":
        arrays = {k: v for k, v in arrays.items() if not k.startswith("e_")}
    elif damage == "edge_names_no_grid":
        arrays["e_poly"] = arrays["e_poly"] + len(arrays["grid_ids"])
    else:
        arrays["e_cols"] = arrays["e_cols"][:, :-1]
    with path.open("wb") as f:
        np.savez(f, **arrays)
    service = started(scratch, tmp_path)
    assert service.source == "sql" and service.failure is None
    assert service.snapshot is not None
    assert service.snapshot.locate(*at(3.5, 0.25))["nearest"]["code"] == G3
    assert started(scratch, tmp_path).source == "file"  # rewritten whole


def test_a_file_for_other_boundaries_is_not_used(scratch: Engine, tmp_path: Path) -> None:
    first = started(scratch, tmp_path)
    assert first.snapshot is not None
    assert first.snapshot.locate(*at(2.5, 0.25))["grid"]["code"] == G3
    psql(scratch, "UPDATE region_boundary SET valid_to = now() WHERE region_id = "
                  f"(SELECT id FROM region WHERE code = '{G3}')")
    try:
        after = started(scratch, tmp_path)
        assert after.source == "sql"  # the file was for the old boundaries
        assert after.snapshot is not None
        answer = after.snapshot.locate(*at(2.5, 0.25))
        assert answer["status"] == "gap" and answer["grid"] is None
        # ... and it wrote one for the new boundaries, which the next process uses
        again = started(scratch, tmp_path)
        assert again.source == "file"
        assert again.snapshot is not None
        assert again.snapshot.locate(*at(2.5, 0.25))["status"] == "gap"
    finally:
        psql(scratch, "UPDATE region_boundary SET valid_to = NULL WHERE region_id = "
                      f"(SELECT id FROM region WHERE code = '{G3}')")


@pytest.mark.parametrize("damage", ["truncated", "bytes_changed", "not_a_snapshot", "empty"])
def test_a_damaged_file_means_a_rebuild_without_error(scratch: Engine, tmp_path: Path,
                                                      damage: str) -> None:
    started(scratch, tmp_path)
    path = snapshot_path(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bytes_changed":
        for k in range(len(data) // 3, len(data) // 3 + 64):
            data[k] ^= 0x5A
    elif damage == "not_a_snapshot":
        data = bytearray(b"PK\x03\x04 this is not what it claims to be" * 100)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    service = started(scratch, tmp_path)
    assert service.source == "sql" and service.failure is None
    assert service.snapshot is not None
    assert service.snapshot.locate(*at(0.5, 0.5))["responsible"]["code"] == "W1"
    assert started(scratch, tmp_path).source == "file"  # rewritten whole
