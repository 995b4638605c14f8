"""Patrol coverage recomputed after the fixes, not inside their intake.

``patrol_cover_stale``: a statement-level trigger on ``patrol_fix`` notes, per city day its new
fixes fall on, their lon/lat box: whoever wrote them (the API, the demo loader, ``psql``). A
background worker in each API process (``app.coverage_worker``) takes the notes with ``FOR UPDATE
SKIP LOCKED``, recomputes ``patrol_grid_cover`` for those days around those boxes and deletes
the notes in one transaction, so a failure leaves them for the next round. Recomputing inside the
intake transaction (0010's first design) made a phone's 20-fix batch take 330 ms instead of 2 ms.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE patrol_cover_stale (
    id       bigserial PRIMARY KEY,
    day      date NOT NULL,
    x0       float8 NOT NULL,
    y0       float8 NOT NULL,
    x1       float8 NOT NULL,
    y1       float8 NOT NULL,
    noted_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION citygrid_patrol_cover_stale() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO patrol_cover_stale (day, x0, y0, x1, y1)
    SELECT (n.at AT TIME ZONE 'Asia/Shanghai')::date, min(ST_X(n.geom)), min(ST_Y(n.geom)),
           max(ST_X(n.geom)), max(ST_Y(n.geom))
    FROM new_fixes n GROUP BY 1;
    RETURN NULL;
END $fn$;
CREATE TRIGGER patrol_fix_cover_stale AFTER INSERT ON patrol_fix
    REFERENCING NEW TABLE AS new_fixes
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_patrol_cover_stale();

GRANT SELECT, INSERT, DELETE ON patrol_cover_stale TO citygrid_app;
GRANT USAGE ON SEQUENCE patrol_cover_stale_id_seq TO citygrid_app;
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS patrol_fix_cover_stale ON patrol_fix;
DROP FUNCTION IF EXISTS citygrid_patrol_cover_stale();
DROP TABLE IF EXISTS patrol_cover_stale;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
