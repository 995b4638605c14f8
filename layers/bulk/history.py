"""Import a province's history from files: CSV or GeoParquet incidents through the intake path.

Each file is a partition and one transaction (on Dask, the GeoParquet files are read with
dask-geopandas on the workers, a partition per file): :func:`layers.incidents.intake.bulk` validates,
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
from layers.bulk.runner import DaskRunner, Db, Runner, as_db, snapshot
from layers.incidents import intake

ACTOR = "bulk:import"
FILE_LIMITS = UploadLimits(max_rows=10_000_000, max_seconds=600.0)


def _is_parquet(path: str) -> bool:
    return path.lower().endswith((".parquet", ".geoparquet"))


def table_of(g: gpd.GeoDataFrame) -> pd.DataFrame:
    """A GeoDataFrame of incidents (points) as the intake's table (all columns text)."""
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


def read_file(path: str) -> pd.DataFrame:
    """A file of incidents as the intake's table (all columns text)."""
    if _is_parquet(path):
        return table_of(gpd.read_parquet(path))
    return intake.read_bulk(Path(path).read_bytes(), filename=path, limits=FILE_LIMITS)


def _write(db: Db, job: str, partial: bool, name: str, frame: pd.DataFrame) -> dict[str, Any]:
    with db.begin() as conn:
        snap = snapshot(conn, db.url, job)
        got = intake.bulk(conn, snap, frame, principal=Principal.system(ACTOR), partial=partial)
    return {"file": name, **{k: got[k] for k in ("rows", "imported", "duplicates", "bad_rows")},
            "errors": got["errors"][:20]}


def partition(db: Db, job: str, partial: bool, path: str) -> dict[str, Any]:
    """One file, read here, in one transaction (see the module doc)."""
    return _write(db, job, partial, path, read_file(path))


def frame_partition(db: Db, job: str, partial: bool, path: str, g: gpd.GeoDataFrame
                    ) -> dict[str, Any]:
    """One GeoParquet file read by dask-geopandas on the worker, in one transaction."""
    return _write(db, job, partial, path, table_of(g))


def _parquet_on_dask(runner: Runner, db: Db, job: str, partial: bool, paths: list[str]
                     ) -> list[dict[str, Any]] | None:
    """The GeoParquet files as one dask-geopandas frame, a partition per file, each written by
    the worker that reads it. None if the runner is not Dask or the partitions are not the
    files (then each file goes through :func:`partition`)."""
    if not paths or not isinstance(runner, DaskRunner):
        return None
    import dask
    import dask_geopandas

    parts = dask_geopandas.read_parquet(paths).to_delayed()
    if len(parts) != len(paths):
        return None
    write = dask.delayed(frame_partition, pure=False)
    return runner.compute([write(db, job, partial, p, part)
                           for p, part in zip(paths, parts, strict=True)])


def import_files(db: Db | str, runner: Runner, paths: list[str], *, partial: bool = False,
                 job: str = "import") -> dict[str, Any]:
    """Import ``paths`` on ``runner``: totals and per-file counts (in the order of ``paths``).

    On Dask the GeoParquet files are read with dask-geopandas on the workers (a partition per
    file); CSV files, and everything on the single-process path, are read file by file."""
    db = as_db(db)
    by_path: dict[str, dict[str, Any]] = {}
    parquet = [p for p in paths if _is_parquet(p)]
    on_dask = _parquet_on_dask(runner, db, job, partial, parquet)
    if on_dask is not None:
        by_path |= {g["file"]: g for g in on_dask}
    rest = [p for p in paths if p not in by_path]
    by_path |= {g["file"]: g for g in runner.map(partition, [(p,) for p in rest], db, job,
                                                 partial)}
    got = [by_path[p] for p in paths]
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
