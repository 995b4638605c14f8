"""The geometry of redraw plans: the draft, its items and problems, and how they are measured.
No database.

A :class:`Draft` is the working set of a plan: the grids (and, for a street plan, the
communities) of one region, with the region's own boundary as the fixed outer parent. Each edit
function takes a draft and returns a new one (the input is never changed) together with the
parents whose tiling the edit touched (:mod:`grids.plans.edits`); :func:`grids.plans.checks.validate`
then checks those parents.

Numbers
-------
- Coordinates are CGCS2000 lon/lat (EPSG:4490). Every overlay runs on a fixed precision grid of
  ``GRID_DEG`` = 1e-9° (about 0.1 mm), so two results that share an edge share it exactly.
- Areas are m² in the CGCS2000 3-degree Gauss-Krüger zone of the measured shape's centre
  (:func:`gis.crs.gk_zone_srid`): the database's zone for a city within one zone; for a city that
  straddles two, the two agree within 0.1 % (``docs/cities.md``), far inside every tolerance here.
- ``TOLERANCE_M2`` = 1 m²: an overlap between siblings, a part of a child outside its parent or
  a piece of a gap is a problem when its area is **strictly greater**. The same figure as
  :mod:`grids.topology` and the database guard of migration 0007.
- ``NOISE_M2`` = 0.01 m²: an edit leaves a neighbour alone when it takes less than this from it
  (floating-point residue, not a change anyone drew).
- ``SNAP_M`` = 1 m: the vertices of a drawn shape within this distance of a neighbour's or the
  parent's edge or vertex are moved onto it, so shared edges stay shared.
- ``SLIVER_M2`` = 100 m²: a grid, or one part of it, smaller than this is a sliver.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gis.crs import gk_zone_srid
from gis.transform import transformer

GRID_DEG = 1e-9
TOLERANCE_M2 = 1.0
NOISE_M2 = 0.01
SNAP_M = 1.0
SLIVER_M2 = 100.0
DEG_PER_M = 1.0 / 111_320.0  # along a meridian; at 29°N a degree of longitude is shorter
KINDS = ("invalid_geometry", "outside_parent", "overlap", "gap", "sliver", "disconnected",
         "empty", "code_collision", "code_format", "not_neighbours", "bad_split", "unknown_code",
         "unsupported", "invalid_name")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a draft is not a clean tiling (or an edit cannot be applied)."""

    kind: str
    message: str
    codes: tuple[str, ...]
    location: dict[str, Any] | None = None  # GeoJSON geometry in EPSG:4490
    area_m2: float | None = None
    parent: str | None = None  # the parent whose tiling it breaks (None: a code problem)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.kind, tuple(sorted(self.codes))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message,
                               "codes": list(self.codes), "location": self.location}
        if self.area_m2 is not None:
            out["area_m2"] = round(self.area_m2, 2)
        if self.parent is not None:
            out["parent"] = self.parent
        return out


class EditRejected(Exception):
    """An edit that cannot be applied or would leave the draft invalid."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message if problems else "edit rejected")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Item:
    """A grid or community of the draft. ``geom`` None: retired by the plan."""

    code: str
    level: str
    name: str
    parent: str
    geom: BaseGeometry | None
    origin: str | None = None  # the code of the region it comes from; None = new in the plan
    source_id: int | None = None  # region_boundary.id it was copied from
    rid: int | None = None  # plan_region.id; None = not stored yet
    touched: bool = False  # changed by the plan (geometry, code or parent)

    @property
    def live(self) -> bool:
        return self.geom is not None

    @property
    def change(self) -> str:
        if self.geom is None:
            return "retired"
        if self.origin is None:
            return "new"
        return "changed" if self.touched else "unchanged"


@dataclass(frozen=True)
class Draft:
    """The working set of a plan over ``region_code`` (a street or a community)."""

    region_code: str
    region_level: str
    region_name: str
    outer: BaseGeometry
    items: tuple[Item, ...]
    taken: frozenset[str] = frozenset()  # codes in force outside the plan: not available
    known: frozenset[str] = frozenset()  # every code ever used under the region (history too)
    _by_code: dict[tuple[str, str], int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_code.clear()
        for i, it in enumerate(self.items):
            if it.live:
                self._by_code[(it.level, it.code)] = i

    def get(self, code: str, level: str = "grid") -> Item | None:
        i = self._by_code.get((level, code))
        return self.items[i] if i is not None else None

    def live(self, level: str | None = None) -> list[Item]:
        return [it for it in self.items if it.live and (level is None or it.level == level)]

    def children(self, parent: str) -> list[Item]:
        return [it for it in self.items if it.live and it.parent == parent]

    def parent_geom(self, code: str) -> BaseGeometry | None:
        if code == self.region_code:
            return self.outer
        it = self.get(code, "community")
        return it.geom if it is not None else None

    def parent_name(self, code: str) -> str:
        if code == self.region_code:
            return self.region_name
        it = self.get(code, "community")
        return it.name if it is not None else code

    def with_items(self, items: Iterable[Item]) -> Draft:
        return replace(self, items=tuple(items), _by_code={})


# ------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------


def _metres(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` (lon/lat) in the Gauss-Krüger zone of its centre, in metres."""
    t = transformer("EPSG:4490", f"EPSG:{gk_zone_srid(geom.bounds)}")

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)


def area_m2(geom: BaseGeometry | None) -> float:
    """Area in m² (Gauss-Krüger zone of its centre) of a lon/lat geometry; 0 for None or empty.

    >>> from shapely import box
    >>> round(area_m2(box(105.0, 29.0, 105.001, 29.001)))
    10800
    """
    if geom is None or geom.is_empty:
        return 0.0
    return float(shapely.area(_metres(geom)))


def polygonal(geom: BaseGeometry | None) -> BaseGeometry:
    """The polygonal part of an overlay result (lines and points dropped), never None."""
    if geom is None or geom.is_empty:
        return shapely.MultiPolygon()
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return shapely.MultiPolygon()
    return shapely.union_all(parts, grid_size=GRID_DEG)


def diff_of(a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    return polygonal(shapely.difference(a, b, grid_size=GRID_DEG))


def inter_of(a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    return polygonal(shapely.intersection(a, b, grid_size=GRID_DEG))


def union_of(geoms: Iterable[BaseGeometry]) -> BaseGeometry:
    return polygonal(shapely.union_all(list(geoms), grid_size=GRID_DEG))


def shared_border_m(a: BaseGeometry, b: BaseGeometry) -> float:
    """Length in metres of the border ``a`` and ``b`` share (0 if they only touch at a point)."""
    if a.is_empty or b.is_empty or not shapely.intersects(shapely.buffer(a, 1e-7), b):
        return 0.0
    line = shapely.intersection(shapely.boundary(a), shapely.buffer(b, 1e-7))
    if line.is_empty:
        return 0.0
    return float(shapely.length(_metres(line)))


def parts(geom: BaseGeometry) -> list[BaseGeometry]:
    return [g for g in shapely.get_parts(geom) if not g.is_empty]


def geojson_of(geom: BaseGeometry | None) -> dict[str, Any] | None:
    if geom is None or geom.is_empty:
        return None
    return shapely.geometry.mapping(geom)


def point_geojson_of(geom: BaseGeometry) -> dict[str, Any]:
    p = shapely.point_on_surface(geom)
    return {"type": "Point", "coordinates": [round(p.x, 7), round(p.y, 7)]}


def near_text(geom: BaseGeometry) -> str:
    p = shapely.point_on_surface(geom)
    return f"near ({p.x:.6f}, {p.y:.6f})"
