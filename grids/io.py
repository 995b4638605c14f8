"""Region files and staff rosters in and out: GeoJSON, GeoPackage, Shapefile, CSV, XLSX.

Imports are two steps, so a planner can see every problem of a file before anything is written:

1. ``read_regions`` / ``read_roster`` read a file and check everything that needs no database;
2. ``import_regions`` / ``import_roster`` check it against the registry (parents, existing codes,
   region codes) and write through :mod:`grids.store` in the caller's transaction. They never
   commit: if they raise, the caller rolls back and nothing is left behind.

Every check runs to the end and one ``ImportRejected`` lists all problems in
``detail['errors']``: ``{feature, code, field, reason}`` for region files (``feature`` is the
0-based position in the file; ``None`` for problems of the whole file) and
``{row, staff_code, field, reason}`` for rosters (``row`` as a spreadsheet shows it: the header is
row 1).

Coordinates: the output of ``read_regions`` is always CGCS2000 lon/lat (EPSG:4490). The file's
declared CRS is honoured; EPSG:4326 is taken as EPSG:4490 (the two agree to well under a metre
for this work, and no datum shift is applied). ``crs=`` overrides the file, which is how GCJ-02
(Amap, Tencent) and BD-09 (Baidu) data, which no file format can declare, are read. The CRS
assumed is kept in ``frame.attrs['source_crs']``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gis.crs import parse_crs, to_lonlat
from gis.errors import UnknownCRS
from gis.transform import transformer
from gis.validate import diagnose_lonlat, explain_invalid, guess_projected_crs
from grids import store
from grids.city import metric_crs_for
from grids.codes import LEVELS, PARENT_LEVEL, level_of, normalise
from grids.errors import GridError, ImportRejected, InvalidCode, RegionNotFound
from grids.upload_limits import UploadLimits, UploadTooLarge, check_csv_rows, read_xlsx_rows

TOLERANCE_M2 = 1.0
"""A child may stick out of its parent by this many m² (its metric CRS) before it is rejected."""

CHUNK = 500
"""Regions written per ``grids.store.insert_regions`` call; ``progress`` is called after each."""

REGION_COLUMNS = ["code", "name", "level", "parent_code", "geometry"]
EXPORT_COLUMNS = ["code", "name", "level", "parent_code", "area_m2", "version_id"]
_LEVEL_ORDER = {lv: i for i, lv in enumerate(LEVELS)}
_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile"}

# Boundaries in force at :at (NULL = now); the idiom of ``grids.registry``.
_IN_FORCE = (
    "b.valid_from <= coalesce(CAST(:at AS timestamptz), now()) AND "
    "(b.valid_to IS NULL OR b.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
)


# --------------------------------------------------------------------------------------------
# Regions: reading and checking a file
# --------------------------------------------------------------------------------------------


def read_regions(
    path: str | Path, *, layer: str | None = None, crs: str | None = None,
    code_field: str = "code", name_field: str = "name", parent_field: str = "parent_code",
    level_field: str = "level", level: str | None = None, encoding: str | None = None,
    metric: str | None = None,
) -> gpd.GeoDataFrame:
    """Read regions from a GeoJSON, GeoPackage or Shapefile and check them.

    Parameters
    ----------
    path, layer
        The file, and the layer for a multi-layer GeoPackage (default: the first).
    crs
        The coordinates' CRS, overriding the file: ``'gcj02'``, ``'bd09'``, ``'EPSG:4547'`` or any
        name :func:`gis.crs.parse_crs` accepts. Required when the file declares none.
    code_field, name_field, parent_field, level_field
        The attribute names. A Shapefile's names are cut to 10 characters, so ``parent_cod``
        is found for ``parent_code``.
    level
        The level of every feature, when the file has no level column. When the file has no
        parent column either, the parent is derived from the code (a grid's community is its
        first 12 digits, a community's street its first 9, a street's city its first 6).
    encoding
        The text encoding of a Shapefile's attributes (``'GBK'``, ``'UTF-8'``...). Without
        it a ``.cpg`` beside the ``.dbf`` is honoured; with neither, the attribute text is
        tried as strict UTF-8, then as GB18030 (which covers GBK and GB2312), and the file is
        refused if neither decodes it cleanly: mojibake is never stored.
    metric
        The city's metric CRS (``grids.city.profile(conn).metric_crs``), named as the likely CRS
        of Gauss-Krüger metres written without their zone number. Without it such a file is
        still refused, only without that guess.

    Returns
    -------
    GeoDataFrame
        Columns code, name, level, parent_code (None for a city), geometry (Polygon or
        MultiPolygon, 2D) in EPSG:4490, in file order. ``attrs['warnings']`` lists what was
        changed on the way in, like the errors (a GeometryCollection's lines and points
        dropped, its polygons kept); ``attrs['encoding']`` the Shapefile encoding used.

    Raises
    ------
    ImportRejected
        With every problem found: an empty file, missing fields, an unknown or missing CRS,
        coordinates that do not fit the CRS (projected metres read as degrees, with the likely
        CRS named; lat/lon swapped), undecodable text, invalid, empty or non-polygon geometry,
        malformed or duplicate codes, a code not matching its level, a parent of the wrong
        level, a child outside a parent that is in the same file.
    """
    path = Path(path)
    if level is not None and level not in LEVELS:
        raise ImportRejected(
            f"Unknown level {level!r}.",
            detail={"errors": [_err(None, None, "level", f"level must be one of {list(LEVELS)}")]},
        )
    _refuse_empty(path)
    options: dict[str, Any] = {}
    if path.suffix.lower() == ".shp":
        options["encoding"] = encoding or _shapefile_encoding(path)
    elif encoding is not None:
        raise ImportRejected(
            f"{path.name}: encoding= applies to Shapefiles only.",
            detail={"errors": [_err(None, None, "encoding", "GeoJSON and GeoPackage text is "
                                                            "always UTF-8; drop encoding=")]})
    try:
        raw = gpd.read_file(path, layer=layer, engine="pyogrio", **options)
    except UnicodeDecodeError as exc:
        raise ImportRejected(
            f"{path.name}: the attribute text is not {options.get('encoding')}.",
            detail={"errors": [_err(None, None, "encoding",
                                    f"the attribute text does not decode as "
                                    f"{options.get('encoding')} ({exc.reason} at byte "
                                    f"{exc.start}); pass the file's encoding")]}) from exc
    except (DataSourceError, DataLayerError) as exc:
        raise ImportRejected(
            f"Cannot read {path.name}: {exc}",
            detail={"errors": [_err(None, None, "layer" if isinstance(exc, DataLayerError)
                                    else None, str(exc))]},
        ) from exc
    errors: list[dict[str, Any]] = []
    available = [c for c in raw.columns if c != raw.geometry.name]
    short = path.suffix.lower() == ".shp"  # DBF field names are at most 10 characters

    def field(name: str, *, required: bool, hint: str = "") -> str | None:
        for candidate in (name, name[:10] if short else None):
            if candidate and candidate in available:
                return candidate
        lowered = {c.lower(): c for c in available}
        if name.lower() in lowered:
            return lowered[name.lower()]
        if required:
            errors.append(_err(None, None, name,
                               f"missing field {name!r}{hint}; the file has: "
                               f"{', '.join(available) or 'no fields'}"))
        return None

    code_col = field(code_field, required=True)
    name_col = field(name_field, required=True)
    level_col = field(level_field, required=level is None, hint=" (or pass level=)")
    parent_col = field(parent_field, required=False)  # absent: derived from the codes

    warnings: list[dict[str, Any]] = []
    if code_col is not None:
        _keep_polygons(raw, [_text(v) or None for v in raw[code_col]], warnings)
    else:
        _keep_polygons(raw, [None] * len(raw), warnings)
    geoms, source_crs = _to_cgcs2000(raw, crs, errors, metric)
    n = len(raw)
    frame = gpd.GeoDataFrame(
        {
            "code": [_text(v) for v in raw[code_col]] if code_col else [""] * n,
            "name": [_text(v) for v in raw[name_col]] if name_col else [""] * n,
            "level": ([_text(v).lower() for v in raw[level_col]] if level_col
                      else [level or ""] * n),
            # object dtype: a city's missing parent stays None (pandas 3 would make it NaN)
            "parent_code": pd.Series([_text(v) or None for v in raw[parent_col]] if parent_col
                                     else [None] * n, index=raw.index, dtype=object),
        },
        geometry=gpd.GeoSeries(geoms, index=raw.index), crs="EPSG:4490",
    )
    if n == 0:
        errors.append(_err(None, None, None, "the file has no features"))
    if level is not None and level_col is not None:
        for i, lv in enumerate(frame["level"]):
            if lv != level:
                errors.append(_err(i, frame["code"].iat[i], "level",
                                   f"level {lv!r} in the file but level={level!r} was asked"))
    errors.extend(_check_frame(frame, derive_parents=parent_col is None,
                               check_geometry=source_crs is not None,
                               fields={"code": code_field, "name": name_field,
                                       "level": level_field, "parent_code": parent_field},
                               skip_fields={k for k, col in (("code", code_col),
                                                             ("name", name_col),
                                                             ("level", level_col or level))
                                            if col is None}))
    if errors:
        errors = _sorted(errors)
        raise _rejected(errors, path.name)
    frame = frame.reset_index(drop=True)
    frame.attrs["source_crs"] = source_crs
    frame.attrs["warnings"] = warnings
    frame.attrs["encoding"] = options.get("encoding")
    return frame


def _refuse_empty(path: Path) -> None:
    """An empty file (or one of blanks) is said to be empty, not 'not recognized'."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # missing: GDAL's own message names the path
    if size == 0 or (size < 4096 and not path.read_bytes().strip()):
        raise ImportRejected(
            f"{path.name} is empty ({size} bytes).",
            detail={"errors": [_err(None, None, None, f"the file is empty ({size} bytes): "
                                                      "nothing was written to it")]},
            code="empty_file")


