"""Patrol coverage per grid and day, kept for the map tiles.

``patrol_grid_cover``: for each city day (Asia/Shanghai) and grid, the share of the grid's area
within 50 m of that day's filtered tracks and the time of its latest good fix (span ``'d'``), and
per month their sum of daily shares and latest fix (span ``'m'``), so a window of whole months
reads one row per grid. Only grids someone patrolled get rows (a missing row is a share of 0).
``layers.patrols.grid_cover`` writes them (after new fixes: see 0012; the demo and bench loaders
for their whole range). Writes bump the map data version and NOTIFY, like incidents, so cached grid tiles
drop at once.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE patrol_grid_cover (
    span        "char" NOT NULL CHECK (span IN ('d', 'm')),
    t0          date NOT NULL,
    grid_code   text NOT NULL,
    share       real NOT NULL CHECK (share >= 0),
    last_fix_at timestamptz,
    PRIMARY KEY (span, t0, grid_code)
);
CREATE INDEX patrol_grid_cover_grid_idx ON patrol_grid_cover (grid_code, span, t0);
CREATE TRIGGER patrol_grid_cover_map_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON patrol_grid_cover
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_data_changed();
GRANT SELECT, INSERT, UPDATE, DELETE ON patrol_grid_cover TO citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS patrol_grid_cover;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
