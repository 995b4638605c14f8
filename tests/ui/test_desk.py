"""The dispatch desk in a real browser (the portal's 调度台 tab), against a real server.

Journeys as a dispatcher (值班员), a supervisor (督办) and a department's liaison: find a case,
register and dispatch it, the worker accepts and reports back (through the API, as the worker's
phone would), verify and close it, with a 409 explained on the way; merge three cross-channel
duplicates and undo one; reveal a phone and find the audit row; live arrivals. Every request
that leaves 127.0.0.1 fails the test (conftest). Screenshots in ``tests/ui/artifacts/desk-*``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.conftest import TEST_PASSWORD
from tests.ui.conftest import ARTIFACTS, login

LIAISON = "t_liaison_swj"


@pytest.fixture(scope="module")
def liaison(engine: Engine, server: str) -> Iterator[str]:
    """A liaison of 水务局 (SWJ) in the UI database (a supervisor account over the city)."""
    from app import users
    from grids.access import Principal
    from layers.dispatch.roles import set_liaison

    with engine.begin() as conn:
        if not conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"),
                            {"u": LIAISON}).first():
            users.create_user(conn, username=LIAISON, password=TEST_PASSWORD, role="supervisor",
                              region_code="330782", principal=Principal.system("test-setup"))
        set_liaison(conn, LIAISON, "SWJ")
    # the server's directory reloads on NOTIFY (app_user changed): wait until it knows the user
    with httpx.Client(base_url=server) as c:
        for _ in range(100):
            if c.post("/auth/token", json={"username": LIAISON, "password": TEST_PASSWORD}
                      ).status_code == 200:
                break
            import time

            time.sleep(0.1)
    yield LIAISON


def client(server: str, username: str) -> httpx.Client:
    """An API client with a bearer token of ``username`` (use it in a ``with``)."""
    res = httpx.post(f"{server}/auth/token", json={"username": username,
                                                   "password": TEST_PASSWORD})
    res.raise_for_status()
    return httpx.Client(base_url=server, headers={
        "Authorization": f"Bearer {res.json()['access_token']}"})


@pytest.fixture(scope="module")
def worker_spot(engine: Engine) -> dict:
    """A point in the test grid worker's first grid (in 稠城街道, the test supervisor's street)."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT g.code AS grid, ST_X(ST_PointOnSurface(b.geom)) AS lon, "
            "ST_Y(ST_PointOnSurface(b.geom)) AS lat FROM app_user u "
            "JOIN assignment a ON a.staff_id = u.staff_id AND a.valid_to IS NULL "
            "AND a.duty = 'primary' JOIN region g ON g.id = a.region_id AND g.level = 'grid' "
            "JOIN region_boundary b ON b.region_id = g.id AND b.valid_to IS NULL "
            "WHERE u.username = 't_worker' ORDER BY g.code LIMIT 1")).mappings().one()
    return dict(row)


def new_case(server: str, spot: dict, *, source: str = "hotline_12345", category: str = "C0101",
             dx: float = 0.0, who: str = "t_dispatcher",
             description: str = "井盖破损，夜间有人险些踩空") -> int:
    with client(server, who) as c:
        res = c.post("/incidents", json={
            "source": source, "external_id": f"ui-desk-{uuid.uuid4().hex[:12]}",
            "category": category, "description": description,
            "address": "稠州北路88号", "lon": spot["lon"] + dx, "lat": spot["lat"],
            "reporter_name": "王五", "reporter_phone": "13900001111"})
        assert res.status_code == 201, res.text
        return res.json()["id"]


def open_desk(page) -> None:
    page.click("[data-tab=tab-desk]")
    page.wait_for_selector("#desk-table tbody tr")
    page.wait_for_function("document.querySelector('#loading').hidden")


def find_case(page, case_id: int) -> None:
    page.fill("#desk-q", f"#{case_id}")
    page.click("#desk-apply")
    page.wait_for_selector(f"#desk-table tr[data-id='{case_id}']")
    page.click(f"#desk-table tr[data-id='{case_id}']")
    page.wait_for_function(f"window.citygridDesk.desk.view && window.citygridDesk.desk.view.id === {case_id}")


def take(page, action: str, note: str = "") -> None:
    version = page.evaluate("window.citygridDesk.desk.view.version")
    page.click(f"#desk-actions button[data-action={action}]")
    page.fill("#desk-form-note", note)
    page.click("#desk-form-submit")
    page.wait_for_function(f"window.citygridDesk.desk.view.version > {version}")
    page.wait_for_selector("#desk-notice:not([hidden])")
    page.wait_for_function("document.querySelector('#loading').hidden")


