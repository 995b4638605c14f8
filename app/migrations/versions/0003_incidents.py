"""Incidents: the category catalogue, incidents with the place they were assigned at intake,
and the history of every step of the closed loop.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE department (
    id   serial PRIMARY KEY,
    code text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100)
);

-- Two levels: a group (parent_id NULL) and its categories. Time limits are hours per step.
CREATE TABLE category (
    id              serial PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    parent_id       integer REFERENCES category (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    name_en         text NOT NULL DEFAULT '' CHECK (length(name_en) <= 100),
    family          text NOT NULL CHECK (family IN ('component', 'event', 'social', 'scene')),
    department_id   integer REFERENCES department (id),
    routing         text NOT NULL DEFAULT 'location' CHECK (routing IN ('location', 'owner')),
    limits          jsonb NOT NULL DEFAULT '{}'::jsonb,
    active          boolean NOT NULL DEFAULT true,
    CONSTRAINT category_two_levels CHECK (parent_id IS NULL OR parent_id <> id)
);

CREATE TABLE incident (
    id                   bigserial PRIMARY KEY,
    source               text NOT NULL CHECK (source IN ('hotline_12345', 'police_110',
                             'supervisor', 'grid_worker', 'citizen_app', 'other_centre')),
    external_id          text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 100),
    category_id          integer NOT NULL REFERENCES category (id),
    description          text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    address              text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    geom                 geometry(Point, 4490),
    crs_in               text,
    reporter_name        text CHECK (length(reporter_name) <= 100),
    reporter_phone       text CHECK (length(reporter_phone) <= 30),
    attachments          jsonb NOT NULL DEFAULT '[]'::jsonb,
    state                text NOT NULL DEFAULT 'received' CHECK (state IN ('received',
                             'registered', 'dispatched', 'handling', 'reported', 'verified',
                             'closed', 'evaluated', 'voided')),
    -- Where it was placed at intake; kept when boundaries are redrawn later.
    region_code          text,
    grid_code            text,
    community_code       text,
    street_code          text,
    boundary_version_id  integer REFERENCES boundary_version (id),
    responsible_code     text,
    fallback             text,
    department_id        integer REFERENCES department (id),
    card                 text CHECK (card IN ('yellow', 'red')),
    extension_hours      double precision NOT NULL DEFAULT 0 CHECK (extension_hours >= 0),
    rework_count         integer NOT NULL DEFAULT 0,
    score                integer CHECK (score BETWEEN 1 AND 5),
    received_at          timestamptz NOT NULL DEFAULT now(),
    state_since          timestamptz NOT NULL DEFAULT now(),
    due_at               timestamptz,
    closed_at            timestamptz,
    closed_on_time       boolean,
    version              integer NOT NULL DEFAULT 1,
    CONSTRAINT incident_once_per_source UNIQUE (source, external_id)
);
CREATE INDEX incident_geom_idx ON incident USING gist (geom);
CREATE INDEX incident_region_idx ON incident (region_code text_pattern_ops);
CREATE INDEX incident_state_idx ON incident (state, received_at);
CREATE INDEX incident_received_idx ON incident (received_at);
CREATE INDEX incident_category_idx ON incident (category_id);

CREATE TABLE incident_event (
    id          bigserial PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incident (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    photos      jsonb NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX incident_event_incident_idx ON incident_event (incident_id, id);

CREATE TRIGGER incident_audit AFTER UPDATE OR DELETE ON incident
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER category_audit AFTER INSERT OR UPDATE OR DELETE ON category
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT, UPDATE, DELETE ON department, category, incident, incident_event
    TO citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS incident_event, incident, category, department CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
