"""The city as configuration: one ``city_profile`` row that SQL, triggers and Python read.

Until this revision the city's time zone, its metric CRS and the staff phone pattern were
literals in SQL (0001, 0007, 0008, 0011, 0012) and Python. This revision keeps them in a
one-row table and redefines every function and trigger that named them:

* ``city_profile``: the city's code and name (taken from the city region when it is loaded),
  its time zone, its metric CRS (``metric_auto``: the CGCS2000 3° Gauss–Krüger zone of its
  extent, chosen by ``citygrid_gk_zone_srid``; or a given SRID), the staff phone pattern and the
  city's lon/lat extent (the map's first view).
* ``citygrid_tz()``, ``citygrid_metric_srid()``, ``citygrid_phone_pattern()``: STABLE SQL
  functions over it. The statement-level tally triggers (0011) and the patrol stale-note trigger
  (0012) read the zone once per statement into a PL/pgSQL variable, so their per-row work is
  unchanged; ``region_boundary_before_write`` (0001) and ``region_boundary_overlap`` (0007) call
  ``citygrid_metric_srid()``.
* Loading or replacing the current boundary of the city region records its code, name and
  extent in the profile (``citygrid_adopt_city``, only while the profile names no city or names
  this one); with ``metric_auto`` the zone follows the extent.
* A change of the metric SRID recomputes every stored ``area_m2``; a change of the time zone
  rebuilds the incident tallies (their days and months are local); both NOTIFY
  ``citygrid_change, 'city_profile'`` so each API process drops its cached profile.
* The staff phone CHECK of 0001 becomes a trigger against the profile's pattern.

On an existing database the profile is filled from its current city boundary; stored areas are
recomputed only where they differ in the chosen zone.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# CGCS2000 / 3-degree Gauss-Kruger CM 75E ... CM 135E (as gis.crs.gk_zone_srid).
GK3_FIRST_SRID, GK3_FIRST_CM, GK3_LAST_CM = 4534, 75, 135
DEFAULT_TZ = "Asia/Shanghai"  # all of China keeps Beijing time
DEFAULT_PHONE = r"^1[0-9]{10}$"  # mainland mobile numbers

UPGRADE = f"""
CREATE TABLE city_profile (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    code          text CHECK (code ~ '^[0-9]{{12}}$'),
    name          text,
    tz            text NOT NULL DEFAULT '{DEFAULT_TZ}',
    metric_auto   boolean NOT NULL DEFAULT true,
    metric_srid   integer,
    phone_pattern text NOT NULL DEFAULT '{DEFAULT_PHONE}',
    west          float8,
    south         float8,
    east          float8,
    north         float8,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT city_profile_extent CHECK (
        (west IS NULL AND south IS NULL AND east IS NULL AND north IS NULL)
        OR (west <= east AND south <= north)),
    CONSTRAINT city_profile_metric CHECK (metric_auto OR metric_srid IS NOT NULL)
);
GRANT SELECT ON city_profile TO citygrid_app;

-- The CGCS2000 3-degree Gauss-Kruger zone (EPSG, no zone prefix in the easting) whose central
-- meridian is nearest lon, clamped to the zones EPSG defines for China.
CREATE FUNCTION citygrid_gk_zone_srid(lon float8) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT {GK3_FIRST_SRID} + (least(greatest(3 * floor(lon / 3 + 0.5)::int, {GK3_FIRST_CM}),
                                      {GK3_LAST_CM}) - {GK3_FIRST_CM}) / 3
$fn$;

CREATE FUNCTION citygrid_tz() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT tz FROM city_profile
$fn$;
CREATE FUNCTION citygrid_metric_srid() RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT metric_srid FROM city_profile
$fn$;
CREATE FUNCTION citygrid_phone_pattern() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT phone_pattern FROM city_profile
$fn$;

CREATE FUNCTION citygrid_profile_before_write() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM now() AT TIME ZONE NEW.tz;  -- an unknown zone raises invalid_parameter_value
    PERFORM '' ~ NEW.phone_pattern;     -- an invalid pattern raises invalid_regular_expression
    IF NEW.metric_auto AND NEW.west IS NOT NULL THEN
        NEW.metric_srid := citygrid_gk_zone_srid((NEW.west + NEW.east) / 2);
    END IF;
    IF NEW.metric_srid IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM spatial_ref_sys WHERE srid = NEW.metric_srid
               AND proj4text LIKE '%+units=m%' AND proj4text NOT LIKE '%+proj=longlat%') THEN
        RAISE EXCEPTION 'SRID % is not a projected CRS in metres', NEW.metric_srid
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $fn$;
CREATE TRIGGER city_profile_before_write BEFORE INSERT OR UPDATE ON city_profile
    FOR EACH ROW EXECUTE FUNCTION citygrid_profile_before_write();

