"""Topology checks on a tiny hand-drawn city (broken on purpose) and on the demo city.

The tiny city is drawn in metres near Yiwu, mapped linearly onto EPSG:4490 lon/lat::

    y=400 +--------------------+--------------------+
          |  330782001001002   |  330782002001002   |
    y=200 +--------------------+--------------------+
          |  330782001001001   |  330782002001001   |
    y=0   +--------------------+--------------------+
         x=0                 x=200                x=400

one city, two streets (left, right), one community per street, two grids per community.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import geopandas as gpd
import pytest
import shapely
from shapely import affinity
from shapely.geometry import Polygon, box, shape
from sqlalchemy import Connection, text

from gis.transform import transformer
from grids import store
from grids.errors import RegionNotFound
from grids.topology import KINDS, Violation, check, summary

# The drawing is in metres, mapped linearly onto lon/lat near Yiwu so that straight edges stay
# straight in EPSG:4490 and a vertex on a parent's edge lies exactly on it (a true projection
# would bend long edges by millimetres, enough to join or split slivers).
LON0, LAT0 = 120.07, 29.29


def _metres_per_degree() -> tuple[float, float]:
    """Metres per degree of lon and of lat at (LON0, LAT0), measured in EPSG:4549."""
    fwd = transformer("EPSG:4490", "EPSG:4549")
    x0, y0 = fwd.transform(LON0, LAT0)
    x1, y1 = fwd.transform(LON0 + 0.01, LAT0)
    x2, y2 = fwd.transform(LON0, LAT0 + 0.01)
    return math.hypot(x1 - x0, y1 - y0) / 0.01, math.hypot(x2 - x0, y2 - y0) / 0.01


M_PER_DEG_LON, M_PER_DEG_LAT = _metres_per_degree()
SINCE = datetime(2024, 1, 1, tzinfo=UTC)

CITY, S1, S2 = "330782000000", "330782001000", "330782002000"
C1, C2 = "330782001001", "330782002001"
G11, G12, G21, G22 = "330782001001001", "330782001001002", "330782002001001", "330782002001002"

TINY: dict[str, tuple[str, str | None, tuple[float, float, float, float]]] = {
    CITY: ("city", None, (0, 0, 400, 400)),
    S1: ("street", CITY, (0, 0, 200, 400)),
    S2: ("street", CITY, (200, 0, 400, 400)),
    C1: ("community", S1, (0, 0, 200, 400)),
    C2: ("community", S2, (200, 0, 400, 400)),
    G11: ("grid", C1, (0, 0, 200, 200)),
    G12: ("grid", C1, (0, 200, 200, 400)),
    G21: ("grid", C2, (200, 0, 400, 200)),
    G22: ("grid", C2, (200, 200, 400, 400)),
}


def lonlat(geom: shapely.Geometry) -> shapely.Geometry:
    """Metres of the drawing → EPSG:4490 lon/lat."""
    return affinity.affine_transform(
        geom, [1 / M_PER_DEG_LON, 0, 0, 1 / M_PER_DEG_LAT, LON0, LAT0])


def metres(lon: float, lat: float) -> tuple[float, float]:
    """EPSG:4490 lon/lat → metres of the drawing."""
    return (lon - LON0) * M_PER_DEG_LON, (lat - LAT0) * M_PER_DEG_LAT


def load(conn: Connection, *, change: dict[str, tuple[float, float, float, float]] | None = None,
         drop: tuple[str, ...] = ()) -> None:
    """Insert the tiny city through grids.store, with some rectangles changed or left out."""
    change = change or {}
    rows = [
        {"code": code, "name": f"r{code}", "level": level, "parent_code": parent,
         "geometry": lonlat(box(*change.get(code, rect)))}
        for code, (level, parent, rect) in TINY.items() if code not in drop
    ]
    version = store.new_version(conn, label="tiny city")
    store.insert_regions(conn, gpd.GeoDataFrame(rows, crs="EPSG:4490"), version_id=version,
                         valid_from=SINCE)


def only(violations: list[Violation], kind: str) -> list[Violation]:
    return [v for v in violations if v.kind == kind]


def assert_located(v: Violation, x: tuple[float, float], y: tuple[float, float]) -> None:
    """The violation's point lies in the expected box of the drawing, and so does its area."""
    assert v.location is not None
    px, py = metres(*v.location)
    assert x[0] < px < x[1] and y[0] < py < y[1], (px, py)
    assert v.message.endswith(".") and v.code in v.message
    if v.geometry is not None:
        g = shape(v.geometry)
        cx, cy = metres(g.centroid.x, g.centroid.y)
        assert x[0] < cx < x[1] and y[0] < cy < y[1]


