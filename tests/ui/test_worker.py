"""The grid worker's phone app (/worker) in Chromium with mobile emulation (390×844, touch,
geolocation set by the test), against a real server on the demo city.

- Online: log in, see my grids and my position; accept a dispatched task, report it with a
  photo (a JPEG with EXIF made here), and find it in the case's history through the API; patrol
  200 fixes and see the coverage of my grid change.
- Field report near an open case of the same category: the phone shows it before sending and
  the worker adds the note and photo to it instead (offline at that moment: through the queue,
  once); the previews are small copies made on the phone while the original is uploaded.
- Verify and rework as a checker (t_supervisor); return with a reason as the worker; in English,
  a refused action shows the server's English message.
- Offline: with the context offline, two field reports with photos, one action on a task and
  200 fixes go into the phone's queue; the page is closed and reopened (from the service worker's
  cache), then the network returns and everything arrives exactly once, even when the whole
  queue is sent a second time.

No request may leave 127.0.0.1: every request the browser makes is recorded and checked (no
``route`` here: Playwright's interception makes Chromium bypass the service worker), and the
server records what it receives, so "nothing was sent while offline" is checked at the server.
Screenshots go to ``tests/ui/artifacts/worker-*.png``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import Engine, text

from app.main import create_app
from app.settings import Settings
from layers.field.photos import LocalStore
from tests.conftest import TEST_PASSWORD, live_server
from tests.layers.test_field_photos import jpeg
from tests.ui.conftest import ARTIFACTS

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN"}
FIX_MS = 25


@pytest.fixture(scope="module")
def phone_server(settings: Settings, engine: Engine, tmp_path_factory) -> Iterator[dict]:
    """The API and pages on a free port, photos in a temporary directory; ``seen`` lists every
    request the server received."""
    app = create_app(settings)
    app.state.photo_store = LocalStore(tmp_path_factory.mktemp("photos"))
    seen: list[tuple[str, str]] = []

    @app.middleware("http")
    async def record(request, call_next):
        seen.append((request.method, request.url.path))
        return await call_next(request)

    with live_server(app) as url:
        yield {"url": url, "seen": seen}


def _token(url: str, username: str) -> dict[str, str]:
    res = httpx.post(url + "/auth/token", json={"username": username, "password": TEST_PASSWORD})
    res.raise_for_status()
    return {"Authorization": "Bearer " + res.json()["access_token"]}


@pytest.fixture(scope="module")
def worker(phone_server: dict, engine: Engine) -> dict[str, Any]:
    url = phone_server["url"]
    h = _token(url, "t_worker")
    me = httpx.get(url + "/field/me", headers=h).json()
    grid = me["grids"][0]
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p), ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), "
            "ST_YMax(geom), (SELECT code FROM category WHERE parent_id IS NOT NULL AND active "
            "ORDER BY code LIMIT 1) FROM region_current r, LATERAL ST_PointOnSurface(r.geom) p "
            "WHERE r.code = :g"), {"g": grid}).one()
    return {"headers": h, "me": me, "grid": grid, "lon": row[0], "lat": row[1],
            "box": row[2:6], "category": row[6]}


def dispatch_case(url: str, worker: dict) -> int:
    h = _token(url, "t_dispatcher")
    res = httpx.post(url + "/incidents", headers=h, json={
        "source": "hotline_12345", "external_id": f"phone-{uuid.uuid4()}",
        "category": worker["category"], "description": "路灯不亮", "address": "测试路 9 号",
        "lon": worker["lon"], "lat": worker["lat"]})
    assert res.status_code == 201, res.text
    iid = res.json()["id"]
    for action in ("register", "dispatch"):
        httpx.post(f"{url}/incidents/{iid}/actions", headers=h,
                   json={"action": action}).raise_for_status()
    return iid


@pytest.fixture
def phone(browser, phone_server: dict, worker: dict):
    """``phone()`` → (context, page) of a phone at the worker's grid; every request recorded."""
    contexts = []
    requests: list[str] = []
    crashes: list[str] = []

    def make():
        ctx = browser.new_context(**PHONE, permissions=["geolocation"],
                                  geolocation={"longitude": worker["lon"],
                                               "latitude": worker["lat"], "accuracy": 8})
        contexts.append(ctx)
        ctx.on("request", lambda r: requests.append(r.url))
        return ctx

    def open_page(ctx):
        pg = ctx.new_page()
        pg.on("pageerror", lambda exc: crashes.append(str(exc)))
        pg.set_default_timeout(30_000)
        pg.goto(f"{phone_server['url']}/worker/?fix_ms={FIX_MS}")
        return pg

    yield make, open_page
    for ctx in contexts:
        ctx.close()
    outside = [u for u in requests if urlparse(u).hostname not in ("127.0.0.1", None)
               and not u.startswith(("data:", "blob:"))]
    assert not outside, f"the app tried to reach outside 127.0.0.1: {outside[:5]}"
    assert not crashes, f"the page threw: {crashes}"


