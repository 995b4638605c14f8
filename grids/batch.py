"""Batch location: many points in, the same rows out with grid and responsible worker added.

Formats: CSV (columns named by ``x_field``/``y_field``), JSON (an array of ``[x, y, ...]`` arrays or
of objects) and GeoJSON (a FeatureCollection of Points). Output is in the input's format, produced
in chunks so the caller can stream it. A bad row never fails the batch: it is kept, with
``status='error'`` and the reason in ``error``, and counted in :class:`BatchResult`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gis.crs import parse_crs, to_lonlat
from grids.access import FULL_PERSONAL_DATA, Principal, mask_phone
from grids.errors import GridError
from grids.locate import Snapshot
from grids.point import DEFAULT_MAX_OUTSIDE_M

# 'forbidden': the place lies outside the caller's jurisdiction; nothing about it is returned.
STATUS_NAMES = np.array(["inside", "gap", "outside", "error", "forbidden"], dtype=object)
ADDED = ("status", "grid_code", "grid_name", "community_code", "street_code",
         "responsible_code", "responsible_name", "responsible_phone", "fallback",
         "nearest_code", "nearest_distance_m", "error", "error_code")
CHUNK_ROWS = 100_000


class BatchInputError(GridError):
    code = "invalid_batch"


@dataclass
class BatchResult:
    rows: int
    bad_rows: int
    crs: str
    chunks: Iterator[bytes]


def _locate_columns(
    snap: Snapshot, x: np.ndarray, y: np.ndarray, crs: str, principal: Principal,
    max_outside_m: float = DEFAULT_MAX_OUTSIDE_M,
) -> tuple[dict[str, np.ndarray], int]:
    """Validate, convert and locate; return the added columns and the number of bad rows.

    The rules are those of a single ``/locate`` (:mod:`grids.point`), row by row: a
    non-finite or out-of-range coordinate, a swapped pair and a point farther than
    ``max_outside_m`` from every grid are errors (``error_code`` is the code the single lookup
    answers with); a point outside the city but nearer carries the nearest grid and its distance.
    Rows in places outside the principal's locate scope get status 'forbidden' and no details;
    phones are masked where the principal may not see them.
    """
    columns = snap_columns(snap)
    n = x.size
    error = np.full(n, "", dtype=object)
    error_code = np.full(n, "", dtype=object)
    finite = np.isfinite(x) & np.isfinite(y)
    error[~finite] = "missing or non-numeric coordinate"
    error_code[~finite] = "invalid_coordinate"
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    if finite.any():
        lon[finite], lat[finite] = to_lonlat(x[finite], y[finite], crs)
    bad_range = finite & ~((np.abs(lon) <= 180) & (np.abs(lat) <= 90))  # NaN after conversion too
    error[bad_range] = "coordinate out of range (lon -180..180, lat -90..90)"
    error_code[bad_range] = "invalid_coordinate"
    ok = finite & ~bad_range
    region = np.full(n, -1, dtype=np.int64)
    status = np.full(n, 3, dtype=np.int8)
    if ok.any():
        region[ok], status[ok] = snap.locate_many(lon[ok], lat[ok])
    # Swapped lat/lon: an outside or out-of-range point whose swap lands inside is reported with
    # the fix.
    outside = np.flatnonzero((status == 2) | (bad_range & np.isfinite(lon) & np.isfinite(lat)
                                              & (np.abs(lon) <= 90)))
    if outside.size:
        r2, s2 = snap.locate_many(lat[outside], lon[outside])
        swapped = outside[s2 < 2]
        error[swapped] = [f"lat/lon look swapped: did you mean {a:.6f},{b:.6f}?"
                          for a, b in zip(lat[swapped], lon[swapped], strict=True)]
        error_code[swapped] = "swapped_coordinate"
        status[swapped] = 3
    # Outside: the nearest grid and its distance; too far is an error, as for a single lookup.
    nearest = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan)
    outside = np.flatnonzero(status == 2)
    if outside.size:
        nearest[outside], distance[outside] = snap.nearest_many(lon[outside], lat[outside])
        far = outside[distance[outside] > max_outside_m]  # NaN (no grid at all) is not far
        error[far] = [f"the point is {d / 1000:.1f} km from the nearest grid; at most "
                      f"{max_outside_m / 1000:.0f} km is served" for d in distance[far]]
        error_code[far] = "point_far_outside"
        status[far] = 3
        nearest[far] = -1
        distance[far] = np.nan
    scope = principal.locate_scope()
    allowed = snap.scope_mask(scope)
    forbidden = (status <= 1) & ~allowed[region]
    near_ok = allowed[nearest]
    near_ok[nearest < 0] = scope.covers(None)
    forbidden |= (status == 2) & ~near_ok  # nearest-grid answers could leak other jurisdictions
    status[forbidden] = 4
    error_code[forbidden] = "outside_jurisdiction"
    nearest[forbidden] = -1
    distance[forbidden] = np.nan
    out = {"status": STATUS_NAMES[status]}
    idx = np.where(status <= 1, region, -1)  # -1 selects the empty last entry
    for name, values in columns.items():
        out[name] = values[idx]
    visible = snap.scope_mask(principal.scope) if principal.role in FULL_PERSONAL_DATA \
        else np.zeros(len(snap.regions) + 1, dtype=bool)
    hide = ~visible[idx]
    if hide.any():
        # Mask once per region (a few thousand), then pick per row (a million).
        masked = np.array([mask_phone(p) if p else p for p in columns["responsible_phone"]],
                          dtype=object)
        out["responsible_phone"] = np.where(hide, masked[idx], out["responsible_phone"])
    codes = np.array([r.code for r in snap.regions] + [""], dtype=object)
    out["nearest_code"] = codes[nearest]
    out["nearest_distance_m"] = np.array(
        [round(float(d), 1) if d == d else None for d in distance], dtype=object)
    out["error"] = error
    out["error_code"] = error_code
    return out, int((status == 3).sum())


def locate_csv(snap: Snapshot, body: bytes, *, crs: str, principal: Principal,
               x_field: str = "lon", y_field: str = "lat",
               max_outside_m: float = DEFAULT_MAX_OUTSIDE_M) -> BatchResult:
    """A CSV with a header; every input column is passed through as the text it was."""
    crs_name = parse_crs(crs).name
    try:
        names = pacsv.open_csv(io.BytesIO(body)).schema.names if body.strip() else []
        # Every column as text: a timestamp, a leading zero or '1.10' comes out as it went in.
        table = pacsv.read_csv(
            io.BytesIO(body),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise BatchInputError("The CSV could not be read.",
                              detail={"field": "body", "reason": str(exc)[:300]}) from exc
    missing = [f for f in (x_field, y_field) if f not in table.column_names]
    if missing:
        raise BatchInputError(
            f"The CSV has no column {', '.join(missing)}.",
            detail={"field": missing[0], "expected": "a column of numbers",
                    "columns": table.column_names[:50]},
        )
    for name in ADDED:
        if name in table.column_names:
            table = table.rename_columns([c if c != name else f"input_{c}"
                                          for c in table.column_names])
    x = _to_float(table[x_field])
    y = _to_float(table[y_field])
    added, bad = _locate_columns(snap, x, y, crs_name, principal, max_outside_m)
    for name in ADDED:
        values = added[name]
        if name == "nearest_distance_m":
            values = np.array(["" if v is None else f"{v:.1f}" for v in values], dtype=object)
        table = table.append_column(name, pa.array(values, type=pa.string()))

    def chunks() -> Iterator[bytes]:
        for start in range(0, table.num_rows, CHUNK_ROWS):
            sink = io.BytesIO()
            pacsv.write_csv(table.slice(start, CHUNK_ROWS), sink,
                            write_options=pacsv.WriteOptions(include_header=start == 0,
                                                             quoting_style="needed"))
            yield sink.getvalue()
        if table.num_rows == 0:
            yield (",".join(table.column_names) + "\n").encode()

    return BatchResult(rows=table.num_rows, bad_rows=bad, crs=crs_name, chunks=chunks())


def _to_float(column: pa.ChunkedArray) -> np.ndarray:
    """Parse a text column to floats; anything unparsable becomes NaN (reported per row)."""
    stripped = pc.utf8_trim_whitespace(column)
    valid = pc.match_substring_regex(stripped, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    safe = pc.if_else(valid, stripped, pa.scalar("nan"))
    return pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False)


def snap_columns(snap: Snapshot) -> dict[str, np.ndarray]:
    cols = getattr(snap, "_batch_columns", None)
    if cols is None:
        cols = snap.batch_columns()
        snap._batch_columns = cols  # type: ignore[attr-defined]
    return cols


def locate_json(snap: Snapshot, body: bytes, *, crs: str, principal: Principal,
                max_outside_m: float = DEFAULT_MAX_OUTSIDE_M) -> BatchResult:
    """JSON: ``[[x, y, ...], ...]`` or ``[{"lon": x, "lat": y, ...}, ...]``, optionally wrapped as
    ``{"crs": ..., "points": [...]}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BatchInputError("The body is not valid JSON.",
                              detail={"field": "body", "reason": str(exc)}) from exc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return locate_geojson(snap, doc, crs=crs, principal=principal,
                              max_outside_m=max_outside_m)
    if isinstance(doc, dict):
        crs = doc.get("crs", crs) if isinstance(doc.get("crs"), str) else crs
        doc = doc.get("points")
    if not isinstance(doc, list):
        raise BatchInputError("Expected a JSON array of points.",
                              detail={"field": "points", "expected": "[[lon, lat], ...]"})
    _check_serialisable(doc)
    crs_name = parse_crs(crs).name
    x = np.array([_coord(r, 0, "lon") for r in doc], dtype=float)
    y = np.array([_coord(r, 1, "lat") for r in doc], dtype=float)
    added, bad = _locate_columns(snap, x, y, crs_name, principal, max_outside_m)

    def chunks() -> Iterator[bytes]:
        yield b"["
        for start in range(0, len(doc), CHUNK_ROWS):
            rows = []
            for i in range(start, min(start + CHUNK_ROWS, len(doc))):
                extra = {k: added[k][i] for k in ADDED}
                row = doc[i]
                rows.append({**row, **extra} if isinstance(row, dict)
                            else [*row, *extra.values()] if isinstance(row, list)
                            else {"input": row, **extra})
            part = orjson.dumps(rows)[1:-1]
            yield (b"," if start else b"") + part
        yield b"]"

    return BatchResult(rows=len(doc), bad_rows=bad, crs=crs_name, chunks=chunks())


