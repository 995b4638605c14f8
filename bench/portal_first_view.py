"""The portal's first view with a million incidents, in Chromium, beside a folium HeatMap page.

Two steps, on the private cluster (``CITYGRID_PGPORT`` / ``CITYGRID_PGDATA``)::

    python -m bench.portal_first_view build [--db citygrid_bench] [--n 1000000]
    python -m bench.portal_first_view run [--db citygrid_bench]

``build`` creates the database (if missing), migrates it, loads the demo city and ``n`` generated
incidents over a year (COPY, :mod:`app.seed_incidents`) and the demo patrols.

``run`` serves the API + portal on the database with uvicorn (one worker, in a thread), logs in as
a supervisor-level account in headless Debian Chromium (Playwright, network off except
127.0.0.1), and measures the *first view*: from the login click until the map has drawn its
outlines, the choropleth and the open-case list (``window.citygrid.state.firstView``), with the
bytes transferred in that time (Chrome DevTools ``Network.loadingFinished`` encoded lengths, so
compressed sizes if compressed). It then measures turning the heatmap on. Beside it: a
``folium.plugins.HeatMap`` page of the same incidents (every point inlined, which is what folium
does), its size and the time Chromium takes to load it. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app import devdb
from app.db import migrate
from grids.city import profile

USER = "bench_supervisor"
PASSWORD = "bench-password-not-for-production"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _create_db(name: str) -> str:
    url = devdb.url(name)
    admin = create_engine(devdb.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                            {"n": name}).scalar():
            conn.execute(text(f'CREATE DATABASE "{name}"'))  # a name from the command line
    admin.dispose()
    return url


def build(db: str, n: int) -> dict[str, Any]:
    from app import users
    from app.db import is_empty
    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents
    from data.patrols import load_demo_patrols
    from grids.access import Principal
    from layers.patrols import grid_cover

    url = _create_db(db)
    migrate(url)
    engine = create_engine(url)
    out: dict[str, Any] = {"database": db}
    t0 = time.perf_counter()
    with engine.begin() as conn:
        if is_empty(conn):
            out["city"] = load_demo(conn)
    with engine.begin() as conn:
        have = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
        if have == 0:
            out["incidents"] = load_demo_incidents(conn, n=n)
        else:
            out["incidents"] = {"incidents": have, "note": "already loaded"}
    with engine.begin() as conn:
        if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM patrol_fix)")).scalar_one():
            out["patrols"] = load_demo_patrols(conn, days=3)
            out["patrol_cover"] = grid_cover.refresh_stale(conn)  # before the server measures
        if not conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": USER}).first():
            users.create_user(conn, username=USER, password=PASSWORD, role="supervisor",
                              region_code=profile(conn).region_prefix, principal=Principal.system("bench"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE incident"))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    engine.dispose()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db: str) -> tuple[str, Any]:
    import uvicorn

    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from tests.conftest import app_role_url

    url = devdb.url(db)
    settings = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url))
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (server.started and getattr(app.state, "locator", None) is not None
               and app.state.locator.snapshot is not None):
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}", server


class Transfer:
    """Bytes received by the page, from DevTools network events."""

    def __init__(self, cdp: Any) -> None:
        self.bytes = 0
        self.requests = 0
        self.urls: dict[str, int] = {}
        self._ids: dict[str, str] = {}
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.loadingFinished", self._finished)

    def _response(self, ev: dict[str, Any]) -> None:
        self._ids[ev["requestId"]] = ev["response"]["url"]

    def _finished(self, ev: dict[str, Any]) -> None:
        self.bytes += int(ev.get("encodedDataLength", 0))
        self.requests += 1
        url = self._ids.get(ev["requestId"], "?").split("?")[0]
        self.urls[url] = self.urls.get(url, 0) + int(ev.get("encodedDataLength", 0))

    def reset(self) -> None:
        self.bytes = 0
        self.requests = 0
        self.urls = {}


def _folium_page(db: str, path: Path) -> dict[str, Any]:
    import folium
    from folium.plugins import HeatMap

    from layers import report

    engine = create_engine(devdb.url(db))
    t0 = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT ST_Y(geom), ST_X(geom) FROM incident WHERE geom IS NOT NULL")).all()
    fmap = folium.Map(location=[29.3, 120.07], zoom_start=11, tiles=None)
    fmap.default_js, fmap.default_css = [], []  # no CDN: the vendored files are inlined below
    heat = HeatMap([[round(a, 6), round(b, 6)] for a, b in rows], radius=8)
    heat.default_js, heat.default_css = [], []
    heat.add_to(fmap)
    root = fmap.get_root()
    root.header.add_child(folium.Element(report._inline_assets()), name="inline_assets", index=0)
    page = root.render()
    report.check_offline(page)
    path.write_text(page, encoding="utf-8")
    engine.dispose()
    return {"points": len(rows), "build_s": round(time.perf_counter() - t0, 1),
            "bytes": path.stat().st_size}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(db: str, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    base, server = _serve(db)
    out: dict[str, Any] = {"database": db}
    with create_engine(devdb.url(db)).connect() as conn:
        out["incidents"] = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
    views: list[dict[str, Any]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def guard(route: Any) -> None:
            if route.request.url.startswith(base):
                route.continue_()
            else:
                route.abort()

        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.route("**/*", guard)
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
            transfer = Transfer(cdp)
            _log("portal: open the login page")
            t0 = time.perf_counter()
            page.goto(base + "/")
            page.wait_for_selector("#login-form")
            page_s = time.perf_counter() - t0
            page_bytes = transfer.bytes
            page.fill("#username", USER)
            page.fill("#password", PASSWORD)
            transfer.reset()
            t1 = time.perf_counter()
            page.click("#login-button")
            page.wait_for_function("window.citygrid && window.citygrid.state.firstView === true",
                                   timeout=60_000)
            view_s = time.perf_counter() - t1
            view = {"login_page_s": round(page_s, 3), "login_page_bytes": page_bytes,
                    "first_view_s": round(view_s, 3),
                    "first_view_bytes": transfer.bytes, "first_view_requests": transfer.requests,
                    "in_page_ms": page.evaluate("window.citygrid.state.firstViewMs"),
                    # each request of the first view: [path, start ms after the click, ms taken]
                    "requests": page.evaluate(
                        "(() => { const t0 = window.citygrid.state.loginAt; return performance"
                        ".getEntriesByType('resource').filter(e => e.startTime >= t0).map(e => "
                        "[e.name.replace(location.origin, '').split('?')[0], "
                        "Math.round(e.startTime - t0), Math.round(e.duration)]); })()"),
                    "largest": sorted(transfer.urls.items(), key=lambda kv: -kv[1])[:5]}
            _log(f"portal: first view {view}")
            transfer.reset()
            t2 = time.perf_counter()
            page.check("#heat-on")
            page.wait_for_function("window.citygrid.state.heatDrawn === true", timeout=60_000)
            page.wait_for_function("document.querySelector('#loading').hidden")
            view["heat_s"] = round(time.perf_counter() - t2, 3)
            view["heat_bytes"] = transfer.bytes
            views.append(view)
            _log(f"portal: heat {view['heat_s']} s")
            context.close()
        out["portal"] = views

        _log("folium: build the page")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "heatmap.html"
            out["folium"] = _folium_page(db, path)
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                          else r.abort())
            page = context.new_page()
            _log(f"folium: load {out['folium']}")
            t0 = time.perf_counter()
            page.goto(path.as_uri(), timeout=300_000, wait_until="load")
            page.wait_for_selector(".leaflet-heatmap-layer", state="attached", timeout=300_000)
            out["folium"]["load_s"] = round(time.perf_counter() - t0, 3)
            context.close()
        browser.close()
    server.should_exit = True
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["build", "run"])
    ap.add_argument("--db", default="citygrid_bench")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    out = build(args.db, args.n) if args.step == "build" else run(args.db, args.repeat)
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
