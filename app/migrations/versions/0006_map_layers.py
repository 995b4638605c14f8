"""Map layers: a data version for tile caches, announced when incidents or boundaries change.

Tiles and heat bins are cached per API worker. Two signals keep them fresh:

* ``map_data_version``, a sequence bumped by one statement-level trigger per writing statement on
  incident and the boundary tables. A sequence is not transactional and takes no row lock, so
  concurrent intake is not serialised on a counter row. Workers read it (one round trip) and key
  their cache by it: a write seen by the reader's snapshot has always bumped it first.
* ``NOTIFY citygrid_change, 'incident'`` from the same trigger, delivered after commit: it clears
  entries rendered during the writer's transaction (keyed by the new version, drawn from a
  snapshot that did not see the rows yet).

The incident trigger does not call ``citygrid_notify_change()``: that one also sets
``citygrid.changed``, which makes the API reload its locator and user directory; an incident
write must not cost that.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE SEQUENCE IF NOT EXISTS map_data_version;
GRANT USAGE, SELECT ON SEQUENCE map_data_version TO citygrid_app;

CREATE OR REPLACE FUNCTION citygrid_map_data_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('map_data_version');
    PERFORM pg_notify('citygrid_change', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER incident_map_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON incident
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_data_changed();
-- region and region_boundary already NOTIFY (0001); they also bump the version here.
CREATE TRIGGER region_map_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON region
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_data_changed();
CREATE TRIGGER region_boundary_map_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON region_boundary
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_map_data_changed();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS incident_map_notify ON incident;
DROP TRIGGER IF EXISTS region_map_version ON region;
DROP TRIGGER IF EXISTS region_boundary_map_version ON region_boundary;
DROP FUNCTION IF EXISTS citygrid_map_data_changed();
DROP SEQUENCE IF EXISTS map_data_version;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
