"""Call-ups (集结调度): emergencies and major events.

* ``callup``: one call-up sent by a dispatcher or supervisor to everyone responsible for an area
  (a polygon drawn on the map, or a region), their heads and the nearest available workers by
  their last GPS fix. ``kind`` is the seed's 日常 / 重大活动 / 突发应急 (``routine``, ``event``,
  ``emergency``); it may name an incident. An event has a window (``window_from``,
  ``window_to``) during which reinforcements stand on its grids.
* ``callup_task``: one task per person called, with why they were called (``primary``,
  ``backup``, ``head``, ``nearest``), how far their last fix was and how old, and their answer
  (``acknowledged`` or ``declined`` with a note, then optionally ``arrived``).
* ``callup_reinforcement``: the temporary assignments an event added. A reinforcement is an
  ordinary ``backup`` assignment on a grid with a ``valid_to`` (the duty CHECK of 0001 is kept):
  the locator already reads assignments in force and reloads at their next start or end, so a
  reinforcement is in every lookup during the window and gone after it, by itself.

Both the call-up and its tasks are audited by the registry's trigger (``audit_row``).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE callup (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('routine', 'event', 'emergency')),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    note         text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    region_code  text,
    area         geometry(MultiPolygon, 4490),
    grid_codes   text[] NOT NULL DEFAULT '{}',
    incident_id  bigint REFERENCES incident (id),
    window_from  timestamptz,
    window_to    timestamptz,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz,
    closed_by    text,
    CONSTRAINT callup_window CHECK ((window_from IS NULL) = (window_to IS NULL)
                                    AND (window_to IS NULL OR window_to > window_from)),
    CONSTRAINT callup_event_window CHECK (kind <> 'event' OR window_to IS NOT NULL)
);
CREATE INDEX callup_open_idx ON callup (created_at DESC) WHERE closed_at IS NULL;
CREATE INDEX callup_region_idx ON callup (region_code text_pattern_ops);
CREATE INDEX callup_incident_idx ON callup (incident_id) WHERE incident_id IS NOT NULL;

CREATE TABLE callup_task (
    id           bigserial PRIMARY KEY,
    callup_id    bigint NOT NULL REFERENCES callup (id),
    staff_id     integer NOT NULL REFERENCES staff (id),
    region_code  text NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('primary', 'backup', 'head', 'nearest')),
    distance_m   double precision,
    fix_at       timestamptz,
    state        text NOT NULL DEFAULT 'sent'
                 CHECK (state IN ('sent', 'acknowledged', 'declined', 'arrived')),
    note         text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    answered_at  timestamptz,
    answered_by  text,
    arrived_at   timestamptz,
    CONSTRAINT callup_task_once UNIQUE (callup_id, staff_id),
    CONSTRAINT callup_task_declined_note CHECK (state <> 'declined' OR length(note) > 0)
);
CREATE INDEX callup_task_staff_idx ON callup_task (staff_id, state);

CREATE TABLE callup_reinforcement (
    callup_id     bigint NOT NULL REFERENCES callup (id),
    assignment_id integer NOT NULL REFERENCES assignment (id),
    task_id       bigint REFERENCES callup_task (id),
    PRIMARY KEY (callup_id, assignment_id)
);

CREATE TRIGGER callup_audit AFTER INSERT OR UPDATE OR DELETE ON callup
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER callup_task_audit AFTER INSERT OR UPDATE OR DELETE ON callup_task
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT, UPDATE ON callup, callup_task TO citygrid_app;
GRANT SELECT, INSERT ON callup_reinforcement TO citygrid_app;
REVOKE DELETE, TRUNCATE ON callup, callup_task FROM citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON callup_reinforcement FROM citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS callup_reinforcement, callup_task, callup CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
