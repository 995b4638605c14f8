"""The crosswalk from old grid codes to new: which old grid's area went where at each redraw.

:func:`record` runs inside a plan's activation (one transaction with it): for every grid whose
boundary the activation closes, it intersects the old shape with every grid in force at the
activation's ``effective_at`` and writes one ``boundary_crosswalk`` row per overlap (migration
0022). Areas are measured in the city's metric CRS (``citygrid_metric_srid(code)``, the city
profile; in a province, the old grid's city zone), never in a hard-coded SRID. Overlaps under
``NOISE_M2`` (0.01 m²: shared edges and rounding) are dropped; area of the old grid outside every
new grid (``ST_Difference`` with their union, measured as a shape) is a *remainder* row
(``new_code`` NULL) when it exceeds ``TOLERANCE_M2`` (1 m², the checker's tolerance). Shares are
each piece's area over the sum of the pieces (and the remainder), so the shares of one old grid in
one version sum to exactly 1; ``old_area_m2`` is the old shape's own area, which can differ from
that sum by a few m² per km² (a straight lon/lat edge cut by new vertices projects slightly
differently).

Households: the registry holds no households or population per grid, so ``household_share`` is
NULL and only area shares are recorded.

:class:`Crosswalk` composes successive redraws: an old code as it was at time ``T`` maps to the
codes in force at ``until`` (default now) by applying, in order of (effective_at, version), every
version that took effect after ``T``; shares multiply along the way and a remainder stays a
remainder (key ``None``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import Connection, text

from grids.access import Principal
from grids.plans.draft import NOISE_M2, TOLERANCE_M2
from grids.plans.store import plan_row

REMAINDER = None  # the key of the area outside every new grid

_PIECES_SQL = """
WITH o AS (
    SELECT r.code, b.geom, ST_Area(ST_Transform(b.geom, citygrid_metric_srid(r.code))) AS a
    FROM region_boundary b JOIN region r ON r.id = b.region_id
    WHERE b.id = ANY(:ids) AND r.level = 'grid'),
n AS (
    SELECT r.code, b.geom FROM region_boundary b JOIN region r ON r.id = b.region_id
    WHERE r.level = 'grid' AND b.valid_from <= :at AND (b.valid_to IS NULL OR b.valid_to > :at)
      AND b.geom && (SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4490) FROM o))
SELECT o.code AS old_code, o.a AS old_area, n.code AS new_code,
       ST_Area(ST_Transform(ST_Intersection(o.geom, n.geom),
                            citygrid_metric_srid(o.code))) AS area
FROM o LEFT JOIN n ON ST_Intersects(o.geom, n.geom) AND NOT ST_Touches(o.geom, n.geom)
"""
# The area of the old grid outside every new grid, measured as a shape (not as old area minus the
# pieces: a straight lon/lat edge cut by new vertices projects a little differently, which on a
# 1 km grid moves the sum of the pieces by tens of m² without any area being lost).
_REST_SQL = _PIECES_SQL.split("SELECT o.code AS old_code")[0] + """
SELECT o.code AS old_code, ST_Area(ST_Transform(ST_Difference(o.geom, coalesce(
    (SELECT ST_Union(n.geom) FROM n WHERE ST_Intersects(n.geom, o.geom)),
    ST_SetSRID(ST_GeomFromText('POLYGON EMPTY'), ST_SRID(o.geom)))),
    citygrid_metric_srid(o.code))) AS rest
