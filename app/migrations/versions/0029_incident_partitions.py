"""``incident`` partitioned by month on ``received_at``, its identity in a registry ``incident_key``.

``incident`` becomes ``PARTITION BY RANGE (received_at)``, one partition per UTC month
(``incident_p2026_12``) plus ``incident_default``, created by 0027's ``citygrid_month_partition``
(made generic here: it reads the partition key column from the catalogue instead of assuming
``at``). A query with a window on ``received_at`` (the month's list, heat, assessment) touches
only its months.

A unique constraint of a partitioned table must contain the partition key, so neither
``incident(id)`` nor ``(source, external_id)`` could stay unique on ``incident`` itself. They
move to a small unpartitioned registry:

* ``incident_key (id PRIMARY KEY, received_at, source, external_id)`` with the idempotency key
  ``incident_once_per_source UNIQUE (source, external_id)`` (same constraint name as before,
  so a duplicate raises the same error). Every foreign key that referenced ``incident(id)``
  (events, merges, ``merged_into``, photos, receipts, evidence checks, reveals, call-ups) now
  references ``incident_key(id)``: same names, same columns, nothing to change for writers.
* ``incident`` keeps the key in step by triggers, so writers do not change:
  ``citygrid_incident_key_insert`` (BEFORE INSERT, row) registers the row's key, or accepts a
  key the writer registered first with the same id/source/external id/received_at (intake does
  that for ``ON CONFLICT``); ``citygrid_incident_key_update`` (BEFORE UPDATE, row) refuses a
  change of ``id`` and mirrors ``received_at``/``source``/``external_id`` (a change of month
  moves the row to another partition; the key stays, so references hold);
  ``citygrid_incident_key_delete`` (AFTER DELETE, statement, transition table) removes the
  keys of deleted incidents (a referenced one still raises ``foreign_key_violation``, as
  before); ``citygrid_incident_key_truncate`` (AFTER TRUNCATE) empties the keys and the
  tables that reference them (``TRUNCATE incident .. CASCADE`` did that; a plain ``TRUNCATE
  incident``, an error before, now does it too).
* There is no foreign key from ``incident(id)`` to ``incident_key(id)``: PostgreSQL cannot
  truncate ``incident`` again from its own TRUNCATE trigger, which that key would require.
  The insert trigger is what guarantees every incident has its key.
* The primary key of ``incident`` is ``(id, received_at)``; ``(source, external_id)`` keeps a
  plain index for look-ups.

Indexes, check constraints, the outgoing foreign keys, grants and every trigger (audit, map
notify, map tallies 0008, assessment tallies 0028) are read from the catalogue and recreated on
the partitioned parent, so nothing is lost by omission. Rows are copied before the triggers
exist (the tallies already count them). Downgrade puts back an unpartitioned ``incident`` with
``PRIMARY KEY (id)``, ``incident_once_per_source`` and every reference to ``incident(id)``;
a month left detached (a plain ``incident_pYYYY_MM`` table) is not folded back.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection, text

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

# 0027's function, with the partition key column read from the catalogue.
MONTH_PARTITION = r"""
CREATE OR REPLACE FUNCTION citygrid_partition_key(parent regclass)
RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT a.attname::text FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = parent
$fn$;

