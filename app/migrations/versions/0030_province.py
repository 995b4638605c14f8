"""A province above the city: one deployment for many cities, each measured in its own zone.

Issue 20. Until this revision the region tree was city > street > community > grid and the one
``city_profile`` row named the city. Now:

* a ``province`` level above ``city``. Its code is ``^[0-9]{2}0{10}$`` (GB/T 2260: a 6-digit
  ``NN0000`` is always a province), so such a code is no longer a city code. A city hangs under
  a province whose two digits it shares, or under nothing (single-city deployments are
  unchanged); a province has no parent.
* ``city_profile`` stays the deployment's row, taken from the ROOT region: the province when one
  is loaded (it takes over from a city of its own two digits), else the city. Its extent is then
  the province's, and its metric CRS the zone of the province's centre.
* ``city_metric(code, metric_srid)``: each city's own 3° Gauss-Krüger zone, from the longitude of
  its outline's centroid, noted by the region trigger whenever a city's current boundary is
  written. ``citygrid_metric_srid(code text)`` is the metric SRID for any region code: the
  city's zone when the deployment is a province with an automatic CRS, else the profile's (a
  single city, or a province given one SRID). Areas (``region_boundary.area_m2``) and the
  sibling overlap guard measure each region in its city's zone. A city whose zone changes has
  its regions measured again.

Revision ID: 0030
Revises: 0028
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

PROVINCE_CODE = r"^[0-9]{2}0{10}$"

UPGRADE = rf"""
ALTER TABLE region DROP CONSTRAINT region_level_check;
ALTER TABLE region ADD CONSTRAINT region_level_check
    CHECK (level IN ('province', 'city', 'street', 'community', 'grid'));
ALTER TABLE region DROP CONSTRAINT region_code_matches_level;
ALTER TABLE region ADD CONSTRAINT region_code_matches_level CHECK (
    (level = 'province'  AND code ~ '{PROVINCE_CODE}') OR
    (level = 'city'      AND code ~ '^[0-9]{{6}}000000$' AND code !~ '{PROVINCE_CODE}') OR
    (level = 'street'    AND code ~ '^[0-9]{{9}}000$' AND code !~ '000000$') OR
    (level = 'community' AND code ~ '^[0-9]{{12}}$' AND code !~ '000$') OR
    (level = 'grid'      AND code ~ '^[0-9]{{12}}[0-9]{{3}}$' AND code !~ '000$')
);

-- Each city's own metric zone (a province's cities may straddle two or more zones).
CREATE TABLE city_metric (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9]{{6}}000000$'),
    metric_srid integer NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON city_metric TO citygrid_app;
INSERT INTO city_metric (code, metric_srid)
SELECT code, citygrid_gk_zone_srid(ST_X(ST_Centroid(geom)))
  FROM region_current WHERE level = 'city'
ON CONFLICT (code) DO NOTHING;

-- The metric SRID in which region ``code`` is measured: its city's zone in a province deployment
-- with an automatic CRS; otherwise (one city, a given SRID, no code) the profile's.
CREATE FUNCTION citygrid_metric_srid(region_code text) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN p.metric_auto AND p.code ~ '{PROVINCE_CODE}'
                THEN coalesce(m.metric_srid, p.metric_srid)
                ELSE p.metric_srid END
      FROM city_profile p
      LEFT JOIN city_metric m ON m.code = left(region_code, 6) || '000000'
$fn$;

-- Note a city's zone (SECURITY DEFINER: an import through the API may load cities); a changed
-- zone re-measures the city's other boundaries (the one being written is measured after).
CREATE FUNCTION citygrid_note_city_zone(boundary_id bigint, city_code text, g geometry)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
    zone integer := citygrid_gk_zone_srid(ST_X(ST_Centroid(g)));
    old  integer;
BEGIN
    SELECT metric_srid INTO old FROM city_metric WHERE code = city_code;
    IF old IS NOT DISTINCT FROM zone THEN
        RETURN;
    END IF;
    INSERT INTO city_metric (code, metric_srid) VALUES (city_code, zone)
    ON CONFLICT (code) DO UPDATE SET metric_srid = excluded.metric_srid, updated_at = now();
    IF old IS NOT NULL THEN
        UPDATE region_boundary b SET area_m2 = 0 FROM region r
         WHERE r.id = b.region_id AND r.code LIKE left(city_code, 6) || '%'
           AND b.id <> boundary_id;
    END IF;
END $fn$;

-- 0014's adoption, with the root rule: a province takes the profile over from a city of its own
-- two digits (or from nothing); a city never takes it from a province.
CREATE OR REPLACE FUNCTION citygrid_adopt_city(boundary_id bigint, city_code text,
                                               city_name text, g geometry) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
    p city_profile%ROWTYPE;
BEGIN
    SELECT * INTO p FROM city_profile;
    IF p.code IS NOT NULL AND p.code <> city_code
       AND NOT (city_code ~ '{PROVINCE_CODE}' AND p.code !~ '{PROVINCE_CODE}'
                AND left(p.code, 2) = left(city_code, 2)) THEN
        RETURN;  -- the profile names another root: this region is not the deployment's root
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

