"""History partitioned by month: ``patrol_fix`` and ``incident_event``.

Both logs become PostgreSQL declarative partitions, ``PARTITION BY RANGE (at)``, one partition per
calendar month in UTC (``patrol_fix_p2026_12`` holds ``[2026-12-01 00:00Z, 2027-01-01 00:00Z)``),
plus a ``DEFAULT`` partition (``patrol_fix_default``) for rows outside the created months. A query
with a time window on ``at`` touches only its months (plan-time pruning for literals, run-time for
parameters). The rows move over in this migration.

* ``citygrid_month_partition(parent, month)``: creates (idempotently) the month's partition of
  ``parent``, moving any rows of that month out of the default partition first (PostgreSQL refuses
  to create a partition whose rows sit in the default one). It revokes every privilege the default
  privileges of 0002 give the app role on the new table: the app reaches the rows through the
  parent only, so a fix stays unchangeable (0005's REVOKE) even addressed by partition name.
  ``citygrid partitions ensure`` (app/partitions.py) calls it ahead of time.
* Created here: 24 months back .. 3 months ahead of now, and every month the data holds.
* ``patrol_fix``: same columns, the primary key ``(staff_id, at)`` (it already holds the key),
  the GiST and ``at`` indexes, the grants and REVOKEs of 0005 and the statement-level coverage
  trigger of 0012 (transition tables work on a partitioned parent).
* ``incident_event``: the primary key becomes ``(id, at)`` (a unique constraint of a partitioned
  table must include the partition key); ``id`` keeps its sequence, so ids stay unique in
  practice. The two references of 0016 to ``incident_event(id)`` become **composite foreign keys**
  ``(event_id, event_at) REFERENCES incident_event (id, at)``: ``field_photo_use`` and
  ``evidence_check`` gain ``event_at``, filled by a BEFORE INSERT/UPDATE trigger
  (``citygrid_fill_event_at``) from the event's row, so writers still give only ``event_id``.
  An unknown ``event_id`` raises ``foreign_key_violation`` as before. A real foreign key (rather
  than a constraint trigger) keeps PostgreSQL's own locking, and makes detaching a month whose
  events are still referenced fail instead of leaving dangling references.

Downgrade puts both tables back unpartitioned (rows copied back) and the single-column keys.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION citygrid_month_partition(parent regclass, month date)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    m0    date := date_trunc('month', month)::date;
    lo    timestamptz := (m0::timestamp AT TIME ZONE 'UTC');
    hi    timestamptz := ((m0 + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    base  text := (SELECT c.relname FROM pg_class c WHERE c.oid = parent);
    part  text := format('%s_p%s', base, to_char(m0, 'YYYY_MM'));
    dflt  text := base || '_default';
    moved bigint := 0;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;  -- attached, or detached and kept: either way not ours to create
    END IF;
    IF to_regclass(dflt) IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FROM %I WHERE at >= $1 AND at < $2', dflt)
            INTO moved USING lo, hi;
    END IF;
    IF moved > 0 THEN
        -- Rows of this month wait in the default partition: move them into a table of their
        -- own, then attach it (CREATE .. PARTITION OF would fail on them).
        EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part, parent);
        EXECUTE format('WITH m AS (DELETE FROM %I WHERE at >= $1 AND at < $2 RETURNING *) '
                       'INSERT INTO %I SELECT * FROM m', dflt, part) USING lo, hi;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       parent, part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       part, parent, lo, hi);
    END IF;
    PERFORM citygrid_partition_privileges(part);
    RETURN part;
END $fn$;

-- The app role reaches partitioned rows through the parent only (its grants and REVOKEs rule).
CREATE OR REPLACE FUNCTION citygrid_partition_privileges(part text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'citygrid_app') THEN
        EXECUTE format('REVOKE ALL ON %I FROM citygrid_app', part);
    END IF;
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', part);
END $fn$;

CREATE OR REPLACE FUNCTION citygrid_default_partition(parent regclass)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    dflt text := (SELECT c.relname FROM pg_class c WHERE c.oid = parent) || '_default';
BEGIN
    IF to_regclass(dflt) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %s DEFAULT', dflt, parent);
        PERFORM citygrid_partition_privileges(dflt);
    END IF;
    RETURN dflt;
END $fn$;

-- The months a partitioned log is created with: a window around now and every month of its rows.
CREATE OR REPLACE FUNCTION citygrid_partition_months(old regclass, back integer, ahead integer)
RETURNS SETOF date LANGUAGE plpgsql AS $fn$
DECLARE
    now_m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT m::date FROM generate_series($1::date - make_interval(months => $2), '
        '$1::date + make_interval(months => $3), interval ''1 month'') m '
        'UNION SELECT DISTINCT date_trunc(''month'', at AT TIME ZONE ''UTC'')::date FROM %s '
        'ORDER BY 1', old) USING now_m, back, ahead;
END $fn$;

-- field_photo_use / evidence_check give event_id; the composite key needs the event's time too.
CREATE OR REPLACE FUNCTION citygrid_fill_event_at() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.event_id IS NULL THEN
        NEW.event_at := NULL;
    ELSIF TG_OP = 'INSERT' OR NEW.event_id IS DISTINCT FROM OLD.event_id
          OR NEW.event_at IS NULL THEN
        SELECT e.at INTO NEW.event_at FROM incident_event e WHERE e.id = NEW.event_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint '
                            '"%_event_fkey"', TG_TABLE_NAME, TG_TABLE_NAME
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('Key (event_id)=(%s) is not present in table '
                                      '"incident_event".', NEW.event_id);
        END IF;
    END IF;
    RETURN NEW;
END $fn$;
"""

