"""The locator's snapshot file: a cold start from it answers as a rebuild would, a file for other
boundaries is not used, and a damaged file means a rebuild, not an error.

Real PostGIS: the demo city (read only) and a scratch tiny city whose boundaries the test changes
with psql, as an operator would.
"""

from __future__ import annotations

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
