"""Patrol GPS fixes from grid workers' phones.

One row per worker and instant: the primary key ``(staff_id, at)`` both orders a worker's track
and makes uploads idempotent (a phone that resends a batch gets ``ON CONFLICT DO NOTHING``).
Fixes are raw evidence: the filtered tracks are computed on read (:mod:`layers.patrols`), so a
better filter later applies to the past too. The app role may add and read fixes, never change
or delete them; there is no row audit (millions of rows a week; the rows are the record) and no
NOTIFY (the locator does not cache them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE patrol_fix (
    staff_id    integer NOT NULL REFERENCES staff (id),
    at          timestamptz NOT NULL,
    geom        geometry(Point, 4490) NOT NULL,
    accuracy_m  real CHECK (accuracy_m IS NULL OR accuracy_m >= 0),
    crs_in      text,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patrol_fix_once PRIMARY KEY (staff_id, at)
);
CREATE INDEX patrol_fix_geom_idx ON patrol_fix USING gist (geom);
-- Coverage and alerts read a time window across all workers.
CREATE INDEX patrol_fix_at_idx ON patrol_fix (at);

GRANT SELECT, INSERT ON patrol_fix TO citygrid_app;
-- The default privileges of 0002 would also give UPDATE and DELETE: fixes are evidence.
REVOKE UPDATE, DELETE, TRUNCATE ON patrol_fix FROM citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS patrol_fix;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
