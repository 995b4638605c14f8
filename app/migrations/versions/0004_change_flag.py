"""Flag, per transaction, that the locator's tables changed (so the API refreshes only then).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE OR REPLACE FUNCTION citygrid_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('citygrid_change', TG_TABLE_NAME);
    -- Read back by the API before it commits: did this transaction touch what workers cache?
    PERFORM set_config('citygrid.changed', 'true', true);
    RETURN NULL;
END $$;
""")


def downgrade() -> None:
    op.execute("""
CREATE OR REPLACE FUNCTION citygrid_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('citygrid_change', TG_TABLE_NAME);
    RETURN NULL;
END $$;
""")
