"""The geometry of redraw plans: edits on a draft and the exact tiling checker. No database.

A :class:`Draft` is the working set of a plan: the grids (and, for a street plan, the
communities) of one region, with the region's own boundary as the fixed outer parent. Each edit
function takes a draft and returns a new one (the input is never changed) together with the
parents whose tiling the edit touched; :func:`validate` then checks those parents.

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gis.crs import gk_zone_srid
from gis.transform import transformer
from gis.validate import explain_invalid

GRID_DEG = 1e-9
TOLERANCE_M2 = 1.0
NOISE_M2 = 0.01
SNAP_M = 1.0
SLIVER_M2 = 100.0
_DEG_PER_M = 1.0 / 111_320.0  # along a meridian; at 29°N a degree of longitude is shorter
KINDS = ("invalid_geometry", "outside_parent", "overlap", "gap", "sliver", "disconnected",
         "empty", "code_collision", "code_format", "not_neighbours", "bad_split", "unknown_code",
         "unsupported")


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


def _diff(a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    return polygonal(shapely.difference(a, b, grid_size=GRID_DEG))


def _inter(a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    return polygonal(shapely.intersection(a, b, grid_size=GRID_DEG))


def _union(geoms: Iterable[BaseGeometry]) -> BaseGeometry:
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


def _gj(geom: BaseGeometry | None) -> dict[str, Any] | None:
    if geom is None or geom.is_empty:
        return None
    return shapely.geometry.mapping(geom)


def _point_gj(geom: BaseGeometry) -> dict[str, Any]:
    p = shapely.point_on_surface(geom)
    return {"type": "Point", "coordinates": [round(p.x, 7), round(p.y, 7)]}


def _near(geom: BaseGeometry) -> str:
    p = shapely.point_on_surface(geom)
    return f"near ({p.x:.6f}, {p.y:.6f})"


# ------------------------------------------------------------------------------------------
# the checker
# ------------------------------------------------------------------------------------------


def validate(draft: Draft, *, parents: Iterable[str] | None = None,
             tolerance_m2: float = TOLERANCE_M2, sliver_m2: float = SLIVER_M2,
             only: set[str] | None = None, zone: BaseGeometry | None = None) -> list[Problem]:
    """Every problem of the draft's tiling under ``parents`` (None: all), plus code problems.

    For each parent P (the plan's region, and for a street plan each live community) and its
    live children C1..Cn: invalid geometries (with the spot GEOS names), parts of a child
    outside P, overlaps between two children, pieces of P covered by no child, and slivers (a
    child or a part of it under ``sliver_m2``) or children in several pieces. Areas are
    compared with ``tolerance_m2`` (strictly greater is a problem).

    ``only`` and ``zone`` restrict the check to what an edit touched: the children with those
    codes (and their pairs with any sibling), and gaps inside ``zone``. Used to check one edit
    in a large plan; the answer for everything else is unchanged by the edit.
    """
    if parents is None:
        wanted = [draft.region_code] + [c.code for c in draft.live("community")]
    else:
        wanted = list(dict.fromkeys(parents))
    out: list[Problem] = []
    for parent in wanted:
        pg = draft.parent_geom(parent)
        if pg is None:
            continue
        out.extend(_check_parent(draft, parent, pg, tolerance_m2, sliver_m2, only, zone))
    out.extend(check_codes(draft))
    order = {k: i for i, k in enumerate(KINDS)}
    out.sort(key=lambda p: (order.get(p.kind, 99), p.codes))
    return out


def _check_parent(draft: Draft, parent: str, pg: BaseGeometry, tol: float, sliver_m2: float,
                  only: set[str] | None, zone: BaseGeometry | None) -> list[Problem]:
    out: list[Problem] = []
    kids = draft.children(parent)
    noun = "Grid" if kids and kids[0].level == "grid" else "Community"
    good: list[Item] = []
    for k in kids:
        if only is not None and k.code not in only:
            if k.geom is not None and not k.geom.is_empty and k.geom.is_valid:
                good.append(k)
            continue
        why = explain_invalid(k.geom)
        if why is not None:
            loc = why["location"]
            out.append(Problem(
                "invalid_geometry",
                f"{noun} {k.code} has an invalid boundary: {why['reason']}"
                + (f" at ({loc[0]:.7f}, {loc[1]:.7f})." if loc else "."),
                (k.code,), {"type": "Point", "coordinates": loc} if loc else None))
        elif k.geom is None or k.geom.is_empty:
            out.append(Problem("empty", f"{noun} {k.code} has no area left.", (k.code,)))
        else:
            good.append(k)
    checked = [k for k in good if only is None or k.code in only]
    geoms = [k.geom for k in good]
    local = pg if zone is None else _inter(pg, shapely.buffer(zone, 1e-6))
    near = geoms if zone is None else [g for g in geoms if shapely.intersects(g, local)]
    covered = _union(near) if near else shapely.MultiPolygon()
    # Fast paths: when the union sticks out nowhere and the areas add up, no child is outside
    # and no two overlap; only then is each child (or pair) examined.
    sticks_out = area_m2(_diff(covered, pg)) > tol
    for k in checked:
        assert k.geom is not None
        if sticks_out:
            outside = _diff(k.geom, pg)
            a = area_m2(outside)
            if a > tol:
                out.append(Problem(
                    "outside_parent",
                    f"{noun} {k.code} extends {a:.1f} m² outside its parent {parent} "
                    f"{_near(outside)}.", (k.code, parent), _gj(outside), a))
        pieces = parts(k.geom)
        areas = [area_m2(piece) for piece in pieces]
        for piece, pa in zip(pieces, areas, strict=True):
            if pa < sliver_m2:
                out.append(Problem(
                    "sliver",
                    f"{noun} {k.code} has a sliver of {pa:.1f} m² {_near(piece)} (under "
                    f"{sliver_m2:g} m²).", (k.code,), _gj(piece), pa))
        big = [a for a in areas if a >= sliver_m2]
        if len(big) > 1:
            out.append(Problem(
                "disconnected",
                f"{noun} {k.code} falls into {len(big)} separate pieces; a grid is one area.",
                (k.code,), _gj(k.geom), sum(areas)))
    excess = sum(area_m2(g) for g in near) - area_m2(covered)
    if len(geoms) > 1 and checked and excess > tol:
        tree = shapely.STRtree(geoms)
        index = {id(k): i for i, k in enumerate(good)}
        seen: set[tuple[int, int]] = set()
        for k in checked:
            i = index[id(k)]
            for j in tree.query(geoms[i], predicate="intersects").tolist():
                pair = (min(i, j), max(i, j))
                if i == j or pair in seen:
                    continue
                seen.add(pair)
                inter = _inter(geoms[i], geoms[j])
                a = area_m2(inter)
                if a > tol:
                    ci, cj = sorted((good[i].code, good[j].code))
                    out.append(Problem(
                        "overlap", f"{noun}s {ci} and {cj} overlap by {a:.1f} m² "
                        f"{_near(inter)}.", (ci, cj), _gj(inter), a))
    gap = _diff(local, covered)
    for piece in parts(gap):
        a = area_m2(piece)
        if a > tol:
            out.append(Problem(
                "gap", f"{a:.1f} m² of {parent} {_near(piece)} is covered by none of its "
                f"{'grids' if noun == 'Grid' else 'communities'}.", (parent,), _gj(piece), a))
    return [replace(p, parent=parent) for p in out]


def valid_grid_code(code: str, parent: str) -> str | None:
    """None if ``code`` is a well-formed grid code under community ``parent``, else why not.

    >>> valid_grid_code("510131101001004", "510131101001") is None
    True
    >>> valid_grid_code("510131101002004", "510131101001")
    'grid code 510131101002004 does not start with its community 510131101001'
    """
    if len(code) != 15 or not code.isdigit():
        return f"grid code {code[:40]!r} is not 15 digits"
    if code.endswith("000"):
        return f"grid code {code} ends in 000, which is reserved"
    if not code.startswith(parent):
        return f"grid code {code} does not start with its community {parent}"
    return None


def check_codes(draft: Draft) -> list[Problem]:
    """Code collisions (twice in the plan, or in force elsewhere) and malformed grid codes."""
    out: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for it in draft.live():
        seen[(it.level, it.code)] = seen.get((it.level, it.code), 0) + 1
    for (level, code), n in sorted(seen.items()):
        if n > 1:
            out.append(Problem("code_collision", f"Code {code} is used by {n} {level}s in the "
                                                 "plan.", (code,)))
    for it in draft.live("grid"):
        if it.code in draft.taken and it.code != it.origin:
            out.append(Problem("code_collision", f"Code {it.code} belongs to a grid in force "
                                                 "outside this plan.", (it.code,),
                               _point_gj(it.geom) if it.geom is not None else None))
        why = valid_grid_code(it.code, it.parent)
        if why is not None:
            out.append(Problem("code_format", why[0].upper() + why[1:] + ".", (it.code,)))
    return out


def new_problems(before: list[Problem], after: list[Problem]) -> list[Problem]:
    """The problems of ``after`` that ``before`` did not have.

    Problems with an area (gap, overlap, outside_parent, sliver) are new when more than the
    tolerance of their area lies outside every earlier problem of the same kind and codes, so
    a second gap in a community that already had one is still caught; the others are compared
    by kind and codes.
    """
    old_keys = {p.key for p in before}
    areas: dict[tuple[str, tuple[str, ...]], list[BaseGeometry]] = {}
    for p in before:
        if p.location is not None and p.location.get("type") != "Point":
            areas.setdefault(p.key, []).append(shapely.geometry.shape(p.location))
    fresh = []
    for p in after:
        if p.key not in old_keys:
            fresh.append(p)
        elif p.location is not None and p.location.get("type") != "Point" and p.key in areas:
            rest = _diff(shapely.geometry.shape(p.location), _union(areas[p.key]))
            if area_m2(rest) > TOLERANCE_M2:
                fresh.append(p)
    return fresh


# ------------------------------------------------------------------------------------------
# edits
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    draft: Draft
    parents: tuple[str, ...]  # whose tiling to re-check
    summary: str
    problems: tuple[Problem, ...] = ()  # after the edit, where it acted (none new, by apply)


def _reject(kind: str, message: str, codes: Iterable[str] = (),
            location: dict[str, Any] | None = None) -> EditRejected:
    return EditRejected([Problem(kind, message, tuple(codes), location)])


def _grid(draft: Draft, code: Any) -> Item:
    it = draft.get(str(code), "grid") if isinstance(code, str) else None
    if it is None:
        raise _reject("unknown_code", f"Grid {code} is not in this plan (or already retired).",
                      (str(code)[:15],))
    return it


def _shape(value: Any, what: str) -> BaseGeometry:
    """A Polygon/MultiPolygon from GeoJSON, checked for validity (with the spot if not)."""
    try:
        geom = shapely.geometry.shape(value)
    except Exception as exc:  # noqa: BLE001 - any malformed GeoJSON
        raise _reject("invalid_geometry", f"The {what} is not valid GeoJSON: {exc}.") from exc
    geom = shapely.force_2d(geom)
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
        raise _reject("invalid_geometry", f"The {what} must be a Polygon, not {geom.geom_type}.")
    why = explain_invalid(geom)
    if why is not None:
        loc = why["location"]
        raise _reject("invalid_geometry",
                      f"The {what} is not a valid polygon: {why['reason']}"
                      + (f" at ({loc[0]:.7f}, {loc[1]:.7f})." if loc else "."),
                      (), {"type": "Point", "coordinates": loc} if loc else None)
    return geom


def snap(geom: BaseGeometry, reference: Iterable[BaseGeometry], *, snap_m: float = SNAP_M
         ) -> BaseGeometry:
    """``geom`` with each vertex within ``snap_m`` of ``reference``'s boundaries moved onto them:
    onto a vertex of theirs if one is that close, else onto the nearest point of their edges."""
    tol = snap_m * _DEG_PER_M
    refs = [shapely.boundary(g) for g in reference if g is not None and not g.is_empty]
    zone = shapely.buffer(shapely.envelope(geom), tol * 2)
    refs = [r for r in refs if shapely.intersects(r, zone)]
    if not refs:
        return geom
    edges = shapely.union_all(refs)
    corners = shapely.multipoints(shapely.get_coordinates(edges))

    def move(xy: np.ndarray) -> np.ndarray:
        pts = shapely.points(xy)
        near = shapely.distance(pts, edges) < tol
        if not near.any():
            return xy
        out = xy.copy()
        idx = np.flatnonzero(near)
        to_corner = shapely.distance(pts[idx], corners) < tol
        target = np.where(to_corner, shapely.shortest_line(pts[idx], corners),
                          shapely.shortest_line(pts[idx], edges))
        out[idx] = shapely.get_coordinates(target)[1::2]
        return out

    out = shapely.transform(geom, move)
    if not out.is_valid:
        out = polygonal(shapely.make_valid(out))
    return out


def _next_code(draft: Draft, parent: str, extra: Iterable[str] = ()) -> str:
    used = {c[12:] for c in draft.known | draft.taken | set(extra) if c.startswith(parent)}
    used |= {it.code[12:] for it in draft.items if it.code.startswith(parent)}
    n = max((int(s) for s in used if s.isdigit()), default=0) + 1
    if n > 999:
        raise _reject("code_collision", f"Community {parent} has no free grid code left.",
                      (parent,))
    return f"{parent}{n:03d}"


def _default_name(draft: Draft, parent: str, code: str) -> str:
    return f"{draft.parent_name(parent)}第{int(code[12:])}网格"


def _replace(items: list[Item], old: Item, new: Item | None) -> None:
    i = next(k for k, x in enumerate(items) if x is old)
    if new is None:
        del items[i]
    else:
        items[i] = new


def _take(items: list[Item], taker: Item, shape: BaseGeometry) -> list[str]:
    """Siblings of ``taker`` give up what ``shape`` covers; returns the codes that gave."""
    gave = []
    for s in list(items):
        if not s.live or s is taker or s.parent != taker.parent or s.level != taker.level:
            continue
        assert s.geom is not None
        if not shapely.intersects(s.geom, shape):
            continue
        if area_m2(_inter(s.geom, shape)) <= NOISE_M2:
            continue
        _replace(items, s, replace(s, geom=_diff(s.geom, shape), touched=True))
        gave.append(s.code)
    return gave


def _give_away(items: list[Item], owner: Item, released: BaseGeometry) -> list[str]:
    """Each piece of ``released`` joins the sibling of ``owner`` sharing the longest border."""
    got: list[str] = []
    for piece in parts(released):
        if area_m2(piece) <= NOISE_M2:
            continue
        best, best_len = None, 0.0
        for s in items:
            if not s.live or s.code == owner.code or s.parent != owner.parent \
                    or s.level != owner.level:
                continue
            assert s.geom is not None
            length = shared_border_m(piece, s.geom)
            if length > best_len:
                best, best_len = s, length
        if best is None or best.geom is None:
            continue  # stays a gap; validate() reports it
        _replace(items, best, replace(best, geom=_union([best.geom, piece]), touched=True))
        got.append(best.code)
    return got


def _placed(draft: Draft, parent: str, shape: BaseGeometry, *, exclude: str | None
            ) -> BaseGeometry:
    """``shape`` snapped to its siblings and parent, clipped to the parent (sticking out more than
    the tolerance is refused)."""
    pg = draft.parent_geom(parent)
    assert pg is not None
    siblings = [s.geom for s in draft.children(parent) if s.code != exclude]
    snapped = snap(shape, [pg, *siblings])
    outside = _diff(snapped, pg)
    a = area_m2(outside)
    if a > TOLERANCE_M2:
        raise EditRejected([Problem(
            "outside_parent", f"The new shape extends {a:.1f} m² outside its parent {parent} "
            f"{_near(outside)}.", (parent,), _gj(outside), a)])
    return _inter(snapped, pg)


def reshape(draft: Draft, *, code: str, geometry: Any) -> Applied:
    """Give grid ``code`` a new shape; neighbours give up what it takes, and each piece it lets
    go joins the neighbour sharing the longest border with that piece."""
    it = _grid(draft, code)
    assert it.geom is not None
    new = _placed(draft, it.parent, _shape(geometry, "new shape"), exclude=it.code)
    items = list(draft.items)
    released = _diff(it.geom, new)
    moved = replace(it, geom=new, touched=True)
    _replace(items, it, moved)
    gave = _take(items, moved, new)
    got = _give_away(items, moved, released)
    delta = area_m2(new) - area_m2(it.geom)
    others = sorted(set(gave) | set(got))
    return Applied(draft.with_items(items), (it.parent,),
                   f"reshaped {code} ({delta:+.0f} m²)"
                   + (f"; neighbours {', '.join(others)} adjusted" if others else ""))


def split(draft: Draft, *, code: str, line: Any, new_code: str | None = None,
          new_name: str | None = None) -> Applied:
    """Cut grid ``code`` in two along ``line``: the larger part keeps the code."""
    from shapely.ops import split as cut

    it = _grid(draft, code)
    assert it.geom is not None
    try:
        blade = shapely.force_2d(shapely.geometry.shape(line))
    except Exception as exc:  # noqa: BLE001
        raise _reject("bad_split", f"The split line is not valid GeoJSON: {exc}.", (code,)) from exc
    if blade.geom_type != "LineString" or blade.is_empty:
        raise _reject("bad_split", f"A split needs a LineString, not {blade.geom_type}.", (code,))
    blade = snap(blade, [it.geom])
    pieces = [p for p in parts(cut(it.geom, blade)) if area_m2(p) > NOISE_M2]
    if len(pieces) < 2:
        raise _reject("bad_split", f"The line does not cut grid {code} in two: draw it across "
                                   "the grid, from outside to outside.", (code,), _gj(blade))
    if len(pieces) > 2:
        raise _reject("bad_split", f"The line cuts grid {code} into {len(pieces)} parts; draw "
                                   "one that cuts it in two.", (code,), _gj(blade))
    pieces.sort(key=area_m2, reverse=True)
    keep, other = (shapely.set_precision(p, GRID_DEG) for p in pieces)
    new_code = new_code or _next_code(draft, it.parent)
    why = valid_grid_code(new_code, it.parent)
    if why is not None:
        raise _reject("code_format", why[0].upper() + why[1:] + ".", (new_code,))
    items = list(draft.items)
    _replace(items, it, replace(it, geom=keep, touched=True))
    items.append(Item(code=new_code, level="grid",
                      name=new_name or _default_name(draft, it.parent, new_code),
                      parent=it.parent, geom=other, touched=True))
    return Applied(draft.with_items(items), (it.parent,),
                   f"split {code}: {new_code} takes {area_m2(other):.0f} m²")


def _connected(geoms: list[BaseGeometry]) -> bool:
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for j in range(len(geoms)):
            if j not in seen and shared_border_m(geoms[i], geoms[j]) > 0:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(geoms)


def merge(draft: Draft, *, codes: list[str], keep: str) -> Applied:
    """Merge neighbouring grids of one community into ``keep``; the others are retired."""
    its = [_grid(draft, c) for c in dict.fromkeys(codes)]
    if keep not in {i.code for i in its}:
        raise _reject("unknown_code", f"keep={keep} must be one of the merged grids.", (keep,))
    if len(its) < 2:
        raise _reject("not_neighbours", "A merge needs at least two grids.", codes)
    if len({i.parent for i in its}) > 1:
        raise _reject("not_neighbours", "Only grids of one community can be merged "
                                        f"({', '.join(sorted({i.parent for i in its}))}).", codes)
    geoms = [i.geom for i in its if i.geom is not None]
    if not _connected(geoms):
        raise _reject("not_neighbours", f"Grids {', '.join(codes)} are not all neighbours "
                                        "(each must share a border with another).", codes)
    items = list(draft.items)
    kept = next(i for i in its if i.code == keep)
    _replace(items, kept, replace(kept, geom=_union(geoms), touched=True))
    for i in its:
        if i is not kept:
            _replace(items, i, _retired(i))
    return Applied(draft.with_items(items), (kept.parent,),
                   f"merged {', '.join(c for c in codes if c != keep)} into {keep}")


def _retired(it: Item) -> Item | None:
    """The item once retired: a row without geometry, or nothing if the plan created it."""
    return None if it.origin is None else replace(it, geom=None, touched=True)


def retire(draft: Draft, *, code: str, into: str) -> Applied:
    """Retire grid ``code``; its area joins the neighbouring grid ``into``."""
    it, to = _grid(draft, code), _grid(draft, into)
    assert it.geom is not None and to.geom is not None
    if it.code == to.code or it.parent != to.parent or shared_border_m(it.geom, to.geom) <= 0:
        raise _reject("not_neighbours", f"Grid {code} can only be retired into a neighbouring "
                                        f"grid of its community; {into} is not one.",
                      (code, into))
    items = list(draft.items)
    _replace(items, to, replace(to, geom=_union([to.geom, it.geom]), touched=True))
    _replace(items, it, _retired(it))
    return Applied(draft.with_items(items), (it.parent,), f"retired {code} into {into}")


def recode(draft: Draft, *, code: str, new_code: str) -> Applied:
    """Give grid ``code`` another code in its community."""
    it = _grid(draft, code)
    why = valid_grid_code(new_code, it.parent)
    if why is not None:
        raise _reject("code_format", why[0].upper() + why[1:] + ".", (new_code,))
    items = list(draft.items)
    _replace(items, it, replace(it, code=new_code, touched=True))
    return Applied(draft.with_items(items), (it.parent,), f"re-coded {code} as {new_code}")


def move(draft: Draft, *, code: str, parent_code: str, new_code: str | None = None) -> Applied:
    """Move grid ``code`` to the neighbouring community ``parent_code`` (re-coded under it).

    The two communities' boundaries follow: the old one gives up the grid's area, the new one
    takes it. Both communities must be in the plan (a plan over their street).
    """
    it = _grid(draft, code)
    assert it.geom is not None
    if draft.region_level != "street":
        raise _reject("unsupported", "Moving a grid to another community changes both "
                                     "communities: open the plan over their street.",
                      (code, parent_code))
    old_c, new_c = draft.get(it.parent, "community"), draft.get(parent_code, "community")
    if new_c is None or old_c is None:
        raise _reject("unknown_code", f"Community {parent_code} is not in this plan.",
                      (parent_code,))
    if new_c.code == old_c.code:
        raise _reject("not_neighbours", f"Grid {code} is already in {parent_code}.", (code,))
    assert new_c.geom is not None and old_c.geom is not None
    if shared_border_m(it.geom, new_c.geom) <= 0:
        raise _reject("not_neighbours", f"Grid {code} does not border community {parent_code}.",
                      (code, parent_code))
    target = new_code or _next_code(draft, parent_code)
    why = valid_grid_code(target, parent_code)
    if why is not None:
        raise _reject("code_format", why[0].upper() + why[1:] + ".", (target,))
    items = list(draft.items)
    _replace(items, it, replace(it, code=target, parent=parent_code,
                                name=_default_name(draft, parent_code, target), touched=True))
    _replace(items, old_c, replace(old_c, geom=_diff(old_c.geom, it.geom), touched=True))
    _replace(items, new_c, replace(new_c, geom=_union([new_c.geom, it.geom]), touched=True))
    return Applied(draft.with_items(items), (draft.region_code, old_c.code, new_c.code),
                   f"moved {code} to community {parent_code} as {target}")


def create(draft: Draft, *, parent_code: str, geometry: Any, name: str | None = None,
           code: str | None = None) -> Applied:
    """A new grid in ``parent_code``, carved out of the grids it covers."""
    if draft.parent_geom(parent_code) is None or (
            parent_code != draft.region_code and draft.region_level == "community"):
        raise _reject("unknown_code", f"Community {parent_code} is not in this plan.",
                      (parent_code,))
    if draft.region_level == "street" and parent_code == draft.region_code:
        raise _reject("unsupported", "A grid belongs to a community, not to a street.",
                      (parent_code,))
    shape = _placed(draft, parent_code, _shape(geometry, "new grid"), exclude=None)
    target = code or _next_code(draft, parent_code)
    why = valid_grid_code(target, parent_code)
    if why is not None:
        raise _reject("code_format", why[0].upper() + why[1:] + ".", (target,))
    new = Item(code=target, level="grid", name=name or _default_name(draft, parent_code, target),
               parent=parent_code, geom=shape, touched=True)
    items = list(draft.items)
    items.append(new)
    gave = _take(items, new, shape)
    return Applied(draft.with_items(items), (parent_code,),
                   f"created {target} ({area_m2(shape):.0f} m²)"
                   + (f" from {', '.join(gave)}" if gave else ""))


OPS: dict[str, Callable[..., Applied]] = {
    "reshape": reshape, "split": split, "merge": merge, "move": move, "create": create,
    "retire": retire, "recode": recode}


def apply(draft: Draft, edit: dict[str, Any], *, sliver_m2: float = SLIVER_M2) -> Applied:
    """Apply one edit (``{"op": ..., ...}``) and refuse it if it leaves new problems.

    Raises :class:`EditRejected` with the problems; the input draft is never changed.
    """
    args = {k: v for k, v in edit.items() if k != "op" and v is not None}
    fn = OPS.get(edit.get("op", ""))
    if fn is None:
        raise _reject("unsupported", f"Unknown edit {str(edit.get('op'))[:20]!r}; expected one "
                                     f"of {', '.join(OPS)}.")
    try:
        result = fn(draft, **args)
    except TypeError as exc:
        raise _reject("unsupported", f"Wrong fields for {edit['op']}: {exc}.") from exc
    # Only what the edit replaced is checked again: those children, their pairs, and gaps
    # where they were or are now.
    kept = {id(it) for it in result.draft.items}
    gone = [it for it in draft.items if id(it) not in kept]
    was = {id(it) for it in draft.items}
    came = [it for it in result.draft.items if id(it) not in was]
    zone = _union([it.geom for it in (*gone, *came) if it.geom is not None])
    before = validate(draft, parents=result.parents, sliver_m2=sliver_m2,
                      only={it.code for it in gone}, zone=zone)
    after = validate(result.draft, parents=result.parents, sliver_m2=sliver_m2,
                     only={it.code for it in came}, zone=zone)
    fresh = new_problems(before, after)
    if fresh:
        raise EditRejected(fresh)
    return replace(result, problems=tuple(after))
