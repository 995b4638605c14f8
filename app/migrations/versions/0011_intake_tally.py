"""Cheaper tally upserts for intake: the same tallies (0008's layout), fewer operations a key.

The statement-level triggers of migration 0008 made a bulk intake of 100,000 rows cost about
as much again as the intake itself (cell upsert ~3.5 s, grid upsert ~1.5 s), mostly in building
the keys: every incident row was crossed with every combination (6 for cells, 4 for grids), the
PostGIS point transformed and the cell computed per combination, and the ~600,000 rows hashed on
eight or nine columns, then sorted with the database's text collation. This revision replaces
the three trigger functions and ``citygrid_tally_rebuild()`` with statements that give exactly
the same rows:

* **Cells.** Each row is transformed once and its level-12 cell computed once (``p``); coarser
  cells are integer shifts of it (``cx >> 2`` is level 10, ``cx >> 4`` level 8), equal to
  ``floor(x / side)`` at those levels: the sides are exact powers of two apart and dividing by
  a power of two is exact in floating point. The finest group of each family is aggregated from
  the rows once (level-12 months; level-8 days with category and state) and every other
  combination rolled up from those groups, which are far fewer than the rows.
* **Grids.** The rows are aggregated once per day, place, category, state and due day (``g``);
  years, months, month details and days are rolled up from that.
* **Sums.** The first aggregates count in ``int`` (a statement's or a rebuild's count for one
  key fits), so the roll-ups' ``sum`` accumulates in ``bigint`` rather than in ``numeric``.
* **Order.** Keys are still upserted in one total order so that two writers lock tally rows in the
  same order; the text columns of that order are compared as ``COLLATE "C"`` (byte order, with
  abbreviated sort keys) instead of the database's locale. Every writer goes through these
  functions, so the order is the same for all.
* **JIT off** for the three trigger functions (``SET jit = off``): the service's connections
  already run without JIT (``app.db.make_engine``); other clients (the CLI, scripts, the bench)
  paid for compiling the upserts because PostGIS declares ``ST_Transform`` costly.

What is tallied does not change (``CELL_COMBOS`` and ``GRID_COMBOS`` of 0008); the existing rows
stay valid and nothing is rebuilt. ``tests/layers/test_map_tally.py`` checks the triggers against
an independent count of the raw rows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

EARTH_M = 2 * math.pi * 6378137.0
FINE = 12  # the finest cell level of incident_cell_tally (0008: levels 8, 10, 12)
TZ = "Asia/Shanghai"
OPEN = "('received', 'registered', 'dispatched', 'handling', 'reported', 'verified')"
KEY_COLUMNS = ("geom", "received_at", "category_id", "state", "region_code", "grid_code",
               "community_code", "street_code", "due_at")
_DELTA_COLS = ", ".join(KEY_COLUMNS)
_MONTH = "date_trunc('month', day)::date"


def cell_upsert(src: str) -> str:
    """Upsert the cell-tally deltas of relation ``src`` (incident columns plus ``s``: +1 / -1).

    The rows of 0008's combinations: months at levels 12, 10 and 8, days at level 8, with and
    without category and state at level 8 only.
    """
    side = EARTH_M / 256 / 2 ** FINE
    return f"""
    INSERT INTO incident_cell_tally AS t (k, span, t0, cx, cy, rkey, category_id, state, n)
    WITH p AS MATERIALIZED (
        SELECT floor(ST_X(g) / {side!r})::int AS cx, floor(ST_Y(g) / {side!r})::int AS cy,
               (received_at AT TIME ZONE '{TZ}')::date AS day,
               coalesce(left(region_code, 9), '') AS rkey, category_id, state, s
        -- OFFSET 0: one transformation a row, not one per use of g
        FROM (SELECT ST_Transform(geom, 3857) AS g, received_at, region_code, category_id,
                     state, s FROM {src} WHERE geom IS NOT NULL OFFSET 0) q),
    m12 AS MATERIALIZED (
        SELECT {_MONTH} AS t0, cx, cy, rkey, sum(s)::int AS n FROM p GROUP BY 1, 2, 3, 4),
    d8 AS MATERIALIZED (
        SELECT day, cx >> 4 AS cx, cy >> 4 AS cy, rkey, category_id, state, sum(s)::int AS n
        FROM p GROUP BY 1, 2, 3, 4, 5, 6)
    SELECT * FROM (
        SELECT 12::smallint AS k, 'm'::"char" AS span, t0, cx, cy, rkey, 0 AS category_id,
               '*'::text AS state, n FROM m12
        UNION ALL
        SELECT 10, 'm', t0, cx >> 2, cy >> 2, rkey, 0, '*', sum(n) FROM m12 GROUP BY 3, 4, 5, 6
        UNION ALL
        SELECT 8, 'd', day, cx, cy, rkey, category_id, state, n FROM d8
        UNION ALL
        SELECT 8, 'd', day, cx, cy, rkey, 0, '*', sum(n) FROM d8 GROUP BY 3, 4, 5, 6
        UNION ALL
        SELECT 8, 'm', {_MONTH}, cx, cy, rkey, category_id, state, sum(n) FROM d8
        GROUP BY 3, 4, 5, 6, 7, 8
        UNION ALL
        SELECT 8, 'm', {_MONTH}, cx, cy, rkey, 0, '*', sum(n) FROM d8 GROUP BY 3, 4, 5, 6) a
    WHERE a.n <> 0
    ORDER BY a.k, a.span, a.t0, a.cx, a.cy, a.rkey COLLATE "C", a.category_id,
             a.state COLLATE "C"
    ON CONFLICT (k, span, t0, cx, cy, rkey, category_id, state)
    DO UPDATE SET n = t.n + excluded.n;"""


def grid_upsert(src: str) -> str:
    """Upsert the grid-tally deltas of ``src``: years, months and days as everything-rows, months
    per category, state and (open states) local due day, as 0008 keeps them."""
    place = "region_code, grid_code, community_code, street_code"
    return f"""
    INSERT INTO incident_grid_tally AS t (span, t0, region_code, grid_code, community_code,
                                          street_code, category_id, state, due_day, n)
    WITH g AS MATERIALIZED (
        SELECT (received_at AT TIME ZONE '{TZ}')::date AS day,
               coalesce(region_code, '') AS region_code, coalesce(grid_code, '') AS grid_code,
               coalesce(community_code, '') AS community_code,
               coalesce(street_code, '') AS street_code, category_id, state,
               CASE WHEN state IN {OPEN}
                    THEN coalesce((due_at AT TIME ZONE '{TZ}')::date, 'infinity'::date)
                    ELSE 'infinity'::date END AS due_day,
               sum(s)::int AS n
        FROM {src} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8)
    SELECT * FROM (
        SELECT 'y'::"char" AS span, date_trunc('year', day)::date AS t0, {place},
               0 AS category_id, '*'::text AS state, 'infinity'::date AS due_day, sum(n) AS n
        FROM g GROUP BY 2, 3, 4, 5, 6
        UNION ALL
        SELECT 'm', {_MONTH}, {place}, 0, '*', 'infinity', sum(n) FROM g GROUP BY 2, 3, 4, 5, 6
        UNION ALL
        SELECT 'm', {_MONTH}, {place}, category_id, state, due_day, sum(n) FROM g
        GROUP BY 2, 3, 4, 5, 6, 7, 8, 9
        UNION ALL
        SELECT 'd', day, {place}, 0, '*', 'infinity', sum(n) FROM g GROUP BY 2, 3, 4, 5, 6) a
    WHERE a.n <> 0
    ORDER BY a.span, a.t0, a.region_code COLLATE "C", a.grid_code COLLATE "C",
             a.community_code COLLATE "C", a.street_code COLLATE "C", a.category_id,
             a.state COLLATE "C", a.due_day
    ON CONFLICT (span, t0, region_code, grid_code, community_code, street_code, category_id,
                 state, due_day)
    DO UPDATE SET n = t.n + excluded.n;"""


def _functions(cell: Callable[[str], str], grid: Callable[[str], str], *, jit_off: bool) -> str:
    """The three trigger functions and the rebuild, from the two upsert builders."""
    sources = {
        "citygrid_tally_insert": f"(SELECT {_DELTA_COLS}, 1 AS s FROM new_rows) AS ins",
        "citygrid_tally_delete": f"(SELECT {_DELTA_COLS}, -1 AS s FROM old_rows) AS del",
        "citygrid_tally_update": (f"(SELECT {_DELTA_COLS}, -1 AS s FROM old_rows "
                                  f"UNION ALL SELECT {_DELTA_COLS}, 1 AS s FROM new_rows) AS delta"),
    }
    out = []
    for name, src in sources.items():
        out.append(f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    {cell(src)}
    {grid(src)}
    RETURN NULL;
END $fn$;""")
        out.append(f"ALTER FUNCTION {name}() {'SET jit = off' if jit_off else 'RESET jit'};")
    every = f"(SELECT {_DELTA_COLS}, 1 AS s FROM incident) AS allrows"
    out.append(f"""
CREATE OR REPLACE FUNCTION citygrid_tally_rebuild() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    LOCK TABLE incident IN SHARE MODE;
    DELETE FROM incident_cell_tally;
    DELETE FROM incident_grid_tally;
    {cell(every)}
    {grid(every)}
END $fn$;""")
    return "\n".join(out)


def _rev0008() -> ModuleType:
    path = Path(__file__).with_name("0008_map_aggregates.py")
    spec = importlib.util.spec_from_file_location("citygrid_rev0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UPGRADE = _functions(cell_upsert, grid_upsert, jit_off=True)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    old = _rev0008()
    op.execute(_functions(old._cell_upsert, old._grid_upsert, jit_off=False))
