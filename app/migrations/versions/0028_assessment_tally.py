"""Monthly assessment tallies kept at intake and on every state change (issue 18).

The supervisor's view (:func:`layers.analysis.month.compare`) read every incident received,
closed or due in three months (about 960,000 rows at 5M incidents: 1.9 s). It now sums
``assessment_tally``, kept by statement-level triggers with transition tables like the map
tallies (0008/0011): one aggregated ``INSERT .. ON CONFLICT DO UPDATE`` per writing statement,
keys upserted in one total order (``COLLATE "C"``) so that two writers lock rows alike.

``assessment_tally``: one row per local month ``t0`` (the city's zone, ``citygrid_tz()``),
level (``g`` grid, ``c`` community, ``s`` street, ``w`` worker, ``d`` department), ``rkey``
(the first 9 digits of ``region_code``: the street, so a jurisdiction or region filter down to
a street still reads the tally; '' none) and ``unit`` (the incident's ``grid_code``,
``community_code``, ``street_code``, ``responsible_code`` or ``department_id`` as text; '' none).
An incident adds to up to three months, with :data:`layers.assessment.FIGURE_SQL`'s
definitions:

* the month of ``received_at``: ``received`` and ``registered`` (state neither ``received``,
  ``voided`` nor ``merged``);
* the month of ``closed_at``: ``closed``, ``closed_on_time``, ``reworked`` (``rework_count``
  > 0) and ``handling_s`` (Σ seconds received → closed, numeric: exact under + and −);
* the month of ``due_at`` unless voided or merged: ``due``, ``due_closed`` (closed at all) and
  ``due_closed_on_time``. The view's "closed by ``as_of``" subtracts the few due cases closed
  after ``as_of`` (none when ``as_of`` is now), read from ``incident``.

So a case received in October and closed in November counts as received in October and closed
in November, as the raw statement counts it. The 90th percentile of handling time is not
tallied (it cannot come from sums): it is read from the raw rows when asked.

Rows may fall to zero; readers skip units whose ``received``, ``closed`` and ``due`` are all 0.
``citygrid_assessment_tally_rebuild()`` rebuilds it from ``incident`` (run here once; after a
bulk load with the triggers disabled; and when the city's time zone changes).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

COUNTS = ("received", "registered", "closed", "closed_on_time", "reworked", "due", "due_closed",
          "due_closed_on_time")
SUMS = (*COUNTS, "handling_s")
LEVELS = {"g": "grid_code", "c": "community_code", "s": "street_code", "w": "responsible_code",
          "d": "department_id::text"}
DELTA_COLS = ("received_at, closed_at, due_at, state, closed_on_time, rework_count, "
              "region_code, grid_code, community_code, street_code, responsible_code, "
              "department_id")
_MONTH = "date_trunc('month', d.{col} AT TIME ZONE city_tz)::date"


def upsert(src: str) -> str:
    """Upsert the tally deltas of relation ``src`` (incident columns plus ``s``: +1 / -1)."""
    units = ", ".join(f"coalesce(d.{col}, '') AS u_{lv}" for lv, col in LEVELS.items())
    sums = ", ".join(f"sum(d.s * x.{c})::int AS {c}" for c in COUNTS)
    per_level = "\n        UNION ALL\n        ".join(
        f"SELECT t0, '{lv}'::\"char\" AS level, rkey, u_{lv} AS unit, "
        + ", ".join(f"sum({c})::int AS {c}" for c in COUNTS)
        + f", sum(handling_s) AS handling_s FROM r GROUP BY t0, rkey, u_{lv}"
        for lv in LEVELS)
    nonzero = " OR ".join(f"a.{c} <> 0" for c in SUMS)
    cols = ", ".join(SUMS)
    return f"""
    INSERT INTO assessment_tally AS t (t0, level, rkey, unit, {cols})
    WITH r AS MATERIALIZED (
        SELECT x.t0, coalesce(left(d.region_code, 9), '') AS rkey, {units}, {sums},
               sum(d.s * x.h) AS handling_s
        FROM {src} CROSS JOIN LATERAL (VALUES
            ({_MONTH.format(col="received_at")}, 1,
             CASE WHEN d.state IN ('received', 'voided', 'merged') THEN 0 ELSE 1 END,
             0, 0, 0, 0, 0, 0, 0::numeric),
            ({_MONTH.format(col="closed_at")}, 0, 0, 1,
             CASE WHEN d.closed_on_time THEN 1 ELSE 0 END,
             CASE WHEN d.rework_count > 0 THEN 1 ELSE 0 END, 0, 0, 0,
             extract(epoch FROM d.closed_at - d.received_at)),
            (CASE WHEN d.state NOT IN ('voided', 'merged') THEN {_MONTH.format(col="due_at")}
             END, 0, 0, 0, 0, 0, 1,
             CASE WHEN d.closed_at IS NOT NULL THEN 1 ELSE 0 END,
             CASE WHEN d.closed_at IS NOT NULL AND d.closed_on_time THEN 1 ELSE 0 END,
             0::numeric)
        ) AS x(t0, {", ".join(COUNTS)}, h)
        WHERE x.t0 IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5, 6, 7)
    SELECT * FROM (
        {per_level}) a
    WHERE {nonzero}
    ORDER BY a.t0, a.level, a.rkey COLLATE "C", a.unit COLLATE "C"
    ON CONFLICT (t0, level, rkey, unit) DO UPDATE SET
        {", ".join(f"{c} = t.{c} + excluded.{c}" for c in SUMS)};"""


SOURCES = {
    "citygrid_assessment_tally_insert": f"(SELECT {DELTA_COLS}, 1 AS s FROM new_rows) AS d",
    "citygrid_assessment_tally_delete": f"(SELECT {DELTA_COLS}, -1 AS s FROM old_rows) AS d",
    "citygrid_assessment_tally_update": (f"(SELECT {DELTA_COLS}, -1 AS s FROM old_rows "
                                         f"UNION ALL SELECT {DELTA_COLS}, 1 AS s FROM new_rows)"
                                         " AS d"),
}


def _function(name: str, body: str, *, returns: str = "trigger") -> str:
    tail = "RETURN NULL;" if returns == "trigger" else ""
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS {returns} LANGUAGE plpgsql SET jit = off AS $fn$
DECLARE
    city_tz text := citygrid_tz();
BEGIN
    {body}
    {tail}
END $fn$;"""


