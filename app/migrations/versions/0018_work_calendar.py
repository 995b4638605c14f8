"""Working time: the workday calendar, the city's office hours, and a unit per category limit.

* ``work_calendar_day``: one row per date that breaks the default rule (Monday to Friday work,
  Saturday and Sunday rest): ``holiday`` (法定节假日 and the days moved into a holiday) or
  ``workday`` (调休上班, a weekend day worked). Filled here from ``data/holidays/cn-*.csv`` (the
  State Council General Office's notices); replaced per year with ``citygrid calendar import`` or
  ``PUT /calendar/{year}``.
* ``work_calendar_setting``: one row, the city's office hours as ``[["08:30", "12:00"], ...]``
  (local wall time, in the city profile's zone).
* ``category.limit_unit``: ``hours`` (calendar hours, the default: existing limits keep their
  meaning), ``work_hours`` or ``work_days`` (one working day = one day of office hours).
* ``citygrid_is_workday(date)`` and ``citygrid_work_seconds(a, b)``: the working seconds between
  two instants, for the traffic light of a category on working time (``workflow.light_sql``).
  Deadlines themselves (``due_at``) are computed in Python (``layers.incidents.calendar``), which
  the tests compare with this function.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

import csv
import json
from pathlib import Path

from alembic import op
from sqlalchemy import text

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# The usual office day of a Chinese government office; a setting of the city, edited through
# PUT /calendar/{year} or `citygrid calendar hours`, not read from here again.
DEFAULT_OFFICE_HOURS = [["08:30", "12:00"], ["13:30", "17:30"]]
HOLIDAYS = Path(__file__).resolve().parents[3] / "data" / "holidays"

UPGRADE = """
CREATE TABLE work_calendar_day (
    day        date PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name       text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE work_calendar_setting (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    office_hours jsonb NOT NULL CHECK (jsonb_typeof(office_hours) = 'array'
                                       AND jsonb_array_length(office_hours) BETWEEN 1 AND 6),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE category ADD COLUMN limit_unit text NOT NULL DEFAULT 'hours'
    CHECK (limit_unit IN ('hours', 'work_hours', 'work_days'));

GRANT SELECT, INSERT, UPDATE, DELETE ON work_calendar_day TO citygrid_app;
GRANT SELECT, INSERT, UPDATE ON work_calendar_setting TO citygrid_app;

CREATE FUNCTION citygrid_is_workday(d date) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT coalesce((SELECT kind = 'workday' FROM work_calendar_day WHERE day = d),
                    extract(isodow FROM d) < 6)
$fn$;

-- The length of an office day in seconds (7.5 h = 27000 with 08:30-12:00, 13:30-17:30).
CREATE FUNCTION citygrid_office_day_seconds() RETURNS float8
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT coalesce(sum(extract(epoch FROM (e ->> 1)::time - (e ->> 0)::time)), 0)::float8
    FROM work_calendar_setting, jsonb_array_elements(office_hours) e
$fn$;

-- The traffic light of a share of a limit used (as workflow.light): one call per row, so the
-- share (office time, measured by a function) is computed once.
CREATE FUNCTION citygrid_light_of(used float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN used < 0.8 THEN 'green' WHEN used <= 1.0 THEN 'yellow' ELSE 'red' END
$fn$;

-- Office seconds of one local day within [lo, hi) (0 on a rest day).
CREATE FUNCTION citygrid_work_seconds_on(d date, lo timestamptz, hi timestamptz, tz text)
RETURNS float8 LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN citygrid_is_workday(d) THEN coalesce(sum(greatest(0, extract(epoch FROM
               least(hi, (d + (e ->> 1)::time) AT TIME ZONE tz)
               - greatest(lo, (d + (e ->> 0)::time) AT TIME ZONE tz)))), 0) ELSE 0 END::float8
    FROM work_calendar_setting, jsonb_array_elements(office_hours) e
$fn$;

-- Working seconds in [a, b): the overlap of the span with the office hours of every workday it
-- touches, in the city's zone; 0 when b <= a. Closed form, so a case open for months costs as
-- much as one open for an hour: the two end days are measured, the whole days between are
-- (weekdays - holiday rows on weekdays + workday rows on weekends) x the office day.
CREATE FUNCTION citygrid_work_seconds(a timestamptz, b timestamptz) RETURNS float8
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $fn$
DECLARE
    tz text := citygrid_tz();
    da date;
    db date;
    n int;
    days int;
    day_s float8;
BEGIN
    IF a IS NULL OR b IS NULL OR b <= a THEN
        RETURN 0;
    END IF;
    da := (a AT TIME ZONE tz)::date;
    db := (b AT TIME ZONE tz)::date;
    IF da = db THEN
        RETURN citygrid_work_seconds_on(da, a, b, tz);
    END IF;
    n := db - da - 1;  -- whole days strictly between
    -- weekdays among da+1 .. db-1: whole weeks, then the remaining days one by one (< 7)
    days := (n / 7) * 5;
    FOR i IN 1 .. n % 7 LOOP
        IF extract(isodow FROM da + (n / 7) * 7 + i) < 6 THEN
            days := days + 1;
        END IF;
    END LOOP;
    days := days + coalesce((SELECT sum(CASE WHEN kind = 'workday' THEN 1 ELSE -1 END)
                             FROM work_calendar_day
                             WHERE day > da AND day < db
                               AND (kind = 'workday') = (extract(isodow FROM day) >= 6)), 0);
    day_s := citygrid_office_day_seconds();
    RETURN citygrid_work_seconds_on(da, a, b, tz) + citygrid_work_seconds_on(db, a, b, tz)
           + days * day_s;
END
$fn$;
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS citygrid_work_seconds(timestamptz, timestamptz);
DROP FUNCTION IF EXISTS citygrid_work_seconds_on(date, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS citygrid_office_day_seconds();
DROP FUNCTION IF EXISTS citygrid_light_of(float8);
DROP FUNCTION IF EXISTS citygrid_is_workday(date);
ALTER TABLE category DROP COLUMN IF EXISTS limit_unit;
DROP TABLE IF EXISTS work_calendar_setting, work_calendar_day;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    bind = op.get_bind()
    bind.execute(text("INSERT INTO work_calendar_setting (office_hours) VALUES "
                      "(CAST(:h AS jsonb))"), {"h": json.dumps(DEFAULT_OFFICE_HOURS)})
    rows = []
    for path in sorted(HOLIDAYS.glob("cn-*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            rows += [{"d": r["date"], "k": r["kind"], "n": r["name"]} for r in csv.DictReader(f)]
    if rows:
        bind.execute(text("INSERT INTO work_calendar_day (day, kind, name) "
                          "VALUES (CAST(:d AS date), :k, :n)"), rows)


def downgrade() -> None:
    op.execute(DOWNGRADE)
