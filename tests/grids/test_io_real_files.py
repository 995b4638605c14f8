"""Region files and rosters as new users bring them: each written here by a real writer (GDAL via
pyogrio, openpyxl) the way the offending file was, then imported into a real PostGIS.

- a GeometryCollection (a polygon with a stray line) keeps its polygon, and says what it dropped;
- Web Mercator or Gauss-Krüger metres in a file that declares no CRS (or degrees) are refused with
  the likely CRS named, never a PROJ or PostGIS traceback;
- a whole file with lat/lon swapped is refused as swapped;
- a GBK Shapefile without .cpg is read as GBK; text that no encoding decodes is refused;
- an empty file is said to be empty;
- a roster with many problems reports all of them (rows and registry) in one go, up to 100.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from openpyxl import Workbook
from shapely.geometry import GeometryCollection, LineString, Point, box
from sqlalchemy import Connection

from gis.transform import transformer
from grids.errors import ImportRejected
from grids.io import MAX_PROBLEMS, import_regions, load_roster, read_regions, read_roster
from tests.grids.test_io import (
    G11,
    G12,
    GOOD_ROWS,
    HEADER,
    TINY,
    counts,
    lonlat,
    preload,
    rejected,
    tiny,
    write_csv,
)


def _reproject(frame: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    fwd = transformer("EPSG:4490", crs)
    out = frame.copy()
    out["geometry"] = shapely.transform(
        frame.geometry.values, lambda xy: np.column_stack(
            fwd.transform(xy[:, 0], xy[:, 1])))
    return out


def _problem(error: ImportRejected, field: str) -> dict:
    found = [e for e in error.detail["errors"] if e["field"] == field]
    assert found, error.detail
    return found[0]


# --------------------------------------------------------------------------------------------
# GeometryCollection
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg"])
def test_geometry_collection_keeps_its_polygon_and_says_what_was_dropped(
    empty_conn: Connection, tmp_path: Path, suffix: str
) -> None:
    stray = GeometryCollection([box(0, 200, 200, 400), LineString([(10, 210), (50, 390)]),
                                Point(5, 5)])
    path = tmp_path / f"borough{suffix}"
    tiny(change={G12: stray}).to_file(path)
    frame = read_regions(path)
    got = frame.set_index("code").geometry[G12]
    assert got.geom_type == "Polygon"
    assert shapely.equals(got, lonlat(box(0, 200, 200, 400)))
    [warning] = frame.attrs["warnings"]
    assert warning["code"] == G12 and warning["field"] == "geometry"
    assert "1 LineString" in warning["reason"] and "1 Point" in warning["reason"]
    result = import_regions(empty_conn, frame, label="borough")
    assert result["regions"] == len(TINY) and result["warnings"] == [warning]


def test_geometry_collection_without_a_polygon_is_still_refused(tmp_path: Path) -> None:
    only_lines = GeometryCollection([LineString([(0, 200), (200, 400)])])
    path = tmp_path / "lines.geojson"
    tiny(change={G12: only_lines}).to_file(path)
    with pytest.raises(ImportRejected) as info:
        read_regions(path)
    assert "not a polygon: GeometryCollection" in _problem(info.value, "geometry")["reason"]


# --------------------------------------------------------------------------------------------
# Metres where degrees were expected; swapped axes
# --------------------------------------------------------------------------------------------


def test_web_mercator_metres_in_a_geojson_without_crs_name_the_crs(
    empty_conn: Connection, tmp_path: Path
) -> None:
    # GDAL reads a GeoJSON without a "crs" member as WGS84 degrees
    path = tmp_path / "mercator.geojson"
    _reproject(tiny(), "EPSG:3857").set_crs(None, allow_override=True).to_file(path)
    error = rejected(empty_conn, lambda: import_regions(empty_conn, read_regions(path),
                                                       label="mercator"))
    problem = _problem(error, "crs")
    assert problem["problem"] == "projected"
    assert problem["candidates"][0]["crs"] == "EPSG:3857"
    assert abs(problem["candidates"][0]["lon"] - 120.07) < 0.01
    assert "projected metres" in problem["reason"] and "EPSG:3857" in error.message
    # said once, as a whole-file problem: no avalanche of per-feature geometry errors
    assert [e["field"] for e in error.detail["errors"]] == ["crs"]
    # the same file with the CRS named imports
    frame = read_regions(path, crs="EPSG:3857")
    assert import_regions(empty_conn, frame, label="mercator")["regions"] == len(TINY)


@pytest.mark.parametrize("crs, named", [
    ("EPSG:4528", "EPSG:4528"),  # CGCS2000 3° zone 40, zone number in front of the easting
    ("EPSG:4549", "EPSG:4549"),  # CGCS2000 3° CM 120E, the city's zone, no zone number
])
def test_gauss_kruger_metres_without_prj_name_the_zone(tmp_path: Path, crs: str,
                                                       named: str) -> None:
    path = tmp_path / "gk.shp"
    with pytest.warns(UserWarning, match="crs"):
        _reproject(tiny(), crs).set_crs(None, allow_override=True).to_file(path)
    city = "EPSG:4549"  # the metric CRS of the test city's profile, passed as the CLI does
    with pytest.raises(ImportRejected) as info:
        read_regions(path, metric=city)
    reason = _problem(info.value, "crs")["reason"]
    assert "declares no CRS" in reason and named in reason
    # declared as degrees by mistake: the same guess
    with pytest.raises(ImportRejected) as info:
        read_regions(path, crs="EPSG:4490", metric=city)
    assert _problem(info.value, "crs")["candidates"][0]["crs"] == named


def test_degrees_read_as_a_projected_crs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "degrees.geojson"
    tiny().to_file(path)
    with pytest.raises(ImportRejected) as info:
        read_regions(path, crs="EPSG:4549")
    assert _problem(info.value, "crs")["problem"] == "degrees"


@pytest.mark.parametrize("where", [(120.07, 29.29), (75.99, 39.47)])  # Yiwu; Kashgar (in range)
def test_a_whole_file_with_lat_lon_swapped_is_refused(
    empty_conn: Connection, tmp_path: Path, where: tuple[float, float]
) -> None:
    frame = tiny()
    lon0, lat0 = where
    frame["geometry"] = shapely.transform(
        frame.geometry.values,
        lambda xy: np.column_stack([xy[:, 1] - 29.29 + lat0,
                                                     xy[:, 0] - 120.07 + lon0]))
    path = tmp_path / "swapped.geojson"
    frame.to_file(path)
    error = rejected(empty_conn, lambda: import_regions(empty_conn, read_regions(path),
                                                       label="swapped"))
    problem = _problem(error, "crs")
    assert problem["problem"] == "swapped" and "swapped" in problem["reason"]
    assert counts(empty_conn)["region"] == 0  # no second city in Antarctica


# --------------------------------------------------------------------------------------------
# Shapefile text encoding
# --------------------------------------------------------------------------------------------


def _shapefile(frame: gpd.GeoDataFrame, path: Path, encoding: str) -> Path:
    """A Shapefile as many Chinese desktop tools leave it: text in ``encoding``, no .cpg, and
    no language driver id in the .dbf header (so GDAL has no hint)."""
    frame.to_file(path, encoding=encoding)
    path.with_suffix(".cpg").unlink(missing_ok=True)
    dbf = path.with_suffix(".dbf")
    data = bytearray(dbf.read_bytes())
    data[29] = 0  # LDID
    dbf.write_bytes(bytes(data))
    return path


def test_gbk_shapefile_without_cpg_keeps_its_chinese_names(
    empty_conn: Connection, tmp_path: Path
) -> None:
    want = tiny()
    want["name"] = [f"稠城街道第{i}网格" for i in range(len(want))]
    path = _shapefile(want, tmp_path / "gbk.shp", "GBK")
    raw = path.with_suffix(".dbf").read_bytes()
    assert "稠城街道".encode("gbk") in raw and "稠城街道".encode() not in raw
    frame = read_regions(path, parent_field="parent_cod")
    assert frame["name"].tolist() == want["name"].tolist()
    assert frame.attrs["encoding"] == "GB18030"
    import_regions(empty_conn, frame, label="gbk")
    # UTF-8 without .cpg reads as UTF-8
    utf8 = _shapefile(want, tmp_path / "utf8.shp", "UTF-8")
    assert read_regions(utf8)["name"].tolist() == want["name"].tolist()


def test_text_no_encoding_decodes_is_refused_unless_named(tmp_path: Path) -> None:
    frame = tiny()
    frame["name"] = ["Café"] * len(frame)  # cp1252: 'é' is 0xE9, a GBK lead byte with no trail
    path = _shapefile(frame, tmp_path / "latin.shp", "cp1252")
    with pytest.raises(ImportRejected) as info:
        read_regions(path)
    assert "neither UTF-8 nor GBK" in _problem(info.value, "encoding")["reason"]
    assert read_regions(path, encoding="cp1252")["name"].tolist() == ["Café"] * len(frame)


# --------------------------------------------------------------------------------------------
# Empty files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["regions.geojson", "regions.gpkg", "regions.shp"])
def test_an_empty_region_file_is_said_to_be_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ImportRejected) as info:
        read_regions(path)
    assert info.value.code == "empty_file" and "empty" in info.value.message
    assert "not recognized" not in str(info.value.detail)


@pytest.mark.parametrize("name", ["roster.csv", "roster.xlsx"])
def test_an_empty_roster_is_said_to_be_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ImportRejected) as info:
        read_roster(path)
    assert info.value.code == "empty_file"


# --------------------------------------------------------------------------------------------
# Rosters: every problem at once
# --------------------------------------------------------------------------------------------


def test_a_roster_reports_every_problem_rows_and_registry_in_one_go(
    empty_conn: Connection, tmp_path: Path
) -> None:
    preload(empty_conn, tiny())
    rows = [list(r) for r in GOOD_ROWS]
    rows[0][HEADER.index("phone")] = "1380000000"             # row 2: phone
    rows[2][HEADER.index("role")] = "boss"                    # row 4: role
    rows += [["W009", "赵九", "13800000009", "full_time", "", "330782009009001", "primary"],
             ["W010", "", "13800000010", "full_time", "asleep", G11, "watch"]]
    path = write_csv(tmp_path / "roster.csv", rows)
    error = rejected(empty_conn, lambda: load_roster(empty_conn, path))
    got = [(e["row"], e["field"]) for e in error.detail["errors"]]
    assert got == [(2, "phone"), (4, "role"), (6, "region_code"), (7, "name"), (7, "status"),
                   (7, "duty")]
    assert "no region 330782009009001 is in force" in error.detail["errors"][2]["reason"]
    assert error.detail["total"] == 6 and error.detail["truncated"] is False
    assert "and 5 more problems" in error.message
    assert counts(empty_conn)["staff"] == 0


def test_a_roster_with_hundreds_of_problems_lists_the_first_hundred(
    empty_conn: Connection, tmp_path: Path
) -> None:
    preload(empty_conn, tiny())
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for i in range(150):
        sheet.append([f"W{i:03d}", f"员工{i}", 1380000000 + i, "full_time", "", G11, "primary"])
    path = tmp_path / "roster.xlsx"
    book.save(path)
    error = rejected(empty_conn, lambda: load_roster(empty_conn, path))
    assert len(error.detail["errors"]) == MAX_PROBLEMS == 100
    assert error.detail["total"] == 150 and error.detail["truncated"] is True
    assert [e["row"] for e in error.detail["errors"][:3]] == [2, 3, 4]


def test_load_roster_imports_a_good_file(empty_conn: Connection, tmp_path: Path) -> None:
    preload(empty_conn, tiny())
    path = write_csv(tmp_path / "roster.csv", GOOD_ROWS)
    assert load_roster(empty_conn, path) == {"staff": 3, "assignments": 3, "unchanged": 0}
    assert load_roster(empty_conn, path)["unchanged"] == 3


def test_a_csv_roster_in_no_known_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\nW001,Caf\xe9,13800000001,full_time,,,\n")
    with pytest.raises(ImportRejected) as info:
        read_roster(path)
    assert "neither UTF-8 nor GBK" in _problem(info.value, "encoding")["reason"]