def _dbf_text(dbf: Path) -> list[bytes]:
    """The raw bytes of every text (C) field value of a dBASE file, blanks stripped."""
    data = dbf.read_bytes()
    if len(data) < 32:
        return []
    records = int.from_bytes(data[4:8], "little")
    header_len = int.from_bytes(data[8:10], "little")
    record_len = int.from_bytes(data[10:12], "little")
    fields, offset, pos = [], 1, 32  # each record starts with its deletion flag
    while pos + 32 <= header_len and data[pos] != 0x0D:
        kind, length = chr(data[pos + 11]), data[pos + 16]
        if kind == "C":
            fields.append((offset, length))
        offset += length
        pos += 32
    out: list[bytes] = []
    for r in range(records):
        start = header_len + r * record_len
        rec = data[start:start + record_len]
        out.extend(rec[o:o + n].strip(b" \x00") for o, n in fields)
    return [v for v in out if any(b >= 0x80 for b in v)]


def _shapefile_encoding(path: Path) -> str:
    """The encoding of a Shapefile's attributes: its .cpg, else what decodes its text cleanly.

    Strict UTF-8 first (ASCII passes), then GB18030 (a superset of GBK and GB2312, what Chinese
    desktop GIS writes without saying so). Raises ImportRejected if neither decodes every value.
    """
    for cpg in (path.with_suffix(".cpg"), path.with_suffix(".CPG")):
        if cpg.exists():
            name = cpg.read_text(errors="replace").strip()
            if name:
                return "UTF-8" if name.replace("-", "").upper() in ("UTF8", "65001") else name
    dbf = next((d for d in (path.with_suffix(".dbf"), path.with_suffix(".DBF")) if d.exists()),
               None)
    values = _dbf_text(dbf) if dbf is not None else []
    for name in ("UTF-8", "GB18030"):
        try:
            for v in values:
                v.decode(name)
        except UnicodeDecodeError:
            continue
        return name
    raise ImportRejected(
        f"{path.name}: cannot tell the attribute text's encoding.",
        detail={"errors": [_err(None, None, "encoding",
                                "the .dbf text is neither UTF-8 nor GBK/GB18030 and there is no "
                                ".cpg; pass the encoding (encoding=, CLI --encoding)")]},
        code="import_rejected")


