"""A tiny hand-drawn city for edge cases.

Units are 0.01° from (120.0, 29.0)::

    y=1 +---------+---------+---------+
        |   G1    |   G2    |  (gap)  |
        |  C1-001 |  C1-002 |   C2    |
    0.5 |         |         +---------+
        |         |         |   G3    |
    y=0 +---------+---------+---------+
        x=0       1         2         3

Staff: G1 has an available primary (W1) and backup (B1). G2's primary is on leave and its backup
seconded, so its community head H1 answers. G3's primary is on leave, it has no backup, and C2's
head is on leave, so the street officer SO answers. CD is the command-centre duty officer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import geopandas as gpd
import pandas as pd
from shapely import box
from sqlalchemy import Connection

from grids import store

X0, Y0, U = 120.0, 29.0, 0.01
CITY, STREET = "990100000000", "990100001000"
C1, C2 = "990100001001", "990100001002"
G1, G2, G3 = C1 + "001", C1 + "002", C2 + "001"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def cell(x0: float, y0: float, x1: float, y1: float):
    return box(X0 + x0 * U, Y0 + y0 * U, X0 + x1 * U, Y0 + y1 * U)


def at(x: float, y: float) -> tuple[float, float]:
    """lon/lat of a point given in the drawing's units."""
    return X0 + x * U, Y0 + y * U


REGIONS = [
    (CITY, "测试市", "city", None, cell(0, 0, 3, 1)),
    (STREET, "测试街道", "street", CITY, cell(0, 0, 3, 1)),
    (C1, "一社区", "community", STREET, cell(0, 0, 2, 1)),
    (C2, "二社区", "community", STREET, cell(2, 0, 3, 1)),
    (G1, "一社区第1网格", "grid", C1, cell(0, 0, 1, 1)),
    (G2, "一社区第2网格", "grid", C1, cell(1, 0, 2, 1)),
    (G3, "二社区第1网格", "grid", C2, cell(2, 0, 3, 0.5)),
]
STAFF = [  # code, name, role, status, region, duty
    ("W1", "王一", "full_time", "available", G1, "primary"),
    ("B1", "白一", "part_time", "available", G1, "backup"),
    ("W2", "王二", "full_time", "on_leave", G2, "primary"),
    ("B2", "白二", "part_time", "seconded", G2, "backup"),
    ("W3", "王三", "full_time", "on_leave", G3, "primary"),
    ("H1", "何一", "community_head", "available", C1, "head"),
    ("H2", "何二", "community_head", "on_leave", C2, "head"),
    ("SO", "苏街", "street_officer", "available", STREET, "head"),
    ("CD", "陈值", "command_duty", "available", CITY, "head"),
]


def write_tiny_city(conn: Connection) -> None:
    """Write the drawing above through grids.store, in the caller's transaction."""
    frame = gpd.GeoDataFrame(
        [dict(code=c, name=n, level=lv, parent_code=p) for c, n, lv, p, _ in REGIONS],
        geometry=[g for *_, g in REGIONS], crs="EPSG:4490",
    )
    version = store.new_version(conn, label="tiny", activated_at=T0)
    store.insert_regions(conn, frame, version_id=version, valid_from=T0)
    staff = pd.DataFrame(
        [dict(code=c, name=n, phone=f"1990000{i:04d}", role=r, status=s)
         for i, (c, n, r, s, _, _) in enumerate(STAFF)]
    )
    store.upsert_staff(conn, staff)
    store.insert_assignments(
        conn,
        pd.DataFrame([dict(staff_code=c, region_code=reg, duty=d) for c, _, _, _, reg, d in STAFF]),
        valid_from=T0,
    )
