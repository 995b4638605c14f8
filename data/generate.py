"""Build a demo city: real names, codes and outline from ``data/sources``; generated geometry below.

The default city is 义乌市 (330782); ``--city`` picks another one whose extract is committed
(``data.divisions.CITIES``, e.g. 510131 蒲江县). The city's code and name come from its extract.

Usage::

    python -m data.generate --out out/yiwu                 # the demo city (~2,800 grids)
    python -m data.generate --city 510131 --out out/pj    # the second demo city
    python -m data.generate --grids 10000 --out out/big   # a synthetic city for benchmarks

writes ``regions.gpkg`` (layer ``regions``), ``staff.csv`` and ``assignments.csv``. Programs call
:func:`build_city` directly. The rules (sizes, codes, numbering, staff) are in ``data/README.md``.

Everything is deterministic for a given ``(grids, seed)``: each parent draws from its own
``numpy`` generator keyed by ``(seed, level, parent code)``, so results do not depend on the order
in which parents are processed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry

from data.divisions import (
    DEFAULT_CITY,
    Division,
    city_code,
    city_name,
    load_communities,
    load_outline_wgs84,
    load_streets,
)
from data.staff import build_roster
from data.tiling import Wiggle, partition, place_seeds, sample_points
from gis.crs import gk_zone_srid
from gis.transform import transformer

CRS = "EPSG:4490"  # CGCS2000 lon/lat: the output
# All geometry work is in metres, in the CGCS2000 3-degree Gauss-Krüger zone of the city's extent
# (gis.crs.gk_zone_srid: what the database measures areas in).

# Approximate seats of the towns/streets (lon, lat, WGS84). Town positions follow the real
# layout (佛堂 south, 赤岸 further south, 义亭 south-west, 上溪 west, 苏溪 north-east, 大陈 north);
# the eight urban streets cluster round the old centre 稠城. Voronoi cells of these seats inside
# the real outline give the eight streets about a third of the city's area.
STREET_SEATS: dict[str, tuple[float, float]] = {
    "330782001000": (120.075, 29.306),  # 稠城街道, old centre
    "330782002000": (120.105, 29.300),  # 江东街道, east bank of the Yiwu river
    "330782003000": (120.050, 29.270),  # 稠江街道, south-west
    "330782004000": (120.062, 29.338),  # 北苑街道, north
    "330782005000": (120.068, 29.365),  # 后宅街道, further north
    "330782006000": (120.013, 29.300),  # 城西街道, west
    "330782007000": (120.162, 29.342),  # 廿三里街道, east
    "330782008000": (120.105, 29.335),  # 福田街道, north-east (trade city)
    "330782100000": (120.030, 29.200),  # 佛堂镇, south
    "330782101000": (120.040, 29.110),  # 赤岸镇, far south
    "330782102000": (119.960, 29.245),  # 义亭镇, south-west
    "330782104000": (119.910, 29.320),  # 上溪镇, west
    "330782105000": (120.185, 29.400),  # 苏溪镇, north-east
    "330782106000": (120.130, 29.450),  # 大陈镇, north
}
CITY_CENTRE = (120.075, 29.306)
# Cities with hand-placed seats: code -> (street seats, old centre). Others get seats spread over
# their outline (see _auto_seats).
PLACED = {"330782": (STREET_SEATS, CITY_CENTRE)}

STREET_WIGGLE = Wiggle(amplitude=0.05, roughness=0.4, max_depth=6, min_segment=40.0)
COMMUNITY_WIGGLE = Wiggle(amplitude=0.035, roughness=0.4, max_depth=5, min_segment=8.0)
GRID_WIGGLE = Wiggle(amplitude=0.035, roughness=0.4, max_depth=5, min_segment=4.0)

# Grids per community before scaling: (mean, low, high) by kind of community.
GRIDS_URBAN = (11.5, 6, 14)  # 社区 (residents' committee)
GRIDS_VILLAGE_IN_STREET = (4.5, 2, 5)  # 村 inside a 街道: urbanised, many tenants
GRIDS_VILLAGE_IN_TOWN = (3.2, 1, 5)  # 村 in a 镇
MAX_GRIDS_PER_COMMUNITY = 999  # the 3-digit grid sequence
# Lloyd relaxation weights are density**DENSITY_POWER; cell area then goes roughly as
# density**(-DENSITY_POWER / 2) (centroidal Voronoi in the plane).
DENSITY_POWER = 1.5

_LEVEL_KEYS = {"street": 1, "community": 2, "grid": 3, "counts": 4, "staff": 5}


@dataclass(frozen=True)
class DemoCity:
    """The generated city.

    Attributes
    ----------
    regions
        GeoDataFrame in EPSG:4490 with ``code``, ``name``, ``level`` (``city``, ``street``,
        ``community``, ``grid``), ``parent_code`` (None for the city) and ``geometry``
        (always a MultiPolygon). Children tile their parent exactly.
    staff
        ``code``, ``name``, ``phone`` (fake), ``role``, ``status``.
    assignments
        ``staff_code``, ``region_code``, ``duty`` (``primary``, ``backup``, ``head``).
    """

    regions: gpd.GeoDataFrame
    staff: pd.DataFrame
    assignments: pd.DataFrame


def _rng(seed: int, level: str, code: str = "0", attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _LEVEL_KEYS[level], int(code), attempt])


def _project(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    t = transformer(src, dst)

    def apply(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)


def _project_xy(lonlat: NDArray[np.float64], work: str) -> NDArray[np.float64]:
    x, y = transformer(CRS, work).transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x, y])


def _auto_seats(city: BaseGeometry, streets: list[Division], seed: int
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Seats (metres) for a city without hand-placed ones, and its centre.

    The centre is the outline's representative point; seeds are spread over the outline; the
    urban streets (codes below 100, 街道) take the seeds nearest the centre, in code order, and
    the towns the rest, round the centre by angle, so consecutive codes are neighbours.
    """
    rng = _rng(seed, "street")
    centre = shapely.get_coordinates(city.point_on_surface())[0]
    samples = sample_points(city, max(60 * len(streets), 600), rng)
    seeds = place_seeds(samples, np.ones(len(samples)), len(streets), rng)
    near = np.argsort(np.hypot(*(seeds - centre).T), kind="stable")
    urban = [i for i, s in enumerate(streets) if int(s.code[6:9]) < 100]
    rural = [i for i, s in enumerate(streets) if int(s.code[6:9]) >= 100]
    out = np.empty_like(seeds)
    out[urban] = seeds[near[: len(urban)]]
    rest = near[len(urban):]
    angle = np.arctan2(seeds[rest, 1] - centre[1], seeds[rest, 0] - centre[0])
    out[rural] = seeds[rest[np.argsort(angle, kind="stable")]]
    return out, centre