_POLYGONAL = ("Polygon", "MultiPolygon")


def _keep_polygons(raw: gpd.GeoDataFrame, codes: list[str | None],
                   warnings: list[dict[str, Any]]) -> None:
    """Replace each GeometryCollection holding polygons by its polygonal part, in place, and
    note in ``warnings`` what was dropped (a stray line or point of a drawing tool)."""
    geoms = np.asarray(raw.geometry.values, dtype=object)
    changed = False
    for i, g in enumerate(geoms):
        if g is None or g.geom_type != "GeometryCollection":
            continue
        parts = list(shapely.get_parts(g))
        while any(p.geom_type == "GeometryCollection" for p in parts):
            parts = [q for p in parts for q in (shapely.get_parts(p)
                                                 if p.geom_type == "GeometryCollection" else [p])]
        polygons = [q for p in parts if p.geom_type in _POLYGONAL and not p.is_empty
                    for q in shapely.get_parts(p)]
        if not polygons:
            continue  # reported as not a polygon
        dropped: dict[str, int] = {}
        for p in parts:
            if p.geom_type not in _POLYGONAL and not p.is_empty:
                dropped[p.geom_type] = dropped.get(p.geom_type, 0) + 1
        geoms[i] = polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)
        changed = True
        if dropped:
            what = ", ".join(f"{k} {t}{'s' if k > 1 else ''}" for t, k in dropped.items())
            warnings.append(_err(i, codes[i], "geometry",
                                 f"a GeometryCollection: kept its {len(polygons)} polygon"
                                 f"{'s' if len(polygons) > 1 else ''}, dropped {what}"))
    if changed:
        raw.set_geometry(gpd.GeoSeries(geoms, index=raw.index, crs=raw.crs), inplace=True)


def _to_cgcs2000(
    raw: gpd.GeoDataFrame, crs: str | None, errors: list[dict[str, Any]], metric: str | None
) -> tuple[np.ndarray, str | None]:
    """The geometries as 2D lon/lat in EPSG:4490, and the name of the CRS assumed."""
    geoms = shapely.force_2d(np.asarray(raw.geometry.values, dtype=object))
    declared = raw.crs
    if crs is None and declared is None:
        errors.append(_err(None, None, "crs", "the file declares no CRS; pass crs= "
                                              "(e.g. 'EPSG:4490', 'gcj02', 'bd09')"
                                              + _crs_hint(geoms, metric)))
        return geoms, None
    if crs is None and declared.to_epsg() is None:
        # A CRS only described by its WKT (an odd .prj): let PROJ transform it.
        try:
            fwd = transformer(declared.to_wkt(), "EPSG:4490")
        except Exception as exc:  # pyproj raises several types for CRSs it cannot use
            errors.append(_err(None, None, "crs", f"cannot transform the file's CRS "
                                                  f"{declared.name!r} to EPSG:4490: {exc}"))
            return geoms, None
        out = _apply(geoms, fwd)
        return _diagnosed(geoms, out, declared.name, not declared.is_geographic, errors, metric)
    try:
        source = parse_crs(crs if crs is not None else declared.to_epsg())
    except UnknownCRS as exc:
        errors.append(_err(None, None, "crs", exc.message.rstrip(".")))
        return geoms, None
    if source.is_lonlat:
        # EPSG:4326 is taken as EPSG:4490: no datum shift
        return _diagnosed(geoms, geoms, source.name, False, errors, metric)

    def lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_lonlat(xy[:, 0], xy[:, 1], source))

    try:
        out = shapely.transform(geoms, lonlat)
    except Exception:  # noqa: BLE001 - PROJ refuses some far-off values: said below
        out = shapely.transform(geoms, lambda xy: np.full(xy.shape, np.nan))
    return _diagnosed(geoms, out, source.name, not source.geographic, errors, metric)


def _diagnosed(raw: np.ndarray, lonlat: np.ndarray, name: str, projected: bool,
               errors: list[dict[str, Any]], metric: str | None) -> tuple[np.ndarray, str | None]:
    """``(lonlat, name)``, or ``(raw, None)`` with the reason in ``errors`` when the file's
    coordinates do not fit the CRS assumed (metres read as degrees, lat/lon swapped...)."""
    xy = shapely.get_coordinates(raw)
    ll = shapely.get_coordinates(lonlat) if lonlat is not raw else xy
    problem = diagnose_lonlat(ll[:, 0], ll[:, 1], raw_x=xy[:, 0], raw_y=xy[:, 1],
                              projected_source=projected, metric=metric)
    if problem is None:
        return lonlat, name
    extra: dict[str, Any] = {k: problem[k] for k in ("candidates", "corrected") if k in problem}
    errors.append({**_err(None, None, "crs", f"read as {name}, {problem['message']}"),
                   "problem": problem["reason"], **extra})
    return raw, None


def _crs_hint(geoms: np.ndarray, metric: str | None) -> str:
    """A guess at the CRS of a file that declares none, from its coordinates ('' if none)."""
    xy = shapely.get_coordinates(geoms)
    if not len(xy):
        return ""
    if diagnose_lonlat(xy[:, 0], xy[:, 1]) is None and np.all(np.abs(xy) <= 180):
        return ("; its coordinates look like lon/lat degrees in China: EPSG:4490 or EPSG:4326 "
                "for survey or GPS data, gcj02 or bd09 if drawn on an Amap, Tencent or Baidu map")
    guess = guess_projected_crs(xy[:, 0], xy[:, 1], metric=metric)
    if guess:
        return "; its coordinates look like projected metres: " + "; ".join(
            f"as {g['crs']} ({g['name']}) they lie at {g['lon']}, {g['lat']}" for g in guess)
    return ""


