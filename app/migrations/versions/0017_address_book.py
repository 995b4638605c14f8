"""The standard address book (标准地址库): addresses with a point, their grid, versioned.

- ``address``: one row per version of an address. ``key`` is the book's own address code when
  the imported file has one, else the normalised text (``gis.address_text.normalise``). A
  re-import ends (``valid_to``) the rows it changes or no longer holds and inserts new ones, so
  an incident's address can be read as the book stood when it was taken.
- ``norm`` carries a trigram index (pg_trgm, installed by 0015) over the rows in force: search
  compares the caller's normalised words with it (``grids/addresses.py``).
- ``grid_code`` is the grid the point fell in at import (or the smallest region covering it, 属地兜底);
  jurisdiction filters on it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE address (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 300),
    code        text,
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 300),
    norm        text NOT NULL CHECK (length(norm) BETWEEN 1 AND 300),
    parts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    geom        geometry(Point, 4490) NOT NULL,
    grid_code   text,
    source      text NOT NULL DEFAULT '',
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    CONSTRAINT address_period CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE UNIQUE INDEX address_current_key_idx ON address (key) WHERE valid_to IS NULL;
CREATE INDEX address_norm_trgm_idx ON address USING gin (norm gin_trgm_ops)
    WHERE valid_to IS NULL;
CREATE INDEX address_geom_idx ON address USING gist (geom);
CREATE INDEX address_grid_idx ON address (grid_code text_pattern_ops) WHERE valid_to IS NULL;
GRANT SELECT, INSERT, UPDATE ON address TO citygrid_app;
REVOKE DELETE, TRUNCATE ON address FROM citygrid_app;  -- ended, never deleted
GRANT USAGE, SELECT ON SEQUENCE address_id_seq TO citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS address;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
