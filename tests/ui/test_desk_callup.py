"""A call-up in a real browser, against a real server: as the dispatcher, draw an area around the
test worker's grid on the portal map (the 应急集结 tab), see who would be called (with distance
and fix age), send; the worker answers on the phone page (/worker, the call-up card at the top of
the inbox); the desk shows the answer. Screenshots in ``tests/ui/artifacts/callup-*``.
"""

from __future__ import annotations

import httpx
from sqlalchemy import Engine, text

from tests.conftest import TEST_PASSWORD
from tests.ui.conftest import ARTIFACTS, login


def _client(server: str, username: str) -> httpx.Client:
    """An API client with a bearer token (a generous timeout: the machine is shared)."""
    res = httpx.post(f"{server}/auth/token", timeout=60,
                     json={"username": username, "password": TEST_PASSWORD})
    res.raise_for_status()
    return httpx.Client(base_url=server, timeout=60, headers={
        "Authorization": f"Bearer {res.json()['access_token']}"})


def _worker(engine: Engine, server: str) -> dict:
    with _client(server, "t_worker") as c:
        me = c.get("/field/me").json()
    with engine.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM region_current r, LATERAL ST_PointOnSurface(r.geom) p "
            "WHERE r.code = :g"), {"g": me["grids"][0]}).one()
    return {"staff": me["staff_code"], "grid": me["grids"][0], "lon": lon, "lat": lat}


def test_draw_send_and_the_worker_answers(new_page, browser, server: str, engine: Engine) -> None:
    w = _worker(engine, server)
    page = new_page()
    login(page)
    page.click(".tab[data-tab='tab-callup']")
    page.wait_for_selector("#tab-callup:not([hidden]) #cu-draw")
    # Go to the worker's grid and draw a small square around a point inside it.
    page.evaluate("([lon, lat]) => window.citygrid.state.map.setView("
                  "window.citygrid.toMap(lon, lat), 17, {animate: false})", [w["lon"], w["lat"]])
    page.select_option("#cu-age", "10080")  # fixes of the last 7 days (the demo's patrols)
    page.click("#cu-draw")
    box = page.locator("#map").bounding_box()
    x, y = page.evaluate("([lon, lat]) => { const p = window.citygrid.state.map"
                         ".latLngToContainerPoint(window.citygrid.toMap(lon, lat));"
                         " return [p.x, p.y]; }", [w["lon"], w["lat"]])
    for dx, dy in ((-20, -20), (20, -20), (20, 20), (-20, 20)):
        page.mouse.click(box["x"] + x + dx, box["y"] + y + dy)
    assert page.inner_text("#cu-vertices") == "已画 4 个点"
    assert page.is_visible("#tab-callup")  # the map's own click (locate) did not fire
    page.click("#cu-finish")
    page.wait_for_selector("#cu-people tbody tr")
    summary = page.inner_text("#cu-summary")
    assert "将通知" in summary
    rows = page.locator("#cu-people tbody tr")
    text_rows = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any(w["staff"] in r and "网格员" in r for r in text_rows), text_rows
    assert any("负责人" in r for r in text_rows)  # the heads above the grid
    near = [r for r in text_rows if "附近人员" in r]
    assert near and all(" m" in r or " km" in r for r in near)  # distance and fix age shown
    assert all("前" in r for r in near)
    page.screenshot(path=str(ARTIFACTS / "callup-who.png"))
    page.fill("#cu-name", "暴雨积水集结")
    page.click("#cu-send")
    page.wait_for_selector("#cu-current:not([hidden]) #cu-tasks")
    cid = page.evaluate("window.citygridCallup.cu.current.id")
    page.wait_for_selector(f"#cu-list li[data-id='{cid}']")  # listed among those under way
    assert "待响应" in page.inner_text("#cu-answers")

    # The worker's phone: the call-up is at the top of the inbox; acknowledge it.
    ctx = browser.new_context(viewport={"width": 390, "height": 800}, locale="zh-CN",
                              permissions=["geolocation"],
                              geolocation={"longitude": w["lon"], "latitude": w["lat"],
                                           "accuracy": 8})
    crashes: list[str] = []
    try:
        phone = ctx.new_page()
        phone.on("pageerror", lambda exc: crashes.append(str(exc)))
        phone.set_default_timeout(20_000)
        phone.goto(f"{server}/worker/")
        phone.fill("#username", "t_worker")
        phone.fill("#password", TEST_PASSWORD)
        phone.click("#login-button")
        phone.wait_for_selector("#tabs:not([hidden])")
        phone.click("#tabs [data-view=tasks]")
        card = phone.locator(f"li[data-callup='{cid}']")
        card.wait_for()
        assert "暴雨积水集结" in card.inner_text()
        phone.screenshot(path=str(ARTIFACTS / "callup-phone.png"))
        card.get_by_role("button", name="确认收到").click()
        phone.wait_for_function(
            f"document.querySelector(\"li[data-callup='{cid}'] .callup-state\")"
            ".textContent.startsWith('已确认')")
        phone.screenshot(path=str(ARTIFACTS / "callup-phone-answered.png"))
    finally:
        ctx.close()
    assert not crashes, crashes

    # The desk sees the answer (it polls the call-up while it is shown).
    page.wait_for_function("document.querySelector('#cu-answers').textContent"
                           ".includes('已确认 1')", timeout=15_000)
    row = page.locator(f"#cu-tasks tr[data-staff='{w['staff']}']")
    assert "已确认" in row.inner_text()
    # A phoned answer recorded at the desk: someone else declines, with a note.
    other = page.locator("#cu-tasks tbody tr").filter(has_not_text=w["staff"]).first
    page.fill("#cu-answer-note", "在外地培训")
    other.get_by_role("button", name="代拒绝").click()
    page.wait_for_function("document.querySelector('#cu-answers').textContent.includes('拒绝 1')")
    page.screenshot(path=str(ARTIFACTS / "callup-desk-answers.png"))
    # English, same view.
    page.click("#lang")
    page.wait_for_function("document.querySelector('#cu-answers').textContent"
                           ".includes('acknowledged 1')")
    page.click("#cu-close")
    page.wait_for_selector("#cu-current .hint")
    page.wait_for_selector(f"#cu-list li[data-id='{cid}']", state="detached")


