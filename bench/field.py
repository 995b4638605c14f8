"""The grid worker's phone app (/worker): three figures, each beside a baseline in the same run.

    python -m bench.field [--db citygrid_test_ui]

On the browser tests' database (demo city, test accounts; ``pytest tests/ui/test_worker.py``
makes it) with the API served by uvicorn in a thread and headless Debian Chromium (390×844,
mobile, touch, geolocation in the test grid worker's first grid):

1. **App shell transfer**: the bytes of everything the phone loads before it shows the task
   list (page, script, styles, Leaflet, idb, manifest, icon), as served and gzip-compressed;
   baseline: the desk portal's page and its assets, measured the same way.
2. **Cold start to the task list** under Chromium's network emulation (1.6 Mbit/s down,
   750 kbit/s up, 150 ms RTT: "slow 3G+"), logged in, empty caches; baseline: the warm start
   of the same app (service worker cache) under the same emulation.
3. **A day's queue synced**: 2,000 fixes and 10 photos (≈ 60 kB JPEGs with EXIF) waiting in the
   phone's IndexedDB, from "online" to an empty queue, unthrottled and under the same slow-3G
   emulation; baseline: the same payload posted by a plain HTTP client (httpx, one batch of
   fixes, 10 uploads) to the same server, unthrottled.

4. **My grids** (``GET /field/grids``'s domain call, ``layers.field.tasks.my_grids``) for the
   city's first grid after a busy day on it (12,300 fixes of its worker today, every 3 s up to
   now, sweeping two thirds of it; inserted and refreshed in a transaction rolled back at the
   end), as a worker of that grid: the share read from the
   background worker's ``patrol_grid_cover`` (the default) and the unpatrolled parts when asked,
   computed (cache emptied) and kept (second call); baseline: the computation every call made
   before (today's fixes → covered parts → share and unpatrolled shape), i.e. the cold
   ``unpatrolled`` call. ``--only grids`` runs this part alone (any test database).

Prints JSON; the figures are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHELL = ["/worker/", "/worker/static/worker.js", "/worker/static/worker.css",
         "/worker/static/manifest.webmanifest", "/worker/static/icon-192.png",
         "/portal/static/vendor/leaflet-1.9.4/leaflet.js",
         "/portal/static/vendor/leaflet-1.9.4/leaflet.css",
         "/portal/static/vendor/idb-8.0.4/idb.umd.js", "/worker/sw.js"]
PORTAL = ["/", "/portal/static/app.js", "/portal/static/common.js", "/portal/static/i18n.js",
          "/portal/static/app.css", "/portal/static/vendor/leaflet-1.9.4/leaflet.js",
          "/portal/static/vendor/leaflet-1.9.4/leaflet.css"]
SLOW = {"offline": False, "latency": 150, "downloadThroughput": 1_600_000 / 8,
        "uploadThroughput": 750_000 / 8}


def _bytes(base: str, paths: list[str]) -> dict[str, int]:
    raw = gz = 0
    with httpx.Client(base_url=base) as c:
        for p in paths:
            body = c.get(p).raise_for_status().content
            raw += len(body)
            gz += len(gzip.compress(body, 6))
    return {"files": len(paths), "served_bytes": raw, "gzip_bytes": gz}


def _start(browser: Any, base: str, point: tuple[float, float], password: str) -> dict[str, Any]:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                              has_touch=True, locale="zh-CN", permissions=["geolocation"],
                              geolocation={"longitude": point[0], "latitude": point[1]})
    page = ctx.new_page()
    httpx_cookies = httpx.post(base + "/auth/session",
                               json={"username": "t_worker", "password": password}).cookies
    ctx.add_cookies([{"name": k, "value": v, "url": base} for k, v in httpx_cookies.items()])
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW)
    out: dict[str, Any] = {}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        page.goto(base + "/worker/")
        page.wait_for_function("window.citygridWorker && window.citygridWorker.ready === true "
                               "&& document.querySelectorAll('#task-list li').length > 0",
                               timeout=60_000)
        out[run + "_s"] = round(time.perf_counter() - t0, 3)
        if run == "cold":
            page.wait_for_function("navigator.serviceWorker.controller !== null")
            page.wait_for_timeout(1000)  # the shell cached by the service worker
    return {"ctx": ctx, "page": page, "cdp": cdp, **out}


def _sync(page: Any, ctx: Any, staff: str, n_fixes: int, photos: list[bytes]) -> float:
    """Fill the phone's queue while offline, then time online → empty queue."""
    ctx.set_offline(True)
    now = datetime.now(UTC)
    page.evaluate("""async ([fixes, photos]) => {
        const db = await window.citygridWorker.db();
        for (const f of fixes) await db.put('fixes', f);
        let k = 0;
        for (const b64 of photos) {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const blob = new Blob([bytes], {type: 'image/jpeg'});
          const digest = await crypto.subtle.digest('SHA-256', bytes);
          const sha = Array.from(new Uint8Array(digest), (x) => x.toString(16).padStart(2, '0')).join('');
          await db.put('outbox', {id: 'photo:' + sha, kind: 'photo', sha, blob, type: 'image/jpeg',
                                  seq: Date.now() * 1000 + k++, created: new Date().toISOString(),
                                  attempts: 0, state: null});
        } }""", [[{"at": (now - timedelta(seconds=2 * (n_fixes - i))).isoformat(),
                   "lon": 0.0, "lat": 0.0, "accuracy_m": 5} for i in range(n_fixes)],
                 [__import__("base64").b64encode(p).decode() for p in photos]])
    # real positions: along the worker's grid
    page.evaluate("""async (pt) => { const db = await window.citygridWorker.db();
        const all = await db.getAll('fixes');
        for (let i = 0; i < all.length; i++) {
          all[i].lon = pt[0] + (i % 100) * 1e-5; all[i].lat = pt[1]; await db.put('fixes', all[i]); } }""",
                  page.evaluate("[window.citygridWorker.state().position.lon, "
                                "window.citygridWorker.state().position.lat]"))
    ctx.set_offline(False)
    t0 = time.perf_counter()
    page.evaluate("window.dispatchEvent(new Event('online'))")
    while page.evaluate("""async () => { const db = await window.citygridWorker.db();
            return (await db.count('outbox')) + (await db.count('fixes')); }"""):
        time.sleep(0.05)
        if time.perf_counter() - t0 > 120:
            raise RuntimeError("the queue did not drain")
    return round(time.perf_counter() - t0, 3)


