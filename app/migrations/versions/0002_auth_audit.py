"""Users, API keys, the application's database role, and the append-only audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- The role the API and CLI run as. It may read and write the registry, but never rewrite history:
-- it has no UPDATE, DELETE or TRUNCATE on audit_log. Migrations run as the owner.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'citygrid_app') THEN
        CREATE ROLE citygrid_app LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO citygrid_app;

CREATE TABLE app_user (
    id            serial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{3,40}$'),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 100),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'planner', 'supervisor', 'dispatcher',
                                                'grid_worker', 'viewer')),
    region_id     integer NOT NULL REFERENCES region (id),
    staff_id      integer REFERENCES staff (id),
    disabled      boolean NOT NULL DEFAULT false,
    token_version integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grid_worker_has_staff CHECK (role <> 'grid_worker' OR staff_id IS NOT NULL)
);

CREATE TABLE api_key (
    id                    serial PRIMARY KEY,
    name                  text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    prefix                text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8}$'),
    key_hash              text NOT NULL,
    role                  text NOT NULL CHECK (role IN ('admin', 'planner', 'supervisor',
                                                        'dispatcher', 'grid_worker', 'viewer')),
    region_id             integer NOT NULL REFERENCES region (id),
    rate_limit_per_minute integer NOT NULL DEFAULT 600 CHECK (rate_limit_per_minute > 0),
    disabled              boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    ip          text,
    action      text NOT NULL CHECK (action IN ('insert', 'update', 'delete', 'truncate')),
    entity      text NOT NULL,
    entity_key  text,
    region_code text,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_region_idx ON audit_log (region_code text_pattern_ops);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_key);

-- Append-only for everyone, the owner included: rows can be added, never changed or removed.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Every change to an audited table is recorded by the database itself, so no code path (API, CLI,
-- psql, QGIS) can forget it. The application says who and from where with
--   SET LOCAL citygrid.actor = 'user:alice'; SET LOCAL citygrid.ip = '10.0.0.7';
-- otherwise the database user is recorded. Secrets (password and key hashes) are never copied.
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
    row_now jsonb := coalesce(new_row, old_row);
    reg     text;
    key     text;
BEGIN
    old_row := old_row - 'password_hash' - 'key_hash';
    new_row := new_row - 'password_hash' - 'key_hash';
    IF TG_OP = 'UPDATE' AND old_row = new_row THEN
        RETURN NULL;
    END IF;
    -- The region the change belongs to, for jurisdiction-filtered reading of the log.
    IF TG_TABLE_NAME = 'region' THEN
        reg := row_now ->> 'code';
    ELSIF TG_TABLE_NAME IN ('region_boundary', 'assignment', 'app_user', 'api_key') THEN
        SELECT code INTO reg FROM region WHERE id = (row_now ->> 'region_id')::int;
    ELSIF TG_TABLE_NAME = 'staff' THEN
        SELECT r.code INTO reg FROM assignment a JOIN region r ON r.id = a.region_id
         WHERE a.staff_id = (row_now ->> 'id')::int ORDER BY a.valid_to NULLS FIRST LIMIT 1;
    ELSE
        reg := row_now ->> 'region_code';
    END IF;
    key := coalesce(row_now ->> 'code', row_now ->> 'username', row_now ->> 'name',
                    row_now ->> 'id');
    -- Geometries are large: the log keeps a fingerprint and the area, not the coordinates.
    IF TG_TABLE_NAME = 'region_boundary' THEN
        old_row := old_row - 'geom' || CASE WHEN old_row IS NULL THEN NULL ELSE
            jsonb_build_object('geom_md5', md5(ST_AsBinary(OLD.geom))) END;
        new_row := new_row - 'geom' || CASE WHEN new_row IS NULL THEN NULL ELSE
            jsonb_build_object('geom_md5', md5(ST_AsBinary(NEW.geom))) END;
    END IF;
    INSERT INTO audit_log (actor, ip, action, entity, entity_key, region_code, before, after)
    VALUES (coalesce(nullif(current_setting('citygrid.actor', true), ''), 'db:' || session_user),
            nullif(current_setting('citygrid.ip', true), ''),
            lower(TG_OP), TG_TABLE_NAME, key, reg, old_row, new_row);
    RETURN NULL;
END $$;

CREATE FUNCTION audit_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO audit_log (actor, action, entity)
    VALUES (coalesce(nullif(current_setting('citygrid.actor', true), ''), 'db:' || session_user),
            'truncate', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER region_audit AFTER INSERT OR UPDATE OR DELETE ON region
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER region_boundary_audit AFTER INSERT OR UPDATE OR DELETE ON region_boundary
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER staff_audit AFTER INSERT OR UPDATE OR DELETE ON staff
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER assignment_audit AFTER INSERT OR UPDATE OR DELETE ON assignment
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER app_user_audit AFTER INSERT OR UPDATE OR DELETE ON app_user
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER api_key_audit AFTER INSERT OR UPDATE OR DELETE ON api_key
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER region_audit_truncate AFTER TRUNCATE ON region
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate();
CREATE TRIGGER region_boundary_audit_truncate AFTER TRUNCATE ON region_boundary
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate();
CREATE TRIGGER staff_audit_truncate AFTER TRUNCATE ON staff
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate();
CREATE TRIGGER assignment_audit_truncate AFTER TRUNCATE ON assignment
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate();

CREATE TRIGGER app_user_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON app_user
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();
CREATE TRIGGER api_key_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_key
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM citygrid_app;
REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM citygrid_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO citygrid_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO citygrid_app;
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS region_audit ON region;
DROP TRIGGER IF EXISTS region_boundary_audit ON region_boundary;
DROP TRIGGER IF EXISTS staff_audit ON staff;
DROP TRIGGER IF EXISTS assignment_audit ON assignment;
DROP TRIGGER IF EXISTS region_audit_truncate ON region;
DROP TRIGGER IF EXISTS region_boundary_audit_truncate ON region_boundary;
DROP TRIGGER IF EXISTS staff_audit_truncate ON staff;
DROP TRIGGER IF EXISTS assignment_audit_truncate ON assignment;
DROP TABLE IF EXISTS audit_log, api_key, app_user CASCADE;
DROP FUNCTION IF EXISTS audit_row(), audit_truncate(), audit_log_append_only();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
