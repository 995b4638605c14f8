"""Limits on uploaded files, checked before and while they are parsed, never after.

Every upload path (bulk incident intake, roster import, plan import) reads untrusted files. A
file that is small on the wire can still be huge to parse: an XLSX is a zip whose XML can
inflate 300-fold (a 295 kB "zip bomb" that openpyxl spends 54 s and 500 MB on), and a
GeoPackage can hold one polygon of 100,000 vertices that the geometry checks downstream choke on.
So the checks here run first and as the file is read:

- :func:`check_zip`: an XLSX's members' uncompressed sizes (from the zip's directory, before
  anything is inflated; Python's :mod:`zipfile`, which openpyxl reads through, never inflates a
  member past the size its directory declares);
- :func:`read_xlsx_rows`: openpyxl in read-only mode, row by row, stopping at ``max_rows`` or
  when ``max_seconds`` have passed;
- :func:`check_csv_rows`: the row count of a CSV table;
- :func:`check_features`: a vector file's feature count (from its header), then its vertices
  counted batch by batch as they are read, stopping at the first feature or total over a limit.

A breach raises :class:`UploadTooLarge` (HTTP 413, ``app/errors.py``) naming the limit, the
value found (as far as it was read) and the setting that raises the limit.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from grids.errors import GridError


class UploadTooLarge(GridError):
    """An uploaded file is over one of the :class:`UploadLimits` (HTTP 413)."""

    code = "upload_too_large"


@dataclass(frozen=True)
class UploadLimits:
    """What one uploaded file may hold. ``app.settings.UploadSettings`` sets these per
    deployment (``CITYGRID_UPLOAD_*``); the defaults are generous for a city's real files."""

    max_uncompressed_bytes: int = 64_000_000  # all members of an XLSX, inflated
    max_zip_members: int = 1_000
    max_rows: int = 200_000  # rows of a CSV or XLSX sheet (header included)
    max_seconds: float = 30.0  # parsing one file
    max_features: int = 20_000  # features of a region or plan file
    max_vertices_per_feature: int = 20_000
    max_vertices: int = 2_000_000  # all features together


def _too_large(message: str, *, limit: str, value: int | float, maximum: int | float,
               setting: str, code: str = "upload_too_large") -> UploadTooLarge:
    return UploadTooLarge(message, code=code, detail={
        "field": "file", "limit": limit, "value": value, "max": maximum,
        "setting": setting})


def check_zip(source: bytes | str | Path, limits: UploadLimits) -> None:
    """Refuse a zip (XLSX) whose members would inflate past the limits, before inflating any."""
    handle: IO[bytes] | str | Path = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: the parser reports an unreadable file in its own words
    if len(members) > limits.max_zip_members:
        raise _too_large(
            f"The spreadsheet has {len(members)} parts; at most {limits.max_zip_members} are "
            "accepted.", limit="zip_members", value=len(members),
            maximum=limits.max_zip_members, setting="CITYGRID_UPLOAD_MAX_ZIP_MEMBERS")
    total = sum(m.file_size for m in members)
    if total > limits.max_uncompressed_bytes:
        raise _too_large(
            f"The spreadsheet inflates to {total:,} bytes; at most "
            f"{limits.max_uncompressed_bytes:,} are accepted (split the file).",
            limit="uncompressed_bytes", value=total, maximum=limits.max_uncompressed_bytes,
            setting="CITYGRID_UPLOAD_MAX_UNCOMPRESSED_BYTES")


class _Deadline:
    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.start = time.monotonic()

    def check(self, what: str) -> None:
        spent = time.monotonic() - self.start
        if spent > self.limits.max_seconds:
            raise _too_large(
                f"Reading the {what} took longer than {self.limits.max_seconds:g} s; "
                "split the file.", limit="seconds", value=round(spent, 2),
                maximum=self.limits.max_seconds, setting="CITYGRID_UPLOAD_MAX_SECONDS",
                code="upload_too_slow")


def _too_many_rows(limits: UploadLimits) -> UploadTooLarge:
    return _too_large(
        f"The file has more than {limits.max_rows:,} rows; split it.", limit="rows",
        value=limits.max_rows + 1, maximum=limits.max_rows,
        setting="CITYGRID_UPLOAD_MAX_ROWS", code="too_many_rows")