def _apply(geoms: Any, fwd: Any) -> Any:
    """Transform every vertex of ``geoms`` with a pyproj transformer in one vectorised call."""

    def fn(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(fwd.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(geoms, fn)


def _check_frame(
    frame: gpd.GeoDataFrame, *, derive_parents: bool = False, check_geometry: bool = True,
    fields: dict[str, str] | None = None, skip_fields: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Check a region frame without the database; normalise codes and parents in place.

    Returns the problems found (``feature`` = position in ``frame``).
    """
    fields = fields or {}
    skip = set(skip_fields)
    errors: list[dict[str, Any]] = []
    codes: list[str | None] = []
    parents: list[str | None] = []
    for i, (raw_code, name, lv, raw_parent) in enumerate(zip(
        frame["code"], frame["name"], frame["level"], frame["parent_code"], strict=True
    )):
        code = None
        if "code" not in skip:
            try:
                code = normalise(_text(raw_code))
            except InvalidCode as exc:
                errors.append(_err(i, _text(raw_code) or None, fields.get("code", "code"),
                                   f"{exc.message} Got {_text(raw_code)!r}."))
        shown = code or (_text(raw_code) or None)
        if "name" not in skip and not (1 <= len(_text(name)) <= 200):
            errors.append(_err(i, shown, fields.get("name", "name"),
                               "a name of 1 to 200 characters is required"))
        if lv not in LEVELS and "level" not in skip:
            errors.append(_err(i, shown, fields.get("level", "level"),
                               f"unknown level {lv!r}; expected one of {list(LEVELS)}"))
        elif code is not None and level_of(code) != lv:
            errors.append(_err(i, code, fields.get("code", "code"),
                               f"code {code} is a {level_of(code)} code, not a {lv} code"))
            lv = ""  # its parent cannot be judged against a level that is wrong
        parent = None
        if code is not None and lv in LEVELS:
            parent = _parent_from_code(code, lv) if derive_parents else _text(raw_parent) or None
            if parent is not None and not derive_parents:
                try:
                    parent = normalise(parent)
                except InvalidCode as exc:
                    errors.append(_err(i, code, fields.get("parent_code", "parent_code"),
                                       f"{exc.message} Got {parent!r}."))
                    parent = None
            if lv == "city" and parent is not None:
                errors.append(_err(i, code, fields.get("parent_code", "parent_code"),
                                   "a city has no parent"))
            elif lv != "city" and parent is None and not derive_parents:
                errors.append(_err(i, code, fields.get("parent_code", "parent_code"),
                                   f"a {lv} needs a parent {PARENT_LEVEL[lv]}"))
            elif lv != "city" and parent is not None and level_of(parent) != PARENT_LEVEL[lv]:
                errors.append(_err(i, code, fields.get("parent_code", "parent_code"),
                                   f"parent {parent} is a {level_of(parent)}, but a {lv} "
                                   f"belongs to a {PARENT_LEVEL[lv]}"))
        codes.append(code)
        parents.append(parent)

    seen: dict[str, int] = {}
    for i, code in enumerate(codes):
        if code is None:
            continue
        if code in seen:
            errors.append(_err(i, code, fields.get("code", "code"),
                               f"duplicate code: also feature {seen[code]}"))
        else:
            seen[code] = i

    geoms = np.asarray(frame.geometry.values, dtype=object)
    good = np.zeros(len(geoms), dtype=bool)
    if check_geometry:
        for i, g in enumerate(geoms):
            shown = codes[i] or (_text(frame["code"].iat[i]) or None)
            if g is None or g.is_empty:
                errors.append(_err(i, shown, "geometry", "empty geometry"))
            elif g.geom_type not in ("Polygon", "MultiPolygon"):
                errors.append(_err(i, shown, "geometry",
                                   f"not a polygon: {g.geom_type}"))
            elif not g.is_valid:
                why = explain_invalid(g) or {"reason": "invalid geometry", "location": None}
                loc = why.get("location")
                where = f" at ({loc[0]:.7f}, {loc[1]:.7f})" if loc is not None else ""
                errors.append({**_err(i, shown, "geometry",
                                      f"invalid polygon: {why['reason']}{where}"),
                               "location": list(loc) if loc is not None else None})
            else:
                good[i] = True

    frame["code"] = [c if c is not None else _text(r) for c, r in zip(codes, frame["code"],
                                                                        strict=True)]
    frame["parent_code"] = pd.Series(parents, index=frame.index, dtype=object)
    if check_geometry:
        # Children against parents in the same frame; parents in the database are checked by
        # import_regions.
        index = {c: i for i, c in enumerate(codes) if c is not None and good[i]}
        pairs = [(i, index[p]) for i, p in enumerate(parents)
                 if good[i] and p is not None and p in index]
        errors.extend(_outside(frame, [c for c, _ in pairs],
                               geoms[[c for c, _ in pairs]] if pairs else [],
                               geoms[[p for _, p in pairs]] if pairs else [], codes, parents))
    return errors


def _outside(
    frame: gpd.GeoDataFrame, rows: list[int], children: Any, parents_geom: Any,
    codes: list[str | None], parents: list[str | None],
) -> list[dict[str, Any]]:
    """Errors for the children (positions ``rows``) sticking out of their parent geometries."""
    if not rows:
        return []
    outside = shapely.difference(np.asarray(children, dtype=object),
                                 np.asarray(parents_geom, dtype=object))
    metric = metric_crs_for(frame.total_bounds)
    area = shapely.area(_apply(outside, transformer("EPSG:4490", metric)))
    out = []
    for i, a, piece in zip(rows, area, outside, strict=True):
        if a > TOLERANCE_M2:
            pt = shapely.point_on_surface(piece)
            out.append({**_err(i, codes[i], "geometry",
                               f"{a:.1f} m² lie outside its parent {parents[i]} near "
                               f"({pt.x:.7f}, {pt.y:.7f})"),
                        "location": [pt.x, pt.y]})
    return out


def _parent_from_code(code: str, lv: str) -> str | None:
    """The parent a standard code implies (``None`` for a city)."""
    if lv == "grid":
        return code[:12]
    if lv == "community":
        return normalise(code[:9])
    if lv == "street":
        return normalise(code[:6])
    return None


# --------------------------------------------------------------------------------------------
# Regions: writing into the registry
# --------------------------------------------------------------------------------------------


def import_regions(
    conn: Connection, frame: gpd.GeoDataFrame, *, label: str, source: str = "",
    replace: bool = False, progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write checked regions as a new boundary version, in the caller's transaction.

    ``frame`` is what :func:`read_regions` returns (or any frame with its columns in EPSG:4490
    or 4326). It is checked again on its own and then against the boundaries in force now:
    every parent must be in the frame or in force, every child inside its parent, and a code
    that already has a boundary in force is a duplicate unless ``replace`` is True, in which
    case the new boundary supersedes it from now on (the old one is kept as history).

    ``progress(done, total)`` is called after each chunk of ``CHUNK`` regions. Nothing is
    committed here. Returns ``{version_id, regions, replaced, by_level, warnings}``;
    ``warnings`` are those :func:`read_regions` noted in ``frame.attrs`` (parts dropped...).
    """
    warnings = list(frame.attrs.get("warnings") or [])
    frame = _region_frame(frame)
    errors = _check_frame(frame)
    if frame.empty:
        errors.append(_err(None, None, None, "nothing to import: the frame has no regions"))
    in_file = set(frame["code"])
    outside_parents = sorted({p for p in frame["parent_code"] if p and p not in in_file})
    # Geometry only of the parents the frame does not bring along: the frame's own codes
    # just need to be known.
    in_force = {
        r.code: r for r in conn.execute(
            text(
                "SELECT r.code, b.valid_from >= now() AS fresh, "
                "CASE WHEN r.code = ANY(CAST(:parents AS text[])) "
                "THEN ST_AsBinary(b.geom) END AS wkb FROM region r "
                f"JOIN region_boundary b ON b.region_id = r.id WHERE {_IN_FORCE} "
                "AND r.code = ANY(CAST(:codes AS text[]))"
            ),
            {"at": None, "parents": outside_parents,
             "codes": sorted(in_file | set(outside_parents))},
        )
    }
    replaced = 0
    for i, code in enumerate(frame["code"]):
        if code not in in_force:
            continue
        if not replace:
            errors.append(_err(i, code, "code", f"{code} already has a boundary in force "
                                                "(import with replace=True to supersede it)"))
        elif in_force[code].fresh:
            # history is kept by closing the old boundary where the new one starts (now); one
            # that started in this same transaction cannot be closed at the same instant
            errors.append(_err(i, code, "code", f"{code} was written earlier in this same "
                                                "transaction; commit before replacing it"))
        else:
            replaced += 1
    rows, children, parent_geoms = [], [], []
    for i, (code, parent, geom) in enumerate(zip(frame["code"], frame["parent_code"],
                                                 frame.geometry.values, strict=True)):
        if parent is None or parent in in_file:
            continue
        if parent not in in_force:
            errors.append(_err(i, code, "parent_code",
                               f"parent {parent} is neither in the file nor in force in the "
                               "registry"))
        elif geom is not None and not geom.is_empty and geom.is_valid:
            rows.append(i)
            children.append(geom)
            parent_geoms.append(shapely.from_wkb(bytes(in_force[parent].wkb)))
    errors.extend(_outside(frame, rows, children, parent_geoms, list(frame["code"]),
                           list(frame["parent_code"])))
    if errors:
        errors = _sorted(errors)
        raise _rejected(errors, f"Import {label!r}")

    version_id = store.new_version(conn, label=label, source=source)
    ordered = frame.assign(_o=frame["level"].map(_LEVEL_ORDER)).sort_values(["_o", "code"])
    ordered = ordered.drop(columns="_o")
    total, done = len(ordered), 0
    for start in range(0, total, CHUNK):
        done += store.insert_regions(conn, ordered.iloc[start:start + CHUNK],
                                     version_id=version_id)
        if progress is not None:
            progress(done, total)
    overlaps = check_sibling_overlaps(conn)
    if overlaps:
        raise ImportRejected(
            f"Import {label!r} was rejected: {overlaps[0]}.",
            detail={"errors": [_err(None, None, "geometry", reason) for reason in overlaps]})
    return {
        "version_id": version_id,
        "regions": done,
        "replaced": replaced,
        "by_level": {lv: int(n) for lv, n in ordered["level"].value_counts().items()},
        "warnings": warnings,
    }


def check_sibling_overlaps(conn: Connection) -> list[str]:
    """Ask the database guard (migration 0007) now rather than at commit: the reasons it refuses
    the boundaries written in this transaction (siblings overlapping by more than 1 m²), or [].

    The check runs in a savepoint; when it fails the caller must roll back.
    """
    try:
        with conn.begin_nested():
            conn.execute(text("SET CONSTRAINTS region_boundary_no_overlapping_siblings IMMEDIATE"))
    except DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        return [str(getattr(diag, "message_primary", None) or exc.orig)]
    conn.execute(text("SET CONSTRAINTS region_boundary_no_overlapping_siblings DEFERRED"))
    return []


def _region_frame(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A copy with exactly the region columns, in EPSG:4490, positions 0..n-1."""
    missing = [c for c in ("code", "name", "level", "parent_code") if c not in frame.columns]
    if missing:
        raise ImportRejected(
            f"The regions lack column(s) {', '.join(missing)}.",
            detail={"errors": [_err(None, None, c, f"missing column {c!r}") for c in missing]},
        )
    if frame.crs is not None and frame.crs.to_epsg() not in (4490, 4326):
        raise ImportRejected(
            "Regions must be in EPSG:4490 lon/lat; read files with read_regions.",
            detail={"errors": [_err(None, None, "crs", f"frame CRS is {frame.crs.name!r}, "
                                                       "expected EPSG:4490")]},
        )
    out = gpd.GeoDataFrame(
        {
            "code": [_text(c) for c in frame["code"]],
            "name": [_text(n) for n in frame["name"]],
            "level": [_text(v).lower() for v in frame["level"]],
            "parent_code": pd.Series([_text(p) or None for p in frame["parent_code"]],
                                     dtype=object),
        },
        geometry=gpd.GeoSeries(np.asarray(frame.geometry.values, dtype=object)),
        crs="EPSG:4490",
    )
    return out


# --------------------------------------------------------------------------------------------
# Regions: export
# --------------------------------------------------------------------------------------------


def export_regions(
    conn: Connection, path: str | Path, *, level: str | None = None,
    at: datetime | None = None, root_code: str | None = None,
) -> int:
    """Write the regions in force at ``at`` to a GeoJSON (.geojson/.json) or GeoPackage (.gpkg).

    Columns code, name, level, parent_code, area_m2, version_id and the geometry
    (MultiPolygon, EPSG:4490 declared in the file, coordinates at full double precision).
    ``level`` keeps one level; ``root_code`` keeps that region and everything below it.
    Returns the number of features written.
    """
    path = Path(path)
    driver = _DRIVERS.get(path.suffix.lower())
    if driver not in ("GeoJSON", "GPKG"):
        raise GridError(f"Cannot export to {path.name}: use .geojson, .json or .gpkg.",
                        detail={"field": "path", "value": path.name,
                                "expected": ".geojson, .json or .gpkg"},
                        code="unsupported_format")
    if level is not None and level not in LEVELS:
        raise GridError(f"Unknown level {level!r}.",
                        detail={"field": "level", "value": level, "expected": list(LEVELS)},
                        code="invalid_level")
    params: dict[str, Any] = {"at": at, "level": level}
    scope = ""
    if root_code is not None:
        params["root"] = normalise(root_code)
        scope = (
            "WITH RECURSIVE s AS ("
            " SELECT b.region_id, 0 AS depth FROM region_boundary b JOIN region r"
            f"  ON r.id = b.region_id WHERE r.code = :root AND {_IN_FORCE}"
            " UNION ALL"
            " SELECT b.region_id, s.depth + 1 FROM region_boundary b JOIN s"
            f"  ON b.parent_id = s.region_id WHERE {_IN_FORCE} AND s.depth < 8) "
        )
    sql = (
        f"{scope}SELECT r.code, r.name, r.level, p.code AS parent_code, b.area_m2, b.version_id, "
        "ST_AsBinary(b.geom) AS wkb FROM region r JOIN region_boundary b ON b.region_id = r.id "
        f"LEFT JOIN region p ON p.id = b.parent_id WHERE {_IN_FORCE} "
        "AND (CAST(:level AS text) IS NULL OR r.level = :level) "
        + ("AND b.region_id IN (SELECT region_id FROM s) " if scope else "")
        + "ORDER BY CASE r.level WHEN 'city' THEN 0 WHEN 'street' THEN 1 "
        "WHEN 'community' THEN 2 ELSE 3 END, r.code"
    )
    rows = conn.execute(text(sql), params).all()
    if root_code is not None and not rows and not conn.execute(
        text("SELECT EXISTS (SELECT 1 FROM region r JOIN region_boundary b ON b.region_id = r.id "
             f"WHERE r.code = :root AND {_IN_FORCE})"), params
    ).scalar_one():
        raise RegionNotFound(f"No region {params['root']} is in force.",
                             detail={"field": "root_code", "value": params["root"]})
    frame = gpd.GeoDataFrame(
        {
            "code": [r.code for r in rows],
            "name": [r.name for r in rows],
            "level": [r.level for r in rows],
            "parent_code": [r.parent_code for r in rows],
            "area_m2": np.array([r.area_m2 for r in rows], dtype=float),
            "version_id": np.array([r.version_id for r in rows], dtype=np.int64),
        },
        geometry=gpd.GeoSeries(shapely.from_wkb([bytes(r.wkb) for r in rows])
                               if rows else [], crs="EPSG:4490"),
        crs="EPSG:4490",
    )
    if path.exists():
        path.unlink()  # the GeoJSON driver cannot overwrite; a GeoPackage would gain a layer
    options: dict[str, Any] = {}
    if driver == "GeoJSON":
        # Not RFC 7946, which would force EPSG:4326 and cut coordinates to 7 decimals.
        options = {"RFC7946": "NO", "COORDINATE_PRECISION": 15, "WRITE_NAME": "NO"}
    frame.to_file(path, driver=driver, engine="pyogrio", layer="regions" if driver == "GPKG"
                  else None, geometry_type="MultiPolygon", **options)
    return len(frame)


# --------------------------------------------------------------------------------------------
# Rosters: staff and their assignments
# --------------------------------------------------------------------------------------------

ROSTER_COLUMNS = ["staff_code", "name", "phone", "role", "status", "region_code", "duty"]
_REQUIRED_ROSTER = ["staff_code", "name", "phone", "role"]
ROLES = ("grid_chief", "full_time", "part_time", "community_head", "street_officer",
         "command_duty")
STATUSES = ("available", "seconded", "on_leave")
DUTIES = ("primary", "backup", "head")
# The Chinese labels of the work plan, as people type them into a roster.
_ROLE_LABELS = {"网格长": "grid_chief", "专职网格员": "full_time", "兼职网格员": "part_time"}
_STATUS_LABELS = {"可工作": "available", "临时抽调": "seconded", "休假": "on_leave"}
_PHONE = re.compile(r"^1[0-9]{10}$")
_STAFF_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def read_roster(
    path: str | Path, *, sheet: str | None = None, limits: UploadLimits | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a staff roster from CSV (UTF-8, or GB18030 as Excel in China saves it) or XLSX.

    One row per assignment: columns staff_code, name, phone, role, status, region_code, duty.
    A member with several assignments repeats on several rows (which must agree); a row without
    region_code is staff only. status may be left empty (available). Roles, statuses and duties
    are the registry's words (``grid_chief``, ``on_leave``, ``primary``, ...); the Chinese role
    and status labels of the work plan (网格长, 休假, ...) are accepted too.

    Returns
    -------
    (staff, assignments)
        ``staff``: code, name, phone, role, status, row (first row of the member);
        ``assignments``: staff_code, region_code, duty, row. ``row`` is the spreadsheet's row.

    Raises
    ------
    ImportRejected
        Listing every bad row: ``{row, staff_code, field, reason}``.
    """
    staff, assignments, errors = _parse_roster(Path(path), sheet, limits or UploadLimits())
    if errors:
        raise _rejected(errors, Path(path).name, unit="row")
    return staff, assignments


def load_roster(conn: Connection, path: str | Path, *, sheet: str | None = None,
                valid_from: datetime | None = None,
                limits: UploadLimits | None = None) -> dict[str, int]:
    """Read, check and import a roster file in one go, in the caller's transaction.

    Unlike :func:`read_roster` followed by :func:`import_roster`, the rows are also checked
    against the registry (regions in force, later assignments) when some rows of the file are
    bad, so one rejection lists every problem of the file: ``{row, staff_code, field,
    reason}`` sorted by row, at most :data:`MAX_PROBLEMS` (``detail['total']`` counts them
    all). Returns what :func:`import_roster` returns.
    """
    path = Path(path)
    staff, assignments, errors = _parse_roster(path, sheet, limits or UploadLimits())
    bad_staff = {e["staff_code"] for e in errors if e.get("staff_code")}
    registry_errors, keep = _roster_registry_problems(conn, staff, assignments, valid_from,
                                                     known_bad=bad_staff)
    errors = sorted(errors + registry_errors,
                    key=lambda e: (e["row"] if e.get("row") is not None else 0))
    if errors:
        raise _rejected(errors, path.name, unit="row")
    return _write_roster(conn, staff, assignments, keep, valid_from)


def _parse_roster(
    path: Path, sheet: str | None, limits: UploadLimits
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Staff and assignments of the good rows, and every problem of the bad ones."""
    _refuse_empty_roster(path)
    header, records = _read_table(path, sheet, limits)
    errors: list[dict[str, Any]] = []
    columns = {h.strip().lower(): j for j, h in enumerate(header) if h and h.strip()}
    missing = [c for c in _REQUIRED_ROSTER if c not in columns]
    if missing:
        available = ", ".join(_text(h) for h in header if h) or "no columns"
        raise ImportRejected(
            f"{path.name}: missing column(s) {', '.join(missing)}.",
            detail={"errors": [{"row": 1, "staff_code": None, "field": c,
                                "reason": f"missing column {c!r}; the header has: {available}"}
                               for c in missing]},
        )

    staff: dict[str, dict[str, Any]] = {}
    assignments: list[dict[str, Any]] = []
    seen_assign: dict[tuple[str, str, str], int] = {}
    for row, values in records:
        rec = {c: _text(values[columns[c]]) if columns.get(c, len(values)) < len(values) else ""
               for c in ROSTER_COLUMNS}
        if not any(rec.values()):
            continue  # a blank line
        problems = _roster_row_problems(rec)
        code = rec["staff_code"]
        member = {"code": code, "name": rec["name"], "phone": rec["phone"],
                  "role": _ROLE_LABELS.get(rec["role"], rec["role"].lower()),
                  "status": _STATUS_LABELS.get(rec["status"], rec["status"].lower())
                  or "available", "row": row}
        first = staff.get(code)
        if not problems and first is not None:
            differ = [f for f in ("name", "phone", "role", "status") if first[f] != member[f]]
            if differ:
                problems.append((differ[0], f"staff {code} is on row {first['row']} with a "
                                            f"different {', '.join(differ)}"))
        region = normalise(rec["region_code"]) if rec["region_code"] and not problems else None
        key = (code, region or "", rec["duty"].lower())
        if region is not None and key in seen_assign:
            problems.append(("region_code", f"the same assignment is on row {seen_assign[key]}"))
        if problems:
            errors.extend({"row": row, "staff_code": code or None, "field": f, "reason": r}
                          for f, r in problems)
            continue
        staff.setdefault(code, member)
        if region is not None:
            seen_assign[key] = row
            assignments.append({"staff_code": code, "region_code": region, "duty": key[2],
                                "row": row})
    if not staff and not errors:
        errors.append({"row": None, "staff_code": None, "field": None,
                       "reason": "the roster has no rows"})
    staff_frame = pd.DataFrame(list(staff.values()),
                               columns=["code", "name", "phone", "role", "status", "row"])
    assign_frame = pd.DataFrame(assignments, columns=["staff_code", "region_code", "duty", "row"])
    return staff_frame, assign_frame, errors


def _refuse_empty_roster(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        raise ImportRejected(
            f"No file {path.name}.",
            detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                "reason": f"no such file: {path}"}]}) from None
    if size == 0 or (size < 4096 and not path.read_bytes().strip()):
        raise ImportRejected(
            f"{path.name} is empty ({size} bytes).",
            detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                "reason": f"the file is empty ({size} bytes)"}]},
            code="empty_file")


def _roster_row_problems(rec: dict[str, str]) -> list[tuple[str, str]]:
    """(field, reason) for each problem of one roster row taken on its own."""
    problems = []
    if not _STAFF_CODE.match(rec["staff_code"]):
        problems.append(("staff_code",
                         "a staff code of 1 to 32 letters, digits, '-' or '_' is required"))
    if not (1 <= len(rec["name"]) <= 100):
        problems.append(("name", "a name of 1 to 100 characters is required"))
    if not _PHONE.match(rec["phone"]):
        problems.append(("phone", f"phone {rec['phone']!r} is not a mainland mobile number "
                                  "(11 digits starting with 1)"))
    if _ROLE_LABELS.get(rec["role"], rec["role"].lower()) not in ROLES:
        problems.append(("role", f"unknown role {rec['role']!r}; expected one of {list(ROLES)}"))
    if (_STATUS_LABELS.get(rec["status"], rec["status"].lower()) or "available") not in STATUSES:
        problems.append(("status", f"unknown status {rec['status']!r}; expected one of "
                                   f"{list(STATUSES)}"))
    if rec["region_code"]:
        try:
            normalise(rec["region_code"])
        except InvalidCode as exc:
            problems.append(("region_code", f"{exc.message} Got {rec['region_code']!r}."))
        if rec["duty"].lower() not in DUTIES:
            problems.append(("duty", f"unknown duty {rec['duty']!r}; expected one of "
                                     f"{list(DUTIES)}"))
    elif rec["duty"]:
        problems.append(("region_code", f"duty {rec['duty']!r} is given without a region_code"))
    return problems


def _read_table(path: Path, sheet: str | None, limits: UploadLimits
                ) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """Header and (spreadsheet row number, values) of a CSV or the first/named XLSX sheet,
    read under ``limits`` (grids/upload_limits.py: inflated size, rows, time)."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        try:
            rows = list(enumerate(read_xlsx_rows(path, limits, sheet=sheet), start=1))
        except UploadTooLarge:
            raise
        except Exception as exc:  # noqa: BLE001 - zipfile and openpyxl raise several types
            raise ImportRejected(
                f"Cannot read {path.name} as an Excel workbook.",
                detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                    "reason": f"not a readable .xlsx file: {exc}"}]}) from exc
    elif suffix in (".csv", ".txt"):
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                content = raw.decode("gb18030")
            except UnicodeDecodeError as exc:
                raise ImportRejected(
                    f"{path.name} is neither UTF-8 nor GB18030 text.",
                    detail={"errors": [{"row": None, "staff_code": None, "field": "encoding",
                                        "reason": "the file is neither UTF-8 nor GBK/GB18030 "
                                                  f"(byte {exc.start}); save it as CSV UTF-8"}]}
                ) from exc
        rows = []
        for i, v in enumerate(csv.reader(content.splitlines()), start=1):
            check_csv_rows(i, limits)
            rows.append((i, list(v)))
    else:
        raise ImportRejected(
            f"Cannot read a roster from {path.name}: use .csv or .xlsx.",
            detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                "reason": "the file must be .csv or .xlsx"}]},
            code="unsupported_format",
        )
    if not rows:
        return [], []
    header = [_text(h) for h in rows[0][1]]
    return header, rows[1:]