-- A new metric CRS re-measures every boundary (region_boundary_before_write computes the area;
-- the boundary being written by the statement that changed the profile is skipped: it is measured
-- after); a new time zone rebuilds the tallies. Every change is announced.
CREATE FUNCTION citygrid_profile_after_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.metric_srid IS DISTINCT FROM OLD.metric_srid AND NEW.metric_srid IS NOT NULL THEN
        UPDATE region_boundary SET area_m2 = 0
         WHERE id <> coalesce(nullif(current_setting('citygrid.boundary_in_write', true), '')
                              ::bigint, 0);
    END IF;
    IF NEW.tz IS DISTINCT FROM OLD.tz THEN
        PERFORM citygrid_tally_rebuild();
    END IF;
    PERFORM pg_notify('citygrid_change', 'city_profile');
    RETURN NULL;
END $fn$;
CREATE TRIGGER city_profile_after_update AFTER UPDATE ON city_profile
    FOR EACH ROW EXECUTE FUNCTION citygrid_profile_after_update();

-- The city region's current boundary names the city and gives its extent. SECURITY DEFINER: an
-- import through the API (as citygrid_app) may load the city; the profile stays read-only to it.
CREATE FUNCTION citygrid_adopt_city(boundary_id bigint, city_code text, city_name text,
                                    g geometry) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
    p city_profile%ROWTYPE;
BEGIN
    SELECT * INTO p FROM city_profile;
    IF p.code IS NOT NULL AND p.code <> city_code THEN
        RETURN;  -- the profile names another city: this region is not the deployment's city
    END IF;
    IF p.code IS NOT DISTINCT FROM city_code AND p.name IS NOT DISTINCT FROM city_name
       AND p.west = ST_XMin(g) AND p.south = ST_YMin(g) AND p.east = ST_XMax(g)
       AND p.north = ST_YMax(g) THEN
        RETURN;
    END IF;
    PERFORM set_config('citygrid.boundary_in_write', boundary_id::text, true);
    UPDATE city_profile SET code = city_code, name = city_name, west = ST_XMin(g),
                            south = ST_YMin(g), east = ST_XMax(g), north = ST_YMax(g);
    PERFORM set_config('citygrid.boundary_in_write', '', true);
END $fn$;

-- 0001's trigger, with the area in the profile's metric CRS.
CREATE OR REPLACE FUNCTION region_boundary_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    child_level  text;
    child_code   text;
    child_name   text;
    parent_level text;
BEGIN
    SELECT level, code, name INTO child_level, child_code, child_name
      FROM region WHERE id = NEW.region_id;
    IF child_level = 'city' AND NEW.valid_to IS NULL
       AND (TG_OP = 'INSERT' OR ST_AsBinary(NEW.geom) IS DISTINCT FROM ST_AsBinary(OLD.geom)) THEN
        PERFORM citygrid_adopt_city(NEW.id, child_code, child_name, NEW.geom);
    END IF;
    NEW.area_m2 := ST_Area(ST_Transform(NEW.geom, citygrid_metric_srid()));
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

-- 0007's sibling overlap, measured in the profile's metric CRS.
CREATE OR REPLACE FUNCTION region_boundary_overlap(me region_boundary)
RETURNS TABLE (code text, other text, area double precision)
LANGUAGE sql STABLE AS $$
    SELECT r1.code, r2.code, x.a
      FROM region_boundary o
      JOIN region r1 ON r1.id = me.region_id
      JOIN region r2 ON r2.id = o.region_id
      CROSS JOIN LATERAL (
          SELECT ST_Area(ST_Transform(ST_CollectionExtract(ST_Intersection(me.geom, o.geom), 3),
                                      citygrid_metric_srid())) AS a) x
     WHERE me.parent_id IS NOT NULL AND ST_IsValid(me.geom)
       AND o.parent_id = me.parent_id AND o.id <> me.id AND o.region_id <> me.region_id
       AND o.geom && me.geom
       AND tstzrange(o.valid_from, o.valid_to) && tstzrange(me.valid_from, me.valid_to)
       AND ST_IsValid(o.geom) AND ST_Relate(o.geom, me.geom, '2********')
       AND x.a > 1.0
     LIMIT 1
$$;

-- 0012's stale notes, on the city's days.
CREATE OR REPLACE FUNCTION citygrid_patrol_cover_stale() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    city_tz text := citygrid_tz();
BEGIN
    INSERT INTO patrol_cover_stale (day, x0, y0, x1, y1)
    SELECT (n.at AT TIME ZONE city_tz)::date, min(ST_X(n.geom)), min(ST_Y(n.geom)),
           max(ST_X(n.geom)), max(ST_Y(n.geom))
    FROM new_fixes n GROUP BY 1;
    RETURN NULL;