def _check_serialisable(doc: Any) -> None:
    """Fail now if the answer could not be written: it is streamed, and a stream that has begun
    can only be cut off (the client sees a 200 and a truncated body). Rows are echoed, so the
    input nested deeper than the JSON writer allows (254 levels) is refused before any byte."""
    try:
        orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:
        raise BatchInputError("The body is nested too deeply to be answered.",
                              code="nested_too_deep",
                              detail={"field": "body", "reason": str(exc),
                                      "expected": "at most 250 levels of nesting"}) from exc


def _coord(row: Any, pos: int, key: str) -> float:
    try:
        value = row[pos] if isinstance(row, list) else row.get(key, row.get("xy"[pos]))
        return float(value)
    except (TypeError, ValueError, IndexError, AttributeError, KeyError):
        return float("nan")


def locate_geojson(snap: Snapshot, doc: Any, *, crs: str, principal: Principal,
                   max_outside_m: float = DEFAULT_MAX_OUTSIDE_M) -> BatchResult:
    """A FeatureCollection of Points; properties are kept and the answer added to them."""
    if isinstance(doc, bytes):
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError as exc:
            raise BatchInputError("The body is not valid JSON.",
                                  detail={"field": "body", "reason": str(exc)}) from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" \
            or not isinstance(doc.get("features"), list):
        raise BatchInputError("Expected a GeoJSON FeatureCollection.",
                              detail={"field": "features", "expected": "FeatureCollection"})
    feats = doc["features"]
    _check_serialisable(feats)

    def xy(f: Any, pos: int) -> float:
        try:
            g = f["geometry"]
            return float(g["coordinates"][pos]) if g["type"] == "Point" else float("nan")
        except (TypeError, KeyError, IndexError, ValueError):
            return float("nan")

    crs_name = parse_crs(crs).name
    x = np.array([xy(f, 0) for f in feats], dtype=float)
    y = np.array([xy(f, 1) for f in feats], dtype=float)
    added, bad = _locate_columns(snap, x, y, crs_name, principal, max_outside_m)

    def chunks() -> Iterator[bytes]:
        yield b'{"type":"FeatureCollection","features":['
        for start in range(0, len(feats), CHUNK_ROWS):
            part = []
            for i in range(start, min(start + CHUNK_ROWS, len(feats))):
                f = feats[i] if isinstance(feats[i], dict) else {"geometry": None}
                props = f.get("properties") or {}
                part.append({"type": "Feature", "geometry": f.get("geometry"),
                             "properties": {**props, **{k: added[k][i] for k in ADDED}}})
            yield (b"," if start else b"") + orjson.dumps(part)[1:-1]
        yield b"]}"

    return BatchResult(rows=len(feats), bad_rows=bad, crs=crs_name, chunks=chunks())