def read_xlsx_rows(source: bytes | str | Path, limits: UploadLimits, *,
                   sheet: str | None = None) -> list[list[Any]]:
    """The rows (header first) of the first or named sheet, as cell values, under the limits.

    The zip is checked first (:func:`check_zip`); then openpyxl streams the sheet (read-only
    mode) and the rows and time are counted as it goes. A missing sheet is a ``KeyError``, a
    file that is no XLSX an exception of openpyxl or zipfile: the caller words those.
    """
    from openpyxl import load_workbook

    check_zip(source, limits)
    deadline = _Deadline(limits)
    handle: IO[bytes] | str | Path = io.BytesIO(source) if isinstance(source, bytes) else source
    book = load_workbook(handle, read_only=True, data_only=True, keep_links=False)
    try:
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        rows: list[list[Any]] = []
        for values in ws.iter_rows(values_only=True):
            rows.append(list(values))
            if len(rows) > limits.max_rows:
                raise _too_many_rows(limits)
            if len(rows) % 1000 == 0:
                deadline.check("spreadsheet")
        deadline.check("spreadsheet")
        return rows
    finally:
        book.close()


def cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV of the same sheet would hold (as pandas'
    ``read_excel(dtype=str)`` gives it): integral numbers without ``.0``, empty cells empty."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def check_csv_rows(rows: int, limits: UploadLimits) -> None:
    """Refuse a table of more than ``max_rows`` rows (call with the count read so far)."""
    if rows > limits.max_rows:
        raise _too_many_rows(limits)


def check_features(path: str | Path, limits: UploadLimits, *, layer: str | None = None,
                   batch_size: int = 256) -> dict[str, int]:
    """Count a vector file's features and vertices before it is parsed in full.

    The feature count comes from the file's header (no geometry read). The vertices are then
    counted batch by batch (geometry only, as WKB, ``batch_size`` features at a time), stopping
    at the first feature over ``max_vertices_per_feature`` or when the total passes
    ``max_vertices``. Returns ``{features, vertices}``. A file pyogrio cannot open passes
    through: the reader after this reports it in its own words.
    """
    import pyogrio

    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception:  # noqa: BLE001 - the full reader words an unreadable file
        return {"features": 0, "vertices": 0}
    features = int(info.get("features") or 0)
    if features > limits.max_features:
        raise _too_large(
            f"The file has {features:,} features; at most {limits.max_features:,} are accepted.",
            limit="features", value=features, maximum=limits.max_features,
            setting="CITYGRID_UPLOAD_MAX_FEATURES", code="too_many_features")
    deadline = _Deadline(limits)
    total = seen = 0
    for counts in _vertex_counts(path, layer, batch_size):
        for k in counts:
            if k > limits.max_vertices_per_feature:
                raise _too_large(
                    f"Feature {seen} has {k:,} vertices; at most "
                    f"{limits.max_vertices_per_feature:,} per feature are accepted (simplify it).",
                    limit="vertices_per_feature", value=k,
                    maximum=limits.max_vertices_per_feature,
                    setting="CITYGRID_UPLOAD_MAX_VERTICES_PER_FEATURE", code="too_many_vertices")
            total += k
            seen += 1
        if total > limits.max_vertices:
            raise _too_large(
                f"The file's first {seen:,} features already have {total:,} vertices; at most "
                f"{limits.max_vertices:,} are accepted in one file.", limit="vertices",
                value=total, maximum=limits.max_vertices,
                setting="CITYGRID_UPLOAD_MAX_VERTICES", code="too_many_vertices")
        if seen > limits.max_features:  # a header that under-counted
            raise _too_large(
                f"The file has more than {limits.max_features:,} features.", limit="features",
                value=seen, maximum=limits.max_features,
                setting="CITYGRID_UPLOAD_MAX_FEATURES", code="too_many_features")
        deadline.check("file")
    return {"features": seen, "vertices": total}


def _vertex_counts(path: str | Path, layer: str | None, batch_size: int
                   ) -> Iterator[list[int]]:
    """Vertices per feature, a batch at a time, streamed (geometry as WKB, no attributes)."""
    import pyogrio.raw
    import shapely

    try:
        source = pyogrio.raw.open_arrow(path, layer=layer, columns=[], batch_size=batch_size,
                                        use_pyarrow=True)
    except Exception:  # noqa: BLE001 - the full reader words an unreadable file
        return
    with source as (meta, reader):
        column = meta.get("geometry_name") or "wkb_geometry"
        for batch in reader:
            if column not in batch.schema.names:
                return
            geoms = shapely.from_wkb(batch.column(column).to_numpy(zero_copy_only=False),
                                     on_invalid="ignore")
            yield [int(k) for k in shapely.get_num_coordinates(geoms)]
