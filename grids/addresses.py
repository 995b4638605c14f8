"""The standard address book (标准地址库): import, versioning, forgiving search.

Dispatchers get addresses, not coordinates. The book holds each standard address with its point
(CGCS2000, EPSG:4490) and the grid the point falls in; search matches what a caller typed
against it after both sides went through :func:`gis.address_text.normalise`, using PostgreSQL's
``pg_trgm`` (a trigram GIN index over the normalised text of the rows in force; why trigrams:
``docs/decisions.md``).

Import (:func:`import_file`, :func:`import_records`) is all or nothing: every bad row is listed as
``{row, field, reason}`` and nothing is written if there is one. A re-import is a new version: a
row whose text, code or point changed is ended (``valid_to``) and a new one starts; in
``replace`` mode a row in force inside the importer's jurisdiction that the file no longer holds
is ended too. Rows are never deleted.

Jurisdiction: search and reads are cut to the principal's locate scope (a city-wide dispatcher
sees the whole book; a street's supervisor the street's grids); an import may only write rows
inside the principal's own jurisdiction.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from sqlalchemy import Connection, text

from gis.address_text import normalise, parts
from gis.crs import parse_crs, to_lonlat
from gis.errors import GisError
from grids.access import Principal, Scope
from grids.errors import GridError, ImportRejected
from grids.locate import Snapshot, load_snapshot
from grids.upload_limits import (
    UploadLimits,
    UploadTooLarge,
    cell_text,
    check_csv_rows,
    read_xlsx_rows,
)

MAX_TEXT = 300
MAX_PROBLEMS = 1000  # problems listed in one rejection (detail['total'] counts them all)
Mode = Literal["replace", "merge"]
# Header names accepted for each column (lower case; Chinese forms as clerks write them).
COLUMNS: dict[str, tuple[str, ...]] = {
    "address": ("address", "text", "地址", "标准地址", "addr"),
    "code": ("code", "address_code", "地址编码", "编码"),
    "x": ("lon", "x", "lng", "long", "longitude", "经度", "横坐标"),
    "y": ("lat", "y", "latitude", "纬度", "纵坐标"),
}
# How far a candidate set is drawn from the trigram index before re-ranking by numbers.
POOL = 40
WORD_THRESHOLD = 0.5  # pg_trgm.word_similarity_threshold for the index scan


class AddressNotFound(GridError):
    """No address with that id in the caller's jurisdiction (404)."""

    code = "address_not_found"


class EmptyQuery(GridError):
    """A search with nothing to search for once normalised (422)."""

    code = "empty_query"


@dataclass(frozen=True, slots=True)
class Record:
    """One address of a file, before it is checked."""

    row: int  # the spreadsheet row number (header = 1)
    text: str
    x: Any
    y: Any
    code: str | None = None


def _problem(row: int | None, field: str | None, reason: str) -> dict[str, Any]:
    return {"row": row, "field": field, "reason": reason}


def _rejected(name: str, errors: list[dict[str, Any]]) -> ImportRejected:
    errors = sorted(errors, key=lambda e: e["row"] if e["row"] is not None else 0)
    return ImportRejected(
        f"{name}: {len(errors)} problem(s); nothing was imported.",
        detail={"errors": errors[:MAX_PROBLEMS], "total": len(errors)})