def import_roster(
    conn: Connection, staff: pd.DataFrame, assignments: pd.DataFrame, *,
    valid_from: datetime | None = None,
) -> dict[str, int]:
    """Write a roster read by :func:`read_roster`, in the caller's transaction.

    Staff are inserted or updated by code. Each assignment starts at ``valid_from`` (None = now)
    and needs its region in force then and its staff member in the roster or the registry. An
    assignment that is already in force is left as it is (re-importing a roster is harmless); one
    that would collide with a later one is rejected. Assignments not in the roster are not
    ended. Returns ``{staff, assignments, unchanged}``.
    """
    errors, keep = _roster_registry_problems(conn, staff, assignments, valid_from)
    if errors:
        raise _rejected(errors, "the roster", unit="row")
    return _write_roster(conn, staff, assignments, keep, valid_from)


def _write_roster(conn: Connection, staff: pd.DataFrame, assignments: pd.DataFrame,
                  keep: list[bool], valid_from: datetime | None) -> dict[str, int]:
    n_staff = store.upsert_staff(conn, staff)
    n_assign = store.insert_assignments(conn, assignments.loc[np.array(keep, dtype=bool)],
                                        valid_from=valid_from)
    return {"staff": n_staff, "assignments": n_assign, "unchanged": len(keep) - sum(keep)}