def test_dispatch_verify_close_with_a_409_explained(new_page, server: str,
                                                    worker_spot: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    case_id = new_case(server, worker_spot)
    page = new_page()
    login(page, "t_dispatcher")
    open_desk(page)
    # counts per state and light are always there, the list is paged by the server
    assert page.locator("#desk-counts .chip").count() == 9
    assert "件未结案件" in page.inner_text("#desk-total")
    page.screenshot(path=str(ARTIFACTS / "desk-queue.png"))
    find_case(page, case_id)
    name = page.inner_text("#desk-resp-name")
    assert name and not name.startswith("W")  # a person's name, not a staff code
    assert "139****1111" in page.inner_text("#desk-case")
    assert page.locator("#desk-actions button").all_inner_texts() == ["立案", "作废"]
    take(page, "register", "来电核实，立案")
    take(page, "dispatch", "派遣至责任网格")
    assert "已派遣" in page.inner_text("#desk-notice")
    page.screenshot(path=str(ARTIFACTS / "desk-dispatched.png"))
    with client(server, "t_worker") as w:  # the worker's phone
        for action in ("accept", "report"):
            res = w.post(f"/incidents/{case_id}/actions", json={
                "action": action, "note": "已更换井盖", "photos": ["https://photos.invalid/a.jpg"]})
            assert res.status_code == 200, res.text

    sup = new_page()
    login(sup, "t_supervisor")
    open_desk(sup)
    find_case(sup, case_id)
    timeline = sup.inner_text("#desk-timeline")
    assert "接收处置" in timeline and "反馈" in timeline and "已更换井盖" in timeline
    assert sup.locator("#desk-timeline .photos a").count() == 2  # links, nothing fetched
    sup.click("#desk-actions button[data-action=verify]")
    sup.fill("#desk-form-note", "现场核查：已修复，照片相符")
    with client(server, "t_admin") as a:  # someone else acts meanwhile
        assert a.post(f"/incidents/{case_id}/actions",
                      json={"action": "card", "card": "yellow"}).status_code == 200
    sup.click("#desk-form-submit")
    sup.wait_for_selector("#desk-conflict:not([hidden])")
    conflict = sup.inner_text("#desk-conflict")
    assert "此案件刚被他人更新" in conflict and "t_admin" in conflict and "已反馈" in conflict
    assert sup.input_value("#desk-form-note") == "现场核查：已修复，照片相符"  # nothing lost
    sup.screenshot(path=str(ARTIFACTS / "desk-conflict.png"))
    sup.click("#desk-form-submit")
    sup.wait_for_selector("#desk-notice:not([hidden])")
    sup.wait_for_function("document.querySelector('#loading').hidden")
    assert "已核查" in sup.inner_text("#desk-notice")
    take(sup, "close", "结案")
    assert "已结案" in sup.inner_text("#desk-notice")
    sup.screenshot(path=str(ARTIFACTS / "desk-closed.png"))
    with client(server, "t_supervisor") as s:
        got = s.get(f"/incidents/{case_id}").json()
    assert got["state"] == "closed" and [h["action"] for h in got["history"]] == [
        "receive", "register", "dispatch", "accept", "report", "card", "verify", "close"]


def test_merge_three_channels_and_undo_one(page, server: str, worker_spot: dict) -> None:
    lead = new_case(server, worker_spot, source="hotline_12345", dx=0.01)
    b = new_case(server, worker_spot, source="police_110", dx=0.01015)  # ~15 m away
    c = new_case(server, worker_spot, source="supervisor", dx=0.00985)
    login(page, "t_dispatcher")
    open_desk(page)
    find_case(page, lead)
    page.wait_for_selector("#desk-candidates")
    for dup in (b, c):
        page.check(f"#desk-candidates input[value='{dup}']")
    page.screenshot(path=str(ARTIFACTS / "desk-candidates.png"))
    page.click("#desk-merge")
    page.wait_for_selector(f"#desk-case li[data-dup='{c}']")
    assert "已合并 2 件" in page.inner_text("#desk-notice")
    page.screenshot(path=str(ARTIFACTS / "desk-merged.png"))
    page.click(f"#desk-case li[data-dup='{c}'] button[data-unmerge]")
    page.wait_for_selector(f"#desk-case li[data-dup='{c}']", state="detached")
    assert "已撤销合并" in page.inner_text("#desk-notice")
    with client(server, "t_dispatcher") as d:
        assert d.get(f"/incidents/{b}").json()["state"] == "merged"
        assert d.get(f"/incidents/{c}").json()["state"] == "received"
    # the 110 caller follows the lead (Open311 reads need incidents:read since issue 13)
    with client(server, "t_dispatcher") as d:
        assert d.get(f"/open311/v2/requests/{b}.json").json()[0][
            "status_notes"].startswith(f"并入 {lead}")
    # the merged case says where it went
    find_case(page, lead)
    page.click(f"#desk-case li[data-dup='{b}'] button[data-open]")
    page.wait_for_function(f"window.citygridDesk.desk.view.id === {b}")
    assert f"已并入主案件 #{lead}" in page.inner_text("#desk-case")


def test_reveal_phone_writes_an_audit_row(page, server: str, worker_spot: dict) -> None:
    case_id = new_case(server, worker_spot)
    login(page, "t_supervisor")
    open_desk(page)
    find_case(page, case_id)
    assert "13900001111" not in page.inner_text("#desk-case")
    page.click("#desk-reporter-phone button[data-reveal]")
    page.click("#desk-reveal-go")  # no reason: refused, and the error is in words, in Chinese
    page.wait_for_selector("#desk-error:not([hidden])")
    assert "请求有误" in page.inner_text("#desk-error")
    page.fill("#desk-reveal-reason", "回访反映人，核实地点")
    page.click("#desk-reveal-go")
    page.wait_for_selector("#desk-reporter-phone a.tel")
    assert page.get_attribute("#desk-reporter-phone a.tel", "href") == "tel:13900001111"
    page.screenshot(path=str(ARTIFACTS / "desk-reveal.png"))
    with client(server, "t_supervisor") as s:
        audit = s.get("/audit", params={"entity": "personal_data_reveal"}).json()
    row = next(a for a in audit if a["after"]["incident_id"] == case_id)
    assert row["actor"] == "user:t_supervisor" and row["after"]["reason"] == "回访反映人，核实地点"


def test_liaison_sees_its_department_and_accepts(new_page, server: str, worker_spot: dict,
                                                 liaison: str) -> None:
    mine = new_case(server, worker_spot, category="C0101")  # 水务局
    with client(server, "t_dispatcher") as d:
        for action in ("register", "dispatch"):
            assert d.post(f"/incidents/{mine}/actions", json={"action": action}).status_code == 200
    page = new_page()
    login(page, liaison)
    open_desk(page)
    assert "水务局" in page.inner_text("#desk-liaison")
    depts = set(page.locator("#desk-table tbody tr td:nth-child(8)").all_inner_texts())
    assert depts == {"水务局"}
    find_case(page, mine)
    assert page.locator("#desk-actions button").all_inner_texts() == ["接收处置", "回退"]
    take(page, "accept", "水务局已接单")
    assert "处置中" in page.inner_text("#desk-notice")
    page.screenshot(path=str(ARTIFACTS / "desk-liaison.png"))


def test_live_arrival_toast_badge_and_english(page, server: str, worker_spot: dict) -> None:
    login(page, "t_dispatcher")
    page.wait_for_function("window.citygrid.state.liveState === 'on'")
    case_id = new_case(server, worker_spot, category="E0302")
    page.wait_for_selector(f".desk-toast[data-id='{case_id}']")
    assert page.inner_text("#desk-badge") == "1"
    page.screenshot(path=str(ARTIFACTS / "desk-toast.png"))
    page.click(f".desk-toast[data-id='{case_id}'] button")
    page.wait_for_function(f"window.citygridDesk.desk.view && window.citygridDesk.desk.view.id === {case_id}")
    assert page.is_hidden("#desk-badge")
    page.click("#lang")
    assert page.inner_text("[data-tab=tab-desk]").startswith("Desk")
    assert "Responsible worker" in page.inner_text("#desk-case")
    page.click("#desk-actions button[data-action=void]")
    with client(server, "t_dispatcher") as d:
        assert d.post(f"/incidents/{case_id}/actions", json={"action": "void"}).status_code == 200
    page.click("#desk-form-submit")
    page.wait_for_selector("#desk-conflict:not([hidden])")
    assert "Someone else just changed this case" in page.inner_text("#desk-conflict")
    page.screenshot(path=str(ARTIFACTS / "desk-english.png"))


def test_pages_by_cursor_while_cases_arrive(page, server: str, worker_spot: dict) -> None:
    """Newest first, two rows a page: two cases arriving while page 2 is shown push nothing
    onto page 3 twice (offset paging would show page 2's rows again) and hide nothing."""
    mark = f"翻页{uuid.uuid4().hex[:6]}"
    first = [new_case(server, worker_spot, dx=0.0005 * k, description=f"{mark} 第{k}件")
             for k in range(5)]
    login(page, "t_dispatcher")
    open_desk(page)
    page.evaluate("window.citygridDesk.desk.limit = 2")
    page.fill("#desk-q", mark)
    page.select_option("#desk-sort", "-received_at")
    page.click("#desk-apply")
    shown = "window.citygridDesk.desk.page.items.map((r) => r.id).join(',')"
    page.wait_for_function(f"{shown} === '{first[4]},{first[3]}'")
    page.click("#desk-next")
    page.wait_for_function(f"{shown} === '{first[2]},{first[1]}'")
    page2 = page.inner_text("#desk-total")
    arrived = [new_case(server, worker_spot, description=f"{mark} 后到{k}") for k in range(2)]
    page.click("#desk-next")
    page.wait_for_function(f"{shown} === '{first[0]}'")
    assert page.is_disabled("#desk-next")
    assert "5–5" in page.inner_text("#desk-total")
    page.click("#desk-prev")
    page.wait_for_function(f"{shown} === '{first[2]},{first[1]}'")
    assert page.inner_text("#desk-total").split("，")[-1] == page2.split("，")[-1]
    page.click("#desk-prev")
    page.wait_for_function(f"{shown} === '{arrived[1]},{arrived[0]}'")
    assert page.is_disabled("#desk-prev")
