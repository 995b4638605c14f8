"""Writing the registry: boundary versions, regions with their boundaries, staff, assignments.

Functions take a SQLAlchemy ``Connection`` that is already inside a transaction; they never commit.
The caller (a request, a CLI command) owns the unit of work, so a failure part-way leaves nothing.
"""

from __future__ import annotations

from datetime import datetime

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from grids.codes import LEVELS


def new_version(
    conn: Connection, *, label: str, source: str = "", note: str = "",
    activated_at: datetime | None = None,
) -> int:
    """Create a boundary version (generation) and return its id. ``activated_at`` None = now."""
    return conn.execute(
        text(
            "INSERT INTO boundary_version (label, source, note, activated_at) "
            "VALUES (:label, :source, :note, coalesce(:at, now())) RETURNING id"
        ),
        {"label": label, "source": source, "note": note, "at": activated_at},
    ).scalar_one()


def insert_regions(
    conn: Connection, regions: gpd.GeoDataFrame, *, version_id: int,
    valid_from: datetime | None = None,
) -> int:
    """Insert regions and their boundaries, parents first.

    ``regions`` has columns code, name, level, parent_code and a geometry in EPSG:4490 (or 4326,
    the same datum for this work). A code that already exists keeps its identity row; its current
    boundary is closed at ``valid_from`` and the new one starts there, so history is kept.
    Returns the number of boundaries written.
    """
    order = {lv: i for i, lv in enumerate(LEVELS)}
    frame = regions.assign(_o=regions["level"].map(order)).sort_values(["_o", "code"])
    wkb = shapely.to_wkb(
        [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g])
         for g in frame.geometry.values],
        hex=True,
    )
    rows = [
        {"code": c, "name": n, "level": lv, "parent": p if isinstance(p, str) and p else None,
         "wkb": w}
        for c, n, lv, p, w in zip(
            frame["code"], frame["name"], frame["level"], frame["parent_code"], wkb, strict=True
        )
    ]
    conn.execute(
        text(
            "INSERT INTO region (code, level, name) VALUES (:code, :level, :name) "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name"
        ),
        [{"code": r["code"], "level": r["level"], "name": r["name"]} for r in rows],
    )
    at = {"vf": valid_from}
    conn.execute(
        text(
            "UPDATE region_boundary b SET valid_to = coalesce(:vf, now()) "
            "FROM region r WHERE r.id = b.region_id AND r.code = ANY(:codes) "
            "AND b.valid_to IS NULL AND b.valid_from < coalesce(:vf, now())"
        ),
        {**at, "codes": [r["code"] for r in rows]},
    )
    conn.execute(
        text(
            "INSERT INTO region_boundary (region_id, parent_id, version_id, geom, area_m2, "
            "valid_from) "
            "SELECT r.id, p.id, :version, ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4490)), 0, "
            "coalesce(:vf, now()) "
            "FROM region r LEFT JOIN region p ON p.code = :parent WHERE r.code = :code"
        ),
        [{"code": r["code"], "parent": r["parent"], "wkb": r["wkb"], "version": version_id, **at}
         for r in rows],
    )
    return len(rows)


def upsert_staff(conn: Connection, staff: pd.DataFrame) -> int:
    """Insert or update staff by their code (employee number)."""
    if staff.empty:
        return 0
    conn.execute(
        text(
            "INSERT INTO staff (code, name, phone, role, status) "
            "VALUES (:code, :name, :phone, :role, :status) "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, "
            "role = EXCLUDED.role, status = EXCLUDED.status, updated_at = now()"
        ),
        staff[["code", "name", "phone", "role", "status"]].to_dict("records"),
    )
    return len(staff)


def insert_assignments(
    conn: Connection, assignments: pd.DataFrame, *, valid_from: datetime | None = None
) -> int:
    """Assign staff (by code) to regions (by code) with a duty, from ``valid_from`` (None = now)."""
    if assignments.empty:
        return 0
    conn.execute(
        text(
            "INSERT INTO assignment (staff_id, region_id, duty, valid_from) "
            "SELECT s.id, r.id, :duty, coalesce(:vf, now()) FROM staff s, region r "
            "WHERE s.code = :staff_code AND r.code = :region_code"
        ),
        [
            {"staff_code": s, "region_code": r, "duty": d, "vf": valid_from}
            for s, r, d in zip(
                assignments["staff_code"], assignments["region_code"], assignments["duty"],
                strict=True,
            )
        ],
    )
    return len(assignments)

