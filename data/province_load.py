"""Load a generated province (:func:`data.province.build_province`) into one database.

    python -m data.province_load --cities 2 --grids-per-city 40   # into CITYGRID_DATABASE_URL

The province region (code: the cities' two digits and ten zeros; outline: the union of its
cities' outlines), its cities (each hung under the province), streets, communities and grids are
written as one boundary version through the registry's writer (:func:`grids.store.insert_regions`,
parents first, in chunks), so the region trigger of migration 0030 names the province in
``city_profile`` and notes each city's own metric zone in ``city_metric``, and the sibling
overlap guard (0007) checks them at commit. Not through the file import
(:func:`grids.io.region_import.import_regions`): its 1 m² "inside the parent" tolerance rejects
the generated outlines, whose children are bent apart from their parents by up to a few m²
(``data.province``: each level densified on its own, then bent).
Optionally one grid chief per grid (``staff=True``), so the locator names someone responsible.

Nothing is committed here: the caller owns the transaction.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, create_engine, text

from data.province import Province, build_province
from grids import store
from grids.codes import LEVELS, level_of, normalise

CHUNK = 5_000
"""Regions per :func:`grids.store.insert_regions` call."""


def province_code(p: Province) -> str:
    """The province's 12-digit code: its cities' two digits, then zeros."""
    heads = {normalise(c)[:2] for c in p.city_codes}
    if len(heads) != 1:
        raise ValueError(f"the cities' codes start with {sorted(heads)}: one province only")
    return heads.pop() + "0" * 10


def province_frame(p: Province, *, name: str = "Province") -> gpd.GeoDataFrame:
    """The province's regions as an import frame (code, name, level, parent_code, geometry),
    the province first: its outline is the union of its cities'."""
    code = province_code(p)
    codes = [normalise(c) for c in p.codes]
    parents = [normalise(x) if x else None for x in p.parents]
    levels = list(p.levels)
    cities = [i for i, lv in enumerate(levels) if lv == "city"]
    for i in cities:
        parents[i] = code
    outline = shapely.union_all(np.asarray(p.geoms[cities], dtype=object))
    frame = gpd.GeoDataFrame(
        {"code": [code, *codes], "name": [name, *p.names], "level": ["province", *levels],
         "parent_code": pd.Series([None, *parents], dtype=object)},
        geometry=gpd.GeoSeries([outline, *p.geoms]), crs="EPSG:4490")
    assert all(level_of(c) == lv for c, lv in zip(frame["code"], frame["level"], strict=True))
    return frame


def load_province(conn: Connection, p: Province, *, name: str = "Province",
                  staff: bool = False, label: str = "province") -> dict[str, Any]:
    """Write province ``p`` into the database of ``conn`` (one boundary version); with
    ``staff``, one grid chief per grid, primary from now. Returns what was written."""
    t0 = time.perf_counter()
    frame = province_frame(p, name=name)
    version = store.new_version(conn, label=label, source="data.province")
    order = {lv: i for i, lv in enumerate(LEVELS)}
    frame = frame.assign(_o=frame["level"].map(order)).sort_values(["_o", "code"])
    done = 0
    for start in range(0, len(frame), CHUNK):
        done += store.insert_regions(conn, frame.iloc[start:start + CHUNK], version_id=version)
    by_level = {str(k): int(v) for k, v in frame["level"].value_counts().items()}
    out: dict[str, Any] = {"version_id": version, "regions": done, "by_level": by_level,
                           "regions_s": time.perf_counter() - t0}
    if staff:
        t1 = time.perf_counter()
        grids = [normalise(c) for c, lv in zip(p.codes, p.levels, strict=True) if lv == "grid"]
        people = pd.DataFrame({
            "code": [f"P{g}" for g in grids],
            "name": [f"Chief {g[-9:]}" for g in grids],
            "phone": [f"139{int(g[-8:]) % 10**8:08d}" for g in grids],
            "role": "grid_chief", "status": "available"})
        store.upsert_staff(conn, people)
        conn.execute(text(
            "INSERT INTO assignment (staff_id, region_id, duty) "
            "SELECT s.id, r.id, 'primary' FROM unnest(CAST(:grids AS text[])) g(code) "
            "JOIN region r ON r.code = g.code JOIN staff s ON s.code = 'P' || g.code"),
            {"grids": grids})
        out |= {"staff": len(grids), "staff_s": time.perf_counter() - t1}
    return out


def main(argv: list[str] | None = None) -> None:
    from app.settings import get_settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cities", type=int, default=2)
    ap.add_argument("--grids-per-city", type=int, default=200)
    ap.add_argument("--staff", action="store_true")
    ap.add_argument("--url", default=None, help="database URL (default: the migration URL)")
    args = ap.parse_args(argv)
    url = args.url or get_settings().db.migration_url or get_settings().db.database_url
    engine = create_engine(url)
    try:
        p = build_province(cities=args.cities, grids_per_city=args.grids_per_city)
        with engine.begin() as conn:
            print(load_province(conn, p, staff=args.staff))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