def _split(
    parent: BaseGeometry,
    k: int,
    *,
    seed: int,
    level: str,
    code: str,
    wiggle: Wiggle,
    attraction: list[tuple[NDArray[np.float64], float, float]] | None = None,
) -> tuple[list[BaseGeometry], NDArray[np.float64]]:
    """Cells tiling ``parent`` and their seeds.

    ``attraction`` is a list of ``(point, scale_m, strength)``: the density is
    ``0.05 + sum(strength * exp(-distance / scale_m))`` and cells get smaller where it is high.
    A failed split (a seed left without area) is retried with the next random stream.
    """
    for attempt in range(8):
        rng = _rng(seed, level, code, attempt)
        if k == 1:
            return [parent], np.array([shapely.get_coordinates(parent.point_on_surface())[0]])
        samples = sample_points(parent, max(40 * k, 400), rng)
        density = np.full(len(samples), 0.05)
        for point, scale, strength in attraction or []:
            d = np.hypot(samples[:, 0] - point[0], samples[:, 1] - point[1])
            density += strength * np.exp(-d / scale)
        seeds = place_seeds(samples, density**DENSITY_POWER, k, rng)
        try:
            return partition(parent, seeds, rng, wiggle), seeds
        except ValueError:
            continue
    raise RuntimeError(f"could not split {code} into {k} cells")


def _grid_counts(communities: list[Division], *, grids: int | None, seed: int) -> NDArray[np.int64]:
    """Grids per community: drawn by kind of community, or apportioned to a total ``grids``."""
    rng = _rng(seed, "counts")
    means, lows, highs = [], [], []
    for c in communities:
        in_town = int(c.parent_code[6:9]) >= 100
        if c.is_urban:
            mean, low, high = GRIDS_URBAN
        elif in_town:
            mean, low, high = GRIDS_VILLAGE_IN_TOWN
        else:
            mean, low, high = GRIDS_VILLAGE_IN_STREET
        means.append(mean)
        lows.append(low)
        highs.append(high)
    noise = rng.lognormal(mean=-0.5 * 0.4**2, sigma=0.4, size=len(communities))
    raw = np.asarray(means) * noise
    if grids is None:
        return np.clip(np.rint(raw), lows, highs).astype(np.int64)
    if grids < len(communities):
        raise ValueError(f"grids must be at least {len(communities)} (one per community)")
    # largest-remainder apportionment with at least one grid per community
    share = 1 + raw / raw.sum() * (grids - len(communities))
    counts = np.floor(share).astype(np.int64)
    rest = grids - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    if counts.max() > MAX_GRIDS_PER_COMMUNITY:
        raise ValueError("too many grids for a 3-digit grid sequence")
    return counts


