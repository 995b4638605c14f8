"""The dispatch desk's API on the demo city: queue, case view and actions, duplicates and merges,
reveals of phones, saved views, a department's liaison."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from app.routers.desk import CaseView, QueuePage
from tests.conftest import TEST_PASSWORD

LIAISON = "t_liaison_swj"


@pytest.fixture(scope="module")
def liaison(engine: Engine, api) -> Iterator[str]:
    """A liaison of 水务局 (SWJ), committed once: a supervisor account over the whole city."""
    from app import users
    from grids.access import Principal
    from layers.dispatch.roles import set_liaison

    with engine.begin() as conn:
        if not conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"),
                            {"u": LIAISON}).first():
            users.create_user(conn, username=LIAISON, password=TEST_PASSWORD, role="supervisor",
                              region_code="330782", principal=Principal.system("test-setup"))
        set_liaison(conn, LIAISON, "SWJ")
    with engine.connect() as conn:
        api[0].state.directory.reload(conn)
    yield LIAISON


@pytest.fixture
def spot(conn: Connection, api) -> dict:
    grid = api[0].state.directory.by_name["t_worker"].grid_codes[0]
    row = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat "
        "FROM region_current WHERE code = :g"), {"g": grid}).mappings().one()
    return {"grid": grid, **row}


def _new(client: TestClient, headers, spot: dict, ext: str, *, source: str = "hotline_12345",
         category: str = "C0101", dx: float = 0.0, who: str = "t_dispatcher", **extra) -> int:
    res = client.post("/incidents", headers=headers(who), json={
        "source": source, "external_id": ext, "category": category,
        "description": "井盖破损，有人险些踩空", "address": "稠州北路88号",
        "lon": spot["lon"] + dx, "lat": spot["lat"],
        "reporter_name": "张三", "reporter_phone": "13812345678", **extra})
    assert res.status_code == 201, res.text
    return res.json()["id"]


def _case(client: TestClient, headers, who: str, incident: int) -> dict:
    res = client.get(f"/desk/cases/{incident}", headers=headers(who))
    assert res.status_code == 200, res.text
    return CaseView.model_validate(res.json()).model_dump()


def _act(client: TestClient, headers, who: str, incident: int, action: str, **body) -> dict:
    res = client.post(f"/desk/cases/{incident}/actions", headers=headers(who),
                      json={"action": action, **body})
    assert res.status_code == 200, (action, who, res.text)
    return CaseView.model_validate(res.json()).model_dump()


def test_queue_filters_pages_and_counts(anonymous: TestClient, headers, spot: dict) -> None:
    ids = [_new(anonymous, headers, spot, f"dq-{k}", category=c)
           for k, c in enumerate(("C0101", "E0101", "C0101"))]
    h = headers("t_dispatcher")
    res = anonymous.get("/desk/queue", headers=h, params={"region": spot["grid"]})
    assert res.status_code == 200, res.text
    page = QueuePage.model_validate(res.json())
    assert {i.id for i in page.items} >= set(ids)
    dues = [i.due_at for i in page.items]
    assert dues == sorted(dues)  # by due time by default
    assert page.counts.state["received"] >= 3 and sum(page.counts.light.values()) >= 3
    only = anonymous.get("/desk/queue", headers=h, params={
        "region": spot["grid"], "category": "C01", "q": "稠州北路"}).json()
    assert {i["id"] for i in only["items"]} >= {ids[0], ids[2]}
    assert ids[1] not in {i["id"] for i in only["items"]}
    by_id = anonymous.get("/desk/queue", headers=h, params={"q": f"#{ids[1]}"}).json()
    assert [i["id"] for i in by_id["items"]] == [ids[1]] and by_id["total"] == 1
    first = anonymous.get("/desk/queue", headers=h, params={"region": spot["grid"],
                                                           "limit": 2}).json()
    second = anonymous.get("/desk/queue", headers=h, params={"region": spot["grid"],
                                                            "limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] >= 3
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}
    assert page.items[0].responsible_name  # the worker by name, not only a staff code
    # the state filter changes the total but not the counts shown beside it
    reg = anonymous.get("/desk/queue", headers=h, params={"region": spot["grid"],
                                                         "state": "registered"}).json()
    assert reg["counts"] == res.json()["counts"] and reg["total"] == reg["counts"]["state"][
        "registered"]
    bad = anonymous.get("/desk/queue", headers=h, params={"state": "closed"})
    assert bad.status_code == 422


def test_closed_loop_from_the_desk(anonymous: TestClient, headers, spot: dict) -> None:
    case_id = _new(anonymous, headers, spot, "loop-1")
    c = _case(anonymous, headers, "t_dispatcher", case_id)
    assert c["allowed_actions"] == ["register", "void", "merge"]
    assert c["responsible"]["name"] and "*" in c["responsible"]["phone"]
    assert c["reporter_phone"] == "138****5678"
    assert c["department_name"] == "水务局" and c["limits"]["step_hours"] == 1
    c = _act(anonymous, headers, "t_dispatcher", case_id, "register", note="立案",
             expected_version=c["version"])
    c = _act(anonymous, headers, "t_dispatcher", case_id, "dispatch", expected_version=c["version"])
    assert c["state"] == "dispatched" and c["allowed_actions"] == ["return", "merge"]
    # the worker accepts and reports back through the API, with a photo reference
    for action in ("accept", "report"):
        res = anonymous.post(f"/incidents/{case_id}/actions", headers=headers("t_worker"),
                             json={"action": action, "note": "已更换井盖",
                                   "photos": ["https://photos.example/1.jpg"]})
        assert res.status_code == 200, res.text
    stale = anonymous.post(f"/desk/cases/{case_id}/actions", headers=headers("t_supervisor"),
                           json={"action": "verify", "expected_version": c["version"]})
    assert stale.status_code == 409 and stale.json()["code"] == "conflict"
    c = _case(anonymous, headers, "t_supervisor", case_id)
    assert c["state"] == "reported" and "verify" in c["allowed_actions"]
    assert c["history"][-1]["photos"] == ["https://photos.example/1.jpg"]
    c = _act(anonymous, headers, "t_supervisor", case_id, "verify", expected_version=c["version"])
    c = _act(anonymous, headers, "t_supervisor", case_id, "close", expected_version=c["version"])
    assert c["state"] == "closed" and c["closed_on_time"] is True
    assert [h["action"] for h in c["history"]] == ["receive", "register", "dispatch", "accept",
                                                   "report", "verify", "close"]
    illegal = anonymous.post(f"/desk/cases/{case_id}/actions", headers=headers("t_dispatcher"),
                             json={"action": "dispatch"})
    assert illegal.status_code == 409 and illegal.json()["code"] == "illegal_transition"


def test_duplicates_merge_and_undo(anonymous: TestClient, headers, spot: dict,
                                   conn: Connection) -> None:
    lead = _new(anonymous, headers, spot, "dup-a", source="hotline_12345")
    b = _new(anonymous, headers, spot, "dup-b", source="police_110", dx=0.0002)  # ~20 m
    c = _new(anonymous, headers, spot, "dup-c", source="supervisor", category="C0202",
             dx=-0.0002)  # a related category
    far = _new(anonymous, headers, spot, "dup-far", source="citizen_app", dx=0.003)  # ~290 m
    cands = anonymous.get(f"/desk/cases/{lead}/duplicates", headers=headers("t_dispatcher")).json()
    by_id = {x["id"]: x for x in cands}
    assert {b, c} <= set(by_id) and far not in by_id
    assert by_id[b]["score"] > by_id[c]["score"]  # same category beats related
    assert 15 < by_id[b]["distance_m"] < 25
    assert by_id[b]["likely"] and not by_id[b]["same_channel"]  # 20 m, minutes, another channel
    # the queue row carries the badge: how many candidates are likely the same event
    rows = anonymous.get("/desk/queue", params={"q": f"#{lead}"},
                         headers=headers("t_dispatcher")).json()["items"]
    assert rows[0]["id"] == lead
    assert rows[0]["duplicates"] == sum(x["likely"] for x in cands) >= 1
    view = _case(anonymous, headers, "t_dispatcher", lead)
    res = anonymous.post(f"/desk/cases/{lead}/merge", headers=headers("t_dispatcher"),
                         json={"duplicates": [b, c], "note": "同一井盖",
                               "expected_version": view["version"]})
    assert res.status_code == 200, res.text
    merged = CaseView.model_validate(res.json()).model_dump()
    assert {m["duplicate_id"] for m in merged["links"]["merged"]} == {b, c}
    assert [h["action"] for h in merged["history"]][-2:] == ["merge_in", "merge_in"]
    dup = _case(anonymous, headers, "t_dispatcher", b)
    assert dup["state"] == "merged" and dup["merged_into"] == lead
    assert dup["allowed_actions"] == ["unmerge"]
    # the reporter of a merged case follows the lead on Open311
    _act(anonymous, headers, "t_dispatcher", lead, "register")
    o311 = anonymous.get(f"/open311/v2/requests/{b}.json",
                         headers=headers("t_dispatcher")).json()[0]
    assert o311["status"] == "open" and o311["status_notes"].startswith(f"并入 {lead}")
    assert "立案" in o311["status_notes"]
    # merging a merged case again, or a case into itself, is refused in words
    again = anonymous.post(f"/desk/cases/{lead}/merge", headers=headers("t_dispatcher"),
                           json={"duplicates": [b]})
    assert again.status_code == 409 and again.json()["code"] == "merge_refused"
    undo = anonymous.post(f"/desk/cases/{c}/unmerge", headers=headers("t_supervisor"),
                          json={"note": "不是同一处"})
    assert undo.status_code == 200, undo.text
    assert undo.json()["state"] == "received" and undo.json()["merged_into"] is None
    audit = conn.execute(text(
        "SELECT action, after ->> 'undone_by' FROM audit_log WHERE entity = 'incident_merge' "
        "AND (after ->> 'duplicate_id')::bigint = :c ORDER BY id"), {"c": c}).all()
    assert [a for a, _ in audit] == ["insert", "update"] and audit[-1][1] == "user:t_supervisor"
    # a viewer may not merge
    no = anonymous.post(f"/desk/cases/{lead}/merge", headers=headers("t_viewer"),
                        json={"duplicates": [c]})
    assert no.status_code == 403


def test_reveal_phone_is_audited(anonymous: TestClient, headers, spot: dict,
                                 conn: Connection, liaison: str) -> None:
    case_id = _new(anonymous, headers, spot, "reveal-1")
    c = _case(anonymous, headers, "t_supervisor", case_id)
    assert c["may_reveal"] and c["reporter_phone"] == "138****5678"
    no_reason = anonymous.post(f"/desk/cases/{case_id}/reveal", headers=headers("t_supervisor"),
                               json={"field": "reporter_phone", "reason": ""})
    assert no_reason.status_code == 422
    res = anonymous.post(f"/desk/cases/{case_id}/reveal", headers=headers("t_supervisor"),
                         json={"field": "reporter_phone", "reason": "回访核实"})
    assert res.status_code == 200, res.text
    assert res.json() == {"field": "reporter_phone", "value": "13812345678",
                          "tel": "tel:13812345678"}
    audit = anonymous.get("/audit", headers=headers("t_supervisor"),
                          params={"entity": "personal_data_reveal"}).json()
    row = next(a for a in audit if a["after"]["incident_id"] == case_id)
    assert row["actor"] == "user:t_supervisor" and row["after"]["reason"] == "回访核实"
    for who in ("t_viewer", liaison):
        denied = anonymous.post(f"/desk/cases/{case_id}/reveal", headers=headers(who),
                                json={"field": "reporter_phone", "reason": "想看看"})
        assert denied.status_code in (403, 404), (who, denied.text)
    other = anonymous.post(f"/desk/cases/{case_id}/reveal", headers=headers("t_supervisor2"),
                           json={"field": "reporter_phone", "reason": "回访"})
    assert other.status_code == 404  # outside the jurisdiction: as if it did not exist


def test_liaison_sees_and_acts_for_its_department(anonymous: TestClient, headers, spot: dict,
                                                  liaison: str) -> None:
    mine = _new(anonymous, headers, spot, "li-swj", category="C0101")  # 水务局
    theirs = _new(anonymous, headers, spot, "li-cgj", category="E0101")  # 综合行政执法局
    me = anonymous.get("/desk/me", headers=headers(liaison)).json()
    assert me["department"] == "SWJ" and me["may_merge"] is False
    q = anonymous.get("/desk/queue", headers=headers(liaison),
                      params={"region": spot["grid"]}).json()
    ids = {i["id"] for i in q["items"]}
    assert mine in ids and theirs not in ids and q["department"] == "SWJ"
    assert anonymous.get(f"/desk/cases/{theirs}", headers=headers(liaison)).status_code == 404
    for action in ("register", "dispatch"):
        _act(anonymous, headers, "t_dispatcher", mine, action)
    c = _case(anonymous, headers, liaison, mine)
    assert c["allowed_actions"] == ["accept", "return"]
    c = _act(anonymous, headers, liaison, mine, "accept")
    assert c["allowed_actions"] == ["report", "return"]
    refused = anonymous.post(f"/desk/cases/{mine}/actions", headers=headers(liaison),
                             json={"action": "card", "card": "red"})
    assert refused.status_code == 403


def test_saved_views(anonymous: TestClient, headers) -> None:
    h = headers("t_supervisor")
    res = anonymous.post("/desk/views", headers=h, json={
        "name": "我街道的红灯", "filters": {"lights": ["red"], "region": "330782001"}})
    assert res.status_code == 201, res.text
    view = res.json()
    assert view["filters"] == {"lights": ["red"], "region": "330782001"}
    listed = anonymous.get("/desk/views", headers=h).json()
    assert [v["name"] for v in listed] == ["我街道的红灯"]
    assert anonymous.get("/desk/views", headers=headers("t_dispatcher")).json() == []
    assert anonymous.delete(f"/desk/views/{view['id']}",
                            headers=headers("t_dispatcher")).status_code == 404
    assert anonymous.delete(f"/desk/views/{view['id']}", headers=h).status_code == 204


@pytest.mark.parametrize("sort", ["due_at", "-due_at", "received_at", "-received_at"])
def test_keyset_pages_match_offset_pages(anonymous: TestClient, headers, spot: dict,
                                         sort: str) -> None:
    for k in range(5):
        _new(anonymous, headers, spot, f"keyset-{sort}-{k}", dx=0.001 * k)
    h = headers("t_dispatcher")
    by_offset, by_key, after = [], [], None
    for page in range(4):
        a = anonymous.get("/desk/queue", params={"sort": sort, "limit": 3, "offset": 3 * page},
                          headers=h).json()
        by_offset += [r["id"] for r in a["items"]]
        params = {"sort": sort, "limit": 3, **({"after": after} if after else {})}
        b = anonymous.get("/desk/queue", params=params, headers=h).json()
        by_key += [r["id"] for r in b["items"]]
        assert b["total"] == a["total"]
        after = b["next"]
        if after is None:
            break
    assert by_key == by_offset and len(set(by_key)) == len(by_key) >= 5
    bad = anonymous.get("/desk/queue", params={"after": "yesterday|x"}, headers=h)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_queue_filter"
    both = anonymous.get("/desk/queue", params={"after": by_key[0] and "|1", "offset": 3},
                         headers=h)
    assert both.status_code == 422


@pytest.mark.parametrize("sort", ["-received_at", "due_at"])
def test_keyset_pages_with_cases_arriving_between_pages(anonymous: TestClient, headers,
                                                        spot: dict, sort: str) -> None:
    """Cases arriving between two pages neither repeat a row nor push one out of sight (with
    offset paging, newest first, every arrival pushes the page boundary and repeats a row)."""
    mark = f"到达翻页-{sort}"
    h = headers("t_dispatcher")
    first = [_new(anonymous, headers, spot, f"arr-{sort}-{k}", dx=0.0007 * k,
                  description=f"{mark} 第{k}件") for k in range(5)]
    base = {"sort": sort, "limit": 2, "q": mark}
    page = anonymous.get("/desk/queue", params=base, headers=h).json()
    seen = [r["id"] for r in page["items"]]
    offset_seen = list(seen)
    arrived = [_new(anonymous, headers, spot, f"arr-{sort}-late-{k}", dx=-0.0007 * k,
                    category=cat, description=f"{mark} 后到{k}")
               for k, cat in enumerate(("C0101", "E0101", "C0101"))]
    after = page["next"]
    while after:
        page = anonymous.get("/desk/queue", params={**base, "after": after}, headers=h).json()
        seen += [r["id"] for r in page["items"]]
        after = page["next"]
    for off in (2, 4):
        offset_seen += [r["id"] for r in anonymous.get(
            "/desk/queue", params={**base, "offset": off}, headers=h).json()["items"]]
    assert len(seen) == len(set(seen)), seen  # no row twice
    assert set(first) <= set(seen), (first, seen)  # no row skipped
    assert set(seen) - set(first) <= set(arrived)
    if sort == "-received_at":  # what keyset paging avoids: the same rows by offset repeat
        assert len(offset_seen) != len(set(offset_seen))
