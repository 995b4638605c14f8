"""Issue 6 at scale: 10,000 grids, 5,000,000 incidents, 5,000,000 GPS fixes; heat and tiles.

    python -m bench.scale setup      # once: creates/fills citygrid_scale (idempotent, ~20 min)
    python -m bench.scale setup --db citygrid_scale_20m --incidents 20000000   # the growth curve
    python -m bench.scale measure    # read-only timings, printed as JSON (a few minutes)
    python -m bench.scale intake     # bulk intake of 100k rows with the tally triggers off/on

**Setup** (``citygrid_scale`` in the private cluster, the 10,000-grid city of :mod:`bench.city`):

* incidents are drawn in SQL (``generate_series`` / ``ST_GeneratePoints``, one statement per
  tenth of the grids), over the year before :data:`END`: grids get a weight (random, times
  five Gaussian hot spots round the centre, the markets and the station), points are uniform
  inside their grid, hours follow a working-day shape, categories the demo catalogue's leaves,
  states follow age (older than 30 days: closed/evaluated/voided; 5–30 days: 10 % still open,
  挂账; the last 5 days: 60 % open). The tally triggers are
  disabled during the load and the tallies rebuilt once (``citygrid_tally_rebuild()``,
  ``citygrid_assessment_tally_rebuild()``),
  then ``VACUUM ANALYZE``. The table is then clustered on ``received_at``: intake writes in
  time order, the draw wrote grid by grid (the raw baselines profit from it as much).
* fixes: 2,604 grid workers × 2 days × two 4-hour shifts, a fix every 30 s, on a Lissajous loop
  inside their grid with 5 m jitter: 5,000,000 rows (plain ``INSERT .. SELECT``).
* each part is skipped when its rows are there (external ids ``scale-*``; fixes in the window).

**Measure** (every statement in a READ ONLY transaction; the machine is shared, so one run):

* city-wide heat for one month (October 2026), square bins at zoom 12 (1,223 m) and 11:
  ``layers.maps.heat`` (tallies) beside raw SQL binning of the same rows in the same run,
  checked equal bin by bin; p50/p95 of 20 warm runs each;
* tiles z10–z16 of every layer over sampled tiles (the densest tile of each zoom and random
  tiles holding data), with the month filter and without any filter: p50/p95 with the cache
  excluded (``cache=None``), and with the cache included (the same requests again through a
  warm :class:`layers.maps.TileCache`);
* hex heat city-wide for the month (every row through ``citygrid_hex``; hexagons do not align
  with the tallies' cells).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, create_engine, text

from bench import city
from bench.common import percentiles
from bench.common import timed as common_timed

DBNAME = "citygrid_scale"
INCIDENTS = 5_000_000
FIXES = 5_000_000
END = "2026-11-29T00:00:00+08:00"  # incidents are received in the 365 days before this
FIX_DAYS = ("2026-11-26", "2026-11-27")
FIX_WORKERS = 2605  # × 2 days × 960 fixes (two 4-hour shifts at 30 s) = 5,001,600
HOT_SPOTS = [(120.075, 29.306, 1500.0, 30.0), (120.108, 29.337, 1200.0, 40.0),
             (120.080, 29.312, 800.0, 20.0), (120.046, 29.372, 700.0, 10.0),
             (120.105, 29.300, 1200.0, 12.0)]  # lon, lat, sigma m, weight


def _sql(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params)


def cluster_by_time(conn: Connection) -> None:
    """CLUSTER ``incident`` on ``received_at``, inside the caller's transaction. Partitioned by
    month (migration 0029), PostgreSQL clusters a partitioned table only outside a transaction
    block, so each month is clustered on its own copy of the index."""
    parts = _sql(conn, """
        SELECT t.oid::regclass::text AS tab, x.inhrelid::regclass::text AS idx
        FROM pg_inherits x JOIN pg_index i ON i.indexrelid = x.inhrelid
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE x.inhparent = 'incident_received_idx'::regclass""").all()
    if not parts:  # one table (before 0029)
        _sql(conn, "CLUSTER incident USING incident_received_idx")
    for tab, idx in parts:
        _sql(conn, f"CLUSTER {tab} USING {idx}")


def setup_incidents(conn: Connection, *, n: int = INCIDENTS, parts: int = 10) -> dict[str, Any]:
    """Draw ``n`` incidents in SQL; skipped if they are there. Returns what it did."""
    have = _sql(conn, "SELECT count(*) FROM incident WHERE external_id LIKE 'scale-%'").scalar()
    if have >= 0.99 * n:  # per-grid rounding: the total is n ± a few thousand
        return {"incidents": have, "skipped": True}
    if have:
        _sql(conn, "DELETE FROM incident WHERE external_id LIKE 'scale-%'")
    from data.incidents import CATEGORY_WEIGHT
    from layers.incidents import catalogue

    catalogue.seed(conn)
    leaves = _sql(conn, "SELECT id, code FROM category WHERE parent_id IS NOT NULL "
                        "ORDER BY code").all()
    # A weighted pick as an array with each id repeated by its weight (one random index).
    pick = [cid for cid, code in leaves for _ in range(max(1, round(CATEGORY_WEIGHT.get(code, 1))))]
    hot = " + ".join(
        f"{w} * exp(greatest(-50, -(power(ST_X(c) - {x}, 2) * 9.4e9 + power(ST_Y(c) - {y}, 2)"
        f" * 1.23e10) / (2 * {s}^2)))" for x, y, s, w in HOT_SPOTS)  # degrees → m² at 29° N
    t0 = time.perf_counter()
    _sql(conn, "DROP TABLE IF EXISTS scale_grid")
    _sql(conn, f"""
        CREATE UNLOGGED TABLE scale_grid AS
        SELECT r.code, r.geom, s.code AS staff_code,
               (0.2 + random()) * (1 + {hot}) AS w, row_number() OVER (ORDER BY r.code) AS gi
        FROM (SELECT code, id, geom, ST_Centroid(geom) AS c FROM region_current
              WHERE level = 'grid') r
        LEFT JOIN LATERAL (SELECT st.code FROM assignment a JOIN staff st ON st.id = a.staff_id
                           WHERE a.region_id = r.id AND a.duty = 'primary' AND a.valid_to IS NULL
                           ORDER BY a.valid_from LIMIT 1) s ON true""")
    _sql(conn, "SELECT setseed(0.330782)")
    _sql(conn, "ALTER TABLE incident DISABLE TRIGGER incident_tally_insert")
    _sql(conn, "ALTER TABLE incident DISABLE TRIGGER incident_assessment_tally_insert")
    _sql(conn, "ALTER TABLE incident DISABLE TRIGGER incident_map_notify")
    open_states = "ARRAY['received','registered','dispatched','handling','reported','verified']"
    for part in range(parts):
        _sql(conn, f"""
        INSERT INTO incident (source, external_id, category_id, description, geom, crs_in,
            state, region_code, grid_code, community_code, street_code, responsible_code,
            department_id, received_at, state_since, due_at, closed_at, closed_on_time)
        SELECT (ARRAY['hotline_12345','hotline_12345','hotline_12345','grid_worker',
                      'grid_worker','supervisor','citizen_app','police_110'])[1 + floor(random() * 8)::int],
               'scale-' || g.gi || '-' || d.path[1], c.id, '', d.geom, 'EPSG:4490', st.state,
               g.code, g.code, left(g.code, 12), left(g.code, 9) || '000', g.staff_code,
               c.department_id, t.at, t.at, t.at + interval '120 hours',
               CASE WHEN st.state IN ('closed', 'evaluated') THEN t.at + t.took END,
               CASE WHEN st.state IN ('closed', 'evaluated') THEN t.took <= interval '120 hours' END
        FROM (SELECT *, greatest(1, round(:n * w / sum(w) OVER ()))::int AS k FROM scale_grid) g
        CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(g.geom, g.k, (g.gi % 2147483647)::int)) d
        CROSS JOIN LATERAL (SELECT
            (CAST(:end AS timestamptz) - interval '365 days'
             + floor(random() * 365) * interval '1 day'
             + CASE WHEN random() < 0.7 THEN interval '8 hours' + random() * interval '10 hours'
                    ELSE random() * interval '24 hours' END) AS at,
            random() * interval '150 hours' AS took, d.path AS p OFFSET 0) t
        CROSS JOIN LATERAL (SELECT (:pick)[1 + floor(random() * :npick)::int] AS cid,
                                   t.p AS p2 OFFSET 0) pk
        JOIN category c ON c.id = pk.cid
        CROSS JOIN LATERAL (SELECT CASE
            WHEN t.at < CAST(:end AS timestamptz) - interval '30 days' THEN
                (ARRAY['closed','closed','closed','closed','closed','closed','closed','closed',
                       'evaluated','voided'])[1 + floor(random() * 10)::int]
            WHEN t.at < CAST(:end AS timestamptz) - interval '5 days' THEN
                CASE WHEN random() < 0.1 THEN ({open_states})[1 + floor(random() * 6)::int]
                     ELSE 'closed' END
            ELSE ({open_states} || ARRAY['closed','closed','closed','closed'])
                 [1 + floor(random() * 10)::int] END AS state, pk.p2 AS p3 OFFSET 0) st
        WHERE g.gi % :parts = :part""",
             n=n, end=END, pick=pick, npick=len(pick), parts=parts, part=part)
        print(f"  incidents part {part + 1}/{parts}: {time.perf_counter() - t0:.0f} s", flush=True)
    _sql(conn, "ALTER TABLE incident ENABLE TRIGGER incident_tally_insert")
    _sql(conn, "ALTER TABLE incident ENABLE TRIGGER incident_assessment_tally_insert")
    _sql(conn, "ALTER TABLE incident ENABLE TRIGGER incident_map_notify")
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    # Intake writes incidents in time order; the draw above wrote them grid by grid.
    cluster_by_time(conn)
    cluster_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    _sql(conn, "SELECT citygrid_tally_rebuild()")
    _sql(conn, "SELECT citygrid_assessment_tally_rebuild()")  # migration 0028
    _sql(conn, "SELECT nextval('map_data_version')")
    _sql(conn, "DROP TABLE scale_grid")
    count = _sql(conn, "SELECT count(*) FROM incident WHERE external_id LIKE 'scale-%'").scalar()
    return {"incidents": count, "load_s": round(load_s, 1), "cluster_s": round(cluster_s, 1),
            "tally_rebuild_s": round(time.perf_counter() - t1, 1)}


def settle_states(conn: Connection) -> dict[str, Any]:
    """Databases drawn before the 5–30-day rule held 60 % open cases there: close 5 in 6 of
    them (one UPDATE, through the tally triggers). Skipped when already settled."""
    where = ("state IN ('received','registered','dispatched','handling','reported','verified') "
             "AND received_at >= CAST(:end AS timestamptz) - interval '30 days' "
             "AND received_at < CAST(:end AS timestamptz) - interval '5 days'")
    total = _sql(conn, "SELECT count(*) FROM incident WHERE received_at >= CAST(:end AS "
                       "timestamptz) - interval '30 days' AND received_at < CAST(:end AS "
                       "timestamptz) - interval '5 days'", end=END).scalar()
    still = _sql(conn, f"SELECT count(*) FROM incident WHERE {where}", end=END).scalar()
    if not total or still <= 0.2 * total:
        return {"open_5_30_days": still, "skipped": True}
    t0 = time.perf_counter()
    _sql(conn, "SELECT setseed(0.5)")
    n = _sql(conn, f"UPDATE incident SET state = 'closed', closed_at = received_at + interval "
                   f"'100 hours', closed_on_time = true WHERE {where} AND random() < 5.0 / 6",
             end=END).rowcount
    return {"closed": n, "update_s": round(time.perf_counter() - t0, 1)}


def setup_fixes(conn: Connection, *, workers: int = FIX_WORKERS) -> dict[str, Any]:
    """``workers`` × 2 days × 960 fixes on loops inside each worker's grid; skipped if there."""
    have = _sql(conn, "SELECT count(*) FROM patrol_fix WHERE at >= CAST(:a AS timestamptz) "
                      "AND at < CAST(:a AS timestamptz) + interval '2 days'",
                a=FIX_DAYS[0] + "T00:00:00+08:00").scalar()
    if have >= FIXES - 1000:
        return {"fixes": have, "skipped": True}
    t0 = time.perf_counter()
    _sql(conn, "SELECT setseed(0.2026)")
    _sql(conn, """
        INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m, crs_in, received_at)
        SELECT w.staff_id, f.at,
               ST_Transform(ST_SetSRID(ST_MakePoint(
                   w.cx + w.r * sin(2 * pi() * f.s / w.p1 + w.f1) + 5 * (random() - 0.5),
                   w.cy + w.r * sin(2 * pi() * f.s / w.p2 + w.f2) + 5 * (random() - 0.5)),
                   (SELECT citygrid_metric_srid())), 4490),
               (3 + 12 * random())::real, 'EPSG:4490', f.at + interval '5 seconds'
        FROM (SELECT a.staff_id, ST_X(c) AS cx, ST_Y(c) AS cy,
                     0.35 * sqrt(ST_Area(g)) AS r, 900 + 900 * random() AS p1,
                     700 + 1100 * random() AS p2, 6.3 * random() AS f1, 6.3 * random() AS f2
              FROM (SELECT DISTINCT ON (a.staff_id) a.staff_id,
                           ST_Transform(rc.geom, (SELECT citygrid_metric_srid())) AS g,
                           ST_Transform(ST_PointOnSurface(rc.geom), (SELECT citygrid_metric_srid())) AS c
                    FROM assignment a JOIN region_current rc ON rc.id = a.region_id
                    WHERE rc.level = 'grid' AND a.duty = 'primary' AND a.valid_to IS NULL
                    ORDER BY a.staff_id, rc.code) a
              ORDER BY a.staff_id LIMIT :workers) w
        CROSS JOIN LATERAL (
            SELECT d + sh + s * interval '30 seconds' AS at, s * 30 AS s
            FROM unnest(CAST(:days AS timestamptz[])) AS d,
                 unnest(ARRAY[interval '8 hours 30 minutes', interval '13 hours 30 minutes']) sh,
                 generate_series(0, 479) s) f""",
         workers=workers, days=[d + "T00:00:00+08:00" for d in FIX_DAYS])
    count = _sql(conn, "SELECT count(*) FROM patrol_fix").scalar()
    return {"fixes": count, "load_s": round(time.perf_counter() - t0, 1)}


