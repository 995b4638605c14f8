"""The desk's queue at 5M incidents: open cases by region prefix.

``incident_open_region_idx``: the open cases by ``region_code`` (``text_pattern_ops``, so a
street, community or grid filter ``region_code LIKE '990200001%'`` is an index range), carrying
what the queue's selection reads (id, category, state, times, extension, channel, assignee), so
a street's open cases, their light and the counts per state and light come from an index-only
scan; the page then fetches its 50 rows. Without it the first page of a
street walked every open case of the city in due order (75,042 on the scale city; p95 3.4 s,
docs/desk.md). ``IF NOT EXISTS``: the shared scale city got this very index by hand
(``CREATE INDEX CONCURRENTLY``, same definition) while its migrations stood at 0019.

Revision ID: 0026
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = "0026"
down_revision = "0023"
branch_labels = None
depends_on = None

OPEN = "('received', 'registered', 'dispatched', 'handling', 'reported', 'verified')"

UPGRADE = f"""
CREATE INDEX IF NOT EXISTS incident_open_region_idx ON incident (region_code text_pattern_ops)
    INCLUDE (id, category_id, state, state_since, due_at, received_at, extension_hours, source,
             responsible_code)
    WHERE state IN {OPEN};
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS incident_open_region_idx")
