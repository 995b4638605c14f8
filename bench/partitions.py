"""Month partitions (migration 0027) beside one unpartitioned table holding the same rows.

    python -m bench.partitions [--fixes 3000000] [--events 1000000] [--incidents 1000000]
                               [--repeat 15]

Works in its own database (``citygrid_bench_partitions`` in the private cluster, created and
migrated to head; ``CITYGRID_BENCH_PARTITIONS_URL`` to point elsewhere). It builds four tables:

- ``bench_fix_part`` / ``bench_event_part``: ``patrol_fix`` / ``incident_event``'s columns,
  indexes and primary keys, partitioned by UTC month with the migration's own
  ``citygrid_month_partition`` (24 months back .. 3 ahead and a default partition, as 0027
  creates them);
- ``bench_fix_flat`` / ``bench_event_flat``: the same, unpartitioned (as before 0027);

and loads the same rows into both (fixes of 2,000 workers and events of ``events / 8`` cases,
spread evenly over the last 12 months). Neither side has foreign keys or triggers, so the tables
differ in the partitioning only. Timed, same run, alternating sides, after one warm-up each:

- a one-month window on the fixes (count and mean longitude of the month's fixes: what coverage
  and heat read), one worker's month (a track), a month of events by action (the scoring's
  count), and one case's events without a time (the one read partitioning makes dearer: every
  month's index is probed);
- intake: phone batches of 20 fixes (``INSERT .. unnest .. ON CONFLICT DO NOTHING``, one
  transaction each) and single event rows (as each step of the closed loop writes), and one
  statement of 200,000 fixes (an import), each rolled back (statement time: no commit, no fsync).

With ``--incidents N`` (migration 0029) also ``bench_inc_part`` (incident-like columns,
partitioned by month on ``received_at``, primary key ``(id, received_at)``, a registry
``bench_inc_key`` with the unique ``(source, external_id)`` kept by a BEFORE INSERT trigger as
0029 keeps ``incident_key``) beside ``bench_inc_flat`` (unpartitioned, ``PRIMARY KEY (id)``,
``UNIQUE (source, external_id)``: incident before 0029), the same N rows over 12 months. Timed:
a month's list by state and grid (the month's view), one incident by id without a window (every
month's index probed), the same through the registry (a join, and the key's ``received_at`` as an
initplan, as intake's replay look-up does: run-time pruning to one month), and a bulk
intake of 100,000 rows in one statement (rolled back) with its keys.

Prints medians and p95 in ms and writes ``bench/results/partitions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

from bench.common import RESULTS, percentiles

STAFF = 2000

FIX_COLUMNS = ("staff_id integer NOT NULL, at timestamptz NOT NULL, "
               "geom geometry(Point, 4490) NOT NULL, accuracy_m real, crs_in text, "
               "received_at timestamptz NOT NULL DEFAULT now()")
EVENT_COLUMNS = ("id bigint NOT NULL, incident_id bigint NOT NULL, at timestamptz NOT NULL, "
                 "actor text NOT NULL, action text NOT NULL, from_state text, to_state text "
                 "NOT NULL, note text NOT NULL DEFAULT '', photos jsonb NOT NULL DEFAULT '[]'")


def _engine() -> Engine:
    url = os.environ.get("CITYGRID_BENCH_PARTITIONS_URL")
    if not url:
        from app import devdb
        from app.db import migrate

        url = devdb.url("citygrid_bench_partitions")
        admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            if not c.execute(text("SELECT 1 FROM pg_database WHERE datname = "
                                  "'citygrid_bench_partitions'")).scalar():
                c.execute(text('CREATE DATABASE "citygrid_bench_partitions"'))
        admin.dispose()
        migrate(url)
    return create_engine(url)


def _build(conn: Connection, fixes: int, events: int, start: datetime) -> None:
    for t in ("bench_fix_part", "bench_fix_flat", "bench_event_part", "bench_event_flat"):
        conn.execute(text(f"DROP TABLE IF EXISTS {t} CASCADE"))
    conn.execute(text(f"CREATE TABLE bench_fix_part ({FIX_COLUMNS}, PRIMARY KEY (staff_id, at)) "
                      "PARTITION BY RANGE (at)"))
    conn.execute(text(f"CREATE TABLE bench_fix_flat ({FIX_COLUMNS}, PRIMARY KEY (staff_id, at))"))
    conn.execute(text(f"CREATE TABLE bench_event_part ({EVENT_COLUMNS}, PRIMARY KEY (id, at)) "
                      "PARTITION BY RANGE (at)"))
    conn.execute(text(f"CREATE TABLE bench_event_flat ({EVENT_COLUMNS}, PRIMARY KEY (id))"))
    for t in ("bench_fix_part", "bench_event_part"):
        conn.execute(text(
            "SELECT citygrid_month_partition(CAST(:t AS regclass), m::date) FROM generate_series("
            "date_trunc('month', now() AT TIME ZONE 'UTC') - interval '24 months', "
            "date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months', "
            "interval '1 month') m"), {"t": t})
        conn.execute(text("SELECT citygrid_default_partition(CAST(:t AS regclass))"), {"t": t})
    span = 365 * 86400.0
    conn.execute(text(
        "INSERT INTO bench_fix_part (staff_id, at, geom, accuracy_m) "
        "SELECT g % :staff + 1, :t0 + make_interval(secs => g * (:span / :n)), "
        "ST_SetSRID(ST_MakePoint(120.0 + random() * 0.3, 29.2 + random() * 0.2), 4490), "
        "(random() * 30)::real FROM generate_series(1, :n) g"),
        {"staff": STAFF, "t0": start, "span": span, "n": fixes})
    conn.execute(text(
        "INSERT INTO bench_event_part (id, incident_id, at, actor, action, from_state, to_state) "
        "SELECT g, g / 8 + 1, :t0 + make_interval(secs => (g / 8) * (:span / (:n / 8 + 1)) "
        "+ (g % 8) * 3600), 'user:bench', (ARRAY['receive','register','dispatch','accept',"
        "'report','verify','close','return'])[g % 8 + 1], NULL, 'received' "
        "FROM generate_series(1, :n) g"), {"t0": start, "span": span, "n": events})
    conn.execute(text("INSERT INTO bench_fix_flat SELECT * FROM bench_fix_part"))
    conn.execute(text("INSERT INTO bench_event_flat SELECT * FROM bench_event_part"))
    for t in ("bench_fix_part", "bench_fix_flat"):
        conn.execute(text(f"CREATE INDEX ON {t} USING gist (geom)"))
        conn.execute(text(f"CREATE INDEX ON {t} (at)"))
    for t in ("bench_event_part", "bench_event_flat"):
        conn.execute(text(f"CREATE INDEX ON {t} (incident_id, id)"))


INC_COLUMNS = ("id bigint NOT NULL, source text NOT NULL, external_id text NOT NULL, "
               "category_id integer NOT NULL, state text NOT NULL, grid_code text, "
               "geom geometry(Point, 4490), received_at timestamptz NOT NULL, due_at timestamptz")
INC_INSERT = ("INSERT INTO bench_inc_{side} (id, source, external_id, category_id, state, "
              "grid_code, geom, received_at, due_at) SELECT :base + g, 'hotline_12345', "
              "'b' || (:base + g), g % 40 + 1, (ARRAY['received','dispatched','handling',"
              "'closed'])[g % 4 + 1], 'G' || (g % 500), ST_SetSRID(ST_MakePoint(120.0 + "
              "(g % 997) * 3e-4, 29.2 + (g % 991) * 2e-4), 4490), :t0 + make_interval(secs => g * "
              "(:span / :n)), :t0 + make_interval(secs => g * (:span / :n) + 259200) "
              "FROM generate_series(1, :n) g")


def _build_incidents(conn: Connection, n: int, start: datetime) -> None:
    for t in ("bench_inc_part", "bench_inc_flat", "bench_inc_key"):
        conn.execute(text(f"DROP TABLE IF EXISTS {t} CASCADE"))
    conn.execute(text(
        "CREATE TABLE bench_inc_key (id bigint PRIMARY KEY, received_at timestamptz NOT NULL, "
        "source text NOT NULL, external_id text NOT NULL, UNIQUE (source, external_id))"))
    conn.execute(text(f"CREATE TABLE bench_inc_part ({INC_COLUMNS}, PRIMARY KEY (id, received_at))"
                      " PARTITION BY RANGE (received_at)"))
    conn.execute(text(f"CREATE TABLE bench_inc_flat ({INC_COLUMNS}, PRIMARY KEY (id), "
                      "UNIQUE (source, external_id))"))
    conn.execute(text(
        "SELECT citygrid_month_partition('bench_inc_part', m::date) FROM generate_series("
        "date_trunc('month', now() AT TIME ZONE 'UTC') - interval '24 months', "
        "date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months', "
        "interval '1 month') m"))
    conn.execute(text("SELECT citygrid_default_partition('bench_inc_part')"))
    conn.execute(text("""
        CREATE OR REPLACE FUNCTION bench_inc_key_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE k bench_inc_key%ROWTYPE;
        BEGIN
            SELECT * INTO k FROM bench_inc_key WHERE id = NEW.id;
            IF NOT FOUND THEN
                INSERT INTO bench_inc_key VALUES (NEW.id, NEW.received_at, NEW.source,
                                                  NEW.external_id);
            ELSIF (k.received_at, k.source, k.external_id)
                  IS DISTINCT FROM (NEW.received_at, NEW.source, NEW.external_id) THEN
                RAISE EXCEPTION 'incident % is registered with another key', NEW.id
                    USING ERRCODE = 'unique_violation';
            END IF;
            RETURN NEW;
        END $fn$"""))
    for side in ("part", "flat"):
        conn.execute(text(f"CREATE INDEX ON bench_inc_{side} (received_at)"))
        conn.execute(text(f"CREATE INDEX ON bench_inc_{side} (state, received_at)"))
        conn.execute(text(f"CREATE INDEX ON bench_inc_{side} (grid_code)"))
        conn.execute(text(f"CREATE INDEX ON bench_inc_{side} USING gist (geom)"))
    conn.execute(text("CREATE INDEX ON bench_inc_part (source, external_id)"))
    conn.execute(text("CREATE TRIGGER bench_inc_key_insert BEFORE INSERT ON bench_inc_part "
                      "FOR EACH ROW EXECUTE FUNCTION bench_inc_key_insert()"))
    params = {"base": 0, "t0": start, "span": 365 * 86400.0, "n": n}
    for side in ("part", "flat"):
        conn.execute(text(INC_INSERT.format(side=side)), params)


def _bulk_incidents(engine: Engine, day: datetime, rows: int = 100_000) -> dict[str, Any]:
    """One statement of ``rows`` incidents in one month (an import), each rolled back."""
    runs: dict[str, list[float]] = {"part": [], "flat": []}
    for k in range(4):
        for side in ("part", "flat"):
            with engine.connect() as conn:
                tx = conn.begin()
                t = time.perf_counter()
                conn.execute(text(INC_INSERT.format(side=side)),
                             {"base": 10**10, "t0": day, "span": 86400.0 * 20, "n": rows})
                took = time.perf_counter() - t
                tx.rollback()
            if k:
                runs[side].append(took)
    return {"rows": rows, "partitioned": _stats(runs["part"]),
            "unpartitioned": _stats(runs["flat"]),
            "partitioned_rows_per_s": round(rows / percentiles(runs["part"], scale=1)["p50"]),
            "unpartitioned_rows_per_s": round(rows / percentiles(runs["flat"], scale=1)["p50"])}


def _stats(runs: list[float]) -> dict[str, float]:
    p = percentiles(runs, scale=1000, digits=2)
    return {"median_ms": p["p50"], "p95_ms": p["p95"], "n": p["n"]}


def _time_pair(engine: Engine, sql: str, params: dict[str, Any], repeat: int,
               flat_sql: str | None = None) -> dict[str, Any]:
    """The same query on the partitioned and the flat table, alternating; the answers compared
    (``flat_sql``: the flat side's own statement, when the partitioned one reads differently)."""
    runs: dict[str, list[float]] = {"part": [], "flat": []}
    answers: dict[str, Any] = {}
    with engine.connect() as conn:
        for k in range(repeat + 1):
            for side in ("part", "flat"):
                q = text((flat_sql if flat_sql and side == "flat" else sql).format(side=side))
                t = time.perf_counter()
                rows = conn.execute(q, params).all()
                took = time.perf_counter() - t
                if k:
                    runs[side].append(took)
                answers[side] = [tuple(r) for r in rows]
    assert answers["part"] == answers["flat"], "the two tables disagree"
    return {"partitioned": _stats(runs["part"]), "unpartitioned": _stats(runs["flat"]),
            "rows_returned": len(answers["part"])}


def _intake(engine: Engine, repeat: int, day: datetime) -> dict[str, Any]:
    """Phone batches of 20 fixes and single event rows, each its own rolled-back transaction."""
    out: dict[str, Any] = {}
    batch = 20
    for what, sql, make in [
        ("fix_batch_of_20",
         "INSERT INTO bench_fix_{side} (staff_id, at, geom, accuracy_m) SELECT :s, t, "
         "ST_SetSRID(ST_MakePoint(x, y), 4490), 8 FROM unnest(CAST(:t AS timestamptz[]), "
         "CAST(:x AS float8[]), CAST(:y AS float8[])) AS u(t, x, y) ON CONFLICT DO NOTHING",
         lambda k: {"s": k % STAFF + 1,
                    "t": [day + timedelta(seconds=7 + 30 * i + 3600 * k) for i in range(batch)],
                    "x": [120.1 + 4e-5 * i for i in range(batch)],
                    "y": [29.3 + 1e-5 * (i % 5) for i in range(batch)]}),
        ("event_row",
         "INSERT INTO bench_event_{side} (id, incident_id, at, actor, action, from_state, "
         "to_state) VALUES (:id, :i, :t, 'user:bench', 'dispatch', 'registered', 'dispatched')",
         lambda k: {"id": 10**12 + k, "i": 10**9 + k, "t": day + timedelta(minutes=k)}),
    ]:
        runs: dict[str, list[float]] = {"part": [], "flat": []}
        for k in range(repeat + 2):
            params = make(k)
            for side in ("part", "flat"):
                with engine.connect() as conn:
                    tx = conn.begin()
                    t = time.perf_counter()
                    conn.execute(text(sql.format(side=side)), params)
                    took = time.perf_counter() - t
                    tx.rollback()
                if k >= 2:
                    runs[side].append(took)
        part, flat = _stats(runs["part"]), _stats(runs["flat"])
        out[what] = {"partitioned": part, "unpartitioned": flat,
                     "partitioned_rows_per_s": round(
                         (batch if what.startswith("fix") else 1) / part["median_ms"] * 1000),
                     "unpartitioned_rows_per_s": round(
                         (batch if what.startswith("fix") else 1) / flat["median_ms"] * 1000)}
    # bulk: 200,000 fixes of one day in one statement (an import, a replay), rolled back
    bulk = 200_000
    runs = {"part": [], "flat": []}
    for k in range(4):
        for side in ("part", "flat"):
            with engine.connect() as conn:
                tx = conn.begin()
                t = time.perf_counter()
                conn.execute(text(
                    f"INSERT INTO bench_fix_{side} (staff_id, at, geom, accuracy_m) "
                    "SELECT g % :staff + 1, :t0 + make_interval(secs => g * 0.4 + 0.013), "
                    "ST_SetSRID(ST_MakePoint(120.0 + (g % 997) * 3e-4, 29.2 + (g % 991) * 2e-4), "
                    "4490), 8 FROM generate_series(1, :n) g"),
                    {"staff": STAFF, "t0": day + timedelta(days=1), "n": bulk})
                took = time.perf_counter() - t
                tx.rollback()
            if k:
                runs[side].append(took)
    out["bulk_200k_fixes"] = {
        "partitioned": _stats(runs["part"]), "unpartitioned": _stats(runs["flat"]),
        "partitioned_rows_per_s": round(bulk / percentiles(runs["part"], scale=1)["p50"]),
        "unpartitioned_rows_per_s": round(bulk / percentiles(runs["flat"], scale=1)["p50"])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixes", type=int, default=3_000_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--incidents", type=int, default=0,
                    help="Also incidents partitioned on received_at (0029); 0 skips them")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help="Reuse the tables of a previous run")
    args = ap.parse_args()
    engine = _engine()
    now = datetime.now(UTC)
    start = datetime(now.year - 1, now.month, 1, tzinfo=UTC)
    with engine.connect() as conn:
        have = conn.execute(text("SELECT to_regclass('bench_event_flat')")).scalar()
    if not (args.keep and have):
        t = time.perf_counter()
        with engine.begin() as conn:
            _build(conn, args.fixes, args.events, start)
        built = time.perf_counter() - t
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE bench_fix_part, bench_fix_flat, bench_event_part, "
                              "bench_event_flat"))
    else:
        built = 0.0
    if args.incidents and not (args.keep and have):
        with engine.begin() as conn:
            _build_incidents(conn, args.incidents, start)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE bench_inc_part, bench_inc_flat, bench_inc_key"))
    mid = datetime(start.year + (start.month + 5) // 12, (start.month + 5) % 12 + 1, 1, tzinfo=UTC)
    nxt = datetime(mid.year + mid.month // 12, mid.month % 12 + 1, 1, tzinfo=UTC)
    win = {"a": mid, "b": nxt}
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("bench_fix_part", "bench_fix_flat", "bench_event_part",
                            "bench_event_flat")}
        month_fixes = conn.execute(text(
            "SELECT count(*) FROM bench_fix_part WHERE at >= :a AND at < :b"), win).scalar_one()
    out: dict[str, Any] = {
        "fixes": counts["bench_fix_part"], "events": counts["bench_event_part"],
        "same_rows": counts["bench_fix_part"] == counts["bench_fix_flat"]
        and counts["bench_event_part"] == counts["bench_event_flat"],
        "month": f"{mid:%Y-%m}", "fixes_in_month": month_fixes, "build_s": round(built, 1),
        "queries": {
            "fixes_one_month_count_and_mean_lon": _time_pair(
                engine, "SELECT count(*), round(avg(ST_X(geom))::numeric, 6) "
                "FROM bench_fix_{side} WHERE at >= :a AND at < :b", win, args.repeat),
            "fixes_one_worker_one_month_track": _time_pair(
                engine, "SELECT at, ST_X(geom), ST_Y(geom) FROM bench_fix_{side} "
                "WHERE staff_id = 17 AND at >= :a AND at < :b ORDER BY at", win, args.repeat),
            "events_one_month_by_action": _time_pair(
                engine, "SELECT action, count(*) FROM bench_event_{side} "
                "WHERE at >= :a AND at < :b GROUP BY 1 ORDER BY 1", win, args.repeat),
            "events_of_one_case_no_window": _time_pair(
                engine, "SELECT id, at, action FROM bench_event_{side} WHERE incident_id = "
                ":i ORDER BY id", {"i": args.events // 16}, args.repeat),
        },
        "intake": _intake(engine, args.repeat, mid + timedelta(days=3)),
    }
    if args.incidents:
        probe = {"i": args.incidents // 3}
        out["incidents"] = {
            "rows": args.incidents,
            "one_month_list_by_state_and_grid": _time_pair(
                engine, "SELECT state, count(*), count(DISTINCT grid_code) FROM bench_inc_{side} "
                "WHERE received_at >= :a AND received_at < :b GROUP BY 1 ORDER BY 1", win,
                args.repeat),
            "one_month_newest_50": _time_pair(
                engine, "SELECT id, state, grid_code FROM bench_inc_{side} WHERE received_at >= "
                ":a AND received_at < :b ORDER BY received_at DESC LIMIT 50", win, args.repeat),
            "get_by_id_no_window": _time_pair(
                engine, "SELECT id, state, grid_code, received_at FROM bench_inc_{side} "
                "WHERE id = :i", probe, args.repeat),
            "get_by_id_via_registry": _time_pair(
                engine, "SELECT i.id, i.state, i.grid_code, i.received_at FROM bench_inc_key k "
                "JOIN bench_inc_part i ON i.id = k.id AND i.received_at = k.received_at "
                "WHERE k.id = :i", probe, args.repeat,
                flat_sql="SELECT id, state, grid_code, received_at FROM bench_inc_flat "
                "WHERE id = :i"),
            "get_by_id_registry_initplan": _time_pair(
                engine, "SELECT id, state, grid_code, received_at FROM bench_inc_part WHERE "
                "received_at = (SELECT received_at FROM bench_inc_key WHERE id = :i) "
                "AND id = :i", probe, args.repeat,
                flat_sql="SELECT id, state, grid_code, received_at FROM bench_inc_flat "
                "WHERE id = :i"),
            "bulk_intake_100k": _bulk_incidents(engine, mid + timedelta(days=5)),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "partitions.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    engine.dispose()


if __name__ == "__main__":
    main()