UPGRADE = "\n".join([
    f"""
CREATE TABLE assessment_tally (
    t0          date NOT NULL,
    level       "char" NOT NULL CHECK (level IN ('g', 'c', 's', 'w', 'd')),
    rkey        text NOT NULL,
    unit        text NOT NULL,
    {", ".join(f"{c} integer NOT NULL DEFAULT 0" for c in COUNTS)},
    handling_s  numeric NOT NULL DEFAULT 0,
    CONSTRAINT assessment_tally_key PRIMARY KEY (t0, level, rkey, unit)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON assessment_tally TO citygrid_app;""",
    *(_function(name, upsert(src)) for name, src in SOURCES.items()),
    _function("citygrid_assessment_tally_rebuild",
              "LOCK TABLE incident IN SHARE MODE;\n    DELETE FROM assessment_tally;\n    "
              + upsert(f"(SELECT {DELTA_COLS}, 1 AS s FROM incident) AS d"), returns="void"),
    """
CREATE OR REPLACE FUNCTION citygrid_assessment_tally_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    TRUNCATE assessment_tally;
    RETURN NULL;
END $fn$;
CREATE OR REPLACE FUNCTION citygrid_assessment_tally_retz() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM citygrid_assessment_tally_rebuild();
    RETURN NULL;
END $fn$;
CREATE TRIGGER incident_assessment_tally_insert AFTER INSERT ON incident
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION citygrid_assessment_tally_insert();
CREATE TRIGGER incident_assessment_tally_update AFTER UPDATE ON incident
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION citygrid_assessment_tally_update();
CREATE TRIGGER incident_assessment_tally_delete AFTER DELETE ON incident
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION citygrid_assessment_tally_delete();
CREATE TRIGGER incident_assessment_tally_truncate AFTER TRUNCATE ON incident
    FOR EACH STATEMENT EXECUTE FUNCTION citygrid_assessment_tally_truncate();
-- a new time zone moves month boundaries: rebuild (as 0014 does for the map tallies)
CREATE TRIGGER city_profile_assessment_tally AFTER UPDATE ON city_profile
    FOR EACH ROW WHEN (NEW.tz IS DISTINCT FROM OLD.tz)
    EXECUTE FUNCTION citygrid_assessment_tally_retz();
SELECT citygrid_assessment_tally_rebuild();
"""])

DOWNGRADE = """
DROP TRIGGER IF EXISTS city_profile_assessment_tally ON city_profile;
DROP TRIGGER IF EXISTS incident_assessment_tally_insert ON incident;
DROP TRIGGER IF EXISTS incident_assessment_tally_update ON incident;
DROP TRIGGER IF EXISTS incident_assessment_tally_delete ON incident;
DROP TRIGGER IF EXISTS incident_assessment_tally_truncate ON incident;
DROP FUNCTION IF EXISTS citygrid_assessment_tally_insert(), citygrid_assessment_tally_update(),
    citygrid_assessment_tally_delete(), citygrid_assessment_tally_truncate(),
    citygrid_assessment_tally_retz(), citygrid_assessment_tally_rebuild();
DROP TABLE IF EXISTS assessment_tally;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