-- 0014's trigger: the root (province or city) names the deployment, a city notes its zone,
-- the area is measured in the region's city zone, and the parent rules know the province.
CREATE OR REPLACE FUNCTION region_boundary_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    child_level  text;
    child_code   text;
    child_name   text;
    parent_level text;
    parent_code  text;
BEGIN
    SELECT level, code, name INTO child_level, child_code, child_name
      FROM region WHERE id = NEW.region_id;
    IF child_level IN ('province', 'city') AND NEW.valid_to IS NULL
       AND (TG_OP = 'INSERT' OR ST_AsBinary(NEW.geom) IS DISTINCT FROM ST_AsBinary(OLD.geom)) THEN
        IF child_level = 'city' THEN
            PERFORM citygrid_note_city_zone(NEW.id, child_code, NEW.geom);
        END IF;
        PERFORM citygrid_adopt_city(NEW.id, child_code, child_name, NEW.geom);
    END IF;
    NEW.area_m2 := ST_Area(ST_Transform(NEW.geom, citygrid_metric_srid(child_code)));
    IF NEW.parent_id IS NULL THEN
        IF child_level NOT IN ('province', 'city') THEN
            RAISE EXCEPTION 'a % must have a parent region', child_level
                USING ERRCODE = 'check_violation';
        END IF;
    ELSE
        SELECT level, code INTO parent_level, parent_code FROM region WHERE id = NEW.parent_id;
        IF (child_level, parent_level) NOT IN
           (('city', 'province'), ('street', 'city'), ('community', 'street'),
            ('grid', 'community')) THEN
            RAISE EXCEPTION 'a % cannot hang under a %', child_level, parent_level
                USING ERRCODE = 'check_violation';
        END IF;
        IF child_level = 'city' AND left(child_code, 2) <> left(parent_code, 2) THEN
            RAISE EXCEPTION 'city % cannot hang under province %: its code starts with other '
                            'digits', child_code, parent_code
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- 0014's sibling overlap, measured in the region's city zone.
CREATE OR REPLACE FUNCTION region_boundary_overlap(me region_boundary)
RETURNS TABLE (code text, other text, area double precision)
LANGUAGE sql STABLE AS $$
    SELECT r1.code, r2.code, x.a
      FROM region_boundary o
      JOIN region r1 ON r1.id = me.region_id
      JOIN region r2 ON r2.id = o.region_id
      CROSS JOIN LATERAL (
          SELECT ST_Area(ST_Transform(ST_CollectionExtract(ST_Intersection(me.geom, o.geom), 3),
                                      citygrid_metric_srid(r1.code))) AS a) x
     WHERE me.parent_id IS NOT NULL AND ST_IsValid(me.geom)
       AND o.parent_id = me.parent_id AND o.id <> me.id AND o.region_id <> me.region_id
       AND o.geom && me.geom
       AND tstzrange(o.valid_from, o.valid_to) && tstzrange(me.valid_from, me.valid_to)
       AND ST_IsValid(o.geom) AND ST_Relate(o.geom, me.geom, '2********')
       AND x.a > 1.0
     LIMIT 1
$$;
"""


def _module(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"citygrid_rev_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _old_function(module: str, name: str, *, closer: str) -> str:
    """The text of ``name`` as revision ``module`` created or replaced it (for the downgrade)."""
    text = _module(module).UPGRADE
    for opener in ("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION"):
        start = text.find(f"{opener} {name}(")
        if start >= 0:
            end = text.index(closer, start) + len(closer)
            return "CREATE OR REPLACE FUNCTION" + text[start + len(opener):end]
    raise LookupError(name)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    rev = "0014_city_profile.py"
    op.execute(_old_function(rev, "region_boundary_before_write", closer="$$;"))
    op.execute(_old_function(rev, "region_boundary_overlap", closer="$$;"))
    op.execute(_old_function(rev, "citygrid_adopt_city", closer="$fn$;"))
    op.execute(r"""
DROP FUNCTION IF EXISTS citygrid_note_city_zone(bigint, text, geometry);
DROP FUNCTION IF EXISTS citygrid_metric_srid(text);
DROP TABLE IF EXISTS city_metric;
ALTER TABLE region DROP CONSTRAINT region_code_matches_level;
ALTER TABLE region ADD CONSTRAINT region_code_matches_level CHECK (
    (level = 'city'      AND code ~ '^[0-9]{6}000000$') OR
    (level = 'street'    AND code ~ '^[0-9]{9}000$' AND code !~ '000000$') OR
    (level = 'community' AND code ~ '^[0-9]{12}$' AND code !~ '000$') OR
    (level = 'grid'      AND code ~ '^[0-9]{12}[0-9]{3}$' AND code !~ '000$')
);
ALTER TABLE region DROP CONSTRAINT region_level_check;
ALTER TABLE region ADD CONSTRAINT region_level_check
    CHECK (level IN ('city', 'street', 'community', 'grid'));
""")
