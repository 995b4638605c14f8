"""A small generated city written as a new city's GIS office would hand it over: one file per
level, in the formats and quirks real offices use, and a roster saved by Excel.

The city (code ``990200``, 新城市) is a 4 km × 2 km rectangle near (120.58°E, 30.00°N): two
streets side by side, two communities in each (south and north), two grids in each community
(west and east). Every region is a rectangle of a regular lattice, so the levels nest exactly.

Files (see docs/new-city.md for the walkthrough that imports them):

- ``city.geojson``: the city, EPSG:4490 declared;
- ``streets.gpkg``: the streets with a ``level`` field, 9-digit codes, in EPSG:4549 metres;
- ``communities.shp``: the communities, no level field, names in GBK with no ``.cpg`` (as many
  desktop tools leave them), field names ``bm``/``mc`` (编码/名称);
- ``grids.geojson``: the grids, EPSG:4490, with a stray line in one grid's GeometryCollection;
- ``roster.csv``: GB18030, as Excel in China saves "CSV".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import GeometryCollection, LineString, box

from gis.transform import transformer

CITY_CODE = "990200"
CITY_NAME = "新城市"
LON0, LAT0 = 120.58, 30.00
KM_LON = 1 / (111.32 * np.cos(np.radians(LAT0)))  # degrees per km, near enough here
KM_LAT = 1 / 110.57


@dataclass(frozen=True)
class NewCity:
    code: str
    name: str
    files: dict[str, Path]  # city, streets, communities, grids, roster
    grid_point: tuple[float, float]  # lon/lat inside the first grid
    grid_code: str
    primary: str  # the first grid's primary worker


def _rect(x0: float, y0: float, x1: float, y1: float) -> shapely.Geometry:
    """A rectangle in km from the city's south-west corner, in lon/lat, with a vertex every
    ~20 m: the levels are drawn in different CRSs, and a long straight edge in degrees is a
    curve in metres."""
    return shapely.segmentize(box(LON0 + x0 * KM_LON, LAT0 + y0 * KM_LAT, LON0 + x1 * KM_LON,
                                  LAT0 + y1 * KM_LAT), 0.0002)


def write_new_city(folder: Path) -> NewCity:
    folder.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame({"code": [CITY_CODE], "name": [CITY_NAME]},
                     geometry=[_rect(0, 0, 4, 2)], crs="EPSG:4490").to_file(
        folder / "city.geojson")

    streets, communities, grids, roster = [], [], [], []
    phone = 13900000000
    for s in (1, 2):
        street = f"{CITY_CODE}{s:03d}"
        streets.append({"code": street, "name": f"第{s}街道", "level": "street",
                        "geometry": _rect(2 * (s - 1), 0, 2 * s, 2)})
        phone += 1
        roster.append([f"S{s}", f"街道干部{s}", phone, "street_officer", "", street, "head"])
        for c in (1, 2):
            community = f"{street}{c:03d}"
            communities.append({"bm": community, "mc": f"第{s}街道第{c}社区",
                                "geometry": _rect(2 * (s - 1), c - 1, 2 * s, c)})
            phone += 1
            roster.append([f"H{s}{c}", f"社区书记{s}{c}", phone, "community_head", "", community,
                           "head"])
            for g in (1, 2):
                code = f"{community}{g:03d}"
                x0 = 2 * (s - 1) + (g - 1)
                geom = _rect(x0, c - 1, x0 + 1, c)
                if (s, c, g) == (1, 1, 2):  # a drawing tool's stray line kept with the polygon
                    geom = GeometryCollection([geom, LineString(
                        [(LON0 + 1.2 * KM_LON, LAT0 + 0.2 * KM_LAT),
                         (LON0 + 1.8 * KM_LON, LAT0 + 0.8 * KM_LAT)])])
                grids.append({"code": code, "name": f"第{s}{c}{g}网格", "level": "grid",
                              "parent_code": community, "geometry": geom})
                phone += 1
                roster.append([f"G{s}{c}{g}", f"网格员{s}{c}{g}", phone, "专职网格员", "可工作",
                               code, "primary"])
    phone += 1
    roster.append(["CMD", "指挥中心值班", phone, "command_duty", "", CITY_CODE, "head"])

    metric = gpd.GeoDataFrame(streets, crs="EPSG:4490")
    fwd = transformer("EPSG:4490", "EPSG:4549")
    metric["geometry"] = shapely.transform(
        metric.geometry.values, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    metric.set_crs("EPSG:4549", allow_override=True).to_file(folder / "streets.gpkg",
                                                              layer="streets")

    shp = folder / "communities.shp"
    gpd.GeoDataFrame(communities, crs="EPSG:4490").to_file(shp, encoding="GBK")
    shp.with_suffix(".cpg").unlink(missing_ok=True)
    dbf = shp.with_suffix(".dbf")
    data = bytearray(dbf.read_bytes())
    data[29] = 0  # no language driver id either: nothing in the file says GBK
    dbf.write_bytes(bytes(data))

    gpd.GeoDataFrame(grids, crs="EPSG:4490").to_file(folder / "grids.geojson")

    header = "staff_code,name,phone,role,status,region_code,duty"
    lines = [header] + [",".join(str(v) for v in row) for row in roster]
    (folder / "roster.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("gb18030"))

    first = _rect(0, 0, 1, 1).centroid
    return NewCity(code=CITY_CODE, name=CITY_NAME,
                   files={"city": folder / "city.geojson", "streets": folder / "streets.gpkg",
                          "communities": shp, "grids": folder / "grids.geojson",
                          "roster": folder / "roster.csv"},
                   grid_point=(first.x, first.y), grid_code=f"{CITY_CODE}001001001",
                   primary="G111")