FROM o
"""


def pieces(conn: Connection, *, closed: list[int], at: datetime) -> list[dict[str, Any]]:
    """The crosswalk rows (without version) for the grid boundaries ``closed`` at ``at``."""
    if not closed:
        return []
    found: dict[str, tuple[float, list[tuple[str, float]]]] = {}
    for r in conn.execute(text(_PIECES_SQL), {"ids": list(closed), "at": at}).mappings():
        old_area, parts = found.setdefault(r["old_code"], (float(r["old_area"]), []))
        if r["new_code"] is not None and r["area"] is not None and r["area"] > NOISE_M2:
            parts.append((r["new_code"], float(r["area"])))
    rests = {r.old_code: float(r.rest or 0.0) for r in conn.execute(
        text(_REST_SQL), {"ids": list(closed), "at": at})}
    sources: dict[str, set[str]] = defaultdict(set)
    for old, (_, parts) in found.items():
        for new, _a in parts:
            sources[new].add(old)
    out: list[dict[str, Any]] = []
    for old, (old_area, parts) in sorted(found.items()):
        total = sum(a for _, a in parts)
        rest = rests.get(old, 0.0)
        rows: list[tuple[str | None, float]] = sorted(parts)
        if rest > TOLERANCE_M2 or not parts:
            denom = total + rest
            rows.append((REMAINDER, rest))
        else:
            denom = total
        if not parts:
            change = "retire"
        elif len(parts) > 1:
            change = "split"
        elif parts[0][0] == old:
            change = "reshape"
        else:
            change = "merge" if len(sources[parts[0][0]]) > 1 else "recode"
        shares = [a / denom if denom > 0 else 0.0 for _, a in rows]
        if rows and rows[-1][0] is REMAINDER and parts:  # exact: the remainder closes the sum
            shares[-1] = max(0.0, 1.0 - sum(shares[:-1]))
        elif not parts:
            shares = [1.0]
        for (target, a), s in zip(rows, shares, strict=True):
            out.append({"old_code": old, "new_code": target, "change": change,
                        "old_area_m2": old_area, "area_m2": a, "area_share": s,
                        "household_share": None})
    return out


def record(conn: Connection, *, version: int, plan_id: int | None, at: datetime,
           closed: list[int]) -> int:
    """Write the crosswalk of one activation (boundary ``version``, effective ``at``), in the
    caller's transaction, from the boundary ids it ``closed`` (non-grid ids are ignored); the
    grids in force at ``at`` must already be written. Returns the number of rows."""
    rows = pieces(conn, closed=closed, at=at)
    if rows:
        conn.execute(text(
            "INSERT INTO boundary_crosswalk (version_id, plan_id, effective_at, old_code, "
            "new_code, change, old_area_m2, area_m2, area_share, household_share) VALUES "
            "(:v, :p, :at, :old_code, :new_code, :change, :old_area_m2, :area_m2, :area_share, "
            ":household_share)"),
            [{**r, "v": version, "p": plan_id, "at": at} for r in rows])
    return len(rows)


@dataclass
class Crosswalk:
    """Every recorded redraw up to ``until``, in order, for composing (see the module doc)."""

    until: datetime | None
    steps: list[tuple[datetime, int, dict[str, list[tuple[str | None, float]]]]] = field(
        default_factory=list)

    def compose(self, code: str, since: datetime | None = None) -> dict[str | None, float]:
        """Where grid ``code`` as it was at ``since`` lies at ``until``: {code or None: share}.
        ``since`` None: before every recorded redraw."""
        shares: dict[str | None, float] = {code: 1.0}
        for at, _v, moves in self.steps:
            if since is not None and at <= since:
                continue
            if not any(k in moves for k in shares if k is not None):
                continue
            nxt: dict[str | None, float] = defaultdict(float)
            for k, s in shares.items():
                if k is None or k not in moves:
                    nxt[k] += s
                    continue
                for new, share in moves[k]:
                    nxt[new] += s * share
            shares = dict(nxt)
        return shares

    def changed_since(self, code: str, since: datetime) -> bool:
        """Did a redraw after ``since`` (up to ``until``) change grid ``code``?"""
        return any(at > since and code in moves for at, _v, moves in self.steps)


def load(conn: Connection, *, until: datetime | None = None) -> Crosswalk:
    """Every crosswalk row that took effect by ``until`` (None: now), grouped by version."""
    rows = conn.execute(text(
        "SELECT version_id, effective_at, old_code, new_code, area_share FROM boundary_crosswalk "
        "WHERE effective_at <= coalesce(CAST(:until AS timestamptz), now()) "
        "ORDER BY effective_at, version_id, old_code, new_code"), {"until": until}).all()
    cw = Crosswalk(until=until)
    for v, at, old, new, share in rows:
        if not cw.steps or cw.steps[-1][1] != v:
            cw.steps.append((at, v, {}))
        cw.steps[-1][2].setdefault(old, []).append((new, float(share)))
    return cw


COLUMNS = ("version", "effective_at", "old_code", "new_code", "change", "old_area_m2", "area_m2",
           "area_share", "household_share")


class CrosswalkRow(TypedDict):
    """One row of :data:`COLUMNS`: a share of an old grid's area that went to a new grid."""

    version: int
    effective_at: str
    old_code: str
    new_code: str | None  # None: the remainder, outside every new grid
    change: str
    old_area_m2: float
    area_m2: float
    area_share: float
    household_share: float | None


