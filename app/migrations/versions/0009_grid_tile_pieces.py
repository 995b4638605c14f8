"""Grid outlines cut and quantised per vector tile up to zoom 13, ahead of time.

``grid_tile_piece``: for each grid outline of ``boundary_tile_geom`` (bands 11 and 13) and each
zoom from 0 to :data:`PRETILED_MAX_ZOOM` that uses that band, the outline as ``ST_AsMVTGeom``
gives it for every tile it reaches (tile coordinates, 4096 units, clipped to the tile and its
64-unit buffer); pieces that vanish at that zoom are not stored. A row trigger on
``boundary_tile_geom`` writes them; they are deleted with it (a cascading foreign key), so they
follow every boundary version exactly as the banded outlines do. Tiles at those zooms join them
through ``region_current`` (which version is current is still decided at read time) and only
encode: at zoom 10, with 8,300 grids in a tile, cutting the outlines was 55 of 120 ms.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PRETILED_MAX_ZOOM = 13
EXTENT, BUFFER = 4096, 64
# Web Mercator half-width (ST_TileEnvelope's default bounds)
HALF = 20037508.342789244

UPGRADE = f"""
CREATE TABLE grid_tile_piece (
    z           smallint NOT NULL,
    x           integer NOT NULL,
    y           integer NOT NULL,
    boundary_id integer NOT NULL,
    band        smallint NOT NULL,
    geom        geometry NOT NULL,
    PRIMARY KEY (z, x, y, boundary_id),
    FOREIGN KEY (boundary_id, band) REFERENCES boundary_tile_geom (boundary_id, max_zoom)
        ON DELETE CASCADE
);
CREATE INDEX grid_tile_piece_boundary_idx ON grid_tile_piece (boundary_id, band);
-- z, x and y are far from independent: without this the planner expects ~100 pieces in a tile
-- that holds 8,000 and probes region_boundary 8,000 times instead of hashing it
CREATE STATISTICS grid_tile_piece_zxy (mcv, dependencies) ON z, x, y FROM grid_tile_piece;

-- The pieces of one banded outline: every zoom that draws from its band, every tile that the
-- outline's box reaches with the buffer, as ST_AsMVTGeom cuts it (NULL: nothing to draw).
CREATE OR REPLACE FUNCTION citygrid_tile_pieces(band smallint, g geometry)
RETURNS TABLE (z smallint, x integer, y integer, geom geometry)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT zz.z::smallint, tx, ty, piece
FROM (SELECT zoom AS z, 2 * {HALF} / 2 ^ zoom AS size, {BUFFER}.0 / {EXTENT} AS m
      FROM generate_series(CASE band WHEN 11 THEN 0 WHEN 13 THEN 12 ELSE 1 END,
                           CASE band WHEN 11 THEN 11 WHEN 13 THEN {PRETILED_MAX_ZOOM}
                                ELSE 0 END) AS zoom) zz
CROSS JOIN LATERAL generate_series(
    greatest(0, floor((ST_XMin(g) + {HALF}) / zz.size - zz.m)::int),
    least(2 ^ zz.z - 1, floor((ST_XMax(g) + {HALF}) / zz.size + zz.m))::int) AS tx
CROSS JOIN LATERAL generate_series(
    greatest(0, floor(({HALF} - ST_YMax(g)) / zz.size - zz.m)::int),
    least(2 ^ zz.z - 1, floor(({HALF} - ST_YMin(g)) / zz.size + zz.m))::int) AS ty
CROSS JOIN LATERAL ST_AsMVTGeom(g, ST_TileEnvelope(zz.z, tx, ty), {EXTENT}, {BUFFER}, true)
    AS piece
WHERE piece IS NOT NULL
$fn$;

CREATE OR REPLACE FUNCTION citygrid_grid_tile_pieces() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO grid_tile_piece (z, x, y, boundary_id, band, geom)
    SELECT p.z, p.x, p.y, NEW.boundary_id, NEW.max_zoom, p.geom
    FROM citygrid_tile_pieces(NEW.max_zoom, NEW.geom) p;
    RETURN NULL;
END $fn$;
CREATE TRIGGER boundary_tile_geom_pieces AFTER INSERT ON boundary_tile_geom
    FOR EACH ROW EXECUTE FUNCTION citygrid_grid_tile_pieces();

INSERT INTO grid_tile_piece (z, x, y, boundary_id, band, geom)
SELECT p.z, p.x, p.y, b.boundary_id, b.max_zoom, p.geom
FROM boundary_tile_geom b CROSS JOIN LATERAL citygrid_tile_pieces(b.max_zoom, b.geom) p;

GRANT SELECT, INSERT, UPDATE, DELETE ON grid_tile_piece TO citygrid_app;
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS boundary_tile_geom_pieces ON boundary_tile_geom;
DROP FUNCTION IF EXISTS citygrid_grid_tile_pieces();
DROP FUNCTION IF EXISTS citygrid_tile_pieces(smallint, geometry);
DROP TABLE IF EXISTS grid_tile_piece;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
