"""Region files read and checked without the database: GeoJSON, GeoPackage, Shapefile.

Problems are ``{feature, code, field, reason}`` (``feature`` is the 0-based position in the file;
``None`` for problems of the whole file); see :mod:`grids.io`.

Coordinates: the output of ``read_regions`` is always CGCS2000 lon/lat (EPSG:4490). The file's
declared CRS is honoured; EPSG:4326 is taken as EPSG:4490 (the two agree to well under a metre
for this work, and no datum shift is applied). ``crs=`` overrides the file, which is how GCJ-02
(Amap, Tencent) and BD-09 (Baidu) data, which no file format can declare, are read. The CRS
assumed is kept in ``frame.attrs['source_crs']``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj.exceptions import ProjError

from gis.crs import parse_crs, to_lonlat
from gis.errors import UnknownCRS
from gis.transform import transformer
from gis.validate import diagnose_lonlat, explain_invalid, guess_projected_crs
from grids.city import metric_crs_for
from grids.codes import LEVELS, OPTIONAL_PARENT, PARENT_LEVEL, level_of, normalise
from grids.errors import ImportRejected, InvalidCode
from grids.io.tables import cell_text, problem_at, rejected, sorted_problems

TOLERANCE_M2 = 1.0
"""A child may stick out of its parent by this many m² (its metric CRS) before it is rejected."""

REGION_COLUMNS = ["code", "name", "level", "parent_code", "geometry"]


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
            detail={"errors": [problem_at(None, None, "level", f"level must be one of {list(LEVELS)}")]},
        )
    _refuse_empty(path)
    options: dict[str, Any] = {}
    if path.suffix.lower() == ".shp":
        options["encoding"] = encoding or _shapefile_encoding(path)
    elif encoding is not None:
        raise ImportRejected(
            f"{path.name}: encoding= applies to Shapefiles only.",
            detail={"errors": [problem_at(None, None, "encoding", "GeoJSON and GeoPackage text is "
                                                                  "always UTF-8; drop encoding=")]})
    try:
        raw = gpd.read_file(path, layer=layer, engine="pyogrio", **options)
    except UnicodeDecodeError as exc:
        raise ImportRejected(
            f"{path.name}: the attribute text is not {options.get('encoding')}.",
            detail={"errors": [problem_at(None, None, "encoding",
                                          f"the attribute text does not decode as "
                                          f"{options.get('encoding')} ({exc.reason} at byte "
                                          f"{exc.start}); pass the file's encoding")]}) from exc
    except (DataSourceError, DataLayerError) as exc:
        raise ImportRejected(
            f"Cannot read {path.name}: {exc}",
            detail={"errors": [problem_at(None, None, "layer" if isinstance(exc, DataLayerError)
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
            errors.append(problem_at(None, None, name,
                                     f"missing field {name!r}{hint}; the file has: "
                                     f"{', '.join(available) or 'no fields'}"))
        return None

    code_col = field(code_field, required=True)
    name_col = field(name_field, required=True)
    level_col = field(level_field, required=level is None, hint=" (or pass level=)")
    parent_col = field(parent_field, required=False)  # absent: derived from the codes

    warnings: list[dict[str, Any]] = []
    if code_col is not None:
        _keep_polygons(raw, [cell_text(v) or None for v in raw[code_col]], warnings)
    else:
        _keep_polygons(raw, [None] * len(raw), warnings)
    geoms, source_crs = _to_cgcs2000(raw, crs, errors, metric)
    n = len(raw)
    frame = gpd.GeoDataFrame(
        {
            "code": [cell_text(v) for v in raw[code_col]] if code_col else [""] * n,
            "name": [cell_text(v) for v in raw[name_col]] if name_col else [""] * n,
            "level": ([cell_text(v).lower() for v in raw[level_col]] if level_col
                      else [level or ""] * n),
            # object dtype: a city's missing parent stays None (pandas 3 would make it NaN)
            "parent_code": pd.Series([cell_text(v) or None for v in raw[parent_col]] if parent_col
                                     else [None] * n, index=raw.index, dtype=object),
        },
        geometry=gpd.GeoSeries(geoms, index=raw.index), crs="EPSG:4490",
    )
    if n == 0:
        errors.append(problem_at(None, None, None, "the file has no features"))
    if level is not None and level_col is not None:
        for i, lv in enumerate(frame["level"]):
            if lv != level:
                errors.append(problem_at(i, frame["code"].iat[i], "level",
                                         f"level {lv!r} in the file but level={level!r} was asked"))
    errors.extend(check_frame(frame, derive_parents=parent_col is None,
                              check_geometry=source_crs is not None,
                              fields={"code": code_field, "name": name_field,
                                      "level": level_field, "parent_code": parent_field},
                              skip_fields={k for k, col in (("code", code_col),
                                                            ("name", name_col),
                                                            ("level", level_col or level))
                                           if col is None}))
    if errors:
        errors = sorted_problems(errors)
        raise rejected(errors, path.name)
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
            detail={"errors": [problem_at(None, None, None, f"the file is empty ({size} bytes): "
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
        detail={"errors": [problem_at(None, None, "encoding",
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
            warnings.append(problem_at(i, codes[i], "geometry",
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
        errors.append(problem_at(None, None, "crs", "the file declares no CRS; pass crs= "
                                                    "(e.g. 'EPSG:4490', 'gcj02', 'bd09')"
                                                    + _crs_hint(geoms, metric)))
        return geoms, None
    if crs is None and declared.to_epsg() is None:
        # A CRS only described by its WKT (an odd .prj): let PROJ transform it.
        try:
            fwd = transformer(declared.to_wkt(), "EPSG:4490")
        except ProjError as exc:  # CRSError too: a CRS PROJ cannot use
            errors.append(problem_at(None, None, "crs", f"cannot transform the file's CRS "
                                                        f"{declared.name!r} to EPSG:4490: {exc}"))
            return geoms, None
        out = transform_all(geoms, fwd)
        return _diagnosed(geoms, out, declared.name, not declared.is_geographic, errors, metric)
    try:
        source = parse_crs(crs if crs is not None else declared.to_epsg())
    except UnknownCRS as exc:
        errors.append(problem_at(None, None, "crs", exc.message.rstrip(".")))
        return geoms, None
    if source.is_lonlat:
        # EPSG:4326 is taken as EPSG:4490: no datum shift
        return _diagnosed(geoms, geoms, source.name, False, errors, metric)

    def lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_lonlat(xy[:, 0], xy[:, 1], source))

    try:
        out = shapely.transform(geoms, lonlat)
    except (ProjError, ValueError):  # PROJ refuses some far-off values: said below
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
    errors.append({**problem_at(None, None, "crs", f"read as {name}, {problem['message']}"),
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


def transform_all(geoms: Any, fwd: Any) -> Any:
    """Transform every vertex of ``geoms`` with a pyproj transformer in one vectorised call."""

    def fn(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(fwd.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(geoms, fn)


def check_frame(
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
                code = normalise(cell_text(raw_code))
            except InvalidCode as exc:
                errors.append(problem_at(i, cell_text(raw_code) or None, fields.get("code", "code"),
                                         f"{exc.message} Got {cell_text(raw_code)!r}."))
        shown = code or (cell_text(raw_code) or None)
        if "name" not in skip and not (1 <= len(cell_text(name)) <= 200):
            errors.append(problem_at(i, shown, fields.get("name", "name"),
                                     "a name of 1 to 200 characters is required"))
        if lv not in LEVELS and "level" not in skip:
            errors.append(problem_at(i, shown, fields.get("level", "level"),
                                     f"unknown level {lv!r}; expected one of {list(LEVELS)}"))
        elif code is not None and level_of(code) != lv:
            errors.append(problem_at(i, code, fields.get("code", "code"),
                                     f"code {code} is a {level_of(code)} code, not a {lv} code"))
            lv = ""  # its parent cannot be judged against a level that is wrong
        parent = None
        if code is not None and lv in LEVELS:
            parent = _parent_from_code(code, lv) if derive_parents else cell_text(raw_parent) or None
            if parent is not None and not derive_parents:
                try:
                    parent = normalise(parent)
                except InvalidCode as exc:
                    errors.append(problem_at(i, code, fields.get("parent_code", "parent_code"),
                                             f"{exc.message} Got {parent!r}."))
                    parent = None
            if lv == "province" and parent is not None:
                errors.append(problem_at(i, code, fields.get("parent_code", "parent_code"),
                                         "a province has no parent"))
            elif lv not in OPTIONAL_PARENT and parent is None and not derive_parents:
                errors.append(problem_at(i, code, fields.get("parent_code", "parent_code"),
                                         f"a {lv} needs a parent {PARENT_LEVEL[lv]}"))
            elif parent is not None and level_of(parent) != PARENT_LEVEL[lv]:
                errors.append(problem_at(i, code, fields.get("parent_code", "parent_code"),
                                         f"parent {parent} is a {level_of(parent)}, but a {lv} "
                                         f"belongs to a {PARENT_LEVEL[lv]}"))
            elif lv == "city" and parent is not None and parent[:2] != code[:2]:
                errors.append(problem_at(i, code, fields.get("parent_code", "parent_code"),
                                         f"city {code} cannot hang under province {parent}: "
                                         "its code starts with other digits"))
        codes.append(code)
        parents.append(parent)

    seen: dict[str, int] = {}
    for i, code in enumerate(codes):
        if code is None:
            continue
        if code in seen:
            errors.append(problem_at(i, code, fields.get("code", "code"),
                                     f"duplicate code: also feature {seen[code]}"))
        else:
            seen[code] = i

    geoms = np.asarray(frame.geometry.values, dtype=object)
    good = np.zeros(len(geoms), dtype=bool)
    if check_geometry:
        for i, g in enumerate(geoms):
            shown = codes[i] or (cell_text(frame["code"].iat[i]) or None)
            if g is None or g.is_empty:
                errors.append(problem_at(i, shown, "geometry", "empty geometry"))
            elif g.geom_type not in ("Polygon", "MultiPolygon"):
                errors.append(problem_at(i, shown, "geometry",
                                         f"not a polygon: {g.geom_type}"))
            elif not g.is_valid:
                why = explain_invalid(g) or {"reason": "invalid geometry", "location": None}
                loc = why.get("location")
                where = f" at ({loc[0]:.7f}, {loc[1]:.7f})" if loc is not None else ""
                errors.append({**problem_at(i, shown, "geometry",
                                            f"invalid polygon: {why['reason']}{where}"),
                               "location": list(loc) if loc is not None else None})
            else:
                good[i] = True

    frame["code"] = [c if c is not None else cell_text(r) for c, r in zip(codes, frame["code"],
                                                                            strict=True)]
    frame["parent_code"] = pd.Series(parents, index=frame.index, dtype=object)
    if check_geometry:
        # Children against parents in the same frame; parents in the database are checked by
        # import_regions.
        index = {c: i for i, c in enumerate(codes) if c is not None and good[i]}
        pairs = [(i, index[p]) for i, p in enumerate(parents)
                 if good[i] and p is not None and p in index]
        errors.extend(outside_parent_errors(frame, [c for c, _ in pairs],
                                            geoms[[c for c, _ in pairs]] if pairs else [],
                                            geoms[[p for _, p in pairs]] if pairs else [], codes, parents))
    return errors


def outside_parent_errors(
    frame: gpd.GeoDataFrame, rows: list[int], children: Any, parents_geom: Any,
    codes: list[str | None], parents: list[str | None],
) -> list[dict[str, Any]]:
    """Errors for the children (positions ``rows``) sticking out of their parent geometries."""
    if not rows:
        return []
    outside = shapely.difference(np.asarray(children, dtype=object),
                                 np.asarray(parents_geom, dtype=object))
    metric = metric_crs_for(frame.total_bounds)
    area = shapely.area(transform_all(outside, transformer("EPSG:4490", metric)))
    out = []
    for i, a, piece in zip(rows, area, outside, strict=True):
        if a > TOLERANCE_M2:
            pt = shapely.point_on_surface(piece)
            out.append({**problem_at(i, codes[i], "geometry",
                                     f"{a:.1f} m² lie outside its parent {parents[i]} near "
                                     f"({pt.x:.7f}, {pt.y:.7f})"),
                        "location": [pt.x, pt.y]})
    return out


def _parent_from_code(code: str, lv: str) -> str | None:
    """The parent a standard code implies (``None`` for a city or a province: a city's
    province is given, never derived, so a single-city file stays a single city)."""
    if lv == "grid":
        return code[:12]
    if lv == "community":
        return normalise(code[:9])
    if lv == "street":
        return normalise(code[:6])
    return None