# -- reading files ---------------------------------------------------------------------------------
def read_table(data: bytes, filename: str, limits: UploadLimits) -> list[Record]:
    """The address records of a CSV (UTF-8 or GB18030) or XLSX file, under the upload limits."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if not data:
        raise ImportRejected(f"{filename} is empty.", code="empty_file",
                             detail={"errors": [_problem(None, "file", "the file is empty")]})
    rows: list[list[Any]]
    if suffix in ("xlsx", "xlsm"):
        try:
            rows = read_xlsx_rows(data, limits)
        except UploadTooLarge:
            raise
        except Exception as exc:
            raise ImportRejected(f"Cannot read {filename} as an Excel workbook.", detail={
                "errors": [_problem(None, "file", f"not a readable .xlsx file: {exc}")]}) from exc
        rows = [[cell_text(v) for v in r] for r in rows]
    elif suffix in ("csv", "txt"):
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                content = data.decode("gb18030")
            except UnicodeDecodeError as exc:
                raise ImportRejected(f"{filename} is neither UTF-8 nor GB18030 text.", detail={
                    "errors": [_problem(None, "file", "the file is neither UTF-8 nor GBK/GB18030 "
                                                      f"(byte {exc.start}); save it as CSV UTF-8")]}
                ) from exc
        rows = []
        for i, values in enumerate(csv.reader(io.StringIO(content)), start=1):
            check_csv_rows(i, limits)
            rows.append(values)
    else:
        raise ImportRejected(f"Cannot read addresses from {filename}: use .csv or .xlsx.",
                             code="unsupported_format",
                             detail={"errors": [_problem(None, "file",
                                                         "the file must be .csv or .xlsx")]})
    if not rows:
        raise ImportRejected(f"{filename} has no header.", code="empty_file",
                             detail={"errors": [_problem(None, "file", "the file is empty")]})
    header = [str(h or "").strip().lower() for h in rows[0]]
    where: dict[str, int] = {}
    for column, names in COLUMNS.items():
        for j, h in enumerate(header):
            if h in names:
                where[column] = j
                break
    missing = [c for c in ("address", "x", "y") if c not in where]
    if missing:
        raise ImportRejected(f"{filename}: missing column(s) {', '.join(missing)}.", detail={
            "errors": [_problem(1, c, f"missing column {c!r} (one of {', '.join(COLUMNS[c])}); "
                                      f"the header has: {', '.join(h for h in header if h) or '—'}")
                       for c in missing]})

    def cell(values: list[Any], column: str) -> str:
        j = where.get(column)
        return str(values[j]).strip() if j is not None and j < len(values) and values[j] else ""

    out = []
    for i, values in enumerate(rows[1:], start=2):
        if not any(str(v or "").strip() for v in values):
            continue  # blank lines at the end of a sheet
        out.append(Record(row=i, text=cell(values, "address"), x=cell(values, "x"),
                          y=cell(values, "y"), code=cell(values, "code") or None))
    return out


# -- checking and importing ------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def import_file(conn: Connection, data: bytes, filename: str, *, principal: Principal,
                crs: str | None = None, mode: Mode = "replace",
                limits: UploadLimits | None = None, snapshot: Snapshot | None = None
                ) -> dict[str, Any]:
    """Read a CSV/XLSX address file and import it (see :func:`import_records`)."""
    records = read_table(data, filename, limits or UploadLimits())
    return import_records(conn, records, principal=principal, crs=crs, mode=mode,
                          source=filename, snapshot=snapshot)


def import_records(conn: Connection, records: list[Record], *, principal: Principal,
                   crs: str | None = None, mode: Mode = "replace", source: str = "",
                   snapshot: Snapshot | None = None) -> dict[str, Any]:
    """Check every record, place it in its grid, and write the book's new version.

    ``crs`` names the coordinates' CRS (``gis.crs.parse_crs``: EPSG:4490, wgs84, gcj02, bd09,
    projected EPSG codes; default EPSG:4490). ``snapshot`` is the locator to place points with
    (default: loaded from the caller's connection). Returns ``{added, changed, unchanged, ended,
    total, crs}``; raises :class:`ImportRejected` listing every bad row, having written nothing.
    """
    try:
        source_crs = parse_crs(crs or "EPSG:4490")
    except GisError as exc:
        raise ImportRejected(exc.message, detail={"errors": [_problem(None, "crs", exc.message)]}
                             ) from exc
    errors: list[dict[str, Any]] = []
    good: list[tuple[Record, float, float, str]] = []
    for rec in records:
        before = len(errors)
        body = rec.text.strip()
        if not body:
            errors.append(_problem(rec.row, "address", "the address is empty"))
        elif len(body) > MAX_TEXT:
            errors.append(_problem(rec.row, "address", f"longer than {MAX_TEXT} characters"))
        elif any(ord(c) < 32 for c in body):
            errors.append(_problem(rec.row, "address", "holds control characters"))
        elif not normalise(body):
            errors.append(_problem(rec.row, "address", "holds no letters or digits"))
        if rec.code is not None and len(rec.code) > 100:
            errors.append(_problem(rec.row, "code", "longer than 100 characters"))
        x, y = _number(rec.x), _number(rec.y)
        if x is None:
            errors.append(_problem(rec.row, "lon", f"not a number: {str(rec.x)[:40]!r}"))
        if y is None:
            errors.append(_problem(rec.row, "lat", f"not a number: {str(rec.y)[:40]!r}"))
        if x is not None and y is not None and source_crs.geographic and not (
                -180 <= x <= 180 and -90 <= y <= 90):
            errors.append(_problem(rec.row, "lon", f"({x}, {y}) is not a lon/lat in degrees "
                                                   f"({source_crs.name})"))
        if len(errors) == before:
            good.append((rec, x, y, normalise(body)))  # type: ignore[arg-type]
    placed = _place(conn, good, source_crs.name, snapshot, errors)
    _check_keys_and_scope(placed, principal, errors)
    if errors:
        raise _rejected(source or "the file", errors)
    return _write(conn, placed, principal=principal, mode=mode, source=source) | {
        "crs": source_crs.name}


@dataclass(slots=True)
class _Placed:
    row: int
    key: str
    code: str | None
    text: str
    norm: str
    lon: float
    lat: float
    grid_code: str


def _place(conn: Connection, good: list[tuple[Record, float, float, str]], crs: str,
           snapshot: Snapshot | None, errors: list[dict[str, Any]]) -> list[_Placed]:
    """Convert to lon/lat and find each point's grid (or smallest region: 属地兜底)."""
    if not good:
        return []
    snap = snapshot if snapshot is not None else load_snapshot(conn)
    xs = np.array([g[1] for g in good], dtype=np.float64)
    ys = np.array([g[2] for g in good], dtype=np.float64)
    lon, lat = to_lonlat(xs, ys, crs)
    region, _ = snap.locate_many(lon, lat)
    out = []
    for (rec, _, _, norm), lo, la, reg in zip(good, lon, lat, region, strict=True):
        if reg < 0 or not (math.isfinite(lo) and math.isfinite(la)):
            errors.append(_problem(rec.row, "lon", f"({rec.x}, {rec.y}) in {crs} is outside the "
                                                   "city's regions (swapped lon/lat or wrong CRS?)"))
            continue
        out.append(_Placed(row=rec.row, key=rec.code or norm, code=rec.code, text=rec.text.strip(),
                           norm=norm, lon=float(lo), lat=float(la),
                           grid_code=snap.regions[int(reg)].code))
    return out