END $fn$;

-- Staff phones: the profile's pattern instead of 0001's CHECK.
ALTER TABLE staff DROP CONSTRAINT IF EXISTS staff_phone_check;
CREATE FUNCTION citygrid_staff_phone_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.phone IS NULL OR NOT NEW.phone ~ citygrid_phone_pattern() THEN
        RAISE EXCEPTION 'phone % does not match the city''s pattern %', NEW.phone,
                        citygrid_phone_pattern()
            USING ERRCODE = 'check_violation', CONSTRAINT = 'staff_phone_check';
    END IF;
    RETURN NEW;
END $fn$;
CREATE TRIGGER staff_phone_check BEFORE INSERT OR UPDATE OF phone ON staff
    FOR EACH ROW EXECUTE FUNCTION citygrid_staff_phone_check();

-- The profile of an existing database: its current city boundary (none: filled on first load).
INSERT INTO city_profile (code, name, west, south, east, north)
SELECT c.code, c.name, ST_XMin(c.geom), ST_YMin(c.geom), ST_XMax(c.geom), ST_YMax(c.geom)
  FROM (SELECT code, name, geom FROM region_current WHERE level = 'city'
        ORDER BY code LIMIT 1) c
 RIGHT JOIN (SELECT 1) one ON true;
-- Areas stored in another CRS than the chosen zone are measured again (none when they agree).
UPDATE region_boundary SET area_m2 = 0
 WHERE citygrid_metric_srid() IS NOT NULL
   AND abs(area_m2 - ST_Area(ST_Transform(geom, citygrid_metric_srid())))
       > 1e-9 * greatest(area_m2, 1);
"""


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"citygrid_rev_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tally_functions() -> str:
    """0011's tally trigger functions and rebuild, on the profile's time zone: read once per
    statement into ``city_tz`` (a plan parameter), so the per-row work is what it was."""
    rev = _module("0011_intake_tally.py")
    sql = rev.UPGRADE.replace(f"'{rev.TZ}'", "city_tz")
    declare = "AS $fn$\nDECLARE\n    city_tz text := citygrid_tz();\nBEGIN"
    sql = sql.replace("AS $fn$\nBEGIN", declare)
    assert rev.TZ not in sql and sql.count(declare) == 4
    return sql


def _old_function(module: str, name: str, *, opener: str = "CREATE FUNCTION",
                  closer: str = "$$;") -> str:
    """The text of ``name`` as an earlier revision created it (for the downgrade)."""
    text = _module(module).UPGRADE
    start = text.index(f"{opener} {name}(")
    end = text.index(closer, start) + len(closer)
    return "CREATE OR REPLACE FUNCTION" + text[start + len(opener):end]


def upgrade() -> None:
    op.execute(UPGRADE)
    op.execute(_tally_functions())


def downgrade() -> None:
    op.execute(_module("0011_intake_tally.py").UPGRADE)
    op.execute(_old_function("0001_registry.py", "region_boundary_before_write"))
    op.execute(_old_function("0007_plans.py", "region_boundary_overlap"))
    op.execute(_old_function("0012_patrol_cover_stale.py", "citygrid_patrol_cover_stale",
                             opener="CREATE OR REPLACE FUNCTION", closer="$fn$;"))
    phone = re.search(r"phone\s+text NOT NULL CHECK \((.*?)\),\n",
                      _module("0001_registry.py").UPGRADE)
    assert phone is not None
    op.execute(f"""
DROP TRIGGER IF EXISTS staff_phone_check ON staff;
DROP FUNCTION IF EXISTS citygrid_staff_phone_check();
ALTER TABLE staff ADD CONSTRAINT staff_phone_check CHECK ({phone.group(1)});
DROP TRIGGER IF EXISTS city_profile_after_update ON city_profile;
DROP TRIGGER IF EXISTS city_profile_before_write ON city_profile;
DROP FUNCTION IF EXISTS citygrid_adopt_city(bigint, text, text, geometry);
DROP FUNCTION IF EXISTS citygrid_profile_after_update();
DROP FUNCTION IF EXISTS citygrid_profile_before_write();
DROP FUNCTION IF EXISTS citygrid_phone_pattern();
DROP FUNCTION IF EXISTS citygrid_metric_srid();
DROP FUNCTION IF EXISTS citygrid_tz();
DROP FUNCTION IF EXISTS citygrid_gk_zone_srid(float8);
DROP TABLE IF EXISTS city_profile;
""")
