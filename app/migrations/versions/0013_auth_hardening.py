"""Auth hardening: an unforgeable audit actor, ended sessions, shared rate counters.

- ``audit_log`` is written only by the SECURITY DEFINER trigger functions: the application role
  loses INSERT on it.
- The actor and address the audit triggers record are *attested*: the application sets
  ``citygrid.actor``, ``citygrid.ip`` and ``citygrid.proof`` per transaction, where the proof is
  HMAC-SHA256(audit key, actor LF ip LF transaction id). The audit key lives in
  ``audit_signing_key``, which only the owner can read; ``app.db.migrate`` installs it (derived
  from ``CITYGRID_SECRET_KEY``). A claimed actor without a valid proof makes the write fail; a
  transaction that claims nobody is recorded as its database user (``db:citygrid_app``).
- ``auth_session_revoked``: portal sessions ended by logout (their ``sid``), until they expire.
- ``rate_counter`` (UNLOGGED): per-window counters for API-key rate limits and the login
  throttle, shared by every worker process, bumped with one atomic upsert.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS pgcrypto;

REVOKE INSERT ON audit_log FROM citygrid_app;

CREATE TABLE audit_signing_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL CHECK (length(key) >= 32)
);
REVOKE ALL ON audit_signing_key FROM PUBLIC, citygrid_app;

-- Who is writing, as the audit triggers record it: the attested claim, or the database user.
CREATE FUNCTION audit_actor(OUT actor text, OUT ip text) LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    claimed    text := nullif(current_setting('citygrid.actor', true), '');
    claimed_ip text := coalesce(current_setting('citygrid.ip', true), '');
    proof      text := coalesce(current_setting('citygrid.proof', true), '');
    k          bytea;
BEGIN
    IF claimed IS NULL THEN
        actor := 'db:' || session_user;
        ip := NULL;
        RETURN;
    END IF;
    SELECT s.key INTO k FROM audit_signing_key s WHERE s.id = 1;
    IF k IS NULL OR proof = '' OR encode(hmac(convert_to(
            claimed || chr(10) || claimed_ip || chr(10) || txid_current()::text, 'UTF8'),
            k, 'sha256'), 'hex') <> proof THEN
        RAISE EXCEPTION 'audit actor % is not attested for this transaction', claimed
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the actor is set by app.db.set_actor; run citygrid migrate to install '
                         'the audit key';
    END IF;
    actor := claimed;
    ip := nullif(claimed_ip, '');
END $$;
REVOKE ALL ON FUNCTION audit_actor() FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
    row_now jsonb := coalesce(new_row, old_row);
    reg     text;
    key     text;
    who     record;
BEGIN
    old_row := old_row - 'password_hash' - 'key_hash';
    new_row := new_row - 'password_hash' - 'key_hash';
    IF TG_OP = 'UPDATE' AND old_row = new_row THEN
        RETURN NULL;
    END IF;
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
    IF TG_TABLE_NAME = 'region_boundary' THEN
        old_row := old_row - 'geom' || CASE WHEN old_row IS NULL THEN NULL ELSE
            jsonb_build_object('geom_md5', md5(ST_AsBinary(OLD.geom))) END;
        new_row := new_row - 'geom' || CASE WHEN new_row IS NULL THEN NULL ELSE
            jsonb_build_object('geom_md5', md5(ST_AsBinary(NEW.geom))) END;
    END IF;
    SELECT * INTO who FROM audit_actor();
    INSERT INTO audit_log (actor, ip, action, entity, entity_key, region_code, before, after)
    VALUES (who.actor, who.ip, lower(TG_OP), TG_TABLE_NAME, key, reg, old_row, new_row);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION audit_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    who record;
BEGIN
    SELECT * INTO who FROM audit_actor();
    INSERT INTO audit_log (actor, ip, action, entity)
    VALUES (who.actor, who.ip, 'truncate', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TABLE auth_session_revoked (
    sid        text PRIMARY KEY CHECK (length(sid) BETWEEN 16 AND 64),
    user_id    integer,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX auth_session_revoked_expires_idx ON auth_session_revoked (expires_at);
CREATE TRIGGER auth_session_revoked_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON auth_session_revoked FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();

CREATE UNLOGGED TABLE rate_counter (
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    n            integer NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_counter_window_idx ON rate_counter (window_start);

GRANT SELECT, INSERT, DELETE ON auth_session_revoked TO citygrid_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_counter TO citygrid_app;
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS rate_counter, auth_session_revoked;
CREATE OR REPLACE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
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
CREATE OR REPLACE FUNCTION audit_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO audit_log (actor, action, entity)
    VALUES (coalesce(nullif(current_setting('citygrid.actor', true), ''), 'db:' || session_user),
            'truncate', TG_TABLE_NAME);
    RETURN NULL;
END $$;
DROP FUNCTION IF EXISTS audit_actor();
DROP TABLE IF EXISTS audit_signing_key;
GRANT INSERT ON audit_log TO citygrid_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
