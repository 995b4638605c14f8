"""A plan's area to and from a GeoPackage, for desktop GIS (QGIS) round trips.

Export writes two layers in EPSG:4490: ``plan_grids`` (the draft's live grids: code, name,
level, parent_code, change, area_m2) and ``context`` (the grids just outside the region, for
snapping; ignored on import). Import reads ``plan_grids`` (or the file's first layer) through
:func:`grids.io.read_regions` (all its checks, CRS handling included), opens a new plan over the
region and makes its draft the file: codes in the file and the plan take the file's shape,
codes only in the file are new grids, codes only in the plan are retired. The plan's first edit
records that diff. :func:`import_into` does the same to an open draft (one edit, undoable).
Gaps and overlaps in the file are not refused: they are the plan's problems,
shown like any other, and activation waits until they are fixed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from sqlalchemy import Connection, text

from grids import io
from grids.access import Principal
from grids.city import profile
from grids.codes import normalise
from grids.errors import RegionNotFound
from grids.plans import crosswalk, undo
from grids.plans.checks import validate
from grids.plans.draft import GRID_DEG, NOISE_M2, Item, area_m2
from grids.plans.drafting import create_plan
from grids.plans.store import (
    check_draft,
    check_etag,
    get_plan,
    load_draft,
    log_edit,
    plan_row,
    problems_json,
    store_draft,
)
from grids.plans.views import features
from grids.upload_limits import UploadLimits, check_features

LAYER = "plan_grids"


def export_plan(conn: Connection, plan_id: int, path: str | Path, *, principal: Principal
                ) -> int:
    """Write the plan's grids and context to a GeoPackage; returns the number of plan grids."""
    path = Path(path)
    fc = features(conn, plan_id, principal=principal, digits=15)
    live = [f for f in fc["features"] if f["properties"]["change"] not in ("retired", "context")]
    context = [f for f in fc["features"] if f["properties"]["change"] == "context"]
    if path.exists():
        path.unlink()
    for layer, feats in ((LAYER, live), ("context", context)):
        frame = gpd.GeoDataFrame(
            {"code": [f["properties"]["code"] for f in feats],
             "name": [f["properties"]["name"] for f in feats],
             "level": ["grid"] * len(feats),
             "parent_code": [f["properties"]["parent_code"] for f in feats],
             "change": [f["properties"]["change"] for f in feats],
             "area_m2": [f["properties"]["area_m2"] for f in feats]},
            geometry=gpd.GeoSeries([shapely.geometry.shape(f["geometry"]) for f in feats],
                                   crs="EPSG:4490"),
            crs="EPSG:4490")
        frame.to_file(path, driver="GPKG", layer=layer, engine="pyogrio",
                      geometry_type="MultiPolygon")
    crosswalk.write_gpkg(conn, plan_id, path, principal=principal)  # attribute table, if activated
    return len(live)


def _read(conn: Connection, path: Path, *, crs: str | None, limits: UploadLimits | None
          ) -> gpd.GeoDataFrame:
    """The file's grids (layer ``plan_grids``, else the first layer), every check of
    :func:`grids.io.read_regions` passed; features and vertices counted against ``limits``
    first."""
    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError, OSError):  # read_regions says what is wrong
        layers = []
    layer = LAYER if LAYER in layers else None
    check_features(path, limits or UploadLimits(), layer=layer)
    srid = profile(conn).metric_srid
    return io.read_regions(path, layer=layer, crs=crs, level="grid",
                           metric=f"EPSG:{srid}" if srid else None)


