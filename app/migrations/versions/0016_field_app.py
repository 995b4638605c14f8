"""The grid worker's phone: photos, idempotent field submissions, evidence checks.

- ``field_photo``: one row per photo, keyed by the SHA-256 of its bytes (the store keeps the bytes
  under that name), with what its EXIF says (position, time) and who first sent it.
- ``field_photo_use``: which incident event shows which photo (the case timeline; who may see it).
- ``field_receipt``: the client id of every action and report sent from the phone: a resent
  request (weak signal, a queue replayed after a restart) finds its receipt and changes nothing.
- ``evidence_check``: at 反馈 (report) and 核查 (verification), the photos' EXIF, the phone's
  position when it sent, and the worker's patrol trace compared with the case's place and
  dispatch time; ``suspicious`` marks a possible false reply (疑似虚假回复) until a supervisor
  clears it with a reason (audited).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE field_photo (
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    bytes        integer NOT NULL CHECK (bytes > 0),
    width        integer NOT NULL,
    height       integer NOT NULL,
    taken_at     timestamptz,
    geom         geometry(Point, 4490),
    exif         jsonb NOT NULL DEFAULT '{}'::jsonb,
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE field_photo_use (
    sha256      text NOT NULL REFERENCES field_photo (sha256),
    incident_id bigint NOT NULL REFERENCES incident (id),
    event_id    bigint NOT NULL REFERENCES incident_event (id),
    PRIMARY KEY (sha256, event_id)
);
CREATE INDEX field_photo_use_incident_idx ON field_photo_use (incident_id);

CREATE TABLE field_receipt (
    client_id   uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('action', 'report')),
    actor       text NOT NULL,
    incident_id bigint REFERENCES incident (id),
    action      text,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE evidence_check (
    id            bigserial PRIMARY KEY,
    incident_id   bigint NOT NULL REFERENCES incident (id),
    event_id      bigint REFERENCES incident_event (id),
    stage         text NOT NULL CHECK (stage IN ('report', 'verify')),
    actor         text NOT NULL,
    checked_at    timestamptz NOT NULL DEFAULT now(),
    findings      jsonb NOT NULL,
    suspicious    boolean NOT NULL,
    cleared_at    timestamptz,
    cleared_by    text,
    clear_reason  text CHECK (clear_reason IS NULL OR length(clear_reason) BETWEEN 1 AND 500)
);
CREATE INDEX evidence_check_incident_idx ON evidence_check (incident_id, id);
CREATE TRIGGER evidence_check_audit AFTER UPDATE OR DELETE ON evidence_check
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT ON field_photo, field_photo_use, field_receipt TO citygrid_app;
GRANT SELECT, INSERT, UPDATE ON evidence_check TO citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON field_photo, field_photo_use, field_receipt FROM citygrid_app;
REVOKE DELETE, TRUNCATE ON evidence_check FROM citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS evidence_check, field_receipt, field_photo_use, field_photo CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
