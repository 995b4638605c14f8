"""Boundary crosswalk: where each changed grid's area went at a plan's activation (issue 19).

``boundary_crosswalk`` holds, for one boundary version (one activation), one row per (old grid,
new grid) pair whose shapes overlap: the old grid's area that went to the new grid, in m² in the
city's metric CRS (``citygrid_metric_srid()``), and as a share of the old grid's area. The shares
of one old grid in one version sum to 1: area outside every grid in force after the change, if
any (more than 1 m²), is a row with ``new_code`` NULL (the *remainder*). ``household_share`` is
NULL: the registry holds no households or population per grid (see docs/plans.md).

``change`` names what happened to the old grid: ``split`` (its area went to several grids),
``merge`` (all of it went to one other grid that also took other area), ``recode`` (all of it
went to one other grid that took nothing else), ``reshape`` (all of it stayed under its code,
which changed shape), ``retire`` (none of it is in any grid any more: only a remainder).

Written by :func:`grids.plans.crosswalk.record` inside the activation's transaction; append-only
for the app.

Revision ID: 0022
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE boundary_crosswalk (
    id              bigserial PRIMARY KEY,
    version_id      integer NOT NULL REFERENCES boundary_version (id),
    plan_id         integer REFERENCES plan (id),
    effective_at    timestamptz NOT NULL,
    old_code        text NOT NULL,
    new_code        text,
    change          text NOT NULL
                    CHECK (change IN ('split', 'merge', 'recode', 'reshape', 'retire')),
    old_area_m2     double precision NOT NULL CHECK (old_area_m2 >= 0),
    area_m2         double precision NOT NULL CHECK (area_m2 >= 0),
    area_share      double precision NOT NULL CHECK (area_share >= 0 AND area_share <= 1.000001),
    household_share double precision CHECK (household_share >= 0 AND household_share <= 1),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX boundary_crosswalk_pair ON boundary_crosswalk
    (version_id, old_code, coalesce(new_code, ''));
CREATE INDEX boundary_crosswalk_old ON boundary_crosswalk (old_code, effective_at);
CREATE INDEX boundary_crosswalk_at ON boundary_crosswalk (effective_at, version_id);
CREATE INDEX boundary_crosswalk_plan ON boundary_crosswalk (plan_id);

GRANT SELECT, INSERT ON boundary_crosswalk TO citygrid_app;
REVOKE UPDATE, DELETE, TRUNCATE ON boundary_crosswalk FROM citygrid_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO citygrid_app;
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS boundary_crosswalk;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
