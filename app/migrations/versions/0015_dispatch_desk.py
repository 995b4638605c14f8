"""The command centre's dispatch desk: merged duplicates, duplicate rules per category, saved
views, department liaisons, audited reveals of personal data, and the indexes of the queue.

* ``incident.state`` gains ``merged`` (a duplicate closed into a lead case; terminal, not open,
  counted neither as closed nor as due, like ``voided``) and ``incident.merged_into`` names the
  lead. ``incident_merge`` keeps every merge with the state the duplicate had, so a merge can be
  undone; it is audited by the same trigger as the registry.
* ``duplicate_rule``: per category code (``*`` is the default) the distance and time window
  within which two open cases are duplicate candidates, and the related categories.
* ``desk_view``: a user's saved queue filters. ``desk_liaison``: which department a user speaks
  for (the liaison's queue and actions are that department's).
* ``personal_data_reveal``: one row each time a phone is shown in full, with the reason; its
  audit trigger writes the ``audit_log`` row.
* Partial indexes over open cases only (the queue never reads closed ones): by due time, by
  place (GiST) and by text (pg_trgm), so the queue and the candidates stay fast at 5M rows.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OPEN = "('received', 'registered', 'dispatched', 'handling', 'reported', 'verified')"

UPGRADE = rf"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE incident DROP CONSTRAINT IF EXISTS incident_state_check;
ALTER TABLE incident ADD CONSTRAINT incident_state_check CHECK (state IN ('received',
    'registered', 'dispatched', 'handling', 'reported', 'verified', 'closed', 'evaluated',
    'voided', 'merged'));
ALTER TABLE incident ADD COLUMN merged_into bigint REFERENCES incident (id);
CREATE INDEX incident_merged_into_idx ON incident (merged_into) WHERE merged_into IS NOT NULL;

CREATE INDEX incident_open_geom_idx ON incident USING gist (geom) WHERE state IN {OPEN};
CREATE INDEX incident_open_text_idx ON incident
    USING gin ((address || ' ' || description) gin_trgm_ops) WHERE state IN {OPEN};

CREATE TABLE incident_merge (
    id                 bigserial PRIMARY KEY,
    lead_id            bigint NOT NULL REFERENCES incident (id),
    duplicate_id       bigint NOT NULL REFERENCES incident (id),
    region_code        text,
    score              double precision,
    note               text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    prior_state        text NOT NULL,
    prior_state_since  timestamptz NOT NULL,
    merged_by          text NOT NULL,
    merged_at          timestamptz NOT NULL DEFAULT now(),
    undone_by          text,
    undone_at          timestamptz,
    CONSTRAINT incident_merge_not_self CHECK (lead_id <> duplicate_id)
);
-- A case is merged into at most one lead at a time.
CREATE UNIQUE INDEX incident_merge_active_idx ON incident_merge (duplicate_id)
    WHERE undone_at IS NULL;
CREATE INDEX incident_merge_lead_idx ON incident_merge (lead_id);

CREATE TABLE duplicate_rule (
    category_code  text PRIMARY KEY CHECK (category_code ~ '^([A-Za-z0-9_-]{{1,32}}|\*)$'),
    radius_m       double precision NOT NULL CHECK (radius_m > 0 AND radius_m <= 5000),
    window_h       double precision NOT NULL CHECK (window_h > 0 AND window_h <= 24 * 90),
    related        text[] NOT NULL DEFAULT '{{}}'
);
INSERT INTO duplicate_rule (category_code, radius_m, window_h, related) VALUES
    ('*', 60, 48, '{{}}'),
    ('C0101', 50, 72, '{{C0202}}'),          -- manhole cover: a hole in the road is reported too
    ('C0202', 50, 72, '{{C0101}}'),
    ('C0102', 60, 96, '{{}}'),
    ('C0301', 80, 48, '{{C0202}}'),
    ('E0101', 40, 24, '{{E0103}}'),          -- rubbish: dense in markets, keep it tight
    ('E0103', 40, 48, '{{E0101}}'),
    ('E0302', 200, 72, '{{}}'),              -- noise is heard far away
    ('E0401', 150, 24, '{{C0202}}'),
    ('E0402', 100, 12, '{{X0102}}'),
    ('X0102', 60, 48, '{{E0402}}'),
    ('E0501', 50, 12, '{{E0502}}'),
    ('E0502', 50, 12, '{{E0501}}'),
    ('S0101', 40, 72, '{{}}'),
    ('S0102', 100, 168, '{{}}');

CREATE TABLE desk_view (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    filters     jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT desk_view_name_once UNIQUE (username, name)
);

CREATE TABLE desk_liaison (
    user_id        integer PRIMARY KEY REFERENCES app_user (id) ON DELETE CASCADE,
    department_id  integer NOT NULL REFERENCES department (id)
);

CREATE TABLE personal_data_reveal (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text NOT NULL,
    incident_id  bigint NOT NULL REFERENCES incident (id),
    region_code  text,
    field        text NOT NULL CHECK (field IN ('reporter_phone', 'responsible_phone')),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 2 AND 500)
);
CREATE INDEX personal_data_reveal_incident_idx ON personal_data_reveal (incident_id);

CREATE TRIGGER incident_merge_audit AFTER INSERT OR UPDATE OR DELETE ON incident_merge
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER personal_data_reveal_audit AFTER INSERT OR UPDATE OR DELETE
    ON personal_data_reveal FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER desk_liaison_audit AFTER INSERT OR UPDATE OR DELETE ON desk_liaison
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT, UPDATE, DELETE ON incident_merge, duplicate_rule, desk_view,
    desk_liaison TO citygrid_app;
-- Reveals are a log: the application adds rows, never changes them.
GRANT SELECT, INSERT ON personal_data_reveal TO citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS personal_data_reveal, desk_liaison, desk_view, duplicate_rule,
    incident_merge CASCADE;
DROP INDEX IF EXISTS incident_open_geom_idx, incident_open_text_idx,
    incident_merged_into_idx;
UPDATE incident SET state = 'voided' WHERE state = 'merged';
ALTER TABLE incident DROP COLUMN IF EXISTS merged_into;
ALTER TABLE incident DROP CONSTRAINT IF EXISTS incident_state_check;
ALTER TABLE incident ADD CONSTRAINT incident_state_check CHECK (state IN ('received',
    'registered', 'dispatched', 'handling', 'reported', 'verified', 'closed', 'evaluated',
    'voided'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
