"""Redraw plans carry their staffing and go through approval; the work they move is recorded.

- ``plan.status`` gains ``submitted`` (the planner proposed it), ``returned`` (sent back with
  comments: editable again) and ``approved`` (may be activated). A plan is activated only when
  approved (``plan_not_approved``, 409). ``proposed_effective_at`` / ``reroute_open_incidents``
  are what the planner asked for on submit (a scheduled activation waits for approval);
  ``unstaffed_reason`` the planner's recorded override for grids left with no responsible
  worker (with ``unstaffed_grids``, the grids it covered).
- ``plan_review``: every submit, approval, return and activation, with its comment (audited).
- ``plan_staff``: the staffing changes stored with the plan: ``assign`` (a worker, backup or
  head onto a grid or community of the draft, from the activation on) and ``end`` (an
  assignment in force ended at activation). A move is an ``end`` and an ``assign``. Applied by
  the activation in its transaction (grids/plans/staffing.py).
- ``plan.work_moved_at`` / ``work_moved``: when the open work (cases, call-up tasks, address
  book entries) was moved to the new grids and how much; NULL on a scheduled activation until
  its time comes (the plan worker, app/plan_worker.py, does it then).
- ``city_profile.plan_approver_role``: the role that approves plans (default ``admin``; an admin
  may always approve).

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE plan DROP CONSTRAINT plan_status_check;
ALTER TABLE plan ADD CONSTRAINT plan_status_check CHECK (status IN (
    'draft', 'submitted', 'returned', 'approved', 'activated', 'discarded'));
ALTER TABLE plan
    ADD COLUMN submitted_at          timestamptz,
    ADD COLUMN submitted_by          text,
    ADD COLUMN approved_at           timestamptz,
    ADD COLUMN approved_by           text,
    ADD COLUMN proposed_effective_at timestamptz,
    ADD COLUMN reroute_open_incidents boolean NOT NULL DEFAULT false,
    ADD COLUMN unstaffed_reason      text CHECK (length(unstaffed_reason) <= 1000),
    ADD COLUMN unstaffed_grids       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN work_moved_at         timestamptz,
    ADD COLUMN work_moved            jsonb;
-- Scheduled activations whose work has not moved yet (the plan worker's query).
CREATE INDEX plan_work_due_idx ON plan (effective_at)
    WHERE status = 'activated' AND work_moved_at IS NULL;
-- Plans activated before this migration moved what they moved then.
UPDATE plan SET work_moved_at = coalesce(effective_at, activated_at) WHERE status = 'activated';

CREATE TABLE plan_review (
    id       bigserial PRIMARY KEY,
    plan_id  integer NOT NULL REFERENCES plan (id),
    action   text NOT NULL CHECK (action IN ('submit', 'approve', 'return', 'activate')),
    comment  text NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    revision integer NOT NULL,
    by       text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plan_review_return_comment CHECK (action <> 'return' OR length(comment) > 0)
);
CREATE INDEX plan_review_plan_idx ON plan_review (plan_id, id);

CREATE TABLE plan_staff (
    id            bigserial PRIMARY KEY,
    plan_id       integer NOT NULL REFERENCES plan (id),
    action        text NOT NULL CHECK (action IN ('assign', 'end')),
    staff_id      integer NOT NULL REFERENCES staff (id),
    region_code   text NOT NULL,
    duty          text NOT NULL CHECK (duty IN ('primary', 'backup', 'head')),
    assignment_id integer REFERENCES assignment (id),
    note          text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    by            text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plan_staff_end_names_assignment CHECK ((action = 'end') = (assignment_id IS NOT NULL))
);
CREATE INDEX plan_staff_plan_idx ON plan_staff (plan_id);

CREATE TRIGGER plan_review_audit AFTER INSERT OR UPDATE OR DELETE ON plan_review
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER plan_staff_audit AFTER INSERT OR UPDATE OR DELETE ON plan_staff
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT ON plan_review TO citygrid_app;
GRANT SELECT, INSERT, DELETE ON plan_staff TO citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON plan_review FROM citygrid_app;
REVOKE UPDATE, TRUNCATE ON plan_staff FROM citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;

ALTER TABLE city_profile ADD COLUMN plan_approver_role text NOT NULL DEFAULT 'admin'
    CHECK (plan_approver_role IN ('admin', 'planner', 'supervisor', 'dispatcher'));
"""

DOWNGRADE = """
ALTER TABLE city_profile DROP COLUMN IF EXISTS plan_approver_role;
DROP TABLE IF EXISTS plan_staff, plan_review;
DROP INDEX IF EXISTS plan_work_due_idx;
UPDATE plan SET status = 'draft' WHERE status IN ('submitted', 'returned', 'approved');
ALTER TABLE plan DROP CONSTRAINT plan_status_check;
ALTER TABLE plan ADD CONSTRAINT plan_status_check CHECK (status IN (
    'draft', 'activated', 'discarded'));
ALTER TABLE plan
    DROP COLUMN submitted_at, DROP COLUMN submitted_by, DROP COLUMN approved_at,
    DROP COLUMN approved_by, DROP COLUMN proposed_effective_at,
    DROP COLUMN reroute_open_incidents, DROP COLUMN unstaffed_reason,
    DROP COLUMN unstaffed_grids, DROP COLUMN work_moved_at, DROP COLUMN work_moved;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
