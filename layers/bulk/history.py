"""Import a province's history from files: CSV or GeoParquet incidents through the intake path.

Each file is a partition and one transaction: :func:`layers.incidents.intake.bulk` validates,
locates (the intake's own locator, boundaries in force) and COPYs its rows with their first
event. Rows already taken in (same ``source`` and ``external_id``) are counted as duplicates, so
importing the same files again writes nothing: the job is idempotent and a failed file is retried
by running again. ``partial``: a file's bad rows are listed and its good rows go in; without it,
one bad row refuses its whole file (the other files are not affected).

Columns are the bulk intake's (:data:`~layers.incidents.intake.BULK_COLUMNS`). A GeoParquet file
gives its points as the geometry (lon/lat in the file's CRS) instead of ``lon``/``lat``.
:func:`write_files` writes a frame of incidents as such files, one per month (for tests and the
bench, and as the format an archive of history uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from grids.access import Principal
from grids.upload_limits import UploadLimits
from layers.bulk.runner import Db, Runner, as_db, snapshot
from layers.incidents import intake

ACTOR = "bulk:import"
FILE_LIMITS = UploadLimits(max_rows=10_000_000, max_seconds=600.0)


def read_file(path: str) -> pd.DataFrame:
    """A file of incidents as the intake's table (all columns text)."""
    if path.lower().endswith((".parquet", ".geoparquet")):
        g = gpd.read_parquet(path)
        frame = pd.DataFrame(g.drop(columns=g.geometry.name))
        pts = g.geometry
        has = ~(pts.isna() | pts.is_empty)
        frame["lon"] = ""
        frame["lat"] = ""
        frame.loc[has, "lon"] = [repr(float(v)) for v in pts[has].x]
        frame.loc[has, "lat"] = [repr(float(v)) for v in pts[has].y]
        epsg = g.crs.to_epsg() if g.crs is not None else None
        frame["crs"] = f"EPSG:{epsg}" if epsg else "EPSG:4326"
        frame = frame.astype(object).where(frame.notna(), "").astype(str)
        for col in intake.BULK_COLUMNS:
            if col not in frame.columns:
                frame[col] = ""
        return frame
    return intake.read_bulk(Path(path).read_bytes(), filename=path, limits=FILE_LIMITS)


def partition(db: Db, job: str, partial: bool, path: str) -> dict[str, Any]:
    """One file in one transaction (see the module doc)."""
    frame = read_file(path)
    with db.begin() as conn:
        snap = snapshot(conn, db.url, job)
        got = intake.bulk(conn, snap, frame, principal=Principal.system(ACTOR), partial=partial)
    return {"file": path, **{k: got[k] for k in ("rows", "imported", "duplicates", "bad_rows")},
            "errors": got["errors"][:20]}


def import_files(db: Db | str, runner: Runner, paths: list[str], *, partial: bool = False,
                 job: str = "import") -> dict[str, Any]:
    """Import ``paths`` on ``runner``: totals and per-file counts."""
    got = runner.map(partition, [(p,) for p in paths], as_db(db), job, partial)
    total = {k: sum(g[k] for g in got) for k in ("rows", "imported", "duplicates", "bad_rows")}
    return {"files": len(paths), **total, "per_file": got}


def write_files(frame: pd.DataFrame, folder: Path, *, fmt: str = "parquet") -> list[str]:
    """Write incidents (the intake's columns, ``lon``/``lat`` numbers in CGCS2000) as one file
    per month of ``received_at``: GeoParquet (points, EPSG:4490) or CSV. Returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    month = pd.to_datetime(frame["received_at"], utc=True).dt.strftime("%Y-%m")
    paths = []
    for m, part in frame.groupby(month, sort=True):
        path = folder / f"incidents-{m}.{'parquet' if fmt == 'parquet' else 'csv'}"
        if fmt == "parquet":
            lon = pd.to_numeric(part["lon"])
            lat = pd.to_numeric(part["lat"])
            g = gpd.GeoDataFrame(part.drop(columns=["lon", "lat", "crs"], errors="ignore"),
                                 geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4490")
            g.to_parquet(path)
        else:
            part.assign(crs="EPSG:4490").to_csv(path, index=False)
        paths.append(str(path))
    return paths