def test_call_up_from_the_case_view(new_page, server: str, engine: Engine) -> None:
    """A case on the desk: 就此集结 opens the call-up tab on the case's grid, linked to the case;
    the case view then lists the call-up with its answers."""
    import uuid

    from tests.ui.test_desk import find_case, open_desk

    w = _worker(engine, server)
    with _client(server, "t_dispatcher") as c:
        with engine.connect() as conn:
            category = conn.execute(text(
                "SELECT code FROM category WHERE parent_id IS NOT NULL AND active ORDER BY code "
                "LIMIT 1")).scalar_one()
        res = c.post("/incidents", json={
            "source": "hotline_12345", "external_id": f"callup-{uuid.uuid4()}",
            "category": category, "description": "道路积水严重", "address": "测试路 3 号",
            "lon": w["lon"], "lat": w["lat"]})
        assert res.status_code == 201, res.text
        iid = res.json()["id"]
    page = new_page()
    login(page)
    open_desk(page)
    find_case(page, iid)
    page.click("#desk-callup")
    page.wait_for_selector("#tab-callup:not([hidden]) #cu-people tbody tr")
    assert page.input_value("#cu-region") == w["grid"]
    assert page.input_value("#cu-incident") == str(iid)
    page.fill("#cu-name", "积水集结")
    page.click("#cu-send")
    page.wait_for_selector("#cu-current:not([hidden]) #cu-tasks")
    assert f"关联案件 #{iid}" in page.inner_text("#cu-current")
    cid = page.evaluate("window.citygridCallup.cu.current.id")
    open_desk(page)
    find_case(page, iid)
    page.wait_for_selector(f"#desk-callups button[data-cu='{cid}']")
    page.screenshot(path=str(ARTIFACTS / "callup-case-view.png"))
    with _client(server, "t_dispatcher") as c:  # leave no open call-up or case behind
        c.post(f"/callups/{cid}/close").raise_for_status()
        res = c.post(f"/incidents/{iid}/actions", json={"action": "void", "note": "测试数据"})
        assert res.status_code == 200, res.text
