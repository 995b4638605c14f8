"""The exact tiling checker of a plan's draft: overlaps, gaps, slivers, parts outside the
parent, disconnected grids and code problems (numbers: :mod:`grids.plans.draft`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import shapely
from shapely.geometry.base import BaseGeometry

from gis.validate import explain_invalid
from grids.plans.draft import (
    KINDS,
    SLIVER_M2,
    TOLERANCE_M2,
    Draft,
    Item,
    Problem,
    area_m2,
    diff_of,
    geojson_of,
    inter_of,
    near_text,
    parts,
    point_geojson_of,
    union_of,
)


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
    local = pg if zone is None else inter_of(pg, shapely.buffer(zone, 1e-6))
    near = geoms if zone is None else [g for g in geoms if shapely.intersects(g, local)]
    covered = union_of(near) if near else shapely.MultiPolygon()
    # Fast paths: when the union sticks out nowhere and the areas add up, no child is outside
    # and no two overlap; only then is each child (or pair) examined.
    sticks_out = area_m2(diff_of(covered, pg)) > tol
    for k in checked:
        assert k.geom is not None
        if sticks_out:
            outside = diff_of(k.geom, pg)
            a = area_m2(outside)
            if a > tol:
                out.append(Problem(
                    "outside_parent",
                    f"{noun} {k.code} extends {a:.1f} m² outside its parent {parent} "
                    f"{near_text(outside)}.", (k.code, parent), geojson_of(outside), a))
        pieces = parts(k.geom)
        areas = [area_m2(piece) for piece in pieces]
        for piece, pa in zip(pieces, areas, strict=True):
            if pa < sliver_m2:
                out.append(Problem(
                    "sliver",
                    f"{noun} {k.code} has a sliver of {pa:.1f} m² {near_text(piece)} (under "
                    f"{sliver_m2:g} m²).", (k.code,), geojson_of(piece), pa))
        big = [a for a in areas if a >= sliver_m2]
        if len(big) > 1:
            out.append(Problem(
                "disconnected",
                f"{noun} {k.code} falls into {len(big)} separate pieces; a grid is one area.",
                (k.code,), geojson_of(k.geom), sum(areas)))
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
                inter = inter_of(geoms[i], geoms[j])
                a = area_m2(inter)
                if a > tol:
                    ci, cj = sorted((good[i].code, good[j].code))
                    out.append(Problem(
                        "overlap", f"{noun}s {ci} and {cj} overlap by {a:.1f} m² "
                        f"{near_text(inter)}.", (ci, cj), geojson_of(inter), a))
    gap = diff_of(local, covered)
    for piece in parts(gap):
        a = area_m2(piece)
        if a > tol:
            out.append(Problem(
                "gap", f"{a:.1f} m² of {parent} {near_text(piece)} is covered by none of its "
                f"{'grids' if noun == 'Grid' else 'communities'}.", (parent,), geojson_of(piece), a))
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
                               point_geojson_of(it.geom) if it.geom is not None else None))
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
            rest = diff_of(shapely.geometry.shape(p.location), union_of(areas[p.key]))
            if area_m2(rest) > TOLERANCE_M2:
                fresh.append(p)
    return fresh
