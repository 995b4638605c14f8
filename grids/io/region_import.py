"""Checked regions written into the registry as a new boundary version (never committed here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from grids import store
from grids.codes import LEVELS
from grids.errors import ImportRejected
from grids.io.regions import check_frame, outside_parent_errors
from grids.io.tables import IN_FORCE, cell_text, problem_at, rejected, sorted_problems

CHUNK = 500
"""Regions written per ``grids.store.insert_regions`` call; ``progress`` is called after each."""

EXCLUSION_VIOLATION = "23P01"
"""The SQLSTATE the sibling guard of migration 0007 raises."""

_LEVEL_ORDER = {lv: i for i, lv in enumerate(LEVELS)}


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
    errors = check_frame(frame)
    if frame.empty:
        errors.append(problem_at(None, None, None, "nothing to import: the frame has no regions"))
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
                f"JOIN region_boundary b ON b.region_id = r.id WHERE {IN_FORCE} "
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
            errors.append(problem_at(i, code, "code", f"{code} already has a boundary in force "
                                                      "(import with replace=True to supersede it)"))
        elif in_force[code].fresh:
            # history is kept by closing the old boundary where the new one starts (now); one
            # that started in this same transaction cannot be closed at the same instant
            errors.append(problem_at(i, code, "code", f"{code} was written earlier in this same "
                                                      "transaction; commit before replacing it"))
        else:
            replaced += 1
    rows, children, parent_geoms = [], [], []
    for i, (code, parent, geom) in enumerate(zip(frame["code"], frame["parent_code"],
                                                 frame.geometry.values, strict=True)):
        if parent is None or parent in in_file:
            continue
        if parent not in in_force:
            errors.append(problem_at(i, code, "parent_code",
                                     f"parent {parent} is neither in the file nor in force in the "
                                     "registry"))
        elif geom is not None and not geom.is_empty and geom.is_valid:
            rows.append(i)
            children.append(geom)
            parent_geoms.append(shapely.from_wkb(bytes(in_force[parent].wkb)))
    errors.extend(outside_parent_errors(frame, rows, children, parent_geoms, list(frame["code"]),
                                        list(frame["parent_code"])))
    if errors:
        errors = sorted_problems(errors)
        raise rejected(errors, f"Import {label!r}")

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
            detail={"errors": [problem_at(None, None, "geometry", reason) for reason in overlaps]})
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

    The check runs in a savepoint; when it fails the caller must roll back. Only the guard's own
    refusal (SQLSTATE 23P01, exclusion_violation) is a reason: anything else (a lost connection,
    a statement timeout) propagates as it is, so the app answers 503, not "import rejected".
    """
    try:
        with conn.begin_nested():
            conn.execute(text("SET CONSTRAINTS region_boundary_no_overlapping_siblings IMMEDIATE"))
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != EXCLUSION_VIOLATION:
            raise
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
            detail={"errors": [problem_at(None, None, c, f"missing column {c!r}") for c in missing]},
        )
    if frame.crs is not None and frame.crs.to_epsg() not in (4490, 4326):
        raise ImportRejected(
            "Regions must be in EPSG:4490 lon/lat; read files with read_regions.",
            detail={"errors": [problem_at(None, None, "crs", f"frame CRS is {frame.crs.name!r}, "
                                                             "expected EPSG:4490")]},
        )
    out = gpd.GeoDataFrame(
        {
            "code": [cell_text(c) for c in frame["code"]],
            "name": [cell_text(n) for n in frame["name"]],
            "level": [cell_text(v).lower() for v in frame["level"]],
            "parent_code": pd.Series([cell_text(p) or None for p in frame["parent_code"]],
                                     dtype=object),
        },
        geometry=gpd.GeoSeries(np.asarray(frame.geometry.values, dtype=object)),
        crs="EPSG:4490",
    )
    return out