def test_clean_tiling_reports_nothing(empty_conn: Connection) -> None:
    load(empty_conn)
    assert check(empty_conn) == []
    assert summary(check(empty_conn)) == dict.fromkeys(KINDS, 0)


def test_overlapping_siblings(empty_conn: Connection) -> None:
    load(empty_conn, change={G12: (0, 190, 200, 400)})  # 10 m into G11 over 200 m
    found = check(empty_conn)
    assert [v.kind for v in found] == ["overlap"]
    v = found[0]
    assert (v.code, v.other_code, v.parent_code) == (G11, G12, C1)
    assert v.area_m2 == pytest.approx(2000.0, abs=0.5)
    assert_located(v, (0, 200), (190, 200))
    assert "overlap by 2000.0 m²" in v.message


def test_each_gap_piece_is_reported(empty_conn: Connection) -> None:
    # two uncovered strips in community C1: y 190..200 and y 390..400
    load(empty_conn, change={G11: (0, 0, 200, 190), G12: (0, 200, 200, 390)})
    gaps = only(check(empty_conn), "gap")
    assert len(gaps) == 2 and len(check(empty_conn)) == 2
    assert {(v.code, v.parent_code) for v in gaps} == {(C1, C1)}
    for v in gaps:
        assert v.area_m2 == pytest.approx(2000.0, abs=0.5)
    low, high = sorted(gaps, key=lambda v: v.location[1])
    assert_located(low, (0, 200), (190, 200))
    assert_located(high, (0, 200), (390, 400))


def test_grid_less_community_is_a_gap(empty_conn: Connection) -> None:
    load(empty_conn, drop=(G21, G22))
    found = check(empty_conn)
    assert [(v.kind, v.code) for v in found] == [("gap", C2)]
    assert found[0].area_m2 == pytest.approx(80_000.0, abs=5)
    assert "has no grids" in found[0].message
    assert_located(found[0], (200, 400), (0, 400))


def test_child_outside_its_parent(empty_conn: Connection) -> None:
    # G12 reaches 10 m into the other community: outside its parent, but not a sibling overlap
    load(empty_conn, change={G12: (0, 200, 210, 400)})
    found = check(empty_conn)
    assert [(v.kind, v.code, v.parent_code) for v in found] == [("outside_parent", G12, C1)]
    assert found[0].area_m2 == pytest.approx(2000.0, abs=0.5)
    assert_located(found[0], (200, 210), (200, 400))


def test_tolerance_is_an_area_in_square_metres(empty_conn: Connection) -> None:
    load(empty_conn, change={G12: (0, 199.9975, 200, 400)})  # 200 m × 2.5 mm = 0.5 m²
    assert check(empty_conn) == []
    found = check(empty_conn, tolerance_m2=0.1)
    assert [v.kind for v in found] == ["overlap"]
    assert found[0].area_m2 == pytest.approx(0.5, abs=0.01)


def test_parent_not_in_force(empty_conn: Connection) -> None:
    load(empty_conn)
    empty_conn.execute(
        text("UPDATE region_boundary b SET valid_to = '2025-01-01' FROM region r "
             "WHERE r.id = b.region_id AND r.code = :code"), {"code": S2})
    found = check(empty_conn)
    assert [(v.kind, v.code) for v in found] == [("gap", CITY), ("missing_parent", C2)]
    assert found[1].parent_code == S2 and "no boundary in force" in found[1].message
    assert_located(found[0], (200, 400), (0, 400))
    # before the street was closed, all was well
    assert check(empty_conn, at=datetime(2024, 6, 1, tzinfo=UTC)) == []


