"""The edits of a plan's draft (reshape, split, merge, retire, recode, move, create, rename) and
:func:`apply`, which refuses an edit that adds a problem. Each returns a new draft; the input
is never changed. No database.

Each edit also returns its *facts*: what it did as data (``op``, the codes and names involved,
areas), stored with the edit so that the editor can say it in the page's language; ``summary``
is the same in English, for logs and the API.

A grid the plan names (split, create, move) follows its community's naming pattern: the most
common pattern of its sibling grids' names with the grid's number in place
(:func:`name_pattern`, e.g. "秦塘社区第{n}网格"), else "<community name>第{n}网格".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gis.validate import explain_invalid
from grids.plans.checks import new_problems, valid_grid_code, validate
from grids.plans.draft import (
    DEG_PER_M,
    GRID_DEG,
    NOISE_M2,
    SLIVER_M2,
    SNAP_M,
    TOLERANCE_M2,
    Draft,
    EditRejected,
    Item,
    Problem,
    area_m2,
    diff_of,
    geojson_of,
    inter_of,
    near_text,
    parts,
    polygonal,
    shared_border_m,
    union_of,
)


@dataclass(frozen=True)
class Applied:
    draft: Draft
    parents: tuple[str, ...]  # whose tiling to re-check
    summary: str
    problems: tuple[Problem, ...] = ()  # after the edit, where it acted (none new, by apply)
    facts: dict[str, Any] = field(default_factory=dict)  # what it did, as data (see above)


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
    except Exception as exc:  # any malformed GeoJSON, re-raised as the edit's refusal
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
    tol = snap_m * DEG_PER_M
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


def name_pattern(names_and_codes: Iterable[tuple[str, str]]) -> str | None:
    """The most common pattern of grid names, ``{n}`` where the grid's number is, or None.

    A name follows a pattern when it holds its grid's number (the code's last three digits as a
    number, e.g. 15 for ...015) as a whole number; the last such occurrence becomes ``{n}``.

    >>> name_pattern([("秦塘社区第1网格", "990200001018001"), ("秦塘社区第2网格", "990200001018002"),
    ...               ("秦塘社区居民委员会第3网格", "990200001018003")])
    '秦塘社区第{n}网格'
    >>> name_pattern([("东区", "990200001018001")]) is None
    True
    """
    found: Counter[str] = Counter()
    for name, code in names_and_codes:
        if len(code) != 15 or not code[12:].isdigit():
            continue
        hits = list(re.finditer(rf"(?<!\d){int(code[12:])}(?!\d)", name))
        if hits:
            m = hits[-1]
            found[name[:m.start()] + "{n}" + name[m.end():]] += 1
    if not found:
        return None
    best = max(found.values())
    return next(p for p, k in found.items() if k == best)


def _default_name(draft: Draft, parent: str, code: str, *, exclude: str | None = None) -> str:
    """The name of a grid the plan names: its community's pattern with its number."""
    siblings = [(it.name, it.code) for it in draft.children(parent)
                if it.level == "grid" and it.code != exclude]
    pattern = name_pattern(siblings) or f"{draft.parent_name(parent)}第{{n}}网格"
    return pattern.replace("{n}", str(int(code[12:])))


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
        if area_m2(inter_of(s.geom, shape)) <= NOISE_M2:
            continue
        _replace(items, s, replace(s, geom=diff_of(s.geom, shape), touched=True))
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
        _replace(items, best, replace(best, geom=union_of([best.geom, piece]), touched=True))
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
    outside = diff_of(snapped, pg)
    a = area_m2(outside)
    if a > TOLERANCE_M2:
        raise EditRejected([Problem(
            "outside_parent", f"The new shape extends {a:.1f} m² outside its parent {parent} "
            f"{near_text(outside)}.", (parent,), geojson_of(outside), a)])
    return inter_of(snapped, pg)


def reshape(draft: Draft, *, code: str, geometry: Any) -> Applied:
    """Give grid ``code`` a new shape; neighbours give up what it takes, and each piece it lets
    go joins the neighbour sharing the longest border with that piece."""
    it = _grid(draft, code)
    assert it.geom is not None
    new = _placed(draft, it.parent, _shape(geometry, "new shape"), exclude=it.code)
    items = list(draft.items)
    released = diff_of(it.geom, new)
    moved = replace(it, geom=new, touched=True)
    _replace(items, it, moved)
    gave = _take(items, moved, new)
    got = _give_away(items, moved, released)
    delta = area_m2(new) - area_m2(it.geom)
    others = sorted(set(gave) | set(got))
    return Applied(draft.with_items(items), (it.parent,),
                   f"reshaped {code} ({delta:+.0f} m²)"
                   + (f"; neighbours {', '.join(others)} adjusted" if others else ""),
                   facts={"op": "reshape", "code": code, "name": it.name,
                          "delta_m2": round(delta, 1), "neighbours": others})


