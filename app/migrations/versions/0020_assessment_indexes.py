"""Indexes for the supervisor's month (issue 18): the assessment's three windows and a grid's
open cases.

The month's figures (``layers.assessment.figures``) read, per month, the incidents received,
closed or due in it (``FIGURE_SQL``): ``received_at`` had an index (0003), ``closed_at`` and
``due_at`` had none, so at 5 M incidents each month was a sequential scan of the table. A grid's
summary lists its open cases (``grid_code = :c AND state IN OPEN``), which only the open
partial indexes of 0008 served (every open case of the city).

* ``incident_closed_idx``: ``closed_at`` of closed cases;
* ``incident_due_idx``: ``due_at`` of the cases that can be due (the assessment's ``due``
  excludes voided and merged cases: the partial predicate is implied by the query);
* ``incident_open_grid_idx``: ``grid_code`` of open cases.

Built ``CONCURRENTLY`` (outside the migration's transaction) so intake is not blocked on a large
table; ``IF NOT EXISTS`` so a build interrupted and retried does not fail (an interrupted
concurrent build leaves an INVALID index: drop it and upgrade again).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

OPEN = "('received', 'registered', 'dispatched', 'handling', 'reported', 'verified')"
INDEXES = (
    "incident_closed_idx ON incident (closed_at) WHERE closed_at IS NOT NULL",
    "incident_due_idx ON incident (due_at) WHERE state NOT IN ('voided', 'merged')",
    f"incident_open_grid_idx ON incident (grid_code) WHERE state IN {OPEN}",
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for index in INDEXES:
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index}")
        op.execute("ANALYZE incident")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for index in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.split()[0]}")
