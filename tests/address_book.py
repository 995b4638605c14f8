"""The demo address book in the test database, committed once (tests of issue 16).

A test database loaded before the book existed (``app.seed.load_demo`` adds it now) gets it
here, the first time a test needs it.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Engine, create_engine, text

from grids.access import Principal


def ensure_demo_book(engine: Engine) -> int:
    """The number of addresses in force, after loading the demo book if there was none."""
    from data.addresses import load_demo_addresses

    with engine.begin() as conn:
        conn.execute(text("LOCK TABLE address IN SHARE ROW EXCLUSIVE MODE"))
        n = conn.execute(text("SELECT count(*) FROM address WHERE valid_to IS NULL "
                              "AND source LIKE 'data.addresses%'")).scalar_one()
        if n == 0:
            n = load_demo_addresses(conn)["added"]
    return n


@cache
def _engine() -> Engine:
    from app.db import migrate
    from tests.conftest import database_url

    url = database_url("citygrid_test")
    migrate(url)
    return create_engine(url)


@cache
def address_in(grid: str) -> tuple[int, str]:
    """An address (id, text) committed at the grid's inner point (for the access matrix)."""
    from grids.addresses import Record, import_records

    engine = _engine()
    with engine.begin() as conn:
        x, y, name = conn.execute(text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)), name "
            "FROM region_current WHERE code = :g"), {"g": grid}).one()
        body = f"{name}矩阵路{int(grid[-3:])}号"
        import_records(conn, [Record(row=2, text=body, x=x, y=y, code=f"matrix-{grid}")],
                       principal=Principal.system("test"), mode="merge", source="tests.matrix")
        return conn.execute(text("SELECT id FROM address WHERE key = :k AND valid_to IS NULL"),
                            {"k": f"matrix-{grid}"}).scalar_one(), body
