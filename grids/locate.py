"""The locator: point → grid → chain → responsible worker, from an in-memory snapshot.

A :class:`Snapshot` holds the boundaries and assignments in force at one moment, loaded from
PostGIS (the source of truth) by :func:`load_snapshot`. Lookups never touch the database.

Rules, pinned by tests:

- **Edges.** A point covered by several grids (on a shared edge or vertex) goes to the grid with the
  lowest code: covers semantics as in ``ST_Covers``, then the code order.
- **Gaps.** A point in the city but in no grid falls back to the smallest region covering it
  (community, then street, then the city itself): 属地兜底.
- **Outside.** A point outside every region gets ``status='outside'`` with the nearest grid and
  its distance in metres: nearest by planar distance in lon/lat (as ``shapely`` measures it to
  every grid), ties (a vertex two grids' outlines share) to the lowest code, the metres geodesic
  to that nearest point (:mod:`gis.edges`).
- **Responsible staff.** The grid's available primary worker; else its available backup; else the
  community head, the street officer, the command-centre duty officer, the first of them who is
  available. ``fallback`` names the step used. On leave or seconded never counts as available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import shapely
from pyproj import Geod
from sqlalchemy import Connection, text

from gis.edges import EdgeIndex
from gis.index import NONE, PolygonIndex
from grids.access import Principal, Scope, mask_person
from grids.city import profile
from grids.errors import RegionNotFound

_GEOD = Geod(ellps="GRS80")  # the CGCS2000 ellipsoid, to a micrometre
LEVEL_RANK = {"grid": 0, "community": 1, "street": 2, "city": 3, "province": 4}
# The fallback each step of the chain stands for.
FALLBACK = {("grid", "primary"): None, ("grid", "backup"): "backup",
            ("community", "head"): "community_head", ("street", "head"): "street_officer",
            ("city", "head"): "command_centre"}

_IN_FORCE = (
    "{t}.valid_from <= coalesce(CAST(:at AS timestamptz), now()) AND "
    "({t}.valid_to IS NULL OR {t}.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
)


@dataclass(slots=True)
class Region:
    code: str
    level: str
    name: str
    parent: int  # index into Snapshot.regions, -1 for the city
    version_id: int
    staff: list[dict[str, Any]] = field(default_factory=list)  # assignment rows, best first


@dataclass
class Snapshot:
    """Everything the locator needs, as of ``as_of`` (None: 'now' when loaded)."""

    regions: list[Region]
    grid_ids: np.ndarray  # region indices of grids, in code order (the index order)
    grids: PolygonIndex
    area_ids: np.ndarray  # region indices of communities, streets, city: smallest first
    areas: PolygonIndex
    version_id: int
    loaded_at: datetime
    as_of: datetime | None
    region_ids: dict[int, int] = field(default_factory=dict, repr=False)  # database id → index
    metric_srid: int | None = None  # the city's metric CRS (grids.city.profile), for metres
    # the outline edges of the grids (of the other regions while a city has no grids), for the
    # nearest grid to a point outside: built on first use or with the rasters, kept in the file
    edges: EdgeIndex | None = field(default=None, repr=False)
    _answers: dict[tuple[int, bool], bytes] = field(default_factory=dict, repr=False)

    # -- single ------------------------------------------------------------------------------
    def locate(self, lon: float, lat: float) -> dict[str, Any]:
        """The full answer for one lon/lat point (CGCS2000/WGS84)."""
        region, status = self._resolve(lon, lat)
        if region < 0:
            return self._outside(lon, lat)
        answer = self.answer(region)
        answer["status"] = status
        return answer

    def locate_json(self, lon: float, lat: float, *, principal: Principal,
                    on_outside: Callable[[], object] | None = None) -> bytes:
        """:meth:`locate` for ``principal`` as JSON bytes, per-region part cached (the hot path).

        A place outside the principal's locate scope is not found; phones are masked unless the
        principal may see them for that place. ``on_outside`` is called before answering for a
        point in no region (it may raise).
        """
        region, status = self._resolve(lon, lat)
        if region < 0:
            if on_outside is not None:
                on_outside()
            answer = self._outside(lon, lat)
            near = answer["nearest"]["code"] if answer["nearest"] else None
            if not principal.locate_scope().covers(near):
                raise _outside_scope()
            return orjson.dumps(answer)
        code = self.regions[region].code
        if not principal.locate_scope().covers(code):
            raise _outside_scope()
        masked = not principal.sees_personal_data(code)
        cached = self._answers.get((region, masked))
        if cached is None:
            answer = self.answer(region)
            del answer["status"]
            if masked:
                answer = mask_answer(answer, principal)
            cached = orjson.dumps(answer)[1:]
            self._answers[(region, masked)] = cached
        return b'{"status":"' + status.encode() + b'",' + cached

    def scope_mask(self, scope: Scope) -> np.ndarray:
        """Per region (plus a final False for 'none'): does ``scope`` cover it?"""
        if scope.covers(None):
            out = np.ones(len(self.regions) + 1, dtype=bool)
            out[-1] = False
            return out
        codes = np.array([r.code for r in self.regions] + [""], dtype=str)
        out = np.zeros(codes.shape, dtype=bool)
        for prefix in scope.prefixes:
            out |= np.char.startswith(codes, prefix)
        out[-1] = False
        return out

    def _resolve(self, lon: float, lat: float) -> tuple[int, str]:
        g = self.grids.query_one(lon, lat)
        if g != NONE:
            return int(self.grid_ids[g]), "inside"
        a = self.areas.query_one(lon, lat)
        if a != NONE:
            return int(self.area_ids[a]), "gap"
        return -1, "outside"

    def _outside(self, lon: float, lat: float) -> dict[str, Any]:
        nearest, distance = self.nearest_grid(lon, lat)
        return {
            "status": "outside", "region": None, "grid": None, "chain": [],
            "responsible": None, "backup": None, "escalation": [], "fallback": None,
            "nearest": {**self._brief(nearest), "distance_m": round(distance, 1)}
            if nearest >= 0 else None,
            "boundary_version": self.version_id,
        }

    def nearest_grid(self, lon: float, lat: float) -> tuple[int, float]:
        """The nearest grid (region index) and its geodesic distance in metres.

        A city that has streets or communities but no grids yet answers with its nearest region
        instead; with no regions at all, ``(-1, nan)``. Single and batch lookups share
        :meth:`nearest_many`, so they name the same region at the same distance.
        """
        region, dist = self.nearest_many(np.array([lon], dtype=float),
                                         np.array([lat], dtype=float))
        return int(region[0]), float(dist[0])

    def nearest_many(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per point outside every grid: the nearest grid's region index (-1: none) and the
        geodesic metres to it.

        The search runs over the edges of the grids that are not shared by two grids (the
        outline of the grid cover, gaps included): for a point outside every grid the nearest
        grid point lies on one of them (:mod:`gis.edges`). "Nearest" is the planar distance in
        lon/lat, as ``shapely``'s distance to every grid polygon would say; the metres are the
        geodesic distance to that nearest point. Ties (a vertex two grids' outlines share) go
        to the lowest grid code, as on a shared edge.
        """
        n = len(lon)
        region = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.nan)
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        ok = np.isfinite(lon) & np.isfinite(lat)
        edges = self.outline_edges()
        if not len(edges) or not ok.any():
            return region, dist
        poly, cx, cy, _ = edges.nearest(lon[ok], lat[ok])
        _, _, d = _GEOD.inv(lon[ok], lat[ok], cx, cy)
        ids = self.grid_ids if len(self.grids) else self.area_ids
        region[ok] = np.asarray(ids, dtype=np.int64)[poly]
        dist[ok] = np.asarray(d, dtype=float)
        return region, dist

    def outline_edges(self) -> EdgeIndex:
        """The outline-edge index of the grids (of the other regions while a city has no grids
        yet): built once per snapshot, on first use or by :meth:`build_rasters`, or read with
        the snapshot file."""
        edges = self.edges
        if edges is None:
            index = self.grids if len(self.grids) else self.areas
            edges = EdgeIndex.from_polygons(index.polygons)
            self.edges = edges
        return edges

    def build_rasters(self, cell_deg: float, areas_cell_deg: float) -> None:
        """Build the batch lookup tables of the indexes that hold any polygon (a city with
        streets but no grids yet has an empty grid index, which needs no table), and the
        outline-edge index if it is not built yet."""
        self.outline_edges()
        if len(self.grids):
            self.grids.build_raster(cell_deg)
        if len(self.areas):
            self.areas.build_raster(areas_cell_deg)

    # -- answers -----------------------------------------------------------------------------
    def chain(self, region: int) -> list[int]:
        out = []
        while region >= 0:
            out.append(region)
            region = self.regions[region].parent
        return out

    def _brief(self, i: int) -> dict[str, Any]:
        r = self.regions[i]
        return {"code": r.code, "level": r.level, "name": r.name}

    def answer(self, region: int) -> dict[str, Any]:
        """Who is responsible for a place in ``region`` (without the point and status)."""
        chain = self.chain(region)
        reg = self.regions[region]
        responsible, backup, fallback = choose_responsible(
            [(self.regions[i].level, self.regions[i].code, self.regions[i].staff) for i in chain]
        )
        escalation = []
        for i in chain:
            r = self.regions[i]
            if r.level == "grid":
                continue
            heads = [s for s in r.staff if s["duty"] == "head"]
            available = [s for s in heads if s["status"] == "available"]
            escalation.append({**self._brief(i),
                               "head": _person(available[0] if available else
                                               (heads[0] if heads else None))})
        return {
            "status": "inside",
            "region": self._brief(region),
            "grid": self._brief(region) if reg.level == "grid" else None,
            "chain": [self._brief(i) for i in chain],
            "responsible": responsible,
            "backup": backup,
            "fallback": fallback,
            "unavailable": [_person(s) for s in reg.staff if s["status"] != "available"],
            "escalation": escalation,
            "nearest": None,
            "boundary_version": reg.version_id,
        }

    # -- batch -------------------------------------------------------------------------------
    def locate_many(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Region index per point (-1 outside) and status codes (0 inside, 1 gap, 2 outside)."""
        g = self.grids.query(lon, lat) if len(self.grids) else np.full(len(lon), -1)
        region = np.full(len(lon), -1, dtype=np.int64)
        region[g >= 0] = self.grid_ids[g[g >= 0]]
        status = np.where(g >= 0, 0, 2).astype(np.int8)
        miss = np.flatnonzero(g < 0)
        if miss.size and len(self.areas):
            a = self.areas.query(lon[miss], lat[miss])
            hit = a >= 0
            region[miss[hit]] = self.area_ids[a[hit]]
            status[miss[hit]] = 1
        return region, status

    def batch_columns(self) -> dict[str, np.ndarray]:
        """Per-region output columns for batch results (grid code, worker, fallback...)."""
        n = len(self.regions)
        cols: dict[str, list[Any]] = {k: [None] * n for k in (
            "grid_code", "grid_name", "community_code", "street_code", "responsible_code",
            "responsible_name", "responsible_phone", "fallback")}
        for i in range(n):
            ans = self.answer(i)
            by_level = {c["level"]: c["code"] for c in ans["chain"]}
            cols["grid_code"][i] = ans["grid"]["code"] if ans["grid"] else ""
            cols["grid_name"][i] = ans["grid"]["name"] if ans["grid"] else ""
            cols["community_code"][i] = by_level.get("community", "")
            cols["street_code"][i] = by_level.get("street", "")
            resp = ans["responsible"] or {}
            cols["responsible_code"][i] = resp.get("code", "")
            cols["responsible_name"][i] = resp.get("name", "")
            cols["responsible_phone"][i] = resp.get("phone", "")
            cols["fallback"][i] = ans["fallback"] or ""
        return {k: np.array(v + [""], dtype=object) for k, v in cols.items()}  # [-1] → ""


def _outside_scope() -> RegionNotFound:
    return RegionNotFound("This place is outside your jurisdiction.",
                          detail={"field": "lon", "fields": ["lon", "lat"]},
                          code="outside_jurisdiction")


def mask_answer(answer: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The answer with every phone masked (the rule itself is in :mod:`grids.access`)."""
    out = dict(answer)
    for key in ("responsible", "backup"):
        out[key] = mask_person(out[key], principal, None)
    out["unavailable"] = [mask_person(p, principal, None) for p in out.get("unavailable", [])]
    out["escalation"] = [{**e, "head": mask_person(e["head"], principal, None)}
                         for e in out.get("escalation", [])]
    return out


def _person(s: dict[str, Any] | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"code": s["code"], "name": s["name"], "phone": s["phone"], "role": s["role"],
            "status": s["status"], "duty": s["duty"], "region_code": s.get("region_code")}


def choose_responsible(
    chain: list[tuple[str, str, list[dict[str, Any]]]],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """Responsible, backup and fallback step from a chain of (level, code, staff), nearest first.

    Candidates in order: the grid's primary workers, its backups, then the heads of the
    community, the street and the city. Only ``available`` staff count. The backup is the next
    available candidate after the responsible one.

    >>> w = lambda code, duty, status="available": {"code": code, "name": code, "phone": "",
    ...     "role": "", "status": status, "duty": duty}
    >>> chain = [("grid", "G", [w("p", "primary", "on_leave"), w("b", "backup")]),
    ...          ("community", "C", [w("h", "head")])]
    >>> r, b, f = choose_responsible(chain)
    >>> r["code"], b["code"], f
    ('b', 'h', 'backup')
    """
    candidates: list[tuple[dict[str, Any], str | None]] = []
    for level, code, staff in chain:
        for duty in ("primary", "backup", "head"):
            if (level, duty) not in FALLBACK:
                continue
            for s in staff:
                if s["duty"] == duty and s["status"] == "available":
                    candidates.append(({**s, "region_code": code}, FALLBACK[(level, duty)]))
    if not candidates:
        return None, None, "none_available"
    (first, step) = candidates[0]
    if chain[0][0] != "grid" and step is None:
        step = "community_head"
    backup = _person(candidates[1][0]) if len(candidates) > 1 else None
    return _person(first), backup, step


def load_snapshot(conn: Connection, *, at: datetime | None = None) -> Snapshot:
    """Read the boundaries and assignments in force at ``at`` (None = now) from PostGIS."""
    rows = conn.execute(
        text(
            "SELECT r.id, r.code, r.level, r.name, b.parent_id, b.version_id, "
            "ST_AsBinary(b.geom) AS wkb FROM region r JOIN region_boundary b ON b.region_id = r.id "
            f"WHERE {_IN_FORCE.format(t='b')} ORDER BY r.code"
        ),
        {"at": at},
    ).all()
    pos = {row.id: i for i, row in enumerate(rows)}
    regions = [Region(code=row.code, level=row.level, name=row.name,
                      parent=pos.get(row.parent_id, -1), version_id=row.version_id)
               for row in rows]
    _attach_staff(conn, regions, pos, at)
    geoms = shapely.from_wkb([row.wkb for row in rows]) if rows else np.array([], dtype=object)
    levels = np.array([r.level for r in regions], dtype=object)
    grid_ids = np.flatnonzero(levels == "grid")  # rows are in code order already
    rank = np.array([LEVEL_RANK[lv] for lv in levels], dtype=int)
    area_ids = np.flatnonzero(levels != "grid")
    area_ids = area_ids[np.argsort(rank[area_ids], kind="stable")]
    return Snapshot(
        regions=regions,
        grid_ids=grid_ids, grids=PolygonIndex(geoms[grid_ids]),
        area_ids=area_ids, areas=PolygonIndex(geoms[area_ids]),
        version_id=max((r.version_id for r in regions), default=0),
        loaded_at=datetime.now(UTC), as_of=at, region_ids=pos,
        metric_srid=profile(conn).metric_srid if rows else None,
    )


def _attach_staff(conn: Connection, regions: list[Region], pos: dict[int, int],
                  at: datetime | None) -> None:
    # Plain driver tuples: tens of thousands of rows, read on every people reload.
    raw = conn.connection.driver_connection
    assert raw is not None  # a live connection inside the caller's transaction
    cur = raw.execute(
        "SELECT a.region_id, a.duty, s.code, s.name, s.phone, s.role, s.status "
        "FROM assignment a JOIN staff s ON s.id = a.staff_id "
        "WHERE a.valid_from <= coalesce(%(at)s::timestamptz, now()) "
        "AND (a.valid_to IS NULL OR a.valid_to > coalesce(%(at)s::timestamptz, now())) "
        "ORDER BY CASE s.status WHEN 'available' THEN 0 ELSE 1 END, s.code",
        {"at": at},
    )
    for region_id, duty, code, name, phone, role, status in cur.fetchall():
        i = pos.get(region_id)
        if i is not None:
            regions[i].staff.append({"region_id": region_id, "duty": duty, "code": code,
                                     "name": name, "phone": phone, "role": role,
                                     "status": status})


def reload_staff(conn: Connection, snap: Snapshot) -> Snapshot:
    """A new snapshot with fresh staff and assignments and the same boundaries.

    When only people changed (a worker on leave, a new assignment), the geometry, the indexes and
    their rasters are reused: the reload costs one query instead of reading every boundary.
    """
    regions = [Region(code=r.code, level=r.level, name=r.name, parent=r.parent,
                      version_id=r.version_id) for r in snap.regions]
    _attach_staff(conn, regions, snap.region_ids, snap.as_of)
    return Snapshot(regions=regions, grid_ids=snap.grid_ids, grids=snap.grids,
                    area_ids=snap.area_ids, areas=snap.areas, version_id=snap.version_id,
                    loaded_at=datetime.now(UTC), as_of=snap.as_of, region_ids=snap.region_ids,
                    metric_srid=snap.metric_srid, edges=snap.edges)


def locate_at(conn: Connection, lon: float, lat: float, *, at: datetime,
              principal: Principal | None = None) -> dict[str, Any]:
    """The locator's answer as of ``at``, read from history in PostGIS (not the snapshot).

    Same rules as :meth:`Snapshot.locate`; used for ``at=`` queries, which are rare enough that a
    query beats keeping every past snapshot in memory.
    """
    params = {"lon": lon, "lat": lat, "at": at}
    hit = conn.execute(
        text(
            "SELECT r.id FROM region r JOIN region_boundary b ON b.region_id = r.id "
            f"WHERE {_IN_FORCE.format(t='b')} "
            "AND ST_Covers(b.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490)) "
            "ORDER BY CASE r.level WHEN 'grid' THEN 0 WHEN 'community' THEN 1 "
            "WHEN 'street' THEN 2 ELSE 3 END, r.code LIMIT 1"
        ),
        params,
    ).scalar()
    if hit is None:
        if principal is not None and not principal.locate_scope().covers(None):
            raise _outside_scope()
        near = conn.execute(
            text(
                "SELECT r.code, r.level, r.name, ST_Distance(b.geom::geography, "
                "ST_SetSRID(ST_MakePoint(:lon, :lat), 4490)::geography) AS d "
                "FROM region r JOIN region_boundary b ON b.region_id = r.id "
                f"WHERE {_IN_FORCE.format(t='b')} AND r.level = 'grid' "
                "ORDER BY b.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) LIMIT 1"
            ),
            params,
        ).mappings().first()
        return {
            "status": "outside", "region": None, "grid": None, "chain": [], "responsible": None,
            "backup": None, "escalation": [], "fallback": None, "unavailable": [],
            "nearest": {"code": near["code"], "level": near["level"], "name": near["name"],
                        "distance_m": round(near["d"], 1)} if near else None,
            "boundary_version": None, "as_of": at.isoformat(),
        }
    rows = conn.execute(
        text(
            "WITH RECURSIVE up AS ("
            " SELECT CAST(:rid AS integer) AS region_id, 0 AS depth"
            " UNION ALL"
            " SELECT b.parent_id, up.depth + 1 FROM up JOIN region_boundary b"
            f"  ON b.region_id = up.region_id WHERE {_IN_FORCE.format(t='b')}"
            "  AND b.parent_id IS NOT NULL AND up.depth < 8"
            ") SELECT r.id, r.code, r.level, r.name, b.version_id, up.depth FROM up "
            "JOIN region r ON r.id = up.region_id JOIN region_boundary b ON b.region_id = r.id "
            f"WHERE {_IN_FORCE.format(t='b')} ORDER BY up.depth"
        ),
        {**params, "rid": hit},
    ).all()
    regions = [Region(code=r.code, level=r.level, name=r.name,
                      parent=i + 1 if i + 1 < len(rows) else -1, version_id=r.version_id)
               for i, r in enumerate(rows)]
    pos = {r.id: i for i, r in enumerate(rows)}
    staff = conn.execute(
        text(
            "SELECT a.region_id, a.duty, s.code, s.name, s.phone, s.role, s.status "
            "FROM assignment a JOIN staff s ON s.id = a.staff_id "
            f"WHERE a.region_id = ANY(:ids) AND {_IN_FORCE.format(t='a')} "
            "ORDER BY CASE s.status WHEN 'available' THEN 0 ELSE 1 END, s.code"
        ),
        {**params, "ids": list(pos)},
    ).mappings().all()
    for s in staff:
        regions[pos[s["region_id"]]].staff.append(dict(s))
    empty = PolygonIndex([])
    snap = Snapshot(regions=regions, grid_ids=np.array([], dtype=int), grids=empty,
                    area_ids=np.array([], dtype=int), areas=empty,
                    version_id=regions[0].version_id, loaded_at=datetime.now(UTC),
                    as_of=at)
    answer = snap.answer(0)
    answer["status"] = "inside" if regions[0].level == "grid" else "gap"
    answer["as_of"] = at.isoformat()
    if principal is not None:
        if not principal.locate_scope().covers(regions[0].code):
            raise _outside_scope()
        if not principal.sees_personal_data(regions[0].code):
            answer = mask_answer(answer, principal)
    return answer