def test_level_mismatch(empty_conn: Connection) -> None:
    load(empty_conn)
    # The write trigger refuses a grid under a street; data that bypassed it is what the
    # check is for. DDL is transactional: the trigger is back when the test rolls back.
    empty_conn.execute(text("ALTER TABLE region_boundary DISABLE TRIGGER "
                            "region_boundary_before_write"))
    empty_conn.execute(
        text("UPDATE region_boundary b SET parent_id = (SELECT id FROM region WHERE code = :s) "
             "FROM region r WHERE r.id = b.region_id AND r.code = :g"), {"s": S1, "g": G11})
    empty_conn.execute(text("ALTER TABLE region_boundary ENABLE TRIGGER "
                            "region_boundary_before_write"))
    found = check(empty_conn)
    mismatch = only(found, "level_mismatch")
    assert [(v.code, v.parent_code) for v in mismatch] == [(G11, S1)]
    assert "a grid belongs to a community" in mismatch[0].message
    # G11 left its community, a gap there; under S1 it now overlaps its new "sibling" C1
    assert [(v.kind, v.code) for v in only(found, "gap")] == [("gap", C1)]
    assert [{v.code, v.other_code} for v in only(found, "overlap")] == [{C1, G11}]
    assert len(found) == 3


def test_invalid_geometry_is_located_and_does_not_stop_the_other_checks(
    empty_conn: Connection,
) -> None:
    load(empty_conn)
    # The table's CHECK (ST_IsValid) keeps invalid rings out; drop it inside this rolled-back
    # transaction to stand for data that bypassed it (a restored dump, say).
    empty_conn.execute(text("ALTER TABLE region_boundary DROP CONSTRAINT "
                            "region_boundary_valid_geom"))
    bowtie = lonlat(Polygon([(0, 0), (200, 200), (200, 0), (0, 200)]))  # crosses at (100, 100)
    empty_conn.execute(
        text("UPDATE region_boundary b SET geom = ST_Multi(ST_GeomFromText(:wkt, 4490)) "
             "FROM region r WHERE r.id = b.region_id AND r.code = :g"),
        {"wkt": bowtie.wkt, "g": G11})
    found = check(empty_conn)
    invalid = only(found, "invalid_geometry")
    assert [(v.code, v.parent_code) for v in invalid] == [(G11, C1)]
    x, y = metres(*invalid[0].location)
    assert abs(x - 100) < 0.01 and abs(y - 100) < 0.01
    assert "Self-intersection" in invalid[0].message
    # the repaired bowtie covers half its square: the rest is reported as a gap
    gap_area = sum(v.area_m2 for v in only(found, "gap"))
    assert gap_area == pytest.approx(20_000.0, abs=5)


def test_root_code_limits_the_check(empty_conn: Connection) -> None:
    load(empty_conn, change={G12: (0, 190, 200, 400)}, drop=(G21, G22))
    assert summary(check(empty_conn)) == {**dict.fromkeys(KINDS, 0), "overlap": 1, "gap": 1}
    assert [(v.kind, v.code) for v in check(empty_conn, root_code="330782002")] == [
        ("gap", C2)]
    assert [v.kind for v in check(empty_conn, root_code=C1)] == ["overlap"]
    with pytest.raises(RegionNotFound):
        check(empty_conn, root_code="330782009")


def test_demo_city_tiles_exactly(conn: Connection) -> None:
    started = time.perf_counter()
    found = check(conn)
    elapsed = time.perf_counter() - started
    counts = conn.execute(text("SELECT count(*) FROM region_current")).scalar_one()
    assert counts > 3000
    assert found == [], [v.message for v in found[:10]]
    assert elapsed < 60, f"check took {elapsed:.1f} s"
