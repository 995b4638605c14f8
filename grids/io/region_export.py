"""The regions in force written to a GeoJSON or GeoPackage."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Connection, text

from grids.codes import LEVELS, normalise
from grids.errors import GridError, RegionNotFound
from grids.io.tables import IN_FORCE

EXPORT_COLUMNS = ["code", "name", "level", "parent_code", "area_m2", "version_id"]
_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile"}


def export_regions(
    conn: Connection, path: str | Path, *, level: str | None = None,
    at: datetime | None = None, root_code: str | None = None,
) -> int:
    """Write the regions in force at ``at`` to a GeoJSON (.geojson/.json) or GeoPackage (.gpkg).

    Columns code, name, level, parent_code, area_m2, version_id and the geometry
    (MultiPolygon, EPSG:4490 declared in the file, coordinates at full double precision).
    ``level`` keeps one level; ``root_code`` keeps that region and everything below it.
    Returns the number of features written.
    """
    path = Path(path)
    driver = _DRIVERS.get(path.suffix.lower())
    if driver not in ("GeoJSON", "GPKG"):
        raise GridError(f"Cannot export to {path.name}: use .geojson, .json or .gpkg.",
                        detail={"field": "path", "value": path.name,
                                "expected": ".geojson, .json or .gpkg"},
                        code="unsupported_format")
    if level is not None and level not in LEVELS:
        raise GridError(f"Unknown level {level!r}.",
                        detail={"field": "level", "value": level, "expected": list(LEVELS)},
                        code="invalid_level")
    params: dict[str, Any] = {"at": at, "level": level}
    scope = ""
    if root_code is not None:
        params["root"] = normalise(root_code)
        scope = (
            "WITH RECURSIVE s AS ("
            " SELECT b.region_id, 0 AS depth FROM region_boundary b JOIN region r"
            f"  ON r.id = b.region_id WHERE r.code = :root AND {IN_FORCE}"
            " UNION ALL"
            " SELECT b.region_id, s.depth + 1 FROM region_boundary b JOIN s"
            f"  ON b.parent_id = s.region_id WHERE {IN_FORCE} AND s.depth < 8) "
        )
    sql = (
        f"{scope}SELECT r.code, r.name, r.level, p.code AS parent_code, b.area_m2, b.version_id, "
        "ST_AsBinary(b.geom) AS wkb FROM region r JOIN region_boundary b ON b.region_id = r.id "
        f"LEFT JOIN region p ON p.id = b.parent_id WHERE {IN_FORCE} "
        "AND (CAST(:level AS text) IS NULL OR r.level = :level) "
        + ("AND b.region_id IN (SELECT region_id FROM s) " if scope else "")
        + "ORDER BY CASE r.level WHEN 'province' THEN 0 WHEN 'city' THEN 1 WHEN 'street' THEN 2 "
        "WHEN 'community' THEN 3 ELSE 4 END, r.code"
    )
    rows = conn.execute(text(sql), params).all()
    if root_code is not None and not rows and not conn.execute(
        text("SELECT EXISTS (SELECT 1 FROM region r JOIN region_boundary b ON b.region_id = r.id "
             f"WHERE r.code = :root AND {IN_FORCE})"), params
    ).scalar_one():
        raise RegionNotFound(f"No region {params['root']} is in force.",
                             detail={"field": "root_code", "value": params["root"]})
    frame = gpd.GeoDataFrame(
        {
            "code": [r.code for r in rows],
            "name": [r.name for r in rows],
            "level": [r.level for r in rows],
            "parent_code": [r.parent_code for r in rows],
            "area_m2": np.array([r.area_m2 for r in rows], dtype=float),
            "version_id": np.array([r.version_id for r in rows], dtype=np.int64),
        },
        geometry=gpd.GeoSeries(shapely.from_wkb([bytes(r.wkb) for r in rows])
                               if rows else [], crs="EPSG:4490"),
        crs="EPSG:4490",
    )
    if path.exists():
        path.unlink()  # the GeoJSON driver cannot overwrite; a GeoPackage would gain a layer
    options: dict[str, Any] = {}
    if driver == "GeoJSON":
        # Not RFC 7946, which would force EPSG:4326 and cut coordinates to 7 decimals.
        options = {"RFC7946": "NO", "COORDINATE_PRECISION": 15, "WRITE_NAME": "NO"}
    frame.to_file(path, driver=driver, engine="pyogrio", layer="regions" if driver == "GPKG"
                  else None, geometry_type="MultiPolygon", **options)
    return len(frame)

