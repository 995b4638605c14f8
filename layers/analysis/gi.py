"""Hot and cold spots (Getis–Ord Gi*) over grid counts, and how they move month over month.

* **Counts**: incidents received in the month per grid (the grid assigned at intake), optionally of
  one category or category group; every grid in force in the area counts, with 0 if it had none.
* **Weights**: Queen contiguity from the grid polygons (two grids are neighbours when their
  boundaries share at least one point, ``ST_Intersects`` in PostGIS: the grids tile their
  community exactly, so neighbours touch and never overlap), binary, with the grid itself included
  (the *star* of Gi*). A grid with no neighbour is scored on itself alone.
* **Statistic**: :func:`esda.getisord.G_Local` (PySAL) on a libpysal ``Graph`` (:func:`graph`,
  the diagonal already 1) with ``star=True``, ``transform='B'``, no
  permutations: the analytical z-score (``Zs``). :func:`gi_star_z` is the textbook formula written
  out independently, which the tests hold esda to.
* **Classes**: |z| ≥ 1.645 / 1.960 / 2.576 → hot (z > 0) or cold (z < 0) at 90 / 95 / 99 %
  confidence (two-sided, as in ArcGIS's Hot Spot Analysis). No correction for multiple testing:
  the classes are a map for a meeting, not a test of one grid.
* **Over time** (:func:`trend`): Gi* for each of the last ``months`` months with the same weights;
  a grid that is hot (≥ 95 %) this month is *new* if it was hot in none of the earlier months,
  *persistent* if it was hot in every one, *consecutive* if it was hot last month too (a run
  ending now) and *sporadic* otherwise; a grid hot earlier but not now is *diminished*. (A
  simplified form of ArcGIS's Emerging Hot Spot Analysis, without the Mann–Kendall trend test.)
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any, NotRequired, TypedDict

import numpy as np
from sqlalchemy import Connection, text

from grids.access import Permission, Principal, prefix_of
from grids.city import profile
from layers import assessment
from layers.analysis.month import shift_month

LEVELS = ((2.576, 99), (1.960, 95), (1.645, 90))


# Queen adjacency per set of boundaries: ST_Intersects over the grids' polygons is the slow part
# of Gi* (seconds for a city's thousands of detailed grids) and changes only with the boundaries.
_NEIGHBOURS: OrderedDict[str, dict[str, list[str]]] = OrderedDict()
_NEIGHBOURS_KEEP = 8


def grid_neighbours(conn: Connection, codes: list[str], *, cache: bool = True
                    ) -> dict[str, list[str]]:
    """Queen contiguity between the grids ``codes`` (in force now), from PostGIS.

    Kept in the process per *set of boundaries*: the key is the database and the
    (code, boundary row) pairs in force for ``codes`` (a redrawn grid gets a new boundary row, a
    retired one leaves ``region_current``), so a plan that takes effect gives a new key.
    """
    key = conn.execute(text(
        "SELECT current_database() || ':' || coalesce(inet_server_port(), 0) || ':' || "
        "md5(coalesce(string_agg(code || '@' || boundary_id, ',' ORDER BY code), '')) "
        "FROM region_current WHERE level = 'grid' AND code IN "
        "(SELECT unnest(CAST(:c AS text[])))"), {"c": codes}).scalar_one()
    if cache and key in _NEIGHBOURS:
        _NEIGHBOURS.move_to_end(key)
        return {c: list(v) for c, v in _NEIGHBOURS[key].items()}
    nb: dict[str, list[str]] = {c: [] for c in codes}
    for a, b in conn.execute(text(
            "SELECT a.code, b.code FROM region_current a JOIN region_current b "
            "ON a.code < b.code AND a.geom && b.geom AND ST_Intersects(a.geom, b.geom) "
            "WHERE a.level = 'grid' AND b.level = 'grid' "
            "AND a.code IN (SELECT unnest(CAST(:c AS text[]))) "
            "AND b.code IN (SELECT unnest(CAST(:c AS text[])))"), {"c": codes}):
        nb[a].append(b)
        nb[b].append(a)
    for v in nb.values():  # the join's row order is the plan's: one order for every answer
        v.sort()
    if cache:
        _NEIGHBOURS[key] = {c: list(v) for c, v in nb.items()}
        while len(_NEIGHBOURS) > _NEIGHBOURS_KEEP:
            _NEIGHBOURS.popitem(last=False)
    return nb


def grid_counts(conn: Connection, *, principal: Principal, month: str, region: str | None = None,
                category: str | None = None) -> dict[str, int]:
    """Incidents received in ``month`` per grid in force in the caller's area (0 included)."""
    tz = profile(conn).tz
    principal.require(Permission.ASSESSMENT_READ)
    s, e = assessment.month_window(month, tz)
    scope = principal.locate_scope()
    params: dict[str, Any] = {"s": s, "e": e, "p": (prefix_of(region) if region else "") + "%",
                              "patterns": scope.like_patterns(), "cat": category}
    rows = conn.execute(text(
        "WITH n AS (SELECT i.grid_code AS code, count(*) AS n FROM incident i "
        "JOIN category c ON c.id = i.category_id LEFT JOIN category g ON g.id = c.parent_id "
        f"WHERE {assessment.RECEIVED_SQL} AND (CAST(:cat AS text) IS NULL OR c.code = :cat "
        "OR g.code = :cat) GROUP BY 1) "
        "SELECT r.code, coalesce(n.n, 0) FROM region_current r LEFT JOIN n USING (code) "
        "WHERE r.level = 'grid' AND r.code LIKE :p AND r.code LIKE ANY(:patterns) "
        "ORDER BY r.code"), params).all()
    return {c: int(n) for c, n in rows}


