"""Region files and rosters: real files written at test time, imported into a real PostGIS.

Region files use the tiny city of ``test_topology`` (one city, two streets, two communities,
four grids, drawn in metres and mapped linearly onto lon/lat near Yiwu); the round trip uses
the demo city.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from openpyxl import Workbook
from shapely import affinity
from shapely.geometry import LineString, Polygon, box
from sqlalchemy import Connection, text

from gis.transform import transformer, wgs84_to_bd09, wgs84_to_gcj02
from grids import registry, store, topology
from grids.access import Principal
from grids.errors import GridError, ImportRejected
from grids.io import (
    EXPORT_COLUMNS,
    REGION_COLUMNS,
    export_regions,
    import_regions,
    import_roster,
    read_regions,
    read_roster,
)

LON0, LAT0 = 120.07, 29.29
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
TABLES = ("boundary_version", "region", "region_boundary", "staff", "assignment")


def _metres_per_degree() -> tuple[float, float]:
    fwd = transformer("EPSG:4490", "EPSG:4549")
    x0, y0 = fwd.transform(LON0, LAT0)
    x1, y1 = fwd.transform(LON0 + 0.01, LAT0)
    x2, y2 = fwd.transform(LON0, LAT0 + 0.01)
    return math.hypot(x1 - x0, y1 - y0) / 0.01, math.hypot(x2 - x0, y2 - y0) / 0.01


M_PER_DEG_LON, M_PER_DEG_LAT = _metres_per_degree()


def lonlat(geom: shapely.Geometry) -> shapely.Geometry:
    """Metres of the drawing → EPSG:4490 (linear, so straight edges stay straight)."""
    return affinity.affine_transform(
        geom, [1 / M_PER_DEG_LON, 0, 0, 1 / M_PER_DEG_LAT, LON0, LAT0])


def in_metres(geoms: Any) -> Any:
    """EPSG:4490 → EPSG:4549, for distances in metres."""
    fwd = transformer("EPSG:4490", "EPSG:4549")
    return shapely.transform(geoms, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))


def tiny(*levels: str, change: dict[str, Any] | None = None,
         crs: str | None = "EPSG:4490") -> gpd.GeoDataFrame:
    """The tiny city (or some levels of it) with some geometries replaced."""
    change = change or {}
    rows = []
    for code, (level, parent, rect) in TINY.items():
        if levels and level not in levels:
            continue
        geom = change.get(code, box(*rect))
        rows.append({"code": code, "name": f"区域{code[-3:]}", "level": level,
                     "parent_code": parent,
                     "geometry": lonlat(geom) if geom is not None else None})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)


def preload(conn: Connection, frame: gpd.GeoDataFrame) -> None:
    """Put regions in force since 2024 straight through grids.store (no import checks)."""
    version = store.new_version(conn, label="preloaded")
    store.insert_regions(conn, frame, version_id=version, valid_from=SINCE)


def counts(conn: Connection) -> dict[str, int]:
    return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def rejected(conn: Connection, action: Callable[[], Any]) -> ImportRejected:
    """Run a failing unit of work in a savepoint; check it raised and wrote nothing."""
    before = counts(conn)
    with pytest.raises(ImportRejected) as info, conn.begin_nested():
        action()
    assert counts(conn) == before
    assert info.value.detail["errors"], "the rejection lists its problems"
    return info.value


def current(conn: Connection, *, level: str | None = None) -> gpd.GeoDataFrame:
    rows = conn.execute(
        text("SELECT code, level, parent_code, ST_AsBinary(geom) AS wkb FROM region_current "
             "WHERE CAST(:level AS text) IS NULL OR level = :level ORDER BY code"),
        {"level": level},
    ).all()
    return gpd.GeoDataFrame(
        {"code": [r.code for r in rows], "level": [r.level for r in rows],
         "parent_code": [r.parent_code for r in rows]},
        geometry=shapely.from_wkb([bytes(r.wkb) for r in rows]), crs="EPSG:4490",
    )


# --------------------------------------------------------------------------------------------
# Reading and importing region files
# --------------------------------------------------------------------------------------------


def test_geojson_all_levels(empty_conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "tiny.geojson"
    tiny().to_file(path, driver="GeoJSON")
    frame = read_regions(path)
    assert list(frame.columns) == REGION_COLUMNS
    assert frame.crs.to_epsg() == 4490 and frame.attrs["source_crs"] == "EPSG:4490"
    assert frame.loc[frame.code == G11, "parent_code"].item() == C1
    assert frame.loc[frame.code == CITY, "parent_code"].item() is None
    calls: list[tuple[int, int]] = []
    result = import_regions(empty_conn, frame, label="tiny", source="test",
                            progress=lambda done, total: calls.append((done, total)))
    assert result["regions"] == 9 and result["replaced"] == 0
    assert result["by_level"] == {"city": 1, "street": 2, "community": 2, "grid": 4}
    assert calls == [(9, 9)]
    stored = current(empty_conn)
    assert stored["code"].tolist() == sorted(TINY)
    assert shapely.equals_exact(stored.set_index("code").geometry[G22],
                                shapely.MultiPolygon([tiny().set_index("code").geometry[G22]]),
                                tolerance=0)
    assert topology.check(empty_conn) == []


def test_geopackage_layers_in_a_projected_crs(empty_conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "tiny.gpkg"
    truth = tiny()
    upper = truth[truth.level != "grid"]
    upper.to_crs("EPSG:4549").to_file(path, layer="upper", driver="GPKG")
    truth[truth.level == "grid"].to_crs("EPSG:4549").to_file(path, layer="grids", driver="GPKG")

    frame = read_regions(path, layer="upper")
    assert frame.attrs["source_crs"] == "EPSG:4549"
    assert frame["code"].tolist() == upper["code"].tolist()
    dist = shapely.hausdorff_distance(in_metres(frame.geometry.values),
                                      in_metres(upper.geometry.values))
    assert dist.max() < 0.001
    import_regions(empty_conn, frame, label="upper levels")
    grids = read_regions(path, layer="grids")
    assert import_regions(empty_conn, grids, label="grids")["regions"] == 4
    assert len(current(empty_conn)) == 9


def test_shapefile_field_names_cut_to_ten_characters(
    empty_conn: Connection, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Column names longer than 10 characters ..."
        tiny().to_file(path)
    assert "parent_cod" in pyogrio.read_info(path)["fields"]
    frame = read_regions(path)
    assert frame.loc[frame.code == G21, "parent_code"].item() == C2
    assert frame.loc[frame.code == G21, "name"].item() == "区域001"
    assert import_regions(empty_conn, frame, label="from shapefile")["regions"] == 9


def test_level_given_derives_parents_from_codes(empty_conn: Connection, tmp_path: Path) -> None:
    preload(empty_conn, tiny("city"))
    streets = tiny("street")[["code", "name", "geometry"]]
    streets["code"] = [c[:9] for c in streets["code"]]  # the short form people type
    path = tmp_path / "streets.geojson"
    streets.to_file(path, driver="GeoJSON")
    frame = read_regions(path, level="street")
    assert frame["code"].tolist() == [S1, S2]
    assert frame["parent_code"].tolist() == [CITY, CITY]
    import_regions(empty_conn, frame, label="streets")

    grids = tiny("community", "grid")[["code", "name", "level", "geometry"]]
    path = tmp_path / "lower.geojson"
    grids.to_file(path, driver="GeoJSON")
    frame = read_regions(path)  # a level column but no parent column: parents from the codes
    assert dict(zip(frame.code, frame.parent_code, strict=True)) == {
        C1: S1, C2: S2, G11: C1, G12: C1, G21: C2, G22: C2}
    import_regions(empty_conn, frame, label="lower")
    assert topology.check(empty_conn) == []


@pytest.mark.parametrize(("name", "forward"), [("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)])
def test_chinese_map_coordinates_land_on_the_truth(
    empty_conn: Connection, tmp_path: Path, name: str, forward: Callable[..., Any]
) -> None:
    truth = lonlat(Polygon([(0, 0), (400, -30), (520, 260), (180, 430), (-60, 250)]))
    shifted = shapely.transform(truth, lambda xy: np.column_stack(forward(xy[:, 0], xy[:, 1])))
    path = tmp_path / f"{name}.geojson"
    gpd.GeoDataFrame({"code": [CITY], "name": ["义乌市"], "level": ["city"],
                      "parent_code": [None]}, geometry=[shifted], crs="EPSG:4326").to_file(path)

    as_declared = read_regions(path)  # taken at its word (WGS84), it lies hundreds of metres off
    assert shapely.hausdorff_distance(in_metres(as_declared.geometry[0]), in_metres(truth)) > 300

    frame = read_regions(path, crs=name)
    assert frame.attrs["source_crs"] == {"gcj02": "GCJ-02", "bd09": "BD-09"}[name]
    import_regions(empty_conn, frame, label=f"{name} outline")
    stored = current(empty_conn).geometry[0]
    assert shapely.hausdorff_distance(in_metres(stored), in_metres(truth)) < 0.5


def test_replace_supersedes_and_keeps_history(empty_conn: Connection, tmp_path: Path) -> None:
    preload(empty_conn, tiny())
    moved = tiny("grid", change={G11: box(0, 0, 200, 250), G12: box(0, 250, 200, 400)})
    moved = moved[moved.code.isin([G11, G12])]
    path = tmp_path / "moved.gpkg"
    moved.to_file(path, driver="GPKG")
    result = import_regions(empty_conn, read_regions(path), label="redraw", replace=True)
    assert result["replaced"] == 2
    history = empty_conn.execute(
        text("SELECT count(*), count(b.valid_to) FROM region_boundary b JOIN region r "
             "ON r.id = b.region_id WHERE r.code = :code"), {"code": G11}).one()
    assert tuple(history) == (2, 1)
    area = empty_conn.execute(text("SELECT area_m2 FROM region_current WHERE code = :c"),
                              {"c": G11}).scalar_one()
    assert area == pytest.approx(200 * 250, rel=1e-3)
    assert topology.check(empty_conn) == []
    assert topology.check(empty_conn, at=datetime(2024, 6, 1, tzinfo=UTC)) == []


# --------------------------------------------------------------------------------------------
# Bad region files: each problem named, nothing written
# --------------------------------------------------------------------------------------------

BOWTIE = Polygon([(0, 0), (200, 200), (200, 0), (0, 200)])  # crosses itself at (100, 100)


def _write(frame: gpd.GeoDataFrame, path: Path) -> Path:
    frame.to_file(path)
    return path


def _case_missing_field(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny().drop(columns=["name"]), tmp / "f.geojson")
    return lambda: read_regions(path)


def _case_unknown_crs(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(), tmp / "f.geojson")
    return lambda: read_regions(path, crs="mars")


def _case_no_crs(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(crs=None).rename(columns={"parent_code": "parent"}), tmp / "f.shp")
    return lambda: read_regions(path, parent_field="parent")


def _case_invalid_polygon(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(change={G12: BOWTIE}), tmp / "f.geojson")
    return lambda: read_regions(path)


def _case_not_a_polygon(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(change={G12: LineString([(0, 200), (200, 400)])}), tmp / "f.gpkg")
    return lambda: read_regions(path)


def _case_empty_geometry(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(change={G12: None}), tmp / "f.gpkg")
    return lambda: read_regions(path)


def _case_duplicate_code(conn: Connection, tmp: Path) -> Callable[[], Any]:
    frame = tiny()
    frame.loc[frame.code == G22, "code"] = G21
    path = _write(frame, tmp / "f.geojson")
    return lambda: read_regions(path)


def _case_code_not_matching_level(conn: Connection, tmp: Path) -> Callable[[], Any]:
    frame = tiny()
    frame.loc[frame.code == G12, "level"] = "community"
    path = _write(frame, tmp / "f.geojson")
    return lambda: read_regions(path)


def _case_unknown_layer(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(), tmp / "f.gpkg")
    return lambda: read_regions(path, layer="grids")


def _case_unknown_parent(conn: Connection, tmp: Path) -> Callable[[], Any]:
    preload(conn, tiny("city", "street"))  # the communities are missing
    path = _write(tiny("grid"), tmp / "f.geojson")
    return lambda: import_regions(conn, read_regions(path), label="grids")


def _case_outside_parent_in_file(conn: Connection, tmp: Path) -> Callable[[], Any]:
    path = _write(tiny(change={G12: box(0, 200, 210, 400)}), tmp / "f.geojson")
    return lambda: read_regions(path)


def _case_outside_parent_in_database(conn: Connection, tmp: Path) -> Callable[[], Any]:
    preload(conn, tiny("city", "street", "community"))
    path = _write(tiny("grid", change={G12: box(0, 200, 210, 400)}), tmp / "f.geojson")
    return lambda: import_regions(conn, read_regions(path), label="grids")


def _case_already_in_force(conn: Connection, tmp: Path) -> Callable[[], Any]:
    preload(conn, tiny())
    path = _write(tiny("grid"), tmp / "f.geojson")
    return lambda: import_regions(conn, read_regions(path), label="again")


POS = list(TINY).index  # position of a region in a file of the whole tiny city
REGION_CASES: dict[str, tuple[Callable[..., Any], int | None, str, str]] = {
    # case: (builder, feature, field, words of the reason)
    "missing_field": (_case_missing_field, None, "name",
                      "missing field 'name'; the file has: code, level, parent_code"),
    "unknown_layer": (_case_unknown_layer, None, "layer", "grids"),
    "unknown_crs": (_case_unknown_crs, None, "crs", "'mars'"),
    "no_crs": (_case_no_crs, None, "crs", "declares no CRS"),
    "invalid_polygon": (_case_invalid_polygon, POS(G12), "geometry",
                        "Self-intersection at (120.07"),
    "not_a_polygon": (_case_not_a_polygon, POS(G12), "geometry",
                      "not a polygon: LineString"),
    "empty_geometry": (_case_empty_geometry, POS(G12), "geometry", "empty geometry"),
    "duplicate_code": (_case_duplicate_code, POS(G22), "code",
                       f"duplicate code: also feature {POS(G21)}"),
    "code_not_matching_level": (_case_code_not_matching_level, POS(G12), "code",
                                "is a grid code, not a community code"),
    "unknown_parent": (_case_unknown_parent, 0, "parent_code",
                       f"parent {C1} is neither in the file nor in force"),
    "outside_parent_in_file": (_case_outside_parent_in_file, POS(G12), "geometry",
                               f"lie outside its parent {C1}"),
    "outside_parent_in_database": (_case_outside_parent_in_database, 1, "geometry",
                                   f"lie outside its parent {C1}"),
    "already_in_force": (_case_already_in_force, 0, "code", "already has a boundary in force"),
}


@pytest.mark.parametrize("case", list(REGION_CASES))
def test_bad_region_file_is_rejected_whole(
    empty_conn: Connection, tmp_path: Path, case: str
) -> None:
    build, feature, field, words = REGION_CASES[case]
    action = build(empty_conn, tmp_path)
    error = rejected(empty_conn, action)
    problems = error.detail["errors"]
    match = [p for p in problems if p["feature"] == feature and p["field"] == field]
    assert match, problems
    assert words in match[0]["reason"]
    if feature is not None:
        assert f"feature {feature}" in error.message or len(problems) > 1
        assert match[0]["code"] is not None


def test_located_problems_carry_the_place(empty_conn: Connection, tmp_path: Path) -> None:
    path = _write(tiny(change={G12: BOWTIE}), tmp_path / "f.geojson")
    with pytest.raises(ImportRejected) as info:
        read_regions(path)
    [problem] = info.value.detail["errors"]
    lon, lat = problem["location"]
    assert abs((lon - LON0) * M_PER_DEG_LON - 100) < 0.01
    assert abs((lat - LAT0) * M_PER_DEG_LAT - 100) < 0.01


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    frame = tiny(change={G11: BOWTIE, G21: LineString([(200, 0), (400, 200)])})
    frame.loc[frame.code == G22, "code"] = "33078200200100X"
    frame.loc[frame.code == C2, "level"] = "grid"
    path = _write(frame, tmp_path / "f.geojson")
    with pytest.raises(ImportRejected) as info:
        read_regions(path)
    problems = info.value.detail["errors"]
    assert [(p["feature"], p["field"]) for p in problems] == [
        (POS(C2), "code"),
        (POS(G11), "geometry"),
        (POS(G21), "geometry"),
        (POS(G22), "code"),
    ]
    assert "and 3 more problems" in info.value.message


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def test_export_geojson_declares_cgcs2000_at_full_precision(
    empty_conn: Connection, tmp_path: Path
) -> None:
    preload(empty_conn, tiny())
    path = tmp_path / "grids.geojson"
    assert export_regions(empty_conn, path, level="grid") == 4
    doc = json.loads(path.read_text())
    assert "4490" in doc["crs"]["properties"]["name"]
    assert list(doc["features"][0]["properties"]) == EXPORT_COLUMNS
    assert doc["features"][0]["geometry"]["type"] == "MultiPolygon"
    back = gpd.read_file(path)
    assert back.crs.to_epsg() == 4490
    stored = current(empty_conn, level="grid")
    assert back["code"].tolist() == stored["code"].tolist()
    assert shapely.equals_exact(back.geometry.values, stored.geometry.values,
                                tolerance=1e-12).all()
    assert back["area_m2"].iloc[0] == pytest.approx(40_000, rel=1e-3)

    assert export_regions(empty_conn, tmp_path / "c1.json", root_code=C1) == 3
    with pytest.raises(GridError, match="use .geojson, .json or .gpkg"):
        export_regions(empty_conn, tmp_path / "c1.kml")
    assert export_regions(empty_conn, path, at=datetime(2023, 1, 1, tzinfo=UTC)) == 0


def test_demo_city_round_trip_through_geopackage(
    conn: Connection, empty_conn: Connection, tmp_path: Path
) -> None:
    path = tmp_path / "yiwu.gpkg"
    n = export_regions(conn, path)
    source = current(conn)
    assert n == len(source) > 3000
    exported = gpd.read_file(path)
    assert list(exported.columns) == [*EXPORT_COLUMNS, "geometry"]
    assert exported.crs.to_epsg() == 4490

    calls: list[tuple[int, int]] = []
    frame = read_regions(path)
    result = import_regions(empty_conn, frame, label="copy of the demo city",
                            progress=lambda done, total: calls.append((done, total)))
    assert result["regions"] == n
    assert calls[-1] == (n, n) and len(calls) == math.ceil(n / 500)
    copy = current(empty_conn)
    assert copy["code"].tolist() == source["code"].tolist()
    assert copy["parent_code"].tolist() == source["parent_code"].tolist()
    dist = shapely.hausdorff_distance(in_metres(copy.geometry.values),
                                      in_metres(source.geometry.values))
    assert dist.max() < 0.01


# --------------------------------------------------------------------------------------------
# Rosters
# --------------------------------------------------------------------------------------------

HEADER = ["staff_code", "name", "phone", "role", "status", "region_code", "duty"]
GOOD_ROWS = [
    ["W001", "张三", "13800000001", "grid_chief", "available", G11, "primary"],
    ["W001", "张三", "13800000001", "grid_chief", "available", G12, "backup"],
    ["W002", "李四", "13800000002", "专职网格员", "", G12, "primary"],
    ["W003", "王五", "13800000003", "community_head", "on_leave", "", ""],
]


def write_csv(path: Path, rows: list[list[Any]], header: list[str] = HEADER) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_roster(empty_conn: Connection, tmp_path: Path) -> None:
    preload(empty_conn, tiny())
    staff, assignments = read_roster(write_csv(tmp_path / "roster.csv", GOOD_ROWS))
    assert staff["code"].tolist() == ["W001", "W002", "W003"]
    assert staff.set_index("code").loc["W002", ["role", "status"]].tolist() == [
        "full_time", "available"]
    assert assignments[["staff_code", "region_code", "duty", "row"]].values.tolist() == [
        ["W001", G11, "primary", 2], ["W001", G12, "backup", 3], ["W002", G12, "primary", 4]]
    assert import_roster(empty_conn, staff, assignments) == {
        "staff": 3, "assignments": 3, "unchanged": 0}
    on_duty = registry.region_staff(empty_conn, G12, principal=Principal.system())
    assert [(s["code"], s["duty"]) for s in on_duty] == [("W002", "primary"), ("W001", "backup")]
    # importing the same roster again changes nothing
    assert import_roster(empty_conn, staff, assignments)["unchanged"] == 3
    assert counts(empty_conn)["assignment"] == 3


def test_xlsx_roster_with_numbers_blank_rows_and_a_named_sheet(
    empty_conn: Connection, tmp_path: Path
) -> None:
    preload(empty_conn, tiny())
    book = Workbook()
    book.active.title = "说明"
    sheet = book.create_sheet("roster")
    sheet.append(HEADER)
    sheet.append(["W001", "张三", 13800000001, "网格长", "可工作", int(G11), "primary"])
    sheet.append([])
    sheet.append(["W004", "赵六", 13800000004, "part_time", "seconded", int(G21), "primary"])
    path = tmp_path / "roster.xlsx"
    book.save(path)
    staff, assignments = read_roster(path, sheet="roster")
    assert staff[["code", "phone", "role", "status"]].values.tolist() == [
        ["W001", "13800000001", "grid_chief", "available"],
        ["W004", "13800000004", "part_time", "seconded"]]
    assert assignments["row"].tolist() == [2, 4]
    assert import_roster(empty_conn, staff, assignments)["assignments"] == 2


def _bad(row: int, **change: str) -> list[list[Any]]:
    """GOOD_ROWS with the data row that the spreadsheet shows as ``row`` changed."""
    rows = [list(r) for r in GOOD_ROWS]
    for field, value in change.items():
        rows[row - 2][HEADER.index(field)] = value
    return rows


ROSTER_CASES: dict[str, tuple[list[list[Any]], int, str, str]] = {
    # case: (rows, spreadsheet row, field, words of the reason)
    "phone": (_bad(4, phone="1380000002"), 4, "phone", "not a mainland mobile number"),
    "role": (_bad(5, role="boss"), 5, "role", "unknown role 'boss'"),
    "status": (_bad(2, status="asleep"), 2, "status", "unknown status 'asleep'"),
    "duty": (_bad(3, duty="watch"), 3, "duty", "unknown duty 'watch'"),
    "duty_without_region": (_bad(5, duty="primary"), 5, "region_code",
                            "without a region_code"),
    "region_code_malformed": (_bad(2, region_code="33078"), 2, "region_code",
                              "6, 9, 12 or 15 digits"),
    "conflicting_staff_rows": (_bad(3, phone="13900000009"), 3, "phone",
                               "staff W001 is on row 2 with a different phone"),
    "repeated_assignment": (_bad(3, region_code=G11, duty="primary"), 3, "region_code",
                            "the same assignment is on row 2"),
    "unknown_region": (_bad(4, region_code="330782009009001"), 4, "region_code",
                       "no region 330782009009001 is in force"),
}


@pytest.mark.parametrize("case", list(ROSTER_CASES))
def test_bad_roster_is_rejected_whole(empty_conn: Connection, tmp_path: Path, case: str) -> None:
    preload(empty_conn, tiny())
    rows, row, field, words = ROSTER_CASES[case]
    path = write_csv(tmp_path / "roster.csv", rows)

    def unit_of_work() -> None:
        staff, assignments = read_roster(path)
        import_roster(empty_conn, staff, assignments)

    error = rejected(empty_conn, unit_of_work)
    [problem] = error.detail["errors"]
    assert (problem["row"], problem["field"]) == (row, field)
    assert words in problem["reason"]
    assert f"row {row}" in error.message


def test_roster_missing_column(empty_conn: Connection, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "roster.csv", [r[:2] + r[3:] for r in GOOD_ROWS],
                     header=[h for h in HEADER if h != "phone"])
    error = rejected(empty_conn, lambda: read_roster(path))
    [problem] = error.detail["errors"]
    assert (problem["row"], problem["field"]) == (1, "phone")
    assert "the header has: staff_code, name, role" in problem["reason"]


def test_failed_roster_import_leaves_staff_untouched(empty_conn: Connection,
                                                     tmp_path: Path) -> None:
    # staff are valid, one assignment is not: the whole roster is refused, staff included
    preload(empty_conn, tiny())
    staff, assignments = read_roster(write_csv(tmp_path / "r.csv",
                                               _bad(4, region_code="330782009009001")))
    rejected(empty_conn, lambda: import_roster(empty_conn, staff, assignments))
    assert counts(empty_conn)["staff"] == 0