def _take_file(conn: Connection, row: dict[str, Any], frame: gpd.GeoDataFrame, filename: str,
               principal: Principal) -> None:
    """Make the plan's draft the file's grids, as one (undoable) ``import`` edit."""
    draft = load_draft(conn, row)
    incoming = {c: (n, p, g)
                for c, n, p, g in zip(frame["code"], frame["name"], frame["parent_code"],
                                      frame.geometry.values, strict=True)}
    items: list[Item] = []
    changed, retired = [], []
    for it in draft.items:
        if it.level != "grid" or not it.live:
            items.append(it)
            continue
        got = incoming.pop(it.code, None)
        if got is None:
            if it.origin is None:  # new in the plan and not in the file: gone
                continue
            items.append(replace(it, geom=None, touched=True))
            retired.append(it.code)
            continue
        nm, parent, geom = got
        assert it.geom is not None
        # a file saved again by a desktop GIS may re-node or round: same within NOISE_M2
        moved = area_m2(shapely.symmetric_difference(it.geom, geom))
        if parent == it.parent and nm == it.name and moved <= NOISE_M2:
            items.append(it)
        else:
            items.append(replace(it, geom=shapely.set_precision(geom, GRID_DEG),
                                 parent=parent or it.parent, name=nm, touched=True))
            changed.append(it.code)
    new = sorted(incoming)
    for c in new:
        nm, parent, geom = incoming[c]
        items.append(Item(code=c, level="grid", name=nm, parent=parent or c[:12],
                          geom=shapely.set_precision(geom, GRID_DEG), touched=True))
    result = draft.with_items(items)
    undo.before_edit(conn, row, principal)
    store_draft(conn, row["id"], draft, result)
    log_edit(conn, row, "import",
             {"op": "import", "file": filename, "changed": changed, "new": new,
              "retired": retired,
              "facts": {"op": "import", "file": filename, "changed": changed, "new": new,
                        "retired": retired}},
             f"imported {filename}: {len(changed)} changed, {len(new)} new, "
             f"{len(retired)} retired", principal)
    problems = validate(load_draft(conn, row))
    conn.execute(text("UPDATE plan SET revision = revision + 1, updated_at = now(), "
                      "problems = CAST(:p AS jsonb) WHERE id = :id"),
                 {"p": problems_json(problems), "id": row["id"]})


def import_plan(conn: Connection, path: str | Path, *, region_code: str, name: str,
                principal: Principal, crs: str | None = None,
                limits: UploadLimits | None = None, filename: str | None = None
                ) -> dict[str, Any]:
    """Open a plan over ``region_code`` whose draft is the file's grids; returns PlanPublic.

    The file's features and vertices are counted against ``limits`` as it is first read
    (:func:`grids.upload_limits.check_features`), before anything parses it in full: a plan
    edit refuses a 100,000-vertex grid (413), and so does an import.
    """
    path = Path(path)
    code = normalise(region_code)
    if not principal.scope.covers(code):
        raise RegionNotFound(f"No region {code} in your jurisdiction.",
                             detail={"field": "region_code", "value": code})
    frame = _read(conn, path, crs=crs, limits=limits)
    filename = filename or path.name
    plan = create_plan(conn, name=name, region_code=region_code, principal=principal,
                       note=f"imported from {filename}")
    _take_file(conn, plan_row(conn, plan["id"], principal, lock=True), frame, filename,
               principal)
    return get_plan(conn, plan["id"], principal=principal)


def import_into(conn: Connection, plan_id: int, path: str | Path, *, principal: Principal,
                if_match: str, crs: str | None = None, limits: UploadLimits | None = None,
                filename: str | None = None) -> dict[str, Any]:
    """Make an open draft's grids those of the file (e.g. the plan's own export, edited in
    QGIS), as one edit that can be undone; returns PlanPublic (new ETag).

    Codes in both take the file's shape, name and community; codes only in the file are new
    grids; the plan's grids missing from the file are retired. Gaps and overlaps are not refused
    here: they are the plan's problems."""
    path = Path(path)
    row = plan_row(conn, plan_id, principal, lock=True)
    check_draft(row)
    check_etag(conn, row, if_match)
    frame = _read(conn, path, crs=crs, limits=limits)
    _take_file(conn, row, frame, filename or path.name, principal)
    return get_plan(conn, plan_id, principal=principal)