def weights(neighbours: dict[str, list[str]], codes: list[str]) -> Any:
    """A libpysal binary ``W`` over ``codes`` (in that order)."""
    from libpysal.weights import W

    return W({c: neighbours.get(c, []) for c in codes}, id_order=codes, silence_warnings=True)


def graph(neighbours: dict[str, list[str]], codes: list[str]) -> Any:
    """The same binary weights as a libpysal ``Graph`` over ``codes`` (in that order), each grid
    its own neighbour with weight 1 (the *star*), built from a sparse matrix.

    esda takes it as it is (its diagonal is already set); given a ``W`` it rebuilds the whole
    ``W`` to set the diagonal (``fill_diagonal``), which at 10,000 grids costs ~25× the
    statistic. The z-scores are the same (the bench and the tests compare them).
    """
    import scipy.sparse as sp
    from libpysal.graph import Graph

    idx = {c: i for i, c in enumerate(codes)}
    heads, tails = [], []
    for c in codes:
        i = idx[c]
        heads.append(i)
        tails.append(i)
        for x in neighbours.get(c, []):
            j = idx.get(x)
            if j is not None:
                heads.append(i)
                tails.append(j)
    n = len(codes)
    m = sp.csr_array((np.ones(len(heads)), (np.array(heads, dtype=np.int64),
                                           np.array(tails, dtype=np.int64))), shape=(n, n))
    return Graph.from_sparse(m, ids=np.arange(n))


def gi_star(values: np.ndarray, w: Any) -> np.ndarray:
    """Gi* z-scores by esda (binary weights, self included, analytical). ``w``: a libpysal
    ``W`` without self-weights (:func:`weights`) or a ``Graph`` with them (:func:`graph`)."""
    from esda.getisord import G_Local

    g = G_Local(np.asarray(values, dtype=float), w, transform="B", star=True, permutations=0)
    return np.asarray(g.Zs, dtype=float)