def setup_cover(conn: Connection) -> dict[str, Any]:
    """Daily coverage per grid (the grid tiles' attributes) for the fixes' days; skipped if there.
    The fixes are loaded by SQL above, not through the intake that would keep it."""
    if _sql(conn, "SELECT count(*) FROM patrol_grid_cover WHERE span = 'd'").scalar():
        return {"skipped": True}
    from layers.patrols.grid_cover import refresh_range

    t0 = time.perf_counter()
    done = refresh_range(conn, date.fromisoformat(FIX_DAYS[0]), date.fromisoformat(FIX_DAYS[-1]))
    return done | {"refresh_s": round(time.perf_counter() - t0, 1)}


def setup() -> dict[str, Any]:
    out: dict[str, Any] = {"city": city.ensure(verbose=True, dbname=DBNAME)}
    engine = create_engine(city.url(DBNAME))
    try:
        with engine.begin() as conn:
            # ~500,000 rows per statement, as at 5M
            out["incidents"] = setup_incidents(conn, n=INCIDENTS,
                                               parts=max(10, -(-INCIDENTS // 500_000)))
        print(out["incidents"], flush=True)
        with engine.begin() as conn:
            out["states"] = settle_states(conn)
        print(out["states"], flush=True)
        with engine.begin() as conn:
            out["fixes"] = setup_fixes(conn)
        print(out["fixes"], flush=True)
        with engine.begin() as conn:
            out["grid_cover"] = setup_cover(conn)
        print(out["grid_cover"], flush=True)
        t0 = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE incident, incident_cell_tally, incident_grid_tally, "
                              "patrol_fix, boundary_tile_geom, grid_tile_piece, "
                              "patrol_grid_cover"))
        out["vacuum_s"] = round(time.perf_counter() - t0, 1)
        with engine.connect() as conn:
            out["sizes"] = {r[0]: r[1] for r in conn.execute(text(
                "SELECT c, pg_size_pretty(pg_total_relation_size(c::regclass)) FROM unnest("
                "ARRAY['incident', 'incident_cell_tally', 'incident_grid_tally', 'patrol_fix',"
                " 'boundary_tile_geom']) c"))}
            out["tally_rows"] = {r[0]: r[1] for r in conn.execute(text(
                "SELECT 'cell k' || k || ' ' || span::text, count(*) FROM incident_cell_tally "
                "GROUP BY k, span UNION ALL SELECT 'grid ' || span::text, count(*) "
                "FROM incident_grid_tally GROUP BY span"))}
    finally:
        engine.dispose()
    return out


# -- measure -------------------------------------------------------------------------------------

pctl = percentiles  # bench.common: the one percentile rule


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Milliseconds of ``repeat`` runs after one warm-up (:func:`bench.common.timed`)."""
    return common_timed(fn, repeat, warm=True)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    return (int((lon + 180) / 360 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def sample_tiles(conn: Connection, z: int, k: int, rng: random.Random) -> list[tuple[int, int]]:
    """The densest tile at ``z`` and ``k - 1`` random tiles holding incidents."""
    pts = conn.execute(text(
        "SELECT ST_X(geom), ST_Y(geom) FROM incident TABLESAMPLE SYSTEM (0.2) REPEATABLE (7) "
        "WHERE geom IS NOT NULL")).all()
    counts: dict[tuple[int, int], int] = {}
    for lon, lat in pts:
        t = tile_of(lon, lat, z)
        counts[t] = counts.get(t, 0) + 1
    ranked = sorted(counts, key=lambda t: -counts[t])
    others = ranked[1:]
    rng.shuffle(others)
    return [ranked[0], *others[:k - 1]]


def measure(repeat: int = 20, tiles_per_zoom: int = 6) -> dict[str, Any]:
    from grids.access import Principal
    from layers import maps
    from layers.maps import tally as map_tally

    engine = create_engine(city.url(DBNAME))
    admin = Principal.system("bench")
    month = maps.IncidentFilter(since=datetime.fromisoformat("2026-10-01T00:00:00+08:00"),
                                until=datetime.fromisoformat("2026-11-01T00:00:00+08:00"))
    result: dict[str, Any] = {"database": DBNAME}
    with engine.connect() as conn:
        conn.execute(text("SET default_transaction_read_only = on"))
        conn.commit()
        result["rows"] = {
            "incidents": conn.execute(text("SELECT count(*) FROM incident")).scalar(),
            "fixes": conn.execute(text("SELECT count(*) FROM patrol_fix")).scalar(),
            "grids": conn.execute(text(
                "SELECT count(*) FROM region_current WHERE level = 'grid'")).scalar(),
            "october_incidents": conn.execute(text(
                "SELECT count(*) FROM incident WHERE received_at >= :s AND received_at < :u"),
                {"s": month.since, "u": month.until}).scalar()}
        bbox = city.city_bbox(DBNAME)
        heat: dict[str, Any] = {}
        for zoom in (12, 11):
            def fast_heat(z: int = zoom) -> dict[str, Any]:
                return maps.heat(conn, principal=admin, zoom=z, bbox=bbox, filters=month)

            def raw_heat(z: int = zoom) -> dict[tuple[int, int], int]:
                return map_tally.raw_heat_bins(conn, zoom=z, pixels=32, bbox=bbox, filters=month)

            runs, fast = timed(fast_heat, repeat)
            raw_runs, raw = timed(raw_heat, max(3, repeat // 4))
            got = {tuple(f["properties"]["ix_iy"]): f["properties"]["count"]
                   for f in fast["features"]}
            heat[f"square_z{zoom}_month"] = {
                "tallied_ms": pctl(runs), "raw_sql_ms": pctl(raw_runs),
                "bins": len(fast["features"]), "total": fast["total"],
                "equal_to_raw": got == raw, "source": fast.get("source")}
        def hex_heat() -> dict[str, Any]:
            return maps.heat(conn, principal=admin, zoom=12, bbox=bbox, filters=month,
                             shape="hex")

        runs, hexes = timed(hex_heat, 3)
        heat["hex_z12_month"] = {"ms": pctl(runs), "bins": len(hexes["features"]),
                                 "total": hexes["total"], "source": hexes.get("source")}
        result["heat"] = heat
        rng = random.Random(20261129)
        tiles: dict[str, Any] = {}
        for label, flt in (("month", month), ("all_time", maps.IncidentFilter())):
            for z in range(10, 17):
                sample = sample_tiles(conn, z, tiles_per_zoom, rng)
                for layer in maps.LAYERS:
                    cold: list[float] = []
                    sizes = []
                    for x, y in sample:
                        r, data = timed(functools.partial(
                            maps.tile, conn, layer, z, x, y, principal=admin, filters=flt,
                            cache=None), 3)
                        cold += r
                        sizes.append(len(data))
                    cache = maps.TileCache()
                    warm: list[float] = []
                    for x, y in sample:
                        r, _ = timed(functools.partial(
                            maps.tile, conn, layer, z, x, y, principal=admin, filters=flt,
                            cache=cache), 3)
                        warm += r
                    tiles[f"{label}/{layer}/z{z}"] = {
                        "no_cache_ms": pctl(cold), "cache_ms": pctl(warm),
                        "max_bytes": max(sizes)}
                print(f"  tiles {label} z{z} done", flush=True)
        result["tiles"] = tiles
        worst = max(v["no_cache_ms"]["p95"] for v in tiles.values())
        result["tiles_worst_p95_no_cache_ms"] = worst
        result["tiles_worst_p95_cache_ms"] = max(v["cache_ms"]["p95"] for v in tiles.values())
    engine.dispose()
    return result


TALLY_TRIGGERS = ("incident_tally_insert", "incident_tally_update", "incident_tally_delete")


def intake_cost(rows: int = 100_000) -> dict[str, Any]:
    """Bulk intake of ``rows`` (``bench.bulk_intake``'s rows and code path) into the 5M-row
    database, with the tally triggers disabled (the baseline) and then enabled; each run's
    rows are deleted again (with the same trigger setting)."""
    from bench.bulk_intake import make_csv
    from grids.access import Principal
    from grids.locate import load_snapshot
    from layers.incidents import intake

    engine = create_engine(city.url(DBNAME))
    out: dict[str, Any] = {"rows": rows}
    try:
        with engine.connect() as conn:
            snap = load_snapshot(conn)
        snap.grids.build_raster(1e-4)
        snap.areas.build_raster(1e-4)
        body = make_csv(rows, snap)
        principal = Principal.system("bench")
        for label, enabled in (("triggers_off", False), ("triggers_on", True)):
            verb = "ENABLE" if enabled else "DISABLE"
            with engine.begin() as conn:
                for trig in TALLY_TRIGGERS:
                    conn.execute(text(f"ALTER TABLE incident {verb} TRIGGER {trig}"))
            try:
                t0 = time.perf_counter()
                frame = intake.read_bulk(body, filename="day.csv")
                with engine.begin() as conn:
                    result = intake.bulk(conn, snap, frame, principal=principal)
                took = time.perf_counter() - t0
                t1 = time.perf_counter()
                with engine.begin() as conn:
                    conn.execute(text("DELETE FROM incident_event WHERE incident_id IN "
                                      "(SELECT id FROM incident WHERE external_id LIKE 'bench-%')"))
                    conn.execute(text("DELETE FROM incident WHERE external_id LIKE 'bench-%'"))
                out[label] = {"imported": result["imported"], "s": round(took, 2),
                              "rows_per_s": round(rows / took),
                              "delete_s": round(time.perf_counter() - t1, 2)}
            finally:
                with engine.begin() as conn:
                    for trig in TALLY_TRIGGERS:
                        conn.execute(text(f"ALTER TABLE incident ENABLE TRIGGER {trig}"))
            print(label, out[label], flush=True)
    finally:
        engine.dispose()
    return out


def assessment_cost(repeat: int = 3, street: str = "330782001") -> dict[str, Any]:
    """November's assessment (incident figures + patrol coverage from the kept daily coverage)
    for one street's grids and for the whole city, beside the month's coverage computed from
    the fixes for that street (``layers.patrols.coverage``: the union of the month's tracks, how
    the assessment read it before the daily table)."""
    from grids.access import Principal
    from layers import assessment
    from layers.patrols import coverage

    engine = create_engine(city.url(DBNAME))
    who = Principal.system("bench")
    since = datetime.fromisoformat("2026-11-01T00:00:00+08:00")
    until = datetime.fromisoformat("2026-11-29T00:00:00+08:00")
    out: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            for label, level, region in (("street_grids", "grid", street),
                                         ("city_streets", "street", None),
                                         ("city_grids", "grid", None)):
                runs, got = timed(functools.partial(
                    assessment.monthly, conn, principal=who, month="2026-11", level=level,
                    region=region), repeat)
                out[label] = {"ms": pctl(runs), "rows": len(got["rows"])}
            runs, got = timed(functools.partial(
                coverage.coverage, conn, region=street, principal=who, since=since,
                until=until), 1)
            out["baseline_street_union_from_fixes"] = {"ms": pctl(runs),
                                                       "grids": len(got["grids"])}
    finally:
        engine.dispose()
    return out


def main() -> None:
    global DBNAME, INCIDENTS
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("setup", "measure", "intake", "assessment"))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--db", default=DBNAME,
                    help="database in the private cluster (one per size of the growth curve)")
    ap.add_argument("--incidents", type=int, default=INCIDENTS,
                    help="incidents drawn by setup (fixes stay at 5M: two days of patrols)")
    args = ap.parse_args()
    DBNAME, INCIDENTS = args.db, args.incidents
    if args.what == "setup":
        subprocess.run([sys.executable, "-m", "app.devdb", "up", DBNAME], check=True,
                       stdout=subprocess.DEVNULL)
        print(json.dumps(setup(), indent=2))
    elif args.what == "intake":
        print(json.dumps(intake_cost(), indent=2))
    elif args.what == "assessment":
        print(json.dumps(assessment_cost(), indent=2))
    else:
        print(json.dumps(measure(repeat=args.repeat), indent=2))


if __name__ == "__main__":
    main()