def log_in(page, username: str = "t_worker") -> None:
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-button")
    page.wait_for_function("window.citygridWorker && window.citygridWorker.ready === true")


def check_fits_the_phone(page, name: str) -> None:
    """No horizontal scroll at 390 px; every visible tap target at least 44 px."""
    ARTIFACTS.mkdir(exist_ok=True)
    # measured at rest: during Leaflet's zoom animation the marker pane is scaled (CI caught a
    # 44 px pin measured mid-zoom under load)
    page.wait_for_function("!document.querySelector('.leaflet-zoom-anim')")
    page.screenshot(path=str(ARTIFACTS / f"worker-{name}.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("document.querySelector('main').scrollWidth") <= 390
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        'button, a[href], input:not([type=hidden]), select, textarea, .leaflet-marker-icon,'
        + ' .photo-pick')).filter((el) => {
          const r = el.getBoundingClientRect(), s = getComputedStyle(el);
          if (!r.width || !r.height || s.visibility === 'hidden' || s.opacity === '0') return false;
          if (el.type === 'file') return false;  // covered by its .photo-pick label
          return r.width < 44 || r.height < 44;
        }).map((el) => el.outerHTML.slice(0, 80))""")
    assert not small, f"tap targets under 44 px on {name}: {small}"


def move(ctx, worker: dict, i: int, n: int = 200) -> None:
    x0, y0, x1, y1 = worker["box"]
    f = (i % n) / n
    ctx.set_geolocation({"longitude": x0 + (x1 - x0) * (0.1 + 0.8 * f),
                         "latitude": (y0 + y1) / 2, "accuracy": 6})


def patrol(page, ctx, worker: dict, fixes: int = 200) -> int:
    """Patrol until ``fixes`` fixes are recorded, moving along the grid; returns the count."""
    page.click("#tabs [data-view=patrol]")
    page.click("#patrol-toggle")
    i = 0
    deadline = time.monotonic() + 120
    while page.evaluate("window.citygridWorker.state().fixCount") < fixes:
        move(ctx, worker, i)
        i += 1
        if i == 20:
            page.screenshot(path=str(ARTIFACTS / "worker-patrolling.png"))
        page.wait_for_timeout(FIX_MS)
        assert time.monotonic() < deadline, ("the patrol did not record its fixes",
                                             page.evaluate(
            "(() => { const s = window.citygridWorker.state(); "
            "return [s.fixCount, s.patrolling, s.asking]; })()"))
    page.click("#patrol-toggle")
    # a fix being stored as the patrol stops still counts: read the count once it is stored
    page.wait_for_function("!window.citygridWorker.state().asking")
    return page.evaluate("window.citygridWorker.state().fixCount")


def fixes_since(engine: Engine, staff: str, t0: datetime) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM patrol_fix f JOIN staff s ON s.id = f.staff_id "
            "WHERE s.code = :s AND f.at >= :t"), {"s": staff, "t": t0}).scalar_one()


def wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_online_journey(phone, phone_server: dict, worker: dict, engine: Engine) -> None:
    url = phone_server["url"]
    iid = dispatch_case(url, worker)
    make, open_page = phone
    ctx = make()
    page = open_page(ctx)
    check_fits_the_phone(page, "login")
    log_in(page)
    # My grids and my position.
    page.wait_for_function("window.citygridWorker.state().position !== null")
    assert page.locator("#map .leaflet-overlay-pane path").count() >= 1
    state = page.evaluate("window.citygridWorker.state().grids.features.length")
    assert state == len(worker["me"]["grids"])
    check_fits_the_phone(page, "map")
    # Accept the task.
    page.click("#tabs [data-view=tasks]")
    card = page.locator(f"li[data-incident='{iid}']")
    card.get_by_role("button", name="接收").click()
    h = worker["headers"]

    def state_of() -> str:
        return httpx.get(f"{url}/incidents/{iid}", headers=h).json()["state"]
    wait_until(lambda: state_of() == "handling")
    check_fits_the_phone(page, "tasks")
    # Report it with a photo.
    card = page.locator(f"li[data-incident='{iid}']")
    card.get_by_role("button", name="反馈").click()
    photo = jpeg(lon=worker["lon"], lat=worker["lat"], taken_at=datetime.now(UTC), seed=11)
    page.set_input_files("#report-photos", files=[
        {"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.fill("#report-note", "已更换灯泡")
    check_fits_the_phone(page, "report-task")
    page.click("#report-submit")
    wait_until(lambda: state_of() == "reported")
    case = httpx.get(f"{url}/field/incidents/{iid}", headers=h).json()
    report = [e for e in case["history"] if e["action"] == "report"][0]
    assert report["note"] == "已更换灯泡" and len(report["photos"]) == 1
    assert case["evidence"][0]["suspicious"] is False, case["evidence"]
    got = httpx.get(url + report["photos"][0], headers=_token(url, "t_supervisor"))
    assert got.status_code == 200 and got.content == photo  # the bytes as taken, EXIF and all
    # Patrol: 200 fixes arrive and the coverage of my grid changes.
    def share() -> float:
        body = httpx.get(url + "/field/grids", headers=h, timeout=60).json()
        return next(f["properties"]["patrolled_share"] for f in body["features"]
                    if f["properties"]["code"] == worker["grid"])
    before = share()
    t0 = datetime.now(UTC)
    n = patrol(page, ctx, worker)
    assert n >= 200
    wait_until(lambda: fixes_since(engine, worker["me"]["staff_code"], t0) == n)
    # The grid's coverage over this patrol's own window went from nothing to a share; the day's
    # share (already walked by earlier runs of this test today, the data accumulate) cannot drop.
    window = {"region": worker["grid"], "since": t0.isoformat(),
              "until": datetime.now(UTC).isoformat()}
    covered = httpx.get(url + "/patrols/coverage", headers=h, params=window, timeout=60).json()
    assert covered["grids"][0]["share"] > 0.05
    assert share() >= before
    page.click("#tabs [data-view=map]")
    page.wait_for_timeout(500)
    assert page.evaluate("window.citygridWorker.state().fixCount") == n
    check_fits_the_phone(page, "patrol-map")


def _outbox(page) -> dict[str, int]:
    return page.evaluate("""async () => {
        const db = await window.citygridWorker.db();
        const items = await db.getAll('outbox');
        const kinds = {};
        for (const i of items) kinds[i.kind] = (kinds[i.kind] || 0) + 1;
        kinds.fixes = await db.count('fixes');
        return kinds; }""")


def field_report(page, seed: int, note: str) -> None:
    page.click("#tabs [data-view=report]")
    page.wait_for_selector("#pin-map .leaflet-marker-icon")
    page.set_input_files("#report-photos", files=[
        {"name": f"r{seed}.jpg", "mimeType": "image/jpeg",
         "buffer": jpeg(taken_at=datetime.now(UTC), seed=seed)}])
    page.fill("#report-address", "离线路 1 号")
    page.fill("#report-note", note)
    page.click("#report-submit")
    page.wait_for_selector("#map-view:not([hidden])")


def test_offline_journey(phone, phone_server: dict, worker: dict, engine: Engine) -> None:
    url = phone_server["url"]
    iid = dispatch_case(url, worker)
    make, open_page = phone
    ctx = make()
    page = open_page(ctx)
    log_in(page)
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    page.reload()  # now through the service worker: the shell and my data are in its caches
    page.wait_for_function("window.citygridWorker.ready === true")
    page.wait_for_function("window.citygridWorker.state().position !== null")
    page.wait_for_function(f"window.citygridWorker.state().tasks.tasks.some(t => t.id === {iid})")
    t0 = datetime.now(UTC)
    tag = f"offline-{uuid.uuid4().hex[:8]}"

    ctx.set_offline(True)
    received = len(phone_server["seen"])
    field_report(page, 21, tag + " 占道经营")
    field_report(page, 22, tag + " 垃圾堆放")
    page.click("#tabs [data-view=tasks]")
    page.locator(f"li[data-incident='{iid}']").get_by_role("button", name="接收").click()
    page.wait_for_selector(f"li[data-incident='{iid}'] .tag.wait")
    n = patrol(page, ctx, worker)
    queued = _outbox(page)
    # the position watch may add a fix of its own while the patrol runs: every queued fix must
    # then arrive exactly once, so the count to check is what the queue holds
    assert n <= queued["fixes"] <= n + 3, queued
    n = queued["fixes"]
    assert queued == {"photo": 2, "report": 2, "action": 1, "fixes": n}, queued
    page.click("#queue-badge")
    check_fits_the_phone(page, "offline-queue")

    # Close the app and open it again, still offline: the service worker serves it.
    page.close()
    page = open_page(ctx)
    page.wait_for_function("window.citygridWorker.ready === true")
    assert _outbox(page) == queued
    assert page.is_visible("#queue-badge")
    check_fits_the_phone(page, "offline-reopened")
    # Chromium's own update check of the service worker script is made outside Playwright's
    # emulated network (it carries no data); anything else reaching the server is a failure.
    leaked = [r for r in phone_server["seen"][received:] if r != ("GET", "/worker/sw.js")]
    assert leaked == [], "requests reached the server while offline"

    page.evaluate("""async () => { const db = await window.citygridWorker.db();
        window.__queueCopy = await db.getAll('outbox');
        window.__fixesCopy = await db.getAll('fixes'); }""")
    # The network returns: everything arrives once.
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    wait_until(lambda: _outbox(page) == {"fixes": 0}, timeout=60)

    def counts() -> tuple[int, int, int, int]:
        with engine.connect() as conn:
            reports = conn.execute(text(
                "SELECT count(*), count(DISTINCT u.sha256) FROM incident i "
                "LEFT JOIN field_photo_use u ON u.incident_id = i.id "
                "WHERE i.source = 'grid_worker' AND i.description LIKE :t"),
                {"t": tag + "%"}).one()
            accepts = conn.execute(text(
                "SELECT count(*) FROM incident_event WHERE incident_id = :i AND action = 'accept'"),
                {"i": iid}).scalar_one()
        return reports[0], reports[1], accepts, fixes_since(engine, worker["me"]["staff_code"], t0)
    assert counts() == (2, 2, 1, n)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM incident WHERE id = :i"),
                            {"i": iid}).scalar_one() == "handling"

    # A retry never doubles anything: the very same queue (kept aside before the network came
    # back, as a phone that lost the answers would still hold it) is sent a second time.
    page.evaluate("""async () => {
        const db = await window.citygridWorker.db();
        for (const item of window.__queueCopy) await db.put('outbox', item);
        for (const fix of window.__fixesCopy) await db.put('fixes', fix);
        await window.citygridWorker.flush(); }""")
    wait_until(lambda: _outbox(page) == {"fixes": 0}, timeout=60)
    assert counts() == (2, 2, 1, n)
    check_fits_the_phone(page, "offline-synced")


def test_language_switch_and_errors_in_the_page_s_language(phone) -> None:
    make, open_page = phone
    page = open_page(make())
    page.fill("#username", "t_worker")
    page.fill("#password", "wrong-password-000")
    page.click("#login-button")
    page.wait_for_function("document.querySelector('#login-error').textContent !== ''")
    assert page.inner_text("#login-error") == "用户名或密码错误。"
    page.click("#lang")
    assert page.inner_text("#login-button") == "Log in"
    page.click("#login-button")
    page.wait_for_function("document.querySelector('#login-error').textContent.startsWith('Wrong')")
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-button")
    page.wait_for_function("window.citygridWorker.ready === true")
    assert page.inner_text("#tabs [data-view=tasks] b") == "Tasks"
    check_fits_the_phone(page, "english")


def test_leaving_my_grids_warns_on_patrol(phone, worker: dict) -> None:
    make, open_page = phone
    ctx = make()
    page = open_page(ctx)
    log_in(page)
    page.click("#tabs [data-view=patrol]")
    page.click("#patrol-toggle")
    x0, y0, x1, y1 = worker["box"]
    ctx.set_geolocation({"longitude": x1 + 0.01, "latitude": y1 + 0.01, "accuracy": 5})
    page.click("#tabs [data-view=map]")
    page.wait_for_selector("#leave-warning:not([hidden])")
    check_fits_the_phone(page, "outside")
    ctx.set_geolocation({"longitude": worker["lon"], "latitude": worker["lat"], "accuracy": 5})
    page.wait_for_selector("#leave-warning", state="hidden")
    page.click("#tabs [data-view=patrol]")
    page.click("#patrol-toggle")


def reported_case(url: str, worker: dict, seed: int) -> int:
    """A case dispatched to the worker, accepted and reported from the field API with a photo."""
    iid = dispatch_case(url, worker)
    h = worker["headers"]
    photo = httpx.post(url + "/field/photos", headers={**h, "Content-Type": "image/jpeg"},
                       content=jpeg(lon=worker["lon"], lat=worker["lat"],
                                    taken_at=datetime.now(UTC), seed=seed)).json()
    for action in ("accept", "report"):
        body = {"client_id": str(uuid.uuid4()), "action": action, "note": "已处理",
                "photos": [photo["url"]] if action == "report" else []}
        httpx.post(f"{url}/field/tasks/{iid}/actions", headers=h, json=body).raise_for_status()
    return iid


def state_of(url: str, iid: int) -> str:
    return httpx.get(f"{url}/incidents/{iid}", headers=_token(url, "t_supervisor")).json()["state"]


def history(url: str, iid: int, action: str) -> list[dict]:
    case = httpx.get(f"{url}/field/incidents/{iid}", headers=_token(url, "t_supervisor")).json()
    return [e for e in case["history"] if e["action"] == action]


def test_field_report_offers_the_case_nearby_and_adds_to_it(phone, phone_server: dict,
                                                            worker: dict) -> None:
    url = phone_server["url"]
    iid = dispatch_case(url, worker)
    make, open_page = phone
    ctx = make()
    page = open_page(ctx)
    log_in(page)
    page.wait_for_function("window.citygridWorker.state().position !== null")
    page.click("#tabs [data-view=report]")
    page.wait_for_selector("#pin-map .leaflet-marker-icon")
    page.select_option("#report-category", worker["category"])
    photo = jpeg(lon=worker["lon"], lat=worker["lat"], taken_at=datetime.now(UTC), seed=41,
                 size=(1600, 1200))
    page.set_input_files("#report-photos", files=[
        {"name": "again.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    # The preview is the phone's small copy, not the 1600 px original.
    page.wait_for_function("document.querySelector('#photo-previews img')?.complete && "
                           "document.querySelector('#photo-previews img').naturalWidth > 0")
    preview = page.evaluate("(() => { const i = document.querySelector('#photo-previews img');"
                            " return [i.naturalWidth, i.naturalHeight, i.dataset.copy]; })()")
    assert preview == [320, 240, "small"], preview
    page.fill("#report-note", "路灯还是不亮，补充一张照片")
    page.click("#report-submit")
    sheet = page.locator(f"#dup-list li[data-incident='{iid}']")
    sheet.wait_for()
    assert page.is_hidden("#report-form")
    check_fits_the_phone(page, "duplicates")
    # The network drops as the worker decides: the supplement waits in the queue.
    ctx.set_offline(True)
    sheet.get_by_role("button", name="补充到此案件").click()
    page.wait_for_selector("#map-view:not([hidden])")
    assert _outbox(page) == {"photo": 1, "supplement": 1, "fixes": 0}
    shown = page.evaluate("""async () => { const db = await window.citygridWorker.db();
        const p = (await db.getAll('outbox')).find((i) => i.kind === 'photo');
        return [p.blob.size, p.display ? p.display.size : 0]; }""")
    assert shown[0] == len(photo) and 0 < shown[1] < len(photo) / 3, shown
    page.click("#queue-badge")
    page.wait_for_selector("#queue-list img.thumb")
    assert page.locator("#queue-list img.thumb").count() == 1
    check_fits_the_phone(page, "duplicates-queued")
    page.evaluate("""async () => { const db = await window.citygridWorker.db();
        window.__queueCopy = await db.getAll('outbox'); }""")
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    wait_until(lambda: _outbox(page) == {"fixes": 0}, timeout=60)
    added = history(url, iid, "supplement")
    assert len(added) == 1 and added[0]["note"] == "路灯还是不亮，补充一张照片"
    got = httpx.get(url + added[0]["photos"][0], headers=_token(url, "t_supervisor"))
    assert got.content == photo  # the original as taken, EXIF and all
    assert state_of(url, iid) == "dispatched"
    # Sent again (a phone that lost the answers): nothing doubles.
    page.evaluate("""async () => { const db = await window.citygridWorker.db();
        for (const item of window.__queueCopy) await db.put('outbox', item);
        await window.citygridWorker.flush(); }""")
    wait_until(lambda: _outbox(page) == {"fixes": 0}, timeout=60)
    assert len(history(url, iid, "supplement")) == 1


def test_checker_sends_back_for_rework_then_verifies(phone, phone_server: dict,
                                                    worker: dict) -> None:
    url = phone_server["url"]
    iid = reported_case(url, worker, seed=51)
    make, open_page = phone
    ctx = make()
    page = open_page(ctx)
    log_in(page, "t_supervisor")
    page.click("#tabs [data-view=tasks]")
    card = page.locator(f"#verify-list li[data-incident='{iid}']")
    check_fits_the_phone(page, "verify-list")
    card.get_by_role("button", name="返工").click()
    page.click("#report-submit")
    assert page.inner_text("#report-error") == "请填写原因。"
    page.fill("#report-reason", "照片未拍到修复后的路灯")
    check_fits_the_phone(page, "rework")
    page.click("#report-submit")
    wait_until(lambda: state_of(url, iid) == "dispatched")
    assert history(url, iid, "rework")[0]["note"].startswith("照片未拍到修复后的路灯")
    # The worker reports again; the checker verifies with a photo and a note.
    h = worker["headers"]
    photo = httpx.post(url + "/field/photos", headers={**h, "Content-Type": "image/jpeg"},
                       content=jpeg(lon=worker["lon"], lat=worker["lat"],
                                    taken_at=datetime.now(UTC), seed=52)).json()
    for action in ("accept", "report"):
        httpx.post(f"{url}/field/tasks/{iid}/actions", headers=h, json={
            "client_id": str(uuid.uuid4()), "action": action,
            "photos": [photo["url"]] if action == "report" else []}).raise_for_status()
    page.reload()
    page.wait_for_function("window.citygridWorker.ready === true")
    page.wait_for_function(
        f"window.citygridWorker.state().tasks.verify.some(t => t.id === {iid})")
    page.click("#tabs [data-view=tasks]")
    page.locator(f"#verify-list li[data-incident='{iid}']").get_by_role(
        "button", name="核查").click()
    page.click("#report-submit")
    assert page.inner_text("#report-error") == "请至少拍一张照片。"
    page.set_input_files("#report-photos", files=[
        {"name": "check.jpg", "mimeType": "image/jpeg",
         "buffer": jpeg(lon=worker["lon"], lat=worker["lat"], taken_at=datetime.now(UTC),
                        seed=53)}])
    page.fill("#report-note", "现场核查：已修复")
    check_fits_the_phone(page, "verify")
    page.click("#report-submit")
    wait_until(lambda: state_of(url, iid) == "verified")
    verify = history(url, iid, "verify")[0]
    assert verify["note"] == "现场核查：已修复" and len(verify["photos"]) == 1


def test_worker_returns_a_task_with_a_reason(phone, phone_server: dict, worker: dict) -> None:
    url = phone_server["url"]
    iid = dispatch_case(url, worker)
    make, open_page = phone
    page = open_page(make())
    log_in(page)
    page.click("#tabs [data-view=tasks]")
    page.locator(f"li[data-incident='{iid}']").get_by_role("button", name="回退").click()
    page.click("#report-submit")
    assert page.inner_text("#report-error") == "请填写原因。"
    page.fill("#report-reason", "不属于本网格")
    check_fits_the_phone(page, "return")
    page.click("#report-submit")
    wait_until(lambda: state_of(url, iid) == "registered")
    assert history(url, iid, "return")[0]["note"].startswith("不属于本网格")


def test_in_english_a_refused_action_shows_the_english_message(phone, phone_server: dict,
                                                               worker: dict) -> None:
    url = phone_server["url"]
    iid = dispatch_case(url, worker)
    make, open_page = phone
    page = open_page(make())
    log_in(page)
    page.click("#lang")
    page.click("#tabs [data-view=tasks]")
    card = page.locator(f"li[data-incident='{iid}']")
    assert card.get_by_role("button", name="Accept").is_visible()
    check_fits_the_phone(page, "english-tasks")
    # The desk takes the case back before the phone's accept arrives: the server refuses it.
    httpx.post(f"{url}/incidents/{iid}/actions", headers=_token(url, "t_dispatcher"),
               json={"action": "return", "note": "改派"}).raise_for_status()
    card.get_by_role("button", name="Accept").click()
    page.click("#queue-badge")
    failed = page.locator("#queue-list li.red")
    failed.wait_for()
    assert "Cannot accept an incident that is registered" in failed.inner_text()
    assert failed.get_by_role("button", name="Discard").is_visible()
    check_fits_the_phone(page, "english-refused")
    failed.get_by_role("button", name="Discard").click()
    page.wait_for_selector("#queue-list li.red", state="detached")