def split(draft: Draft, *, code: str, line: Any, new_code: str | None = None,
          new_name: str | None = None) -> Applied:
    """Cut grid ``code`` in two along ``line``: the larger part keeps the code."""
    from shapely.ops import split as cut

    it = _grid(draft, code)
    assert it.geom is not None
    try:
        blade = shapely.force_2d(shapely.geometry.shape(line))
    except Exception as exc:  # any malformed GeoJSON, re-raised as the edit's refusal
        raise _reject("bad_split", f"The split line is not valid GeoJSON: {exc}.", (code,)) from exc
    if blade.geom_type != "LineString" or blade.is_empty:
        raise _reject("bad_split", f"A split needs a LineString, not {blade.geom_type}.", (code,))
    blade = snap(blade, [it.geom])
    pieces = [p for p in parts(cut(it.geom, blade)) if area_m2(p) > NOISE_M2]
    if len(pieces) < 2:
        raise _reject("bad_split", f"The line does not cut grid {code} in two: draw it across "
                                   "the grid, from outside to outside.", (code,), geojson_of(blade))
    if len(pieces) > 2:
        raise _reject("bad_split", f"The line cuts grid {code} into {len(pieces)} parts; draw "
                                   "one that cuts it in two.", (code,), geojson_of(blade))
    pieces.sort(key=area_m2, reverse=True)
    keep, other = (shapely.set_precision(p, GRID_DEG) for p in pieces)
    new_code = new_code or _next_code(draft, it.parent)
    why = valid_grid_code(new_code, it.parent)
    if why is not None:
        raise _reject("code_format", why[0].upper() + why[1:] + ".", (new_code,))
    items = list(draft.items)
    _replace(items, it, replace(it, geom=keep, touched=True))
    name = new_name or _default_name(draft, it.parent, new_code)
    items.append(Item(code=new_code, level="grid", name=name, parent=it.parent, geom=other,
                      touched=True))
    return Applied(draft.with_items(items), (it.parent,),
                   f"split {code}: {new_code} takes {area_m2(other):.0f} m²",
                   facts={"op": "split", "code": code, "name": it.name, "new_code": new_code,
                          "new_name": name, "area_m2": round(area_m2(other), 1)})


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
    _replace(items, kept, replace(kept, geom=union_of(geoms), touched=True))
    for i in its:
        if i is not kept:
            _replace(items, i, _retired(i))
    gone = [c for c in dict.fromkeys(codes) if c != keep]
    return Applied(draft.with_items(items), (kept.parent,),
                   f"merged {', '.join(gone)} into {keep}",
                   facts={"op": "merge", "codes": gone, "keep": keep, "name": kept.name})


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
    _replace(items, to, replace(to, geom=union_of([to.geom, it.geom]), touched=True))
    _replace(items, it, _retired(it))
    return Applied(draft.with_items(items), (it.parent,), f"retired {code} into {into}",
                   facts={"op": "retire", "code": code, "name": it.name, "into": into,
                          "into_name": to.name})


def recode(draft: Draft, *, code: str, new_code: str) -> Applied:
    """Give grid ``code`` another code in its community."""
    it = _grid(draft, code)
    why = valid_grid_code(new_code, it.parent)
    if why is not None:
        raise _reject("code_format", why[0].upper() + why[1:] + ".", (new_code,))
    items = list(draft.items)
    _replace(items, it, replace(it, code=new_code, touched=True))
    return Applied(draft.with_items(items), (it.parent,), f"re-coded {code} as {new_code}",
                   facts={"op": "recode", "code": code, "name": it.name, "new_code": new_code})


def rename(draft: Draft, *, code: str, name: str) -> Applied:
    """Give grid ``code`` another name (1-200 characters, not blank)."""
    it = _grid(draft, code)
    new = " ".join(str(name).split())
    if not new or len(new) > 200:
        raise _reject("invalid_name", "A grid's name must have 1 to 200 characters.", (code,))
    if new == it.name:
        raise _reject("invalid_name", f"Grid {code} is already named {new}.", (code,))
    items = list(draft.items)
    _replace(items, it, replace(it, name=new, touched=True))
    return Applied(draft.with_items(items), (it.parent,), f"renamed {code} to {new}",
                   facts={"op": "rename", "code": code, "old_name": it.name, "name": new})


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
    name = _default_name(draft, parent_code, target)
    _replace(items, it, replace(it, code=target, parent=parent_code, name=name, touched=True))
    _replace(items, old_c, replace(old_c, geom=diff_of(old_c.geom, it.geom), touched=True))
    _replace(items, new_c, replace(new_c, geom=union_of([new_c.geom, it.geom]), touched=True))
    return Applied(draft.with_items(items), (draft.region_code, old_c.code, new_c.code),
                   f"moved {code} to community {parent_code} as {target}",
                   facts={"op": "move", "code": code, "name": it.name, "new_code": target,
                          "new_name": name, "from_parent": old_c.code,
                          "from_parent_name": old_c.name, "parent_code": parent_code,
                          "parent_name": new_c.name})


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
    name = name or _default_name(draft, parent_code, target)
    new = Item(code=target, level="grid", name=name, parent=parent_code, geom=shape, touched=True)
    items = list(draft.items)
    items.append(new)
    gave = _take(items, new, shape)
    return Applied(draft.with_items(items), (parent_code,),
                   f"created {target} ({area_m2(shape):.0f} m²)"
                   + (f" from {', '.join(gave)}" if gave else ""),
                   facts={"op": "create", "code": target, "name": name,
                          "parent_code": parent_code, "area_m2": round(area_m2(shape), 1),
                          "from": gave})


OPS: dict[str, Callable[..., Applied]] = {
    "reshape": reshape, "split": split, "merge": merge, "move": move, "create": create,
    "retire": retire, "recode": recode, "rename": rename}


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
    zone = union_of([it.geom for it in (*gone, *came) if it.geom is not None])
    before = validate(draft, parents=result.parents, sliver_m2=sliver_m2,
                      only={it.code for it in gone}, zone=zone)
    after = validate(result.draft, parents=result.parents, sliver_m2=sliver_m2,
                     only={it.code for it in came}, zone=zone)
    fresh = new_problems(before, after)
    if fresh:
        raise EditRejected(fresh)
    return replace(result, problems=tuple(after))