def _as_multi(geom: BaseGeometry) -> MultiPolygon:
    if geom.geom_type == "MultiPolygon":
        return geom
    return MultiPolygon([geom])


def grid_order(centroids_lonlat: NDArray[np.float64]) -> NDArray[np.intp]:
    """Numbering order of one community's grids: rows north→south, west→east within a row.

    Sort by centroid latitude (north first, ties by longitude), cut the list into
    ``r = max(1, round(sqrt(n)))`` consecutive rows with ``numpy.array_split`` (the first
    ``n % r`` rows get one extra grid), then order each row by centroid longitude (west first,
    ties by latitude, north first). Returns the indices in numbering order.

    >>> grid_order(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])).tolist()
    [3, 2, 1, 0]
    """
    n = len(centroids_lonlat)
    lon, lat = centroids_lonlat[:, 0], centroids_lonlat[:, 1]
    by_lat = np.lexsort((lon, -lat))
    rows = np.array_split(by_lat, max(1, round(np.sqrt(n))))
    return np.concatenate([row[np.lexsort((-lat[row], lon[row]))] for row in rows])


def build_city(*, city: str = DEFAULT_CITY, grids: int | None = None, seed: int = 330782
               ) -> DemoCity:
    """Build a city (default 义乌市: 14 streets, 544 communities) with generated grids.

    Parameters
    ----------
    city
        County-level code of a city whose extract is in ``data/sources``.
    grids
        Total number of grids. ``None`` (default) draws a plausible count per community
        (about 2,800 in all); an integer apportions exactly that many (synthetic city for
        benchmarks; names and codes above grid level stay real).
    seed
        Seed of every random choice; the same ``(grids, seed)`` gives identical output.
    """
    streets = load_streets(city)
    communities = load_communities(city)
    code, name = city_code(city), city_name(city)
    city_ll = load_outline_wgs84(city)
    work = f"EPSG:{gk_zone_srid(city_ll.bounds)}"
    outline = _project(city_ll, CRS, work)
    city_part = outline.geoms[0] if len(outline.geoms) == 1 else outline

    rows: list[tuple[str, str, str, str | None, BaseGeometry]] = [
        (code, name, "city", None, outline)
    ]
    if city in PLACED:
        placed, old_centre = PLACED[city]
        centre = _project_xy(np.array([old_centre]), work)[0]
        seats = _project_xy(np.array([placed[s.code] for s in streets]), work)
    else:
        seats, centre = _auto_seats(city_part, streets, seed)
    street_cells = partition(city_part, seats, _rng(seed, "street"), STREET_WIGGLE)
    street_geom = {}
    for street, cell, seat in zip(streets, street_cells, seats, strict=True):
        rows.append((street.code, street.name, "street", code, cell))
        street_geom[street.code] = (cell, seat)

    counts = dict(
        zip(
            (c.code for c in communities),
            _grid_counts(communities, grids=grids, seed=seed).tolist(),
            strict=True,
        )
    )
    community_cells: list[tuple[Division, BaseGeometry]] = []
    for street in streets:
        members = [c for c in communities if c.parent_code == street.code]
        cell, seat = street_geom[street.code]
        urban_street = int(street.code[6:9]) < 100
        # towns densify round their seat; urban streets mostly towards the old centre
        if urban_street:
            attraction = [(centre, 3000.0, 1.0), (seat, 1500.0, 0.3)]
        else:
            attraction = [(seat, 2000.0, 0.6)]
        cells, seeds = _split(
            cell,
            len(members),
            seed=seed,
            level="community",
            code=street.code,
            wiggle=COMMUNITY_WIGGLE,
            attraction=attraction,
        )
        matched = _match(members, cells, seeds, seat=seat, attraction=attraction)
        for member, geom in zip(members, matched, strict=True):
            rows.append((member.code, member.name, "community", street.code, geom))
            community_cells.append((member, geom))

    grid_rows: list[tuple[Division, list[BaseGeometry]]] = []
    for community, geom in community_cells:
        cells, _ = _split(
            geom,
            counts[community.code],
            seed=seed,
            level="grid",
            code=community.code,
            wiggle=GRID_WIGGLE,
        )
        grid_rows.append((community, cells))

    # back to lon/lat in one pass; identical metre coordinates give identical lon/lat, so
    # vertices shared by neighbours stay shared
    upper = _to_lonlat([g for *_, g in rows], work)
    flat = [g for _, cells in grid_rows for g in cells]
    lower = _to_lonlat(flat, work)
    records = [(*row[:4], geom) for row, geom in zip(rows, upper, strict=True)]
    start = 0
    for community, cells in grid_rows:
        n = len(cells)
        geoms = lower[start : start + n]
        start += n
        cent = shapely.get_coordinates(shapely.centroid(geoms))
        for seq, idx in enumerate(grid_order(cent), start=1):
            records.append(
                (
                    f"{community.code}{seq:03d}",
                    f"{community.short_name}第{seq}网格",
                    "grid",
                    community.code,
                    geoms[idx],
                )
            )

    regions = gpd.GeoDataFrame(
        {
            "code": [r[0] for r in records],
            "name": [r[1] for r in records],
            "level": [r[2] for r in records],
            # object dtype so that the city's parent stays a literal None
            "parent_code": pd.Series([r[3] for r in records], dtype=object),
        },
        geometry=[_as_multi(r[4]) for r in records],
        crs=CRS,
    )
    level_rank = regions["level"].map({"city": 0, "street": 1, "community": 2, "grid": 3})
    regions = (
        regions.assign(_rank=level_rank)
        .sort_values(["_rank", "code"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    staff, assignments = build_roster(regions, rng=_rng(seed, "staff"))
    return DemoCity(regions=regions, staff=staff, assignments=assignments)


# Densify before projecting back: a straight parent edge bends slightly in lon/lat, and a child
# corner that sits part-way along it would otherwise end up millimetres off it (kilometre-long
# slivers of a few m²). At 50 m the bend between vertices is far below the topology tolerance.
DENSIFY_M = 50.0


def _to_lonlat(geoms: list[BaseGeometry], work: str) -> NDArray[np.object_]:
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    arr = shapely.segmentize(arr, DENSIFY_M)
    t = transformer(work, CRS)

    def apply(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(arr, apply)


def _match(
    members: list[Division],
    cells: list[BaseGeometry],
    seeds: NDArray[np.float64],
    *,
    seat: NDArray[np.float64],
    attraction: list[tuple[NDArray[np.float64], float, float]],
) -> list[BaseGeometry]:
    """Give cells to communities: residents' committees take the densest cells (nearest the
    centres), villages the rest; within each kind, codes go round the street's seat by angle,
    so consecutive codes are neighbours."""
    density = np.full(len(seeds), 0.05)
    for point, scale, strength in attraction:
        density += strength * np.exp(-np.hypot(*(seeds - point).T) / scale)
    angle = np.arctan2(seeds[:, 1] - seat[1], seeds[:, 0] - seat[0])
    by_density = np.argsort(-density, kind="stable")
    urban = [m for m in members if m.is_urban]
    rural = [m for m in members if not m.is_urban]
    urban_cells = by_density[: len(urban)]
    rural_cells = by_density[len(urban) :]
    out: list[BaseGeometry | None] = [None] * len(members)
    index = {m.code: i for i, m in enumerate(members)}
    for group, idx in ((urban, urban_cells), (rural, rural_cells)):
        ordered = idx[np.argsort(angle[idx], kind="stable")]
        for member, cell_index in zip(group, ordered, strict=True):
            out[index[member.code]] = cells[cell_index]
    return [g for g in out if g is not None]


def write_city(city: DemoCity, out: Path) -> None:
    """Write ``regions.gpkg`` (layer ``regions``), ``staff.csv`` and ``assignments.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    gpkg = out / "regions.gpkg"
    if gpkg.exists():
        gpkg.unlink()
    city.regions.to_file(gpkg, layer="regions", driver="GPKG")
    city.staff.to_csv(out / "staff.csv", index=False)
    city.assignments.to_csv(out / "assignments.csv", index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate a demo city (default 义乌市).")
    parser.add_argument("--city", default=DEFAULT_CITY, help="county-level code (data/sources)")
    parser.add_argument(
        "--grids",
        type=int,
        default=None,
        help="total number of grids (default: plausible counts, ~2,800)",
    )
    parser.add_argument("--seed", type=int, default=330782)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    city = build_city(city=args.city, grids=args.grids, seed=args.seed)
    built = time.perf_counter() - started
    write_city(city, args.out)
    levels = city.regions["level"].value_counts()
    print(
        f"built in {built:.1f} s: {levels.get('street', 0)} streets, "
        f"{levels.get('community', 0)} communities, {levels.get('grid', 0)} grids, "
        f"{len(city.staff)} staff, {len(city.assignments)} assignments -> {args.out}"
    )


if __name__ == "__main__":
    main()
