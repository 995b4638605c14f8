"""The province bench's sections beyond the locator (registered in :mod:`bench.province`).

``growth`` — the same city at three sizes, so the growth is visible (issue 20's "at least 20M
incidents, measured at three sizes"). The databases are drawn by :mod:`bench.scale` in the scale
cluster (the 10,000-grid bench city; 5M patrol fixes in each)::

    export CITYGRID_PGPORT=54390 CITYGRID_PGDATA=/work/scale/.pgdata   # a cluster of its own
    python -m bench.scale setup --db citygrid_scale_1m  --incidents 1000000
    python -m bench.scale setup                                   # citygrid_scale, 5M
    python -m bench.scale setup --db citygrid_scale_20m --incidents 20000000
    python -m bench.province measure --section growth

For each size, in one run, every figure beside its baseline:

* city-wide heat for one month at z12 (``layers.maps.heat``, the tallies) beside raw SQL binning
  of the same rows, checked equal bin by bin;
* the assessment view for the whole city by street (``layers.analysis.month.compare``, the 0028
  tallies) beside the raw statement over the incidents, checked equal;
* bulk intake of 20,000 rows through ``layers.incidents.intake.bulk`` with the tally triggers on,
  beside the same rows with them off (:func:`bench.scale.intake_cost`; rows deleted after).

``partitions``, ``replicas``, ``dask`` — the benches of those parts, run as they are documented
(each prints its own figures beside its own baseline) in a child process against the default
private cluster; their output is kept in the results. ``setup`` of ``dask`` draws its city.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import PYTHON, percentiles, timed

SIZES = ("citygrid_scale_1m", "citygrid_scale", "citygrid_scale_20m")
MONTH = "2026-10"


def _exists(db: str) -> bool:
    from bench import city

    try:
        engine = create_engine(city.url(db))
        with engine.connect() as conn:
            ok = conn.execute(text("SELECT to_regclass('assessment_tally') IS NOT NULL")).scalar()
        engine.dispose()
        return bool(ok)
    except Exception:  # noqa: BLE001 — a size not drawn (or not migrated) is skipped, said so
        return False


def growth_one(db: str, repeat: int = 5) -> dict[str, Any]:
    from bench import city, scale
    from grids.access import Principal
    from layers import maps
    from layers.analysis import month
    from layers.maps import tally as map_tally

    who = Principal.system("bench")
    as_of = datetime(2027, 1, 1, tzinfo=UTC)
    flt = maps.IncidentFilter(since=datetime.fromisoformat(f"{MONTH}-01T00:00:00+08:00"),
                              until=datetime.fromisoformat("2026-11-01T00:00:00+08:00"))
    out: dict[str, Any] = {"database": db}
    engine = create_engine(city.url(db))
    bbox = city.city_bbox(db)
    with engine.connect() as conn:
        conn.execute(text("SET default_transaction_read_only = on"))
        conn.commit()
        out["incidents"] = conn.execute(text("SELECT count(*) FROM incident")).scalar()
        out["month_incidents"] = conn.execute(text(
            "SELECT count(*) FROM incident WHERE received_at >= :s AND received_at < :u"),
            {"s": flt.since, "u": flt.until}).scalar()
        runs, fast = timed(functools.partial(maps.heat, conn, principal=who, zoom=12,
                                             bbox=bbox, filters=flt), repeat, warm=True)
        raw_runs, raw = timed(functools.partial(map_tally.raw_heat_bins, conn, zoom=12,
                                                pixels=32, bbox=bbox, filters=flt), 3, warm=False)
        got = {tuple(f["properties"]["ix_iy"]): f["properties"]["count"]
               for f in fast["features"]}
        out["heat_z12_month"] = {"tallied_ms": percentiles(runs),
                                 "raw_sql_ms": percentiles(raw_runs), "equal": got == raw}
        runs, view = timed(functools.partial(month.compare, conn, principal=who, month=MONTH,
                                             level="street", as_of=as_of), repeat, warm=True)
        raw_runs, raw_view = timed(functools.partial(
            month.compare, conn, principal=who, month=MONTH, level="street", as_of=as_of,
            tally=False), 2, warm=False)
        out["assessment_city_by_street"] = {"tallied_ms": percentiles(runs),
                                            "raw_statement_ms": percentiles(raw_runs),
                                            "equal": view == raw_view}
    engine.dispose()
    scale.DBNAME = db
    out["intake_20k"] = scale.intake_cost(rows=20_000)
    return out


def growth_setup() -> dict[str, Any]:
    return {"how": "python -m bench.scale setup --db NAME --incidents N (see this module)",
            "present": [db for db in SIZES if _exists(db)]}


def growth_measure() -> dict[str, Any]:
    res: dict[str, Any] = {"port": os.environ.get("CITYGRID_PGPORT")}
    for db in SIZES:
        if not _exists(db):
            res[db] = {"skipped": "not drawn or not at migration 0028"}
            continue
        print(f"  growth: {db}", flush=True)
        res[db] = growth_one(db)
        print(f"  {res[db]}", flush=True)
    return res


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([PYTHON, "-m", *args], capture_output=True, text=True, check=False)
    return {"command": "python -m " + " ".join(args), "rc": proc.returncode,
            "output": proc.stdout[-6000:], "stderr_tail": proc.stderr[-1500:]}


def nothing() -> dict[str, Any]:
    return {}


def partitions_measure() -> dict[str, Any]:
    return _child("bench.partitions", "--fixes", "3000000", "--events", "1000000")


def replicas_measure() -> dict[str, Any]:
    return _child("bench.replicas")


def dask_setup() -> dict[str, Any]:
    return _child("bench.dask_bulk", "setup")


def dask_measure() -> dict[str, Any]:
    return _child("bench.dask_bulk", "measure", "--repeat", "2", "--history", "20000")


# -- a province in one database -------------------------------------------------------------------
PROVINCE_DB = "citygrid_province"
#: set by ``python -m bench.province --cities N --grids-per-city N --incidents N``
DATABASE_OPTIONS: dict[str, int] = {"cities": 12, "grids_per_city": 8_500, "incidents": 2_000_000}


def province_app() -> Any:
    """The bench's app (:func:`bench.app_factory.build`) over the province database, for
    ``uvicorn --factory bench.province_sections:province_app``."""
    from bench import app_factory

    return app_factory.build()


def _province_url() -> str:
    from app import devdb

    return devdb.url(PROVINCE_DB)


def database_setup() -> dict[str, Any]:
    """Create and migrate ``citygrid_province``, load the generated province (its cities,
    streets, communities, grids, one grid chief per grid) through :mod:`data.province_load`,
    then draw incidents over every city (:func:`bench.scale.setup_incidents`, in SQL)."""
    import sys

    from app.db import migrate
    from bench import scale
    from data.province import build_province
    from data.province_load import load_province

    opts = DATABASE_OPTIONS
    subprocess.run([sys.executable, "-m", "app.devdb", "up", PROVINCE_DB], check=True,
                   stdout=subprocess.DEVNULL)
    url = _province_url()
    migrate(url)
    engine = create_engine(url)
    out: dict[str, Any] = {"database": PROVINCE_DB, **opts}
    try:
        with engine.begin() as conn:
            have = conn.execute(text("SELECT count(*) FROM region WHERE level = 'grid'")).scalar()
        if not have:
            t0 = time.perf_counter()
            p = build_province(cities=opts["cities"], grids_per_city=opts["grids_per_city"])
            out["generated_s"] = round(time.perf_counter() - t0, 1)
            print(f"  generated {len(p):,} regions in {out['generated_s']} s", flush=True)
            t0 = time.perf_counter()
            with engine.begin() as conn:
                got = load_province(conn, p, staff=True)
            out["load"] = {**got, "with_commit_s": round(time.perf_counter() - t0, 1)}
            print(f"  loaded {out['load']}", flush=True)
        with engine.begin() as conn:
            out["incidents"] = scale.setup_incidents(conn, n=opts["incidents"])
        print(f"  incidents {out['incidents']}", flush=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return out


DB_MONTH = ("2026-10-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00")  # bench.scale's year


def _bbox(conn: Any, code: str) -> tuple[float, float, float, float]:
    b = conn.execute(text("SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
                          "FROM region_current WHERE code = :c"), {"c": code}).one()
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def _in_process(conn: Any, who: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Heat, tiles and assessment in process for each principal of ``who``: each figure beside
    its baseline (raw SQL binning; the tile cache; the raw statement), checked equal."""
    import random

    from bench import scale
    from grids.city import first_view
    from grids.sql import in_scope
    from layers import assessment, maps
    from layers.maps import tally as map_tally

    since, until = (datetime.fromisoformat(t) for t in DB_MONTH)
    flt = maps.IncidentFilter(since=since, until=until)
    month = since.strftime("%Y-%m")
    out: dict[str, Any] = {}
    for label, (p, code, level) in who.items():
        bbox = _bbox(conn, code)
        zoom = int(first_view(bbox)["zoom"])
        runs, fast = timed(functools.partial(maps.heat, conn, principal=p, zoom=zoom, bbox=bbox,
                                             filters=flt), repeat, warm=True)
        raw_runs, raw = timed(functools.partial(map_tally.raw_heat_bins, conn, zoom=zoom,
                                                pixels=32, bbox=bbox, filters=flt,
                                                scope=p.scope), 3)
        got = {tuple(f["properties"]["ix_iy"]): f["properties"]["count"]
               for f in fast["features"]}
        res: dict[str, Any] = {"code": code, "heat": {
            "zoom": zoom, "bins": len(fast["features"]), "total": fast.get("total"),
            "tallied_ms": percentiles(runs), "raw_sql_ms": percentiles(raw_runs),
            "equal": got == raw}}
        rng = random.Random(2612)
        cold: list[float] = []
        warm: list[float] = []
        for z in (zoom + 1, zoom + 3):
            for x, y in scale.sample_tiles(conn, z, 4, rng):
                for layer in maps.LAYERS:
                    r, _ = timed(functools.partial(maps.tile, conn, layer, z, x, y, principal=p,
                                                   filters=flt, cache=None), 3)
                    cold += r
                    cache = maps.TileCache()
                    r, _ = timed(functools.partial(maps.tile, conn, layer, z, x, y, principal=p,
                                                   filters=flt, cache=cache), 3, warm=True)
                    warm += r
        res["tiles"] = {"zooms": [zoom + 1, zoom + 3], "no_cache_ms": percentiles(cold),
                        "cache_hit_ms": percentiles(warm)}
        cond, params = in_scope(p.scope, "i.region_code")
        args: dict[str, Any] = {
            "where": cond, "params": {**params, "as_of": datetime(2027, 1, 1, tzinfo=UTC)},
            "windows": [(since, until)], "levels": [level], "region": None, "scope": p.scope,
            "total": True, "p90": []}
        runs, tallied = timed(functools.partial(assessment.figures, conn, tally=True, **args),
                              max(3, repeat // 4), warm=True)
        raw_runs, plain = timed(functools.partial(assessment.figures, conn, tally=False, **args),
                                2)
        res["assessment"] = {
            "month": month, "level": level, "rows": len(tallied[0]["levels"][level]),
            "tallied_ms": percentiles(runs), "raw_statement_ms": percentiles(raw_runs),
            "equal": tallied[0]["levels"] == plain[0]["levels"]
            and tallied[0]["total"] == plain[0]["total"]}
        out[label] = res
        print(f"  {label}: {res}", flush=True)
    return out


def _key(conn: Any, name: str, role: str, code: str) -> str:
    from app.auth import new_api_key

    conn.execute(text("DELETE FROM api_key WHERE name = :n"), {"n": name})
    key, prefix, key_hash = new_api_key()
    conn.execute(text(
        "INSERT INTO api_key (name, prefix, key_hash, role, region_id, rate_limit_per_minute) "
        "VALUES (:n, :p, :h, :r, (SELECT id FROM region WHERE code = :c), 2000000000)"),
        {"n": name, "p": prefix, "h": key_hash, "r": role, "c": code})
    return key


def _get(base: str, path: str, key: str) -> float:
    import urllib.request

    req = urllib.request.Request(base + path, headers={"X-API-Key": key})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as resp:
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}")
    return (time.perf_counter() - t0) * 1000


def _wrk(base: str, prefix: str, script: Any, paths: Any, key: str, seconds: float
         ) -> dict[str, Any]:
    import json
    import re

    from bench.http_single import CONNECTIONS, WRK

    cmd = [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{int(round(seconds))}s", "--timeout", "5s",
           "--latency", "-s", str(script), base, "--", str(paths), prefix, key]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    m = re.search(r"^BENCHJSON (\{.*\})$", proc.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk output not understood:\n{proc.stdout}\n{proc.stderr}")
    res = json.loads(m.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", proc.stdout)
    res["non_2xx"] = int(bad.group(1)) if bad else 0
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    return res


def _over_http(url: str, codes: dict[str, str], repeat: int, seconds: float, rounds: int
               ) -> dict[str, Any]:
    """The same views over HTTP, a supervisor's key per principal, one uvicorn worker (the
    bench app, :func:`province_app`); single ``/locate`` lookups by wrk against the trivial
    endpoints, interleaved rounds."""
    import numpy as np

    from bench import scale
    from bench.common import RESULTS, free_port
    from bench.http_single import LUA
    from grids.city import first_view
    from grids.locate import load_snapshot

    engine = create_engine(url)
    with engine.begin() as conn:
        keys = {label: _key(conn, f"bench-province-{label}", "supervisor", code)
                for label, code in codes.items()}
        keys["dispatcher"] = _key(conn, "bench-province-dispatcher", "dispatcher",
                                  codes["province"])
        bboxes = {label: _bbox(conn, code) for label, code in codes.items()}
        snap = load_snapshot(conn)
    engine.dispose()
    rng = np.random.default_rng(2612)
    west, south, east, north = bboxes["province"]
    lon, lat = rng.uniform(west, east, 40_000), rng.uniform(south, north, 40_000)
    inside = np.flatnonzero(snap.grids.query_exact(lon, lat) >= 0)[:10_000]
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = RESULTS / "province_wrk_paths.txt"
    paths.write_text("".join(f"?lon={x:.7f}&lat={y:.7f}\n"
                             for x, y in zip(lon[inside], lat[inside], strict=True)))
    script = RESULTS / "province_wrk.lua"
    script.write_text(LUA)
    port = free_port()
    env = {**os.environ, "CITYGRID_BENCH_DATABASE_URL": url}
    log = open(RESULTS / "uvicorn-province.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PYTHON, "-m", "uvicorn", "--factory", "bench.province_sections:province_app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"points": int(inside.size)}
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {log.name}")
            try:
                _get(base, "/health", "")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        first = paths.read_text().splitlines()[0]
        _get(base, "/locate" + first, keys["dispatcher"])
        time.sleep(5)  # the background raster build
        since, until = DB_MONTH
        window = f"since={since.replace('+', '%2B')}&until={until.replace('+', '%2B')}"
        month = since[:7]
        for label in codes:
            b = bboxes[label]
            zoom = int(first_view(b)["zoom"])
            heat = (f"/maps/heat?zoom={zoom}&bbox={b[0]:.5f},{b[1]:.5f},{b[2]:.5f},{b[3]:.5f}"
                    f"&{window}")
            level = "city" if label == "province" else "street"
            tx, ty = scale.tile_of((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, zoom + 1)
            views = {"heat": heat,
                     "tile_bins": f"/tiles/bins/{zoom + 1}/{tx}/{ty}.mvt?{window}",
                     "tile_incidents": f"/tiles/incidents/{zoom + 1}/{tx}/{ty}.mvt?{window}",
                     "assessment": f"/assessment?month={month}&level={level}",
                     "trivial": "/_baseline/trivial"}
            res: dict[str, Any] = {}
            for name, path in views.items():
                _get(base, path, keys[label])
                res[f"{name}_ms"] = percentiles([_get(base, path, keys[label])
                                                 for _ in range(repeat)])
            out[label] = res
            print(f"  http {label}: {res}", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"locate": [], "trivial": [], "trivial_hot": []}
        prefixes = {"locate": "/locate", "trivial": "/_baseline/trivial",
                    "trivial_hot": "/_baseline/trivial_hot"}
        for prefix in prefixes.values():  # warm-up
            _wrk(base, prefix, script, paths, keys["dispatcher"], 1)
        for _ in range(rounds):
            for name, prefix in prefixes.items():
                runs[name].append(_wrk(base, prefix, script, paths, keys["dispatcher"], seconds))
        single = {}
        for name, rs in runs.items():
            req = sum(r["requests"] for r in rs)
            dur = sum(r["duration_us"] for r in rs) / 1e6
            single[name] = {"rps": round(req / dur, 1),
                            "p50_ms": round(float(np.mean([r["p50_us"] for r in rs])) / 1000, 2),
                            "p99_ms": round(max(r["p99_us"] for r in rs) / 1000, 2),
                            "non_2xx": sum(r["non_2xx"] for r in rs)}
        single["locate_vs_trivial"] = round(single["locate"]["rps"] / single["trivial"]["rps"], 3)
        single["locate_vs_trivial_hot"] = round(
            single["locate"]["rps"] / single["trivial_hot"]["rps"], 3)
        out["single_locate"] = single
        print(f"  http single /locate: {single}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    return out


def database_measure(repeat: int = 20, seconds: float = 5.0, rounds: int = 2) -> dict[str, Any]:
    """The province database (``setup --section database`` first): for the first city (its
    supervisor) and for the province (its supervisor), heat and tiles p95 beside their
    baselines, the assessment (city: by street; province: by city) from the tallies beside the
    raw statement; the same over HTTP; single ``/locate`` lookups against trivial endpoints."""
    from grids.access import Principal, Scope
    from grids.city import read_profile

    url = _province_url()
    engine = create_engine(url)
    out: dict[str, Any] = {"database": PROVINCE_DB}
    try:
        with engine.connect() as conn:
            conn.execute(text("SET default_transaction_read_only = on"))
            conn.commit()
            prof = read_profile(conn)
            if not prof.is_province or prof.code is None:
                raise SystemExit("run `python -m bench.province setup --section database` first")
            city = conn.execute(text("SELECT min(code) FROM region_current WHERE level = 'city'"
                                     )).scalar_one()
            out["rows"] = {
                "incidents": conn.execute(text("SELECT count(*) FROM incident")).scalar(),
                "grids": conn.execute(text(
                    "SELECT count(*) FROM region_current WHERE level = 'grid'")).scalar(),
                "cities": conn.execute(text(
                    "SELECT count(*) FROM region_current WHERE level = 'city'")).scalar(),
                "zones": sorted({z for _, z in prof.city_zones}),
                "month_incidents": conn.execute(text(
                    "SELECT count(*) FROM incident WHERE received_at >= :s AND received_at < :u"),
                    {"s": DB_MONTH[0], "u": DB_MONTH[1]}).scalar()}
            print(f"  {out['rows']}", flush=True)
            head = prof.code[:2]
            who = {"city": (Principal.make("bench:city", "supervisor", Scope.of(city),
                                           province=head), city, "street"),
                   "province": (Principal.make("bench:province", "supervisor",
                                               Scope.of(prof.code), province=head),
                                prof.code, "city")}
            out["in_process"] = _in_process(conn, who, repeat)
        out["http"] = _over_http(url, {"city": city, "province": prof.code}, repeat, seconds,
                                 rounds)
    finally:
        engine.dispose()
    return out
