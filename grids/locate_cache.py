"""The locator's boundaries and lookup tables on disk, for a cold start without a rebuild.

A file holds what :func:`grids.locate.load_snapshot` reads from the boundaries and what the
rasters cost to build: the regions (codes, names, levels, parents, versions, database ids), both
polygon indexes (polygons as WKB, prepared again on load), their lookup tables and the
outline-edge index of the nearest-grid search (:mod:`gis.edges`), all numpy arrays.
Staff and assignments are not in it: they change often and load in one query
(:func:`grids.locate.reload_staff`).

A file is used only when the *etag* it was written for equals :func:`boundary_etag` of the
database now: a digest of every boundary row in force (ids, versions, parents, codes, names,
levels), the city's metric CRS, the raster cell sizes and :data:`FORMAT`. A boundary edited, a
plan activated, a scheduled boundary taking effect or a new cell size all give a new etag, and
the file is ignored (the caller rebuilds from SQL and writes a new one).

Writing is atomic (a temporary file in the same folder, flushed, then ``os.replace``), so a
reader sees the old file or the new one, never half of one. A file that cannot be read (cut short,
bytes changed: the zip's CRC-32 catches those; a table that does not match its polygons) is
logged and treated as missing. A file of an older :data:`FORMAT` (format 1 had no edge index)
is stale: rebuilt, never an error.

File format (``numpy`` ``.npz``, no pickles): ``header`` is UTF-8 JSON (format, etag, region
codes, names, levels, the metric SRID, the version); the rest are plain arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gis.edges import EdgeIndex
from gis.index import PolygonIndex
from grids.city import profile
from grids.locate import _IN_FORCE, Region, Snapshot

log = logging.getLogger("citygrid.locator")
FORMAT = 2  # 2: with the outline-edge index (e_*)
FILE_NAME = "locator-snapshot.npz"

_ETAG_SQL = text(
    "SELECT count(*) AS n, coalesce(md5(string_agg(concat_ws(':', r.id, b.id, b.version_id, "
    "b.parent_id, r.code, r.level, r.name), ',' ORDER BY r.code)), '') AS digest "
    "FROM region r JOIN region_boundary b ON b.region_id = r.id "
    f"WHERE {_IN_FORCE.format(t='b')}"
)


def boundary_etag(conn: Connection, cells: tuple[float, float] | None = None) -> str:
    """A digest of the boundaries in force now, as the locator would load them.

    ``cells``: the grid and area raster cell sizes the snapshot's tables are built with (None:
    no tables).
    """
    row = conn.execute(_ETAG_SQL, {"at": None}).one()
    srid = profile(conn).metric_srid if row.n else None
    key = f"{FORMAT}|{row.n}|{row.digest}|{srid}|{cells}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def snapshot_path(folder: str | os.PathLike[str]) -> Path:
    return Path(folder) / FILE_NAME


def write_snapshot(snap: Snapshot, path: str | Path, etag: str) -> int:
    """Write ``snap``'s boundaries and tables to ``path`` atomically; the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    regions = snap.regions
    ids = np.full(len(regions), -1, dtype=np.int64)
    for db_id, i in snap.region_ids.items():
        ids[i] = db_id
    header = {
        "format": FORMAT, "etag": etag, "version_id": snap.version_id,
        "metric_srid": snap.metric_srid, "written_at": datetime.now(UTC).isoformat(),
        "codes": [r.code for r in regions], "names": [r.name for r in regions],
        "levels": [r.level for r in regions],
    }
    arrays: dict[str, Any] = {
        "header": np.frombuffer(json.dumps(header, ensure_ascii=False).encode(), dtype=np.uint8),
        "parents": np.array([r.parent for r in regions], dtype=np.int64),
        "versions": np.array([r.version_id for r in regions], dtype=np.int64),
        "db_ids": ids,
        "grid_ids": np.asarray(snap.grid_ids, dtype=np.int64),
        "area_ids": np.asarray(snap.area_ids, dtype=np.int64),
    }
    arrays |= snap.grids.to_arrays("g_")
    arrays |= snap.areas.to_arrays("a_")
    arrays |= snap.outline_edges().to_arrays("e_")  # built here if a lookup has not built it
    fd, tmp = tempfile.mkstemp(prefix=".locator-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def read_snapshot(path: str | Path, etag: str) -> Snapshot | None:
    """The snapshot in ``path`` if it was written for ``etag``; None when missing, stale or
    unreadable (logged). Staff are empty: attach them with :func:`grids.locate.reload_staff`."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            if header.get("format") != FORMAT or header.get("etag") != etag:
                log.info("locator snapshot %s is for other boundaries; rebuilding", path)
                return None
            arrays = {k: z[k] for k in z.files}
        return _from_arrays(header, arrays)
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile,
            json.JSONDecodeError, EOFError) as exc:
        log.warning("locator snapshot %s unreadable (%s: %s); rebuilding", path,
                    exc.__class__.__name__, str(exc)[:200])
        return None


def _from_arrays(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Snapshot:
    codes, names, levels = header["codes"], header["names"], header["levels"]
    parents, versions, db_ids = arrays["parents"], arrays["versions"], arrays["db_ids"]
    n = len(codes)
    if not (len(names) == len(levels) == len(parents) == len(versions) == len(db_ids) == n):
        raise ValueError("region columns differ in length")
    regions = [Region(code=c, level=lv, name=nm, parent=int(p), version_id=int(v))
               for c, nm, lv, p, v in zip(codes, names, levels, parents.tolist(),
                                          versions.tolist(), strict=True)]
    grid_ids, area_ids = arrays["grid_ids"], arrays["area_ids"]
    grids = PolygonIndex.from_arrays(arrays, "g_")
    areas = PolygonIndex.from_arrays(arrays, "a_")
    if len(grids) != len(grid_ids) or len(areas) != len(area_ids) or (
            n and (int(max(grid_ids.max(initial=0), area_ids.max(initial=0))) >= n)):
        raise ValueError("indexes do not match the regions")
    edges = EdgeIndex.from_arrays(arrays, "e_", len(grids) if len(grids) else len(areas))
    return Snapshot(regions=regions, grid_ids=grid_ids, grids=grids, area_ids=area_ids,
                    areas=areas, version_id=int(header["version_id"]),
                    loaded_at=datetime.now(UTC), as_of=None,
                    region_ids={int(d): i for i, d in enumerate(db_ids.tolist())},
                    metric_srid=header["metric_srid"], edges=edges)