def gi_star_z(values: np.ndarray, neighbours: list[list[int]]) -> np.ndarray:
    """Gi* z-scores by the formula (Getis & Ord 1992; Ord & Getis 1995), binary weights with
    w_ii = 1, written without PySAL:

    z_i = (Σ_j w_ij x_j − x̄ W_i) / (S √((n S1_i − W_i²) / (n − 1))), with
    W_i = Σ_j w_ij, S1_i = Σ_j w_ij², x̄ the mean and S² = Σ x² / n − x̄².

    >>> gi_star_z(np.array([1.0, 1, 1, 5]), [[1], [0, 2], [1, 3], [2]]).round(3).tolist()
    [-1.0, -1.732, 0.577, 1.0]
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    mean = x.mean()
    s = math.sqrt(max((x * x).mean() - mean * mean, 0.0))
    out = np.zeros(n)
    for i in range(n):
        js = [i, *neighbours[i]]
        wi = float(len(js))
        num = x[js].sum() - mean * wi
        den = s * math.sqrt((n * wi - wi * wi) / (n - 1)) if s > 0 else 0.0
        out[i] = num / den if den > 0 else 0.0
    return out


def classify(z: float) -> tuple[str | None, int | None]:
    """('hot' | 'cold' | None, confidence %).

    >>> classify(2.0), classify(-2.7), classify(1.0)
    (('hot', 95), ('cold', 99), (None, None))
    """
    for cut, conf in LEVELS:
        if abs(z) >= cut:
            return ("hot" if z > 0 else "cold"), conf
    return None, None


class Hotspots(TypedDict):
    """What :func:`hotspots` returns (``GET /analysis/hotspots``); with fewer than 3 grids only
    month, category, grids (empty), n and a note."""

    month: str
    category: str | None
    region: NotRequired[str | None]
    n: int
    isolates: NotRequired[int]
    weights: NotRequired[str]
    summary: NotRequired[dict[str, int]]
    grids: list[dict[str, Any]]  # code, count, z, kind, confidence (+ name, geometry)
    note: NotRequired[str]


class HotspotTrend(TypedDict):
    """What :func:`trend` returns (``GET /analysis/hotspots`` with months > 1)."""

    month: str
    months: list[str]
    category: str | None
    grids: list[dict[str, Any]]  # code, kind, hot_months, z per month (+ name, geometry)
    rule: str


def hotspots(conn: Connection, *, principal: Principal, month: str, region: str | None = None,
             category: str | None = None,
             neighbours: dict[str, list[str]] | None = None) -> Hotspots:
    """Gi* per grid for the month: z, class and confidence, with the counts."""
    counts = grid_counts(conn, principal=principal, month=month, region=region,
                         category=category)
    codes = list(counts)
    if len(codes) < 3:
        return {"month": month, "category": category, "grids": [], "n": len(codes),
                "note": "fewer than 3 grids: Gi* is not defined"}
    nb = neighbours or grid_neighbours(conn, codes)
    y = np.array([counts[c] for c in codes], dtype=float)
    z = gi_star(y, graph(nb, codes)) if y.std() > 0 else np.zeros(len(codes))
    grids = []
    for c, v, zi in zip(codes, y, z, strict=True):
        kind, conf = classify(float(zi))
        grids.append({"code": c, "count": int(v), "z": round(float(zi), 3), "kind": kind,
                      "confidence": conf})
    summary = {f"{k}_{conf}": sum(g["kind"] == k and g["confidence"] == conf for g in grids)
               for k in ("hot", "cold") for _, conf in LEVELS}
    return {"month": month, "category": category, "region": region, "n": len(codes),
            "isolates": sum(not nb.get(c) for c in codes), "weights": "queen, binary, self "
            "included (Gi*)", "summary": summary, "grids": grids}


def attach_shapes(conn: Connection, grids: list[dict[str, Any]], *, all_geometry: bool = False,
                  tolerance: float = 0.00005) -> list[dict[str, Any]]:
    """Add each grid's ``name`` and (for the significant ones, or all with ``all_geometry``) its
    outline as GeoJSON (WGS84, simplified by ``tolerance`` degrees: ~5 m), for a map. The grids
    are those of a result already cut to the caller's area."""
    codes = [g["code"] for g in grids]
    want = [g["code"] for g in grids if all_geometry or g.get("kind")]
    rows = conn.execute(text(
        "SELECT r.code, r.name, CASE WHEN r.code = ANY(:w) THEN ST_AsGeoJSON("
        "ST_SimplifyPreserveTopology(r.geom, :tol), 6) END FROM region_current r "
        "WHERE r.level = 'grid' AND r.code = ANY(:c)"),
        {"c": codes, "w": want, "tol": tolerance}).all()
    by = {c: (n, g) for c, n, g in rows}
    for g in grids:
        name, geom = by.get(g["code"], (g["code"], None))
        g["name"] = name
        if geom is not None:
            g["geometry"] = json.loads(geom)
    return grids


def trend(conn: Connection, *, principal: Principal, month: str, months: int = 6,
          region: str | None = None, category: str | None = None) -> HotspotTrend:
    """New, consecutive, persistent, sporadic and diminished hot spots over ``months`` months."""
    names = [shift_month(month, k) for k in range(-(months - 1), 1)]
    counts0 = grid_counts(conn, principal=principal, month=month, region=region,
                          category=category)
    codes = list(counts0)
    nb = grid_neighbours(conn, codes)
    hot: dict[str, list[bool]] = {c: [] for c in codes}
    zs: dict[str, list[float]] = {c: [] for c in codes}
    for m in names:
        res = hotspots(conn, principal=principal, month=m, region=region, category=category,
                       neighbours=nb)
        by = {g["code"]: g for g in res["grids"]}
        for c in codes:
            g = by.get(c)
            zs[c].append(g["z"] if g else 0.0)
            hot[c].append(bool(g and g["kind"] == "hot" and (g["confidence"] or 0) >= 95))
    out: list[dict[str, Any]] = []
    for c in codes:
        h = hot[c]
        if h[-1]:
            if all(h):
                kind = "persistent"
            elif not any(h[:-1]):
                kind = "new"
            elif len(h) > 1 and h[-2]:
                kind = "consecutive"
            else:
                kind = "sporadic"
        elif any(h[:-1]):
            kind = "diminished"
        else:
            continue
        out.append({"code": c, "kind": kind, "hot_months": sum(h), "z": zs[c]})
    order = {"new": 0, "persistent": 1, "consecutive": 2, "sporadic": 3, "diminished": 4}
    out.sort(key=lambda g: (order[g["kind"]], -g["z"][-1], g["code"]))
    return {"month": month, "months": names, "category": category, "grids": out,
            "rule": "hot = Gi* z ≥ 1.96 (95 %); new: hot now only; persistent: hot every month; "
                    "consecutive: hot now and last month; sporadic: hot now and some earlier "
                    "month; diminished: hot earlier, not now"}
