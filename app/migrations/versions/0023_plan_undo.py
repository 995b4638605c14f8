"""Undo and redo of single edits in a plan's draft (issue 19).

* ``plan_snapshot``: the draft of a plan (its ``plan_region`` rows and its problems) as it was
  just before an edit (``side = 'before'``, taken when the edit is applied) or just after it
  (``side = 'after'``, taken when the edit is undone, so that it can be redone). One row per
  (plan, edit, side); its regions are in ``plan_snapshot_region``, the same columns as
  ``plan_region`` with the row's id (``row_id``) so a restore puts back the very rows.
* ``plan_edit_state``: an edit undone (``undone``: on the redo stack) or dropped from the redo
  stack by a later edit (``dropped``). An edit with no row here is in force. ``plan_edit`` stays
  append-only: the log keeps every edit, undone or not. Audited by ``audit_row``.

Snapshots are working state, not history: they are not audited (the edit log and
``plan_edit_state`` are), and those of dropped edits are deleted.

Revision ID: 0023
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE plan_snapshot (
    id         bigserial PRIMARY KEY,
    plan_id    integer NOT NULL REFERENCES plan (id),
    seq        integer NOT NULL,
    side       text NOT NULL CHECK (side IN ('before', 'after')),
    problems   jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plan_snapshot_once UNIQUE (plan_id, seq, side)
);

CREATE TABLE plan_snapshot_region (
    snapshot_id        bigint NOT NULL REFERENCES plan_snapshot (id) ON DELETE CASCADE,
    row_id             bigint NOT NULL,
    code               text NOT NULL,
    level              text NOT NULL,
    name               text NOT NULL,
    parent_code        text NOT NULL,
    origin_code        text,
    source_boundary_id bigint,
    geom               geometry(MultiPolygon, 4490),
    area_m2            double precision,
    change             text NOT NULL,
    PRIMARY KEY (snapshot_id, row_id)
);

CREATE TABLE plan_edit_state (
    plan_id integer NOT NULL REFERENCES plan (id),
    seq     integer NOT NULL,
    state   text NOT NULL CHECK (state IN ('undone', 'dropped')),
    by      text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plan_id, seq)
);

CREATE TRIGGER plan_edit_state_audit AFTER INSERT OR UPDATE OR DELETE ON plan_edit_state
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT, UPDATE, DELETE ON plan_snapshot, plan_snapshot_region, plan_edit_state
    TO citygrid_app;
REVOKE TRUNCATE ON plan_snapshot, plan_snapshot_region, plan_edit_state FROM citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS plan_edit_state, plan_snapshot_region, plan_snapshot;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