def _roster_registry_problems(
    conn: Connection, staff: pd.DataFrame, assignments: pd.DataFrame,
    valid_from: datetime | None, *, known_bad: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Problems of assignments against the registry, and which assignments are new.

    ``known_bad``: staff whose rows were already refused (not reported again as missing).
    """
    known_bad = set(known_bad)
    errors: list[dict[str, Any]] = []
    rows = assignments["row"] if "row" in assignments else pd.Series([None] * len(assignments))
    regions = sorted(set(assignments["region_code"]))
    known = set(conn.execute(
        text(
            "SELECT r.code FROM region r JOIN region_boundary b ON b.region_id = r.id "
            f"WHERE r.code = ANY(CAST(:codes AS text[])) AND {_IN_FORCE}"
        ),
        {"codes": regions, "at": valid_from},
    ).scalars())
    members = set(staff["code"])
    existing = {
        (r.staff_code, r.region_code, r.duty): r.starts_later
        for r in conn.execute(
            text(
                "SELECT s.code AS staff_code, r.code AS region_code, a.duty, "
                "a.valid_from > coalesce(CAST(:at AS timestamptz), now()) AS starts_later "
                "FROM assignment a JOIN staff s ON s.id = a.staff_id "
                "JOIN region r ON r.id = a.region_id "
                "WHERE r.code = ANY(CAST(:codes AS text[])) "
                "AND (a.valid_to IS NULL OR a.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
            ),
            {"codes": regions, "at": valid_from},
        )
    }
    keep = []
    for row, s, r, d in zip(rows, assignments["staff_code"], assignments["region_code"],
                            assignments["duty"], strict=True):
        if r not in known:
            errors.append({"row": row, "staff_code": s, "field": "region_code",
                           "reason": f"no region {r} is in force"})
        if s not in members and s not in known_bad:
            errors.append({"row": row, "staff_code": s, "field": "staff_code",
                           "reason": f"staff {s} is not in the roster"})
        later = existing.get((s, r, d))
        if later:
            errors.append({"row": row, "staff_code": s, "field": "duty",
                           "reason": f"{s} already has a later {d} assignment to {r}"})
        keep.append(later is None)
    return errors, keep


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell as trimmed text: None/NaN → '', 13800000000.0 → '13800000000'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value).strip()


def _err(feature: int | None, code: str | None, field: str | None, reason: str) -> dict[str, Any]:
    return {"feature": feature, "code": code, "field": field, "reason": reason}


def _sorted(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """File-level problems first, then by feature position (stable within a feature)."""
    return sorted(errors, key=lambda e: -1 if e.get("feature") is None else e["feature"])


MAX_PROBLEMS = 100
"""A rejection lists at most this many problems (``detail['total']`` says how many there were)."""


def _rejected(errors: list[dict[str, Any]], what: str, *, unit: str = "feature"
              ) -> ImportRejected:
    return ImportRejected(_summary(errors, what, unit=unit),
                          detail={"errors": errors[:MAX_PROBLEMS], "total": len(errors),
                                  "truncated": len(errors) > MAX_PROBLEMS})


def _summary(errors: list[dict[str, Any]], what: str, *, unit: str = "feature") -> str:
    first = errors[0]
    where = first.get(unit)
    head = f"{unit} {where}: " if where is not None else ""
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" \
        if len(errors) > 1 else ""
    return f"{what} was rejected: {head}{first['reason'].rstrip('.')}{more}."