class PlanCrosswalk(TypedDict):
    """:func:`of_plan`: the rows, and each old code composed onto today's grids."""

    plan: int
    status: str
    columns: list[str]
    rows: list[CrosswalkRow]
    today: dict[str, dict[str, float]]
    notes: list[str]


def of_plan(conn: Connection, plan_id: int, *, principal: Principal) -> PlanCrosswalk:
    """The crosswalk a plan's activation recorded, with each old code composed onto the grids
    in force now (``today``). A draft has none yet (empty ``rows``)."""
    row = plan_row(conn, plan_id, principal)
    rows = [cast(CrosswalkRow, {**r, "effective_at": r["effective_at"].isoformat(),
                                 "old_area_m2": round(r["old_area_m2"], 3),
                                 "area_m2": round(r["area_m2"], 3)})
            for r in conn.execute(text(
                "SELECT version_id AS version, effective_at, old_code, new_code, change, "
                "old_area_m2, area_m2, area_share, household_share FROM boundary_crosswalk "
                "WHERE plan_id = :p ORDER BY version_id, old_code, new_code NULLS LAST"),
                {"p": plan_id}).mappings()]
    cw = load(conn)
    today: dict[str, dict[str, float]] = {}
    olds = {(r["old_code"], r["version"]) for r in rows}
    for old, version in sorted(olds):
        start = next((at for at, v, _ in cw.steps if v == version), None)
        if start is None:  # scheduled, not in effect yet
            continue
        # this version and every one after it
        comp = Crosswalk(until=None,
                         steps=[s for s in cw.steps if (s[0], s[1]) >= (start, version)])
        today[old] = {("" if k is None else k): round(v, 9) for k, v in comp.compose(old).items()}
    return {"plan": plan_id, "status": row["status"], "columns": list(COLUMNS), "rows": rows,
            "today": today,
            "notes": ["area_share: share of the old grid's area (measured in the city's metric "
                      "CRS) that went to new_code; new_code empty: area outside every new grid "
                      "(remainder). The shares of one old grid in one version sum to 1.",
                      "household_share is empty: the registry holds no households or "
                      "population per grid.",
                      "today: each old code composed through every later redraw onto the grids "
                      "in force now (key '' = remainder)."]}


def write_gpkg(conn: Connection, plan_id: int, path: Any, *, principal: Principal) -> int:
    """Add the plan's crosswalk to a GeoPackage as the attribute table ``crosswalk`` (no
    geometry; :data:`COLUMNS`, ``new_code`` empty = remainder). Nothing is added for a plan not
    activated yet. Returns the number of rows."""
    import pandas as pd
    import pyogrio

    rows = of_plan(conn, plan_id, principal=principal)["rows"]
    if rows:
        pyogrio.write_dataframe(pd.DataFrame(rows, columns=list(COLUMNS)), path,
                                layer="crosswalk", driver="GPKG")
    return len(rows)