CREATE OR REPLACE FUNCTION citygrid_month_partition(parent regclass, month date)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    m0    date := date_trunc('month', month)::date;
    lo    timestamptz := (m0::timestamp AT TIME ZONE 'UTC');
    hi    timestamptz := ((m0 + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    base  text := (SELECT c.relname FROM pg_class c WHERE c.oid = parent);
    col   text := coalesce(citygrid_partition_key(parent), 'at');
    part  text := format('%s_p%s', base, to_char(m0, 'YYYY_MM'));
    dflt  text := base || '_default';
    moved bigint := 0;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;  -- attached, or detached and kept: either way not ours to create
    END IF;
    IF to_regclass(dflt) IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FROM %I WHERE %I >= $1 AND %I < $2', dflt, col, col)
            INTO moved USING lo, hi;
    END IF;
    IF moved > 0 THEN
        -- Rows of this month wait in the default partition: move them into a table of their
        -- own, then attach it (CREATE .. PARTITION OF would fail on them).
        EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part, parent);
        EXECUTE format('WITH m AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                       'INSERT INTO %I SELECT * FROM m', dflt, col, col, part) USING lo, hi;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       parent, part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       part, parent, lo, hi);
    END IF;
    PERFORM citygrid_partition_privileges(part);
    RETURN part;
END $fn$;
"""

KEY_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION citygrid_incident_key_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- One probe of the key's primary key, by its arbiter: no SELECT whose cached generic plan could
-- be a sequential scan (planned while incident_key was empty after a VACUUM, one bulk INSERT
-- of 200,000 rows then scanned the growing table once a row: quadratic). A row intake claimed
-- first (the usual path) conflicts, and the no-op update's WHERE holds only if its key differs;
-- xmax = 0 tells a fresh insert from that update.
DECLARE
    inserted boolean;
BEGIN
    INSERT INTO incident_key AS k (id, received_at, source, external_id)
    VALUES (NEW.id, NEW.received_at, NEW.source, NEW.external_id)
    ON CONFLICT (id) DO UPDATE SET id = k.id
     WHERE (k.received_at, k.source, k.external_id)
           IS DISTINCT FROM (EXCLUDED.received_at, EXCLUDED.source, EXCLUDED.external_id)
    RETURNING (k.xmax = 0) INTO inserted;
    IF FOUND AND NOT inserted THEN
        RAISE EXCEPTION 'incident % is registered with another key', NEW.id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'incident_key_pkey',
                  DETAIL = format('Key (id)=(%s) already exists.', NEW.id);
    END IF;
    RETURN NEW;
END $fn$;

CREATE OR REPLACE FUNCTION citygrid_incident_key_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'an incident keeps its id (%)', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.received_at, NEW.source, NEW.external_id)
       IS DISTINCT FROM (OLD.received_at, OLD.source, OLD.external_id) THEN
        UPDATE incident_key SET received_at = NEW.received_at, source = NEW.source,
                                external_id = NEW.external_id
         WHERE id = OLD.id;
    END IF;
    RETURN NEW;
END $fn$;

-- A row that changes month moves partition: PostgreSQL fires the UPDATE statement triggers
-- (not DELETE) for it, so its key is not removed here.
CREATE OR REPLACE FUNCTION citygrid_incident_key_delete() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM incident_key k USING old_rows o WHERE k.id = o.id;
    RETURN NULL;
END $fn$;

-- TRUNCATE incident: the keys go, and with them (as TRUNCATE incident CASCADE did) every table
-- that refers to them. Not TRUNCATE incident_key CASCADE: that would reach incident itself
-- (merged_into), which PostgreSQL cannot truncate again from its own trigger; nor any table the
-- same TRUNCATE statement already holds ("in use"): those are empty, a DELETE clears the rest.
CREATE OR REPLACE FUNCTION citygrid_incident_key_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    deps text[] := ARRAY(SELECT DISTINCT conrelid::regclass::text FROM pg_constraint
                          WHERE confrelid = 'incident_key'::regclass AND contype = 'f'
                            AND conparentid = 0 AND conrelid <> 'incident'::regclass
                          ORDER BY 1);
    dep  text;
BEGIN
    IF cardinality(deps) > 0 THEN
        BEGIN
            EXECUTE 'TRUNCATE ' || array_to_string(deps, ', ') || ' CASCADE';
        EXCEPTION WHEN object_in_use THEN
            FOREACH dep IN ARRAY deps LOOP
                BEGIN
                    EXECUTE format('TRUNCATE %s CASCADE', dep);
                EXCEPTION WHEN object_in_use THEN
                    EXECUTE format('DELETE FROM %s', dep);
                END;
            END LOOP;
        END;
    END IF;
    DELETE FROM incident_key;
    RETURN NULL;
END $fn$;
"""

KEY_TRIGGERS = """
CREATE TRIGGER incident_key_insert BEFORE INSERT ON incident
    FOR EACH ROW EXECUTE FUNCTION citygrid_incident_key_insert();
CREATE TRIGGER incident_key_update BEFORE UPDATE OF id, received_at, source, external_id
    ON incident FOR EACH ROW EXECUTE FUNCTION citygrid_incident_key_update();
CREATE TRIGGER incident_key_delete AFTER DELETE ON incident
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION citygrid_incident_key_delete();
CREATE TRIGGER incident_key_truncate AFTER TRUNCATE ON incident
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_incident_key_truncate();
"""
KEY_TRIGGER_NAMES = ("incident_key_insert", "incident_key_update", "incident_key_delete",
                     "incident_key_truncate")
EXTRA_INDEX = "incident_source_external_idx"


def _rows(conn: Connection, sql: str, **params: object) -> list[tuple]:
    return [tuple(r) for r in conn.execute(text(sql), params).all()]


def _catalogue(conn: Connection, referenced: str) -> dict[str, list[tuple]]:
    """What ``incident`` has that a new table must get again: its non-key indexes, triggers,
    outgoing foreign keys, grants, and the (top-level) foreign keys referencing ``referenced``."""
    return {
        "indexes": _rows(conn, (
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'incident'::regclass AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
            "AND k.conrelid = i.indrelid) AND c.relname <> :extra ORDER BY 1"),
            extra=EXTRA_INDEX),
        "triggers": _rows(conn, (
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = 'incident'::regclass AND NOT tgisinternal "
            "AND NOT (tgname = ANY(:mine)) ORDER BY tgname"), mine=list(KEY_TRIGGER_NAMES)),
        "fks_out": _rows(conn, (
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'incident'::regclass AND contype = 'f' ORDER BY 1")),
        "fks_in": _rows(conn, (
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE confrelid = CAST(:r AS regclass) AND contype = 'f' "
            "AND conparentid = 0 AND conrelid <> 'incident'::regclass ORDER BY 1, 2"),
            r=referenced),
        "grants": _rows(conn, (
            "SELECT a.grantee::regrole::text, string_agg(a.privilege_type, ', ') "
            "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'incident'::regclass "
            "AND a.grantee <> c.relowner AND a.grantee <> 0 GROUP BY 1")),
    }


def _rename_indexes(conn: Connection, suffix: str) -> None:
    for (name,) in _rows(conn, (
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'incident'::regclass")):
        conn.execute(text(f'ALTER INDEX "{name}" RENAME TO "{name}{suffix}"'))


def _months_sql(old: str) -> str:
    return (f"SELECT citygrid_month_partition('incident', m::date) FROM ("
            f"SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC') "
            f"- interval '24 months', date_trunc('month', now() AT TIME ZONE 'UTC') "
            f"+ interval '3 months', interval '1 month') AS m UNION "
            f"SELECT DISTINCT date_trunc('month', received_at AT TIME ZONE 'UTC') FROM {old}"
            f") s ORDER BY 1")


def _rebuild(conn: Connection, cat: dict[str, list[tuple]], src: str, dst: str) -> None:
    """Indexes, outgoing foreign keys, grants and triggers of ``cat`` on the new ``incident``;
    references to ``src`` (``incident(id)`` or ``incident_key(id)``) pointed at ``dst``."""
    for _, ddl in cat["indexes"]:
        conn.execute(text(ddl.replace(" ON ONLY public.incident ", " ON public.incident ")))
    for name, ddl in cat["fks_out"]:
        conn.execute(text(f'ALTER TABLE incident ADD CONSTRAINT "{name}" '
                          + ddl.replace(f"REFERENCES {src}(id)", f"REFERENCES {dst}(id)")))
    for table, name, ddl in cat["fks_in"]:
        conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" '
                          + ddl.replace(f"REFERENCES {src}(id)", f"REFERENCES {dst}(id)")))
    for grantee, privileges in cat["grants"]:
        conn.execute(text(f'GRANT {privileges} ON incident TO "{grantee}"'))
    for _, ddl in cat["triggers"]:
        conn.execute(text(ddl))


# audit_row (0002 .. 0023), edited where it names the entity and the action: a row trigger on a
# partition runs with the partition's TG_TABLE_NAME, so the entity comes from the trigger's
# argument (``audit_row('incident')``); and an UPDATE that moves a row to another month's
# partition reaches the row triggers as a DELETE (PostgreSQL fires no AFTER UPDATE row trigger
# for it), so a "deleted" row whose id is still in the table is logged as the update it was.
AUDIT_EDITS = (
    ("    who     record;\n",
     "    who     record;\n    op      text := lower(TG_OP);\n"),
    ("BEGIN\n    old_row := old_row - 'password_hash'",
     "BEGIN\n    IF TG_OP = 'DELETE' AND TG_NARGS > 0 THEN  -- 0029: moved to another partition?\n"
     "        EXECUTE format('SELECT to_jsonb(t) FROM %I t WHERE id = $1', TG_ARGV[0])\n"
     "            INTO new_row USING OLD.id;\n"
     "        IF new_row IS NOT NULL THEN\n"
     "            op := 'update';\n"
     "            row_now := new_row;\n"
     "        END IF;\n"
     "    END IF;\n"
     "    old_row := old_row - 'password_hash'"),
    ("IF TG_OP = 'UPDATE' AND old_row = new_row THEN",
     "IF op = 'update' AND old_row = new_row THEN"),
    ("lower(TG_OP), TG_TABLE_NAME, key", "op, coalesce(TG_ARGV[0], TG_TABLE_NAME), key"),
)


def _audit_entity(conn: Connection, cat: dict[str, list[tuple]], up: bool) -> None:
    """Edit audit_row (see AUDIT_EDITS) and give the incident's audit trigger its argument."""
    ddl = conn.execute(text("SELECT pg_get_functiondef('audit_row'::regproc)")).scalar_one()
    for old, new in AUDIT_EDITS if up else [(b, a) for a, b in reversed(AUDIT_EDITS)]:
        if old not in ddl:
            raise RuntimeError(f"audit_row() is not as 0029 expects: {old.strip()[:60]!r}")
        ddl = ddl.replace(old, new, 1)
    conn.execute(text(ddl))
    a, b = ("audit_row()", "audit_row('incident')")
    cat["triggers"] = [(n, d.replace(a, b) if up else d.replace(b, a))
                       for n, d in cat["triggers"]]


def upgrade() -> None:
    conn = op.get_bind()
    conn.execute(text(MONTH_PARTITION))
    cat = _catalogue(conn, "incident")
    _audit_entity(conn, cat, up=True)
    for table, name, _ in cat["fks_in"]:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in cat["fks_out"]:
        conn.execute(text(f'ALTER TABLE incident DROP CONSTRAINT "{name}"'))

    conn.execute(text("""
        CREATE TABLE incident_key (
            id          bigint PRIMARY KEY,
            received_at timestamptz NOT NULL,
            source      text NOT NULL,
            external_id text NOT NULL
        );
        INSERT INTO incident_key SELECT id, received_at, source, external_id FROM incident;
        ALTER TABLE incident DROP CONSTRAINT incident_once_per_source;
        ALTER TABLE incident_key ADD CONSTRAINT incident_once_per_source
            UNIQUE (source, external_id);
    """))
    _rename_indexes(conn, "_old")
    conn.execute(text("""
        ALTER TABLE incident RENAME TO incident_old;
        CREATE TABLE incident (LIKE incident_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                               INCLUDING STORAGE INCLUDING COMMENTS)
            PARTITION BY RANGE (received_at);
        ALTER TABLE incident ADD CONSTRAINT incident_pkey PRIMARY KEY (id, received_at);
    """))
    conn.execute(text(_months_sql("incident_old")))
    conn.execute(text("""
        SELECT citygrid_default_partition('incident');
        INSERT INTO incident SELECT * FROM incident_old;
        ALTER SEQUENCE incident_id_seq OWNED BY incident.id;
        DROP TABLE incident_old;
    """))
    conn.execute(text(f"CREATE INDEX {EXTRA_INDEX} ON incident (source, external_id)"))
    _rebuild(conn, cat, "incident", "incident_key")
    conn.execute(text(KEY_FUNCTIONS))
    conn.execute(text(KEY_TRIGGERS))
    conn.execute(text("GRANT SELECT, INSERT, UPDATE, DELETE ON incident_key TO citygrid_app"))
    conn.execute(text("ANALYZE incident, incident_key"))


def downgrade() -> None:
    conn = op.get_bind()
    cat = _catalogue(conn, "incident_key")
    _audit_entity(conn, cat, up=False)
    for table, name, _ in cat["fks_in"]:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in cat["fks_out"]:
        conn.execute(text(f'ALTER TABLE incident DROP CONSTRAINT "{name}"'))
    _rename_indexes(conn, "_new")
    conn.execute(text("""
        ALTER TABLE incident RENAME TO incident_new;
        CREATE TABLE incident (LIKE incident_new INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                               INCLUDING STORAGE INCLUDING COMMENTS);
        INSERT INTO incident SELECT * FROM incident_new;
        ALTER SEQUENCE incident_id_seq OWNED BY incident.id;
        DROP TABLE incident_new;
        ALTER TABLE incident ADD CONSTRAINT incident_pkey PRIMARY KEY (id);
        ALTER TABLE incident_key DROP CONSTRAINT incident_once_per_source;
        ALTER TABLE incident ADD CONSTRAINT incident_once_per_source UNIQUE (source, external_id);
    """))
    _rebuild(conn, cat, "incident_key", "incident")
    conn.execute(text("""
        DROP TABLE incident_key;
        DROP FUNCTION IF EXISTS citygrid_incident_key_insert();
        DROP FUNCTION IF EXISTS citygrid_incident_key_update();
        DROP FUNCTION IF EXISTS citygrid_incident_key_delete();
        DROP FUNCTION IF EXISTS citygrid_incident_key_truncate();
        ANALYZE incident;
    """))
    # citygrid_month_partition stays generic: it still serves 0027's tables (key column "at").