UPGRADE = r"""
-- patrol_fix -------------------------------------------------------------------------------
DROP TRIGGER patrol_fix_cover_stale ON patrol_fix;
ALTER TABLE patrol_fix RENAME TO patrol_fix_old;
ALTER TABLE patrol_fix_old RENAME CONSTRAINT patrol_fix_once TO patrol_fix_old_once;
ALTER INDEX patrol_fix_geom_idx RENAME TO patrol_fix_old_geom_idx;
ALTER INDEX patrol_fix_at_idx RENAME TO patrol_fix_old_at_idx;

CREATE TABLE patrol_fix (
    staff_id    integer NOT NULL CONSTRAINT patrol_fix_staff_id_fkey REFERENCES staff (id),
    at          timestamptz NOT NULL,
    geom        geometry(Point, 4490) NOT NULL,
    accuracy_m  real CONSTRAINT patrol_fix_accuracy_m_check
                    CHECK (accuracy_m IS NULL OR accuracy_m >= 0),
    crs_in      text,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patrol_fix_once PRIMARY KEY (staff_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX patrol_fix_geom_idx ON patrol_fix USING gist (geom);
CREATE INDEX patrol_fix_at_idx ON patrol_fix (at);
SELECT citygrid_month_partition('patrol_fix', m)
  FROM citygrid_partition_months('patrol_fix_old', 24, 3) m;
SELECT citygrid_default_partition('patrol_fix');
INSERT INTO patrol_fix SELECT * FROM patrol_fix_old;  -- before the trigger: no stale notes
DROP TABLE patrol_fix_old;
CREATE TRIGGER patrol_fix_cover_stale AFTER INSERT ON patrol_fix
    REFERENCING NEW TABLE AS new_fixes
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_patrol_cover_stale();
GRANT SELECT, INSERT ON patrol_fix TO citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON patrol_fix FROM citygrid_app;

-- incident_event ---------------------------------------------------------------------------
ALTER TABLE field_photo_use DROP CONSTRAINT field_photo_use_event_id_fkey;
ALTER TABLE evidence_check DROP CONSTRAINT evidence_check_event_id_fkey;
ALTER TABLE incident_event RENAME TO incident_event_old;
ALTER TABLE incident_event_old RENAME CONSTRAINT incident_event_pkey TO incident_event_old_pkey;
ALTER INDEX incident_event_incident_idx RENAME TO incident_event_old_incident_idx;

CREATE TABLE incident_event (
    id          bigint NOT NULL DEFAULT nextval('incident_event_id_seq'),
    incident_id bigint NOT NULL CONSTRAINT incident_event_incident_id_fkey
                    REFERENCES incident (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    note        text NOT NULL DEFAULT ''
                    CONSTRAINT incident_event_note_check CHECK (length(note) <= 2000),
    photos      jsonb NOT NULL DEFAULT '[]'::jsonb,
    CONSTRAINT incident_event_pkey PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE INDEX incident_event_incident_idx ON incident_event (incident_id, id);
SELECT citygrid_month_partition('incident_event', m)
  FROM citygrid_partition_months('incident_event_old', 24, 3) m;
SELECT citygrid_default_partition('incident_event');
INSERT INTO incident_event SELECT * FROM incident_event_old;
ALTER SEQUENCE incident_event_id_seq OWNED BY incident_event.id;
DROP TABLE incident_event_old;
GRANT SELECT, INSERT, UPDATE, DELETE ON incident_event TO citygrid_app;

-- the references of 0016 -------------------------------------------------------------------
ALTER TABLE field_photo_use ADD COLUMN event_at timestamptz;
UPDATE field_photo_use u SET event_at = e.at FROM incident_event e WHERE e.id = u.event_id;
ALTER TABLE field_photo_use ALTER COLUMN event_at SET NOT NULL;
ALTER TABLE field_photo_use ADD CONSTRAINT field_photo_use_event_fkey
    FOREIGN KEY (event_id, event_at) REFERENCES incident_event (id, at);
CREATE TRIGGER field_photo_use_event_at BEFORE INSERT OR UPDATE ON field_photo_use
    FOR EACH ROW EXECUTE FUNCTION citygrid_fill_event_at();

ALTER TABLE evidence_check ADD COLUMN event_at timestamptz;
UPDATE evidence_check c SET event_at = e.at FROM incident_event e WHERE e.id = c.event_id;
ALTER TABLE evidence_check ADD CONSTRAINT evidence_check_event_fkey
    FOREIGN KEY (event_id, event_at) REFERENCES incident_event (id, at) MATCH FULL;
CREATE TRIGGER evidence_check_event_at BEFORE INSERT OR UPDATE ON evidence_check
    FOR EACH ROW EXECUTE FUNCTION citygrid_fill_event_at();

ANALYZE patrol_fix, incident_event;
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS field_photo_use_event_at ON field_photo_use;
DROP TRIGGER IF EXISTS evidence_check_event_at ON evidence_check;
ALTER TABLE field_photo_use DROP CONSTRAINT field_photo_use_event_fkey;
ALTER TABLE evidence_check DROP CONSTRAINT evidence_check_event_fkey;
ALTER TABLE field_photo_use DROP COLUMN event_at;
ALTER TABLE evidence_check DROP COLUMN event_at;

ALTER TABLE incident_event RENAME TO incident_event_new;
ALTER TABLE incident_event_new RENAME CONSTRAINT incident_event_pkey TO incident_event_new_pkey;
ALTER INDEX incident_event_incident_idx RENAME TO incident_event_new_incident_idx;
CREATE TABLE incident_event (
    id          bigint NOT NULL DEFAULT nextval('incident_event_id_seq') PRIMARY KEY,
    incident_id bigint NOT NULL CONSTRAINT incident_event_incident_id_fkey
                    REFERENCES incident (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    note        text NOT NULL DEFAULT ''
                    CONSTRAINT incident_event_note_check CHECK (length(note) <= 2000),
    photos      jsonb NOT NULL DEFAULT '[]'::jsonb
);
INSERT INTO incident_event SELECT * FROM incident_event_new;
ALTER SEQUENCE incident_event_id_seq OWNED BY incident_event.id;
DROP TABLE incident_event_new;
CREATE INDEX incident_event_incident_idx ON incident_event (incident_id, id);
GRANT SELECT, INSERT, UPDATE, DELETE ON incident_event TO citygrid_app;
ALTER TABLE field_photo_use ADD CONSTRAINT field_photo_use_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES incident_event (id);
ALTER TABLE evidence_check ADD CONSTRAINT evidence_check_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES incident_event (id);

DROP TRIGGER patrol_fix_cover_stale ON patrol_fix;
ALTER TABLE patrol_fix RENAME TO patrol_fix_new;
ALTER TABLE patrol_fix_new RENAME CONSTRAINT patrol_fix_once TO patrol_fix_new_once;
ALTER INDEX patrol_fix_geom_idx RENAME TO patrol_fix_new_geom_idx;
ALTER INDEX patrol_fix_at_idx RENAME TO patrol_fix_new_at_idx;
CREATE TABLE patrol_fix (
    staff_id    integer NOT NULL CONSTRAINT patrol_fix_staff_id_fkey REFERENCES staff (id),
    at          timestamptz NOT NULL,
    geom        geometry(Point, 4490) NOT NULL,
    accuracy_m  real CONSTRAINT patrol_fix_accuracy_m_check
                    CHECK (accuracy_m IS NULL OR accuracy_m >= 0),
    crs_in      text,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patrol_fix_once PRIMARY KEY (staff_id, at)
);
INSERT INTO patrol_fix SELECT * FROM patrol_fix_new;
DROP TABLE patrol_fix_new;
CREATE INDEX patrol_fix_geom_idx ON patrol_fix USING gist (geom);
CREATE INDEX patrol_fix_at_idx ON patrol_fix (at);
CREATE TRIGGER patrol_fix_cover_stale AFTER INSERT ON patrol_fix
    REFERENCING NEW TABLE AS new_fixes
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_patrol_cover_stale();
GRANT SELECT, INSERT ON patrol_fix TO citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON patrol_fix FROM citygrid_app;

DROP FUNCTION IF EXISTS citygrid_fill_event_at();
DROP FUNCTION IF EXISTS citygrid_partition_months(regclass, integer, integer);
DROP FUNCTION IF EXISTS citygrid_default_partition(regclass);
DROP FUNCTION IF EXISTS citygrid_month_partition(regclass, date);
DROP FUNCTION IF EXISTS citygrid_partition_privileges(text);
"""


def upgrade() -> None:
    op.execute(FUNCTIONS)
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
