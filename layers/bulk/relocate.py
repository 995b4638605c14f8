"""Place every incident again under the boundaries in force: after a redraw or a code change.

An incident keeps the region chain it was placed in at intake (:mod:`layers.incidents.intake`);
a plan activation moves open cases only when asked (:mod:`layers.incidents.reroute`). This job is
the operator's explicit "re-place all of history" (e.g. after grid codes change, so that the
analysis by today's codes sees every incident), or only the open ones (``open_only``).

- **Locating** is the intake's own: the boundaries and staff in force are loaded once per job
  and process (:func:`grids.locate.load_snapshot`), each partition's points located at once
  (:meth:`~grids.locate.Snapshot.locate_many`) and each region reduced to what an incident keeps
  (:func:`layers.incidents.intake._placement`): region, grid, community, street, boundary
  version, responsible worker and fallback.
- **Moved** means the region it falls in (its deepest region: the grid, or a community/street in
  a gap) is not the one it holds. Incidents without a location, or outside every boundary now,
  are left alone and counted.
- **Partitions** are months of ``received_at`` (UTC): the history's natural cut (and the month
  partitions of a partitioned schema).
- **Writing** (``write=True``): each partition is one transaction. It locks its rows
  (``SELECT ... FOR UPDATE``), locates them, updates the moved ones with one ``UPDATE ... FROM
  unnest(...)`` and records one ``incident_event`` ``reroute`` per moved incident, then commits.
  A partition that fails rolls back whole: a month is either fully re-placed or untouched,
  never half-written. Re-running the job is safe (it moves only what is still misplaced), so a
  failed partition is retried by running again.
- ``write=False`` only reports (a dry run): the same partitions read in a read-only transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from layers.bulk.runner import Db, Runner, as_db, snapshot
from layers.incidents.intake import Placement, _placement
from layers.incidents.workflow import OPEN_STATES

ACTOR = "bulk:relocate"


@dataclass
class Result:
    partitions: int = 0
    rows: int = 0
    moved: int = 0
    unlocated: int = 0  # no location, or outside every boundary now
    moves: list[tuple[int, str | None, str | None]] = field(default_factory=list)  # id, from, to

    def as_dict(self, *, items: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"partitions": self.partitions, "rows": self.rows,
                               "moved": self.moved, "unlocated": self.unlocated}
        if items:
            out["moves"] = [list(m) for m in self.moves[:items]]
        return out


def months(conn: Connection, *, open_only: bool = False) -> list[date]:
    """The months (UTC, first day) that hold incidents: the partitions."""
    where = "WHERE state = ANY(:open)" if open_only else ""
    return list(conn.execute(text(
        "SELECT DISTINCT CAST(date_trunc('month', received_at AT TIME ZONE 'UTC') AS date) AS m "
        f"FROM incident {where} ORDER BY m"), {"open": sorted(OPEN_STATES)}).scalars())


def partition(db: Db, job: str, write: bool, open_only: bool, month: date) -> dict[str, Any]:
    """Relocate the incidents received in ``month`` (UTC); one transaction (see module doc)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    with db.begin(read_only=not write) as conn:
        snap = snapshot(conn, db.url, job)
        state = "AND state = ANY(:open)" if open_only else ""
        rows = conn.execute(text(
            "SELECT id, region_code, grid_code, state, ST_X(geom) AS lon, ST_Y(geom) AS lat "
            "FROM incident WHERE received_at >= :s AND received_at < :e "
            f"{state} ORDER BY id {'FOR UPDATE' if write else ''}"),
            {"s": start, "e": end, "open": sorted(OPEN_STATES)}).all()
        n = len(rows)
        if not n:
            return {"month": month.isoformat(), "rows": 0, "unlocated": 0, "moves": []}
        ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=n)
        lon = np.array([np.nan if r.lon is None else r.lon for r in rows], dtype=float)
        lat = np.array([np.nan if r.lat is None else r.lat for r in rows], dtype=float)
        has = ~(np.isnan(lon) | np.isnan(lat))
        region = np.full(n, -1, dtype=np.int64)
        if has.any():
            got, status = snap.locate_many(lon[has], lat[has])
            got[status == 2] = -1
            region[has] = got
        codes = np.array([r.code for r in snap.regions] + [""], dtype=object)[region]
        held = np.array([r.region_code or "" for r in rows], dtype=object)
        moving = np.flatnonzero((region >= 0) & (codes != held))
        places: dict[int, Placement] = {}
        moves = []
        for i in moving.tolist():
            p = places.get(int(region[i]))
            if p is None:
                p = places[int(region[i])] = _placement(snap, int(region[i]))
            moves.append((int(ids[i]), rows[i].grid_code, p.grid_code, rows[i].region_code,
                          p, rows[i].state))
        if write and moves:
            _write(conn, moves, job)
        return {"month": month.isoformat(), "rows": n, "unlocated": int((region < 0).sum()),
                "moves": [(m[0], m[1], m[2]) for m in moves]}


def _write(conn: Connection, moves: list[tuple[Any, ...]], job: str) -> None:
    p: list[Placement] = [m[4] for m in moves]
    conn.execute(text(
        "UPDATE incident i SET region_code = u.region, grid_code = u.grid, "
        "community_code = u.community, street_code = u.street, boundary_version_id = u.version, "
        "responsible_code = u.responsible, fallback = u.fallback, version = i.version + 1 "
        "FROM unnest(CAST(:id AS bigint[]), CAST(:region AS text[]), CAST(:grid AS text[]), "
        "CAST(:community AS text[]), CAST(:street AS text[]), CAST(:version AS bigint[]), "
        "CAST(:responsible AS text[]), CAST(:fallback AS text[])) "
        "AS u(id, region, grid, community, street, version, responsible, fallback) "
        "WHERE i.id = u.id"),
        {"id": [m[0] for m in moves], "region": [x.region_code for x in p],
         "grid": [x.grid_code for x in p], "community": [x.community_code for x in p],
         "street": [x.street_code for x in p], "version": [x.boundary_version_id for x in p],
         "responsible": [x.responsible_code for x in p], "fallback": [x.fallback for x in p]})
    conn.execute(text(
        "INSERT INTO incident_event (incident_id, at, actor, action, from_state, to_state, note) "
        "SELECT id, now(), :actor, 'reroute', s, s, 'Relocated from ' || coalesce(f, '(none)') "
        "|| ' to ' || coalesce(t, '(none)') || ' under the boundaries in force (bulk job ' "
        "|| :job || ').' FROM unnest(CAST(:id AS bigint[]), CAST(:s AS text[]), "
        "CAST(:f AS text[]), CAST(:t AS text[])) AS u(id, s, f, t)"),
        {"actor": ACTOR, "job": job, "id": [m[0] for m in moves], "s": [m[5] for m in moves],
         "f": [m[3] for m in moves], "t": [x.region_code for x in p]})


def relocate(db: Db | str, runner: Runner, *, write: bool = False, open_only: bool = False,
             job: str | None = None) -> Result:
    """Relocate every incident (or the open ones) on ``runner``, one partition per month."""
    job = job or datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    db = as_db(db)
    with db.begin(read_only=True) as conn:
        parts = months(conn, open_only=open_only)
    out = Result(partitions=len(parts))
    for got in runner.map(partition, [(m,) for m in parts], db, job, write, open_only):
        out.rows += got["rows"]
        out.unlocated += got["unlocated"]
        out.moved += len(got["moves"])
        out.moves.extend(tuple(m) for m in got["moves"])
    out.moves.sort()
    return out