def _check_keys_and_scope(placed: list[_Placed], principal: Principal,
                          errors: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for p in placed:
        if p.key in seen:
            field = "code" if p.code else "address"
            errors.append(_problem(p.row, field, f"the same address as row {seen[p.key]}"))
        else:
            seen[p.key] = p.row
        if not principal.scope.covers(p.grid_code):
            errors.append(_problem(p.row, "lon", f"the point falls in {p.grid_code}, outside "
                                                 "your jurisdiction"))


def _scope_sql(scope: Scope, column: str = "grid_code") -> tuple[str, dict[str, Any]]:
    if scope.covers(None):
        return "", {}
    return f" AND {column} LIKE ANY(:patterns)", {"patterns": scope.like_patterns()}


_SAME_POINT_DEG = 1e-7  # ~1 cm: a point re-exported through another CRS is not a change


def _write(conn: Connection, placed: list[_Placed], *, principal: Principal, mode: Mode,
           source: str) -> dict[str, int]:
    now = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    keys = [p.key for p in placed]
    current = {row.key: row for row in conn.execute(text(
        "SELECT id, key, code, text, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM address "
        "WHERE valid_to IS NULL AND key = ANY(:keys)"), {"keys": keys})}
    new: list[_Placed] = []
    end_ids: list[int] = []
    unchanged = 0
    for p in placed:
        old = current.get(p.key)
        if old is not None and old.text == p.text and old.code == p.code \
                and abs(old.lon - p.lon) < _SAME_POINT_DEG and abs(old.lat - p.lat) < _SAME_POINT_DEG:
            unchanged += 1
            continue
        if old is not None:
            end_ids.append(old.id)
        new.append(p)
    changed = len(end_ids)
    ended = 0
    if mode == "replace":
        where, params = _scope_sql(principal.scope)
        gone = conn.execute(text(
            "UPDATE address SET valid_to = :now WHERE valid_to IS NULL AND NOT key = ANY(:keys)"
            + where + " RETURNING id"), {"now": now, "keys": keys, **params}).all()
        ended = len(gone)
    if end_ids:
        conn.execute(text("UPDATE address SET valid_to = :now WHERE id = ANY(:ids)"),
                     {"now": now, "ids": end_ids})
    if new:
        conn.execute(text(
            "INSERT INTO address (key, code, text, norm, parts, geom, grid_code, source, "
            "valid_from) SELECT k, c, t, n, p::jsonb, ST_SetSRID(ST_MakePoint(x, y), 4490), g, "
            ":source, :now FROM unnest(CAST(:k AS text[]), CAST(:c AS text[]), "
            "CAST(:t AS text[]), CAST(:n AS text[]), CAST(:p AS text[]), "
            "CAST(:x AS float8[]), CAST(:y AS float8[]), CAST(:g AS text[])) "
            "AS u(k, c, t, n, p, x, y, g)"),
            {"k": [p.key for p in new], "c": [p.code for p in new], "t": [p.text for p in new],
             "n": [p.norm for p in new],
             "p": [orjson.dumps(parts(p.norm)).decode() for p in new],
             "x": [p.lon for p in new], "y": [p.lat for p in new],
             "g": [p.grid_code for p in new], "source": source[:200], "now": now})
    return {"added": len(new) - changed, "changed": changed, "unchanged": unchanged,
            "ended": ended, "total": len(placed)}


# -- reading and searching -------------------------------------------------------------------------
_SELECT = (
    "SELECT a.id, a.key, a.code, a.text, a.norm, a.grid_code, r.name AS grid_name, "
    "r.level AS grid_level, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat, a.valid_from, a.valid_to "
)


def _public(row: Any) -> dict[str, Any]:
    return {"id": row.id, "text": row.text, "code": row.code, "grid_code": row.grid_code,
            "grid_name": row.grid_name, "grid_level": row.grid_level, "lon": row.lon,
            "lat": row.lat}


def get(conn: Connection, address_id: int, *, principal: Principal) -> dict[str, Any]:
    """One address (in force or ended) by id, if it lies in the caller's locate scope."""
    row = conn.execute(text(_SELECT + "FROM address a LEFT JOIN region r ON r.code = a.grid_code "
                                      "WHERE a.id = :id"), {"id": address_id}).first()
    if row is None or not principal.locate_scope().covers(row.grid_code):
        raise AddressNotFound(f"No address {address_id} in your jurisdiction.",
                              detail={"id": address_id})
    return _public(row) | {"key": row.key, "norm": row.norm, "valid_from": row.valid_from,
                           "valid_to": row.valid_to}


def confidence(query_norm: str, candidate_norm: str, word_sim: float, sim: float) -> float:
    """How sure a candidate is (0–1): trigram closeness, then the numbers compared exactly.

    The word similarity (does the query appear in the candidate?) carries most weight, since
    callers leave out the start of an address; a house, building, unit or room number that
    differs halves the score, one the query leaves open takes a little off.

    >>> confidence("江滨路12号3栋2单元", "江滨路12号3栋2单元", 1.0, 1.0)
    1.0
    >>> confidence("江滨路12号3栋2单元", "江滨路12号3栋1单元", 0.8, 0.7)
    0.39
    >>> confidence("江滨路12号", "稠城街道江滨社区江滨路12号3栋2单元", 1.0, 0.4)
    0.71
    """
    if query_norm == candidate_norm:
        return 1.0
    score = 0.8 * word_sim + 0.2 * sim
    q, c = parts(query_norm), parts(candidate_norm)
    for name, value in q.items():
        if name in c and c[name] != value:
            score *= 0.5
        elif name not in c:
            score *= 0.8
    score *= 0.9 ** len(c.keys() - q.keys())
    return round(min(1.0, score), 2)


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_ROW = ("SELECT a.id, a.code, a.text, a.norm, a.grid_code, ST_X(a.geom) AS lon, "
        "ST_Y(a.geom) AS lat FROM address a WHERE a.valid_to IS NULL")
_SCORED = ("SELECT c.*, word_similarity(:q, c.norm) AS ws, similarity(:q, c.norm) AS s, "
           "r.name AS grid_name, r.level AS grid_level FROM ({inner}) c "
           "LEFT JOIN region r ON r.code = c.grid_code")
# Exact pass: at most EXACT_CAP rows holding the query (a broad one such as a street's name holds
# tens of thousands), the shortest first: the closest to the query among them.
EXACT_CAP = 2000
_EXACT = _SCORED.format(inner="SELECT * FROM (" + _ROW + " AND a.norm LIKE :like{scope} "
                              "LIMIT :cap) m ORDER BY length(m.norm), m.norm LIMIT :pool")
_FUZZY = _SCORED.format(inner=_ROW + " AND :q <% a.norm{scope} "
                              "ORDER BY word_similarity(:q, a.norm) DESC, a.norm LIMIT :pool")
MIN_QUERY = 3  # characters of the normalised query: fewer match a good part of the book


def search(conn: Connection, query: str, *, principal: Principal, limit: int = 10,
           exact_first: bool = True) -> dict[str, Any]:
    """The book's best candidates for what a caller typed, most likely first.

    Two passes, both on the trigram index of ``norm``: first the addresses that hold the whole
    normalised query (``LIKE '%…%'``: every trigram must match, so the index answers in a
    millisecond or two even with a million rows; callers who leave out the start of an address
    land here); only if there is none, the fuzzy pass (``word_similarity`` above
    :data:`WORD_THRESHOLD`, slower: the similarity is computed for every row the index lets
    through). Either way the best :data:`POOL` are re-ranked by :func:`confidence`.

    Returns ``{query, normalised, candidates: [{id, text, code, grid_code, grid_name,
    grid_level, lon, lat, confidence}]}``; only addresses in the caller's locate scope.
    ``exact_first=False`` skips the first pass (to measure the fuzzy one: bench/addresses.py).
    """
    norm = normalise(query)
    if len(norm) < MIN_QUERY:
        raise EmptyQuery(f"Type at least {MIN_QUERY} characters of the address.",
                         detail={"field": "q", "normalised": norm, "min_length": MIN_QUERY})
    where, params = _scope_sql(principal.locate_scope(), "a.grid_code")
    params |= {"q": norm, "pool": max(POOL, limit), "like": _like(norm), "cap": EXACT_CAP}
    rows = conn.execute(text(_EXACT.format(scope=where)), params).all() if exact_first else []
    if not rows:
        conn.execute(text("SELECT set_config('pg_trgm.word_similarity_threshold', :t, true)"),
                     {"t": str(WORD_THRESHOLD)})
        rows = conn.execute(text(_FUZZY.format(scope=where)), params).all()
    ranked = sorted(((confidence(norm, r.norm, r.ws, r.s), r) for r in rows),
                    key=lambda t: (-t[0], -t[1].ws, -t[1].s, t[1].id))
    return {"query": query, "normalised": norm,
            "candidates": [_public(r) | {"confidence": c} for c, r in ranked[:limit]]}