def _sync_baseline(base: str, staff: str, point: tuple[float, float], n_fixes: int,
                   photos: list[bytes], password: str) -> float:
    token = httpx.post(base + "/auth/token", json={"username": "t_worker",
                                                    "password": password}).json()["access_token"]
    h = {"Authorization": "Bearer " + token}
    now = datetime.now(UTC) + timedelta(seconds=1)
    fixes = [{"staff_code": staff, "time": (now - timedelta(seconds=2 * (n_fixes - i)) +
                                           timedelta(milliseconds=1)).isoformat(),
              "lon": point[0] + (i % 100) * 1e-5, "lat": point[1], "accuracy_m": 5}
             for i in range(n_fixes)]
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, headers=h, timeout=60) as c:
        for p in photos:
            c.post("/field/photos", content=p,
                   headers={"Content-Type": "image/jpeg"}).raise_for_status()
        c.post("/patrols/fixes", json={"fixes": fixes}).raise_for_status()
    return round(time.perf_counter() - t0, 3)


def _median_ms(fn: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(sorted(times)[len(times) // 2], 1)


def _walk_a_grid(conn: Any, since: datetime, until: datetime, n: int) -> tuple[str, int]:
    """``n`` fixes today of a worker zig-zagging over the first grid of the city (every 3 s,
    ending now), and the background worker's refresh of that day, in the caller's
    transaction."""
    import numpy as np
    from sqlalchemy import text

    from layers.patrols import grid_cover

    grid, staff, x0, y0, x1, y1 = conn.execute(text(
        "SELECT r.code, a.staff_id, ST_XMin(r.geom), ST_YMin(r.geom), ST_XMax(r.geom), "
        "ST_YMax(r.geom) FROM region_current r JOIN assignment a ON a.region_id = r.id "
        "AND a.valid_to IS NULL WHERE r.level = 'grid' ORDER BY r.code LIMIT 1")).one()
    n = min(n, int((until - since).total_seconds() // 3) - 1)
    i = np.arange(n)
    rows = 6  # sweeps across the west two thirds of the grid, then back
    t = (i % (n // rows)) / (n // rows)
    band = (i // (n // rows)) % rows
    xs = x0 + (x1 - x0) * 0.66 * np.where(band % 2 == 0, t, 1 - t)
    ys = y0 + (y1 - y0) * (band + 0.5) / rows
    ats = [until - timedelta(seconds=3 * (n - k)) for k in range(n)]
    conn.execute(text(
        "INSERT INTO patrol_fix (staff_id, at, geom, accuracy_m) SELECT :s, a, "
        "ST_SetSRID(ST_MakePoint(x, y), 4490), 5 FROM unnest(CAST(:a AS timestamptz[]), "
        "CAST(:x AS float8[]), CAST(:y AS float8[])) AS u(a, x, y) ON CONFLICT DO NOTHING"),
        {"s": staff, "a": ats, "x": xs.tolist(), "y": ys.tolist()})
    grid_cover.refresh_stale(conn)
    return grid, n


def grids_figures(url: str, n: int = 7, walk_fixes: int = 12_300) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from grids.access import Principal, Scope
    from grids.city import profile
    from layers.field import tasks

    engine = create_engine(url)
    with engine.connect() as conn, conn.begin() as tx:
        since, until = tasks.today_window(profile(conn).tz)
        # a busy day on one grid, whatever the database holds today (rolled back at the end)
        grid, synthetic = _walk_a_grid(conn, since, until, walk_fixes)
        fixes = conn.execute(text(
            "SELECT count(*) FROM patrol_fix f JOIN region_current r ON r.code = :g "
            "AND ST_DWithin(f.geom, r.geom, 0.0005) WHERE f.at >= :a AND f.at < :b"),
            {"g": grid, "a": since, "b": until}).scalar_one()
        who = Principal.make("user:bench", "grid_worker", Scope.of(grid))

        def cold() -> Any:
            tasks._SHAPES.clear()
            return tasks.my_grids(conn, principal=who, unpatrolled=True)
        before = cold()
        share = before["features"][0]["properties"]["patrolled_share"]
        out = {"grid": grid, "fixes_today_near_it": fixes, "synthetic_fixes": synthetic,
               "share": share, "baseline_recompute_ms": _median_ms(cold, n),
               "share_only_ms": _median_ms(lambda: tasks.my_grids(conn, principal=who), n)}
        cold()
        out["unpatrolled_kept_ms"] = _median_ms(
            lambda: tasks.my_grids(conn, principal=who, unpatrolled=True), n)
        out["share_only_again_ms"] = _median_ms(lambda: tasks.my_grids(conn, principal=who), n)
        out["runs"] = n
        tx.rollback()
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="citygrid_test_ui")
    parser.add_argument("--only", choices=["grids"], default=None)
    args = parser.parse_args()
    if args.only == "grids":
        from tests.conftest import database_url as _url

        print(json.dumps({"grids": grids_figures(_url(args.db))}, indent=2))
        return
    import tempfile

    from playwright.sync_api import sync_playwright
    from sqlalchemy import create_engine, text

    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from layers.field.photos import LocalStore
    from tests.conftest import TEST_PASSWORD, app_role_url, database_url, live_server
    from tests.layers.test_field_photos import jpeg
    from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

    url = database_url(args.db)
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT s.code, ST_X(p), ST_Y(p) FROM app_user u JOIN staff s ON s.id = u.staff_id "
            "JOIN assignment a ON a.staff_id = s.id AND a.valid_to IS NULL "
            "JOIN region_current r ON r.id = a.region_id AND r.level = 'grid', "
            "LATERAL ST_PointOnSurface(r.geom) p WHERE u.username = 't_worker' "
            "ORDER BY r.code LIMIT 1")).one()
    staff, point = row[0], (float(row[1]), float(row[2]))
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    app = create_app(settings)
    app.state.photo_store = LocalStore(tempfile.mkdtemp(prefix="bench-photos-"))
    photos_a = [jpeg(lon=point[0], lat=point[1], taken_at=datetime.now(UTC), seed=100 + i,
                     size=(1280, 960)) for i in range(10)]
    photos_b = [jpeg(lon=point[0], lat=point[1], taken_at=datetime.now(UTC), seed=200 + i,
                     size=(1280, 960)) for i in range(10)]
    result: dict[str, Any] = {}
    with live_server(app) as base:
        result["shell"] = _bytes(base, SHELL)
        result["portal_shell_baseline"] = _bytes(base, PORTAL)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            started = _start(browser, base, point, TEST_PASSWORD)
            result["start_slow_3g"] = {"cold_s": started["cold_s"],
                                       "warm_baseline_s": started["warm_s"],
                                       "network": SLOW}
            cdp = started["cdp"]
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": -1,
                "uploadThroughput": -1})
            app_s = _sync(started["page"], started["ctx"], staff, 2000, photos_a)
            cdp.send("Network.emulateNetworkConditions", SLOW)
            photos_c = [jpeg(lon=point[0], lat=point[1], taken_at=datetime.now(UTC),
                             seed=300 + i, size=(1280, 960)) for i in range(10)]
            slow_s = _sync(started["page"], started["ctx"], staff, 2000, photos_c)
            result["sync"] = {"fixes": 2000, "photos": 10,
                              "photo_bytes": sum(map(len, photos_a)),
                              "app_s": app_s, "app_slow_3g_s": slow_s,
                              "httpx_baseline_s": _sync_baseline(base, staff, point, 2000,
                                                                 photos_b, TEST_PASSWORD)}
            browser.close()
    result["grids"] = grids_figures(url)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
