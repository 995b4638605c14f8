"""Grid registry: regions with versioned boundaries, staff and assignments.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- A boundary version is a generation of boundaries (MapIt's term). Rows of region_boundary
-- point at the version that introduced them; activated_at IS NULL means a draft.
CREATE TABLE boundary_version (
    id           serial PRIMARY KEY,
    label        text NOT NULL,
    note         text NOT NULL DEFAULT '',
    source       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz
);

-- The identity of a region: its standard code. What it looks like and where it hangs in the tree
-- are versioned in region_boundary.
CREATE TABLE region (
    id         serial PRIMARY KEY,
    code       text NOT NULL UNIQUE,
    level      text NOT NULL CHECK (level IN ('city', 'street', 'community', 'grid')),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT region_code_matches_level CHECK (
        (level = 'city'      AND code ~ '^[0-9]{6}000000$') OR
        (level = 'street'    AND code ~ '^[0-9]{9}000$' AND code !~ '000000$') OR
        (level = 'community' AND code ~ '^[0-9]{12}$' AND code !~ '000$') OR
        (level = 'grid'      AND code ~ '^[0-9]{12}[0-9]{3}$' AND code !~ '000$')
    )
);

CREATE TABLE region_boundary (
    id         bigserial PRIMARY KEY,
    region_id  integer NOT NULL REFERENCES region (id),
    parent_id  integer REFERENCES region (id),
    version_id integer NOT NULL REFERENCES boundary_version (id),
    geom       geometry(MultiPolygon, 4490) NOT NULL,
    area_m2    double precision NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz,
    CONSTRAINT region_boundary_period CHECK (valid_to IS NULL OR valid_to > valid_from),
    CONSTRAINT region_boundary_valid_geom CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT region_boundary_no_overlapping_periods
        EXCLUDE USING gist (region_id WITH =, tstzrange(valid_from, valid_to) WITH &&)
);
CREATE INDEX region_boundary_geom_idx ON region_boundary USING gist (geom);
CREATE INDEX region_boundary_parent_idx ON region_boundary (parent_id, valid_from);
CREATE INDEX region_boundary_region_idx ON region_boundary (region_id, valid_from);

-- Area in m², always computed in the city's projected CRS (CGCS2000 GK CM 120E), never trusted
-- from the client.
CREATE FUNCTION region_boundary_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    child_level  text;
    parent_level text;
BEGIN
    NEW.area_m2 := ST_Area(ST_Transform(NEW.geom, 4549));
    SELECT level INTO child_level FROM region WHERE id = NEW.region_id;
    IF NEW.parent_id IS NULL THEN
        IF child_level <> 'city' THEN
            RAISE EXCEPTION 'a % must have a parent region', child_level
                USING ERRCODE = 'check_violation';
        END IF;
    ELSE
        SELECT level INTO parent_level FROM region WHERE id = NEW.parent_id;
        IF (child_level, parent_level) NOT IN
           (('street', 'city'), ('community', 'street'), ('grid', 'community')) THEN
            RAISE EXCEPTION 'a % cannot hang under a %', child_level, parent_level
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER region_boundary_before_write
    BEFORE INSERT OR UPDATE ON region_boundary
    FOR EACH ROW EXECUTE FUNCTION region_boundary_before_write();

CREATE TABLE staff (
    id         serial PRIMARY KEY,
    code       text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    phone      text NOT NULL CHECK (phone ~ '^1[0-9]{10}$'),
    role       text NOT NULL CHECK (role IN ('grid_chief', 'full_time', 'part_time',
                                             'community_head', 'street_officer', 'command_duty')),
    status     text NOT NULL DEFAULT 'available'
               CHECK (status IN ('available', 'seconded', 'on_leave')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assignment (
    id         serial PRIMARY KEY,
    staff_id   integer NOT NULL REFERENCES staff (id),
    region_id  integer NOT NULL REFERENCES region (id),
    duty       text NOT NULL CHECK (duty IN ('primary', 'backup', 'head')),
    valid_from timestamptz NOT NULL DEFAULT now(),
    valid_to   timestamptz,
    CONSTRAINT assignment_period CHECK (valid_to IS NULL OR valid_to > valid_from),
    CONSTRAINT assignment_no_duplicate
        EXCLUDE USING gist (staff_id WITH =, region_id WITH =, duty WITH =,
                            tstzrange(valid_from, valid_to) WITH &&)
);
CREATE INDEX assignment_region_idx ON assignment (region_id, valid_from);
CREATE INDEX assignment_staff_idx ON assignment (staff_id);

-- Boundaries in force now. (As of another time: filter region_boundary by the period.)
CREATE VIEW region_current AS
SELECT r.id, r.code, r.level, r.name, b.parent_id, p.code AS parent_code, b.version_id,
       b.geom, b.area_m2, b.valid_from, b.valid_to, b.id AS boundary_id
FROM region r
JOIN region_boundary b ON b.region_id = r.id
LEFT JOIN region p ON p.id = b.parent_id
WHERE b.valid_from <= now() AND (b.valid_to IS NULL OR b.valid_to > now());

-- Every API worker keeps an in-memory locator; any change to what it holds, through the API,
-- the CLI or SQL typed by hand, is announced so that they all refresh.
CREATE FUNCTION citygrid_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('citygrid_change', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER region_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON region
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();
CREATE TRIGGER region_boundary_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON region_boundary
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();
CREATE TRIGGER boundary_version_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON boundary_version
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();
CREATE TRIGGER staff_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON staff
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();
CREATE TRIGGER assignment_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON assignment
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_notify_change();
"""

DOWNGRADE = """
DROP VIEW IF EXISTS region_current;
DROP TABLE IF EXISTS assignment, staff, region_boundary, region, boundary_version CASCADE;
DROP FUNCTION IF EXISTS region_boundary_before_write(), citygrid_notify_change();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
