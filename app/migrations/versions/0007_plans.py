"""Redraw plans: drafts of boundary changes, and the guard against overlapping active siblings.

- ``plan``: one draft per planner's change set over a street or community; ``revision`` gives its
  ETag; ``base_boundaries`` are the boundaries in force under the region when it was opened, so
  activation can tell whether someone else changed them since (409).
- ``plan_edit``: every accepted edit, in order, with its payload (append-only for the app).
- ``plan_region``: the draft geometries (communities and grids of the plan's region); a retired
  region keeps a row with no geometry.
- ``boundary_version`` gains ``effective_at`` (when its boundaries take effect; activation may
  schedule it) and ``plan_id``.
- ``region_boundary_no_overlapping_siblings``: a constraint trigger, DEFERRABLE INITIALLY
  DEFERRED, refusing a boundary that overlaps a sibling (same parent, overlapping validity) by
  more than 1 m² (EPSG:4549). Deferred, so an activation may pass through intermediate states
  inside its transaction; it also refuses raw SQL or QGIS edits at their commit. A plain row
  trigger on region_boundary notes only the boundaries that overlap when written
  (``region_boundary_suspect``); the deferred trigger sits on that table and judges each suspect
  again at commit. Writes that overlap nothing leave no pending trigger events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE plan (
    id                   serial PRIMARY KEY,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region_id            integer NOT NULL REFERENCES region (id),
    region_code          text NOT NULL,
    note                 text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    status               text NOT NULL DEFAULT 'draft'
                         CHECK (status IN ('draft', 'activated', 'discarded')),
    revision             integer NOT NULL DEFAULT 1,
    base_version         integer NOT NULL,
    base_boundaries      bigint[] NOT NULL,
    restored_from        integer REFERENCES boundary_version (id),
    problems             jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_by           text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    activated_version_id integer REFERENCES boundary_version (id),
    activated_at         timestamptz,
    effective_at         timestamptz
);
CREATE INDEX plan_region_code_idx ON plan (region_code text_pattern_ops);
CREATE INDEX plan_status_idx ON plan (status);

CREATE TABLE plan_edit (
    id          bigserial PRIMARY KEY,
    plan_id     integer NOT NULL REFERENCES plan (id),
    region_code text NOT NULL,
    seq         integer NOT NULL,
    op          text NOT NULL,
    payload     jsonb NOT NULL,
    summary     text NOT NULL,
    by          text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plan_edit_once UNIQUE (plan_id, seq)
);

CREATE TABLE plan_region (
    id                 bigserial PRIMARY KEY,
    plan_id            integer NOT NULL REFERENCES plan (id),
    code               text NOT NULL,
    level              text NOT NULL CHECK (level IN ('community', 'grid')),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_code        text NOT NULL,
    origin_code        text,
    source_boundary_id bigint REFERENCES region_boundary (id),
    geom               geometry(MultiPolygon, 4490),
    area_m2            double precision,
    change             text NOT NULL
                       CHECK (change IN ('unchanged', 'changed', 'new', 'retired')),
    CONSTRAINT plan_region_retired_has_no_geom CHECK ((change = 'retired') = (geom IS NULL))
);
CREATE UNIQUE INDEX plan_region_live_code ON plan_region (plan_id, level, code)
    WHERE change <> 'retired';
CREATE INDEX plan_region_plan_idx ON plan_region (plan_id);
CREATE INDEX plan_region_geom_idx ON plan_region USING gist (geom);

ALTER TABLE boundary_version ADD COLUMN effective_at timestamptz,
                             ADD COLUMN plan_id integer REFERENCES plan (id);
UPDATE boundary_version SET effective_at = activated_at WHERE effective_at IS NULL;

-- The locator looks up the next scheduled start or end of a boundary or assignment after every
-- reload (app/locator_service.py): a scheduled activation must switch it when it comes.
CREATE INDEX region_boundary_valid_from_idx ON region_boundary (valid_from);
CREATE INDEX region_boundary_valid_to_idx ON region_boundary (valid_to);
CREATE INDEX assignment_valid_from_idx ON assignment (valid_from);
CREATE INDEX assignment_valid_to_idx ON assignment (valid_to);

CREATE TRIGGER plan_audit AFTER INSERT OR UPDATE OR DELETE ON plan
    FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER plan_edit_audit AFTER INSERT OR UPDATE OR DELETE ON plan_edit
    FOR EACH ROW EXECUTE FUNCTION audit_row();

GRANT SELECT, INSERT, UPDATE ON plan TO citygrid_app;
GRANT SELECT, INSERT ON plan_edit TO citygrid_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON plan_region TO citygrid_app;
-- The default privileges of 0002 would give more: plans are discarded, never deleted, and the
-- edit log is append-only.
REVOKE DELETE, TRUNCATE ON plan FROM citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON plan_edit FROM citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;

-- The guard, in two steps so that writes which overlap nothing queue no deferred work (a
-- transaction may then still ALTER region_boundary, which pending trigger events forbid):
-- 1. after each write of a boundary, if it overlaps a sibling now, it is noted as a suspect;
-- 2. at commit (or SET CONSTRAINTS region_boundary_no_overlapping_siblings IMMEDIATE) each
--    suspect is judged again as it is then, so an activation may pass through intermediate
--    states; if it still overlaps, the transaction is refused.
-- Siblings: same parent, overlapping validity periods; overlap: more than 1 m² (EPSG:4549) of
-- shared area. Invalid geometries are left to the CHECK constraint.
CREATE FUNCTION region_boundary_overlap(me region_boundary)
RETURNS TABLE (code text, other text, area double precision)
LANGUAGE sql STABLE AS $$
    SELECT r1.code, r2.code, x.a
      FROM region_boundary o
      JOIN region r1 ON r1.id = me.region_id
      JOIN region r2 ON r2.id = o.region_id
      CROSS JOIN LATERAL (
          SELECT ST_Area(ST_Transform(ST_CollectionExtract(ST_Intersection(me.geom, o.geom), 3),
                                      4549)) AS a) x
     WHERE me.parent_id IS NOT NULL AND ST_IsValid(me.geom)
       AND o.parent_id = me.parent_id AND o.id <> me.id AND o.region_id <> me.region_id
       AND o.geom && me.geom
       AND tstzrange(o.valid_from, o.valid_to) && tstzrange(me.valid_from, me.valid_to)
       AND ST_IsValid(o.geom) AND ST_Relate(o.geom, me.geom, '2********')
       AND x.a > 1.0
     LIMIT 1
$$;

CREATE TABLE region_boundary_suspect (boundary_id bigint NOT NULL);
GRANT SELECT, INSERT, DELETE ON region_boundary_suspect TO citygrid_app;

CREATE FUNCTION region_boundary_watch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM region_boundary_overlap(NEW)) THEN
        INSERT INTO region_boundary_suspect (boundary_id) VALUES (NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER region_boundary_overlap_watch
    AFTER INSERT OR UPDATE OF geom, parent_id, valid_from, valid_to ON region_boundary
    FOR EACH ROW EXECUTE FUNCTION region_boundary_watch();

CREATE FUNCTION region_boundary_sibling_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me    region_boundary%ROWTYPE;
    clash record;
BEGIN
    DELETE FROM region_boundary_suspect WHERE boundary_id = NEW.boundary_id;
    SELECT * INTO me FROM region_boundary WHERE id = NEW.boundary_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO clash FROM region_boundary_overlap(me);
    IF FOUND THEN
        RAISE EXCEPTION 'boundary of % overlaps its sibling % by % m² while both are in force',
            clash.code, clash.other, round(clash.area::numeric, 1)
            USING ERRCODE = 'exclusion_violation',
                  CONSTRAINT = 'region_boundary_no_overlapping_siblings',
                  HINT = 'Siblings (same parent) may share edges, not area; close one first.';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER region_boundary_no_overlapping_siblings
    AFTER INSERT ON region_boundary_suspect
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION region_boundary_sibling_guard();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS region_boundary_overlap_watch ON region_boundary;
DROP TABLE IF EXISTS region_boundary_suspect;
DROP INDEX IF EXISTS region_boundary_valid_from_idx, region_boundary_valid_to_idx,
    assignment_valid_from_idx, assignment_valid_to_idx;
DROP FUNCTION IF EXISTS region_boundary_sibling_guard(), region_boundary_watch(),
    region_boundary_overlap(region_boundary);
ALTER TABLE boundary_version DROP COLUMN IF EXISTS plan_id, DROP COLUMN IF EXISTS effective_at;
DROP TABLE IF EXISTS plan_region, plan_edit, plan CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
