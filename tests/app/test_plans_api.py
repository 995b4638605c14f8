"""The plans API on the demo city (rolled back), and on a committed scratch city for the locator.

The demo-city tests share the test's transaction (see ``tests/conftest.py``), so nothing they do
is ever committed. The locator tests need commits seen by other workers: they run an app on a
scratch copy of the tiny city, with a second :class:`LocatorService` standing in for another
API worker process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.plan_schemas import ActivationPublic, ImpactPublic, PlanList, PlanPublic, VersionList
from app.schemas import ErrorPublic
from tests import plan_flow
from tests.conftest import wait_for
from tests.tiny_city import C1, G1, X0, Y0, U, at

PLANNER_STREET = "330782001"


def _grid_with_a_clean_cut(client: TestClient, community: str) -> tuple[str, dict[str, Any]]:
    """A grid of ``community`` and a horizontal line that cuts it into two sizeable parts."""
    from shapely.ops import split

    grids = client.get("/regions", params={"parent": community, "level": "grid"}).json()["items"]
    for g in grids:
        geom = shapely.geometry.shape(client.get(f"/regions/{g['code']}").json()["geometry"])
        x0, y0, x1, y1 = geom.bounds
        for f in (0.5, 0.4, 0.6, 0.3, 0.7):
            y = y0 + f * (y1 - y0)
            blade = shapely.LineString([(x0 - 1e-3, y), (x1 + 1e-3, y)])
            pieces = list(split(geom, blade).geoms)
            if len(pieces) == 2 and min(p.area for p in pieces) > 0.2 * geom.area:
                return g["code"], shapely.geometry.mapping(blade)
    raise AssertionError(f"no grid of {community} can be cut in two by a horizontal line")


@pytest.fixture
def community(client: TestClient) -> str:
    page = client.get("/regions", params={"parent": "330782001000", "level": "community"}).json()
    return page["items"][0]["code"]


def _open(client: TestClient, community: str, **extra: Any) -> tuple[dict[str, Any], str]:
    res = client.post("/plans", json={"name": "测试方案", "region_code": community, **extra})
    assert res.status_code == 201, res.text
    return PlanPublic.model_validate(res.json()).model_dump(), res.headers["etag"]


def test_a_planner_splits_previews_and_activates(anonymous: TestClient, headers,
                                                 community: str) -> None:
    anonymous.headers.update(headers("t_planner"))
    client = anonymous
    plan, etag = _open(client, community)
    assert etag == f'"{plan["etag"]}"' and plan["status"] == "draft"
    assert plan["problems"] == [], plan["problems"]
    code, blade = _grid_with_a_clean_cut(client, community)
    url = f"/plans/{plan['id']}/edits"
    body = {"op": "split", "code": code, "line": blade, "new_name": "新网格"}

    missing = client.post(url, json=body)
    assert missing.status_code == 428 and missing.json()["code"] == "precondition_required"

    dry = client.post(url, json=body, params={"dry_run": "true"}, headers={"If-Match": etag})
    assert dry.status_code == 200 and dry.json()["problems"] == [] and dry.json()["summary"]
    assert dry.headers["etag"] == etag  # nothing stored
    assert client.get(f"/plans/{plan['id']}").json()["edits"] == []

    done = client.post(url, json=body, headers={"If-Match": etag})
    assert done.status_code == 200, done.text
    new_etag = done.headers["etag"]
    assert new_etag != etag and [e["op"] for e in done.json()["edits"]] == ["split"]

    stale = client.post(url, json=body, headers={"If-Match": etag})
    assert stale.status_code == 409
    assert stale.json()["detail"]["last_edit"]["op"] == "split"
    assert stale.json()["detail"]["current_etag"] == new_etag.strip('"')

    features = client.get(f"/plans/{plan['id']}/features").json()
    changes = {f["properties"]["change"] for f in features["features"]}
    assert {"changed", "new", "unchanged", "context"} <= changes
    new_code = next(f["properties"]["code"] for f in features["features"]
                    if f["properties"]["change"] == "new")

    impact = ImpactPublic.model_validate(client.get(f"/plans/{plan['id']}/impact").json())
    assert {g.code for g in impact.grids} == {code, new_code}
    assert new_code in impact.grids_without_worker
    assert client.post(f"/plans/{plan['id']}/validate").json() == {"ok": True, "problems": []}

    early = client.post(f"/plans/{plan['id']}/activate", json={}, headers={"If-Match": new_etag})
    assert early.status_code == 409 and early.json()["code"] == "plan_not_approved"
    unstaffed = client.post(f"/plans/{plan['id']}/submit", json={},
                            headers={"If-Match": new_etag})
    assert unstaffed.status_code == 422 and unstaffed.json()["code"] == "grids_without_worker"
    assert new_code in unstaffed.json()["detail"]["grids"]
    submitted = client.post(f"/plans/{plan['id']}/submit",
                            json={"unstaffed_reason": "新网格员下周到岗"},
                            headers={"If-Match": new_etag})
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    assert submitted.json()["unstaffed_grids"] == [new_code]
    own = client.post(f"/plans/{plan['id']}/approve", json={},
                      headers={"If-Match": submitted.headers["etag"]})
    assert own.status_code == 403  # the city's approver role is admin
    approved = client.post(f"/plans/{plan['id']}/approve", json={"comment": "同意"},
                           headers={**headers("t_admin"),
                                    "If-Match": submitted.headers["etag"]})
    assert approved.status_code == 200 and approved.json()["activation"] is None
    new_etag = approved.headers["etag"]
    assert [r["action"] for r in approved.json()["plan"]["reviews"]] == ["submit", "approve"]

    activated = client.post(f"/plans/{plan['id']}/activate", json={},
                            headers={"If-Match": new_etag})
    assert activated.status_code == 200, activated.text
    result = ActivationPublic.model_validate(activated.json())
    assert result.plan.status == "activated" and result.changed == 2 and result.rerouted == 0

    versions = VersionList.model_validate(client.get("/boundaries/versions").json())
    assert versions.items[0].version == result.boundary_version
    assert versions.items[0].plan_id == plan["id"]
    diff = client.get("/boundaries/diff", params={
        "region": community, "from": versions.items[1].version}).json()
    assert {(f["properties"]["code"], f["properties"]["change"]) for f in diff["features"]} == {
        (code, "changed"), (new_code, "new")}
    # history still answers with the old grid before activation
    geom = shapely.geometry.shape(client.get(f"/regions/{new_code}").json()["geometry"])
    p = shapely.point_on_surface(geom)
    old = client.get("/locate/history", params={"lon": p.x, "lat": p.y,
                                                "at": "2025-06-01T00:00:00+08:00"}).json()
    assert old["grid"]["code"] == code

    again = client.post(f"/plans/{plan['id']}/edits", json=body,
                        headers={"If-Match": result.plan.etag})
    assert again.status_code == 409 and again.json()["code"] == "plan_not_draft"


def test_invalid_edits_and_requests_get_json_errors(client: TestClient, community: str) -> None:
    plan, etag = _open(client, community)
    grids = client.get("/regions", params={"parent": community, "level": "grid"}).json()["items"]
    url = f"/plans/{plan['id']}/edits"
    bad = client.post(url, json={"op": "recode", "code": grids[0]["code"],
                                 "new_code": grids[1]["code"]}, headers={"If-Match": etag})
    assert bad.status_code == 422
    err = ErrorPublic.model_validate(bad.json())
    assert err.code == "invalid_edit"
    assert err.detail["problems"][0]["kind"] == "code_collision"
    assert client.get(f"/plans/{plan['id']}").json()["edits"] == []
    unknown = client.post(url, json={"op": "explode", "code": grids[0]["code"]},
                          headers={"If-Match": etag})
    assert unknown.status_code == 422 and unknown.json()["code"] == "invalid_request"
    selfcross = client.post(url, json={"op": "reshape", "code": grids[0]["code"], "geometry": {
        "type": "Polygon", "coordinates": [[[120, 29], [120.01, 29.01], [120.01, 29],
                                            [120, 29.01], [120, 29]]]}},
        headers={"If-Match": etag})
    assert selfcross.status_code == 422
    assert selfcross.json()["detail"]["problems"][0]["location"]["type"] == "Point"
    assert client.get("/plans/999999").status_code == 404
    assert client.post("/plans", json={"name": "x", "region_code": "330782000000"}
                       ).status_code == 422  # a plan covers a street or a community
    assert client.post("/plans", json={"name": "", "region_code": community}).status_code == 422
    unapproved = client.post(f"/plans/{plan['id']}/activate", json={},
                             headers={"If-Match": etag})
    assert unapproved.status_code == 409 and unapproved.json()["code"] == "plan_not_approved"
    assert client.post(f"/plans/{plan['id']}/submit", json={"effective_at": "2020-01-01T00:00Z"},
                       headers={"If-Match": etag}).json()["code"] == "invalid_effective_at"
    nothing = client.post(f"/plans/{plan['id']}/submit", json={}, headers={"If-Match": etag})
    assert nothing.status_code == 422 and nothing.json()["code"] == "empty_plan"


def test_two_plans_on_one_grid_the_second_activation_is_409_json(client: TestClient,
                                                                 community: str) -> None:
    code, blade = _grid_with_a_clean_cut(client, community)
    etags = []
    for _ in range(2):
        plan, etag = _open(client, community)
        res = client.post(f"/plans/{plan['id']}/edits", headers={"If-Match": etag},
                          json={"op": "split", "code": code, "line": blade})
        assert res.status_code == 200, res.text
        etags.append((plan["id"], res.headers["etag"]))
    (first, e1), (second, e2) = etags
    e1 = plan_flow.approve_http(client, first, e1.strip('"'), {})
    e2 = plan_flow.approve_http(client, second, e2.strip('"'), {})
    assert client.post(f"/plans/{first}/activate", json={},
                       headers={"If-Match": e1}).status_code == 200
    assert client.get(f"/plans/{second}").json()["stale"] is True
    res = client.post(f"/plans/{second}/activate", json={}, headers={"If-Match": e2})
    assert res.status_code == 409
    body = ErrorPublic.model_validate(res.json())
    assert body.code == "conflict" and body.detail["other_changes"][0]["plan_id"] == first


def test_planner_cannot_open_a_plan_outside_the_jurisdiction(anonymous: TestClient, headers
                                                             ) -> None:
    anonymous.headers.update(headers("t_planner"))
    res = anonymous.post("/plans", json={"name": "x", "region_code": "330782002001"})
    assert res.status_code == 404
    anonymous.headers.update(headers("t_dispatcher"))
    assert anonymous.get("/plans").status_code == 403


def test_a_plan_outside_the_jurisdiction_is_not_found(anonymous: TestClient, headers) -> None:
    anonymous.headers.update(headers("t_admin"))
    plan, etag = _open(anonymous, "330782002001")  # 江东街道, outside the planner's street
    anonymous.headers.update(headers("t_planner"))
    assert anonymous.get(f"/plans/{plan['id']}").status_code == 404
    assert plan["id"] not in {p["id"] for p in anonymous.get("/plans").json()["items"]}
    res = anonymous.post(f"/plans/{plan['id']}/activate", json={}, headers={"If-Match": etag})
    assert res.status_code == 404 and res.json()["code"] == "plan_not_found"
    anonymous.headers.update(headers("t_supervisor"))
    assert anonymous.get(f"/plans/{plan['id']}").status_code == 403


def test_list_discard_and_geopackage_round_trip(client: TestClient, community: str,
                                                tmp_path) -> None:
    import geopandas as gpd

    plan, etag = _open(client, community)
    listed = PlanList.model_validate(client.get("/plans", params={"status": "draft"}).json())
    assert plan["id"] in {p.id for p in listed.items}
    res = client.get(f"/plans/{plan['id']}/export.gpkg")
    assert res.status_code == 200 and res.content[:15] == b"SQLite format 3"
    path = tmp_path / "plan.gpkg"
    path.write_bytes(res.content)
    frame = gpd.read_file(path, layer="plan_grids")
    assert set(frame.columns) >= {"code", "name", "level", "parent_code", "change", "geometry"}
    # in QGIS: merge the first two grids into the first (delete the second, grow the first)
    codes = sorted(frame["code"])
    a, b = codes[0], codes[1]
    merged = shapely.union_all([frame.loc[frame.code == a, "geometry"].iloc[0],
                                frame.loc[frame.code == b, "geometry"].iloc[0]])
    frame.loc[frame.code == a, "geometry"] = merged
    frame = frame[frame.code != b]
    edited = tmp_path / "edited.gpkg"
    frame.to_file(edited, layer="plan_grids", driver="GPKG")
    with edited.open("rb") as f:
        imported = client.post("/plans/import", files={"file": ("edited.gpkg", f)},
                               data={"region_code": community, "name": "from QGIS"})
    assert imported.status_code == 201, imported.text
    body = PlanPublic.model_validate(imported.json())
    assert body.edits[0].op == "import" and "1 changed, 0 new, 1 retired" in body.edits[0].summary
    feats = {f["properties"]["code"]: f["properties"]["change"] for f in
             client.get(f"/plans/{body.id}/features").json()["features"]}
    assert feats[a] == "changed" and feats[b] == "retired"
    bad = client.post("/plans/import", files={"file": ("x.gpkg", b"not a geopackage")},
                      data={"region_code": community, "name": "bad"})
    assert bad.status_code == 422 and bad.json()["code"] == "import_rejected"
    assert client.delete(f"/plans/{plan['id']}").status_code == 204
    assert client.get(f"/plans/{plan['id']}").json()["status"] == "discarded"


def test_restore_version_opens_a_plan_with_the_old_boundaries(client: TestClient,
                                                              community: str) -> None:
    versions = client.get("/boundaries/versions").json()["items"]
    plan, _ = _open(client, community, restore_version=versions[-1]["version"])
    assert plan["restored_from"] == versions[-1]["version"]
    assert plan["edits"][0]["op"] == "restore"


# ------------------------------------------------------------------------------------------
# committed: the locator of every worker switches
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    from tests.conftest import tiny_city_engine

    engine = tiny_city_engine("citygrid_test_plans", users=(("planner_tiny", "planner"),
                                                            ("admin_tiny", "admin")))
    yield engine
    engine.dispose()


def _split_line(y: float) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [[X0 - 0.1 * U, Y0 + y * U],
                                                  [X0 + 1.1 * U, Y0 + y * U]]}


def test_every_worker_switches_within_a_second_now_and_when_scheduled(scratch: Engine) -> None:
    from app.locator_service import LocatorService
    from app.main import create_app
    from app.settings import DatabaseSettings, Settings
    from tests.conftest import app_role_url, token_for

    owner = scratch.url.render_as_string(hide_password=False)
    other = LocatorService(scratch, raster=False)  # another API worker process
    other.reload()
    other.start()
    app = create_app(Settings(db=DatabaseSettings(database_url=app_role_url(owner),
                                                  migration_url=owner)))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers.update({"Authorization": f"Bearer {token_for(app, 'planner_tiny')}"})
            admin = {"Authorization": f"Bearer {token_for(app, 'admin_tiny')}"}
            time.sleep(0.3)  # both listeners are LISTENing
            top = at(0.5, 0.75)

            def grid_at(service: LocatorService, point: tuple[float, float]) -> str:
                return service.snapshot.locate(*point)["grid"]["code"]

            assert grid_at(other, top) == G1
            res = client.post("/plans", json={"name": "split G1", "region_code": C1})
            plan = res.json()
            res = client.post(f"/plans/{plan['id']}/edits", headers={"If-Match": plan["etag"]},
                              json={"op": "split", "code": G1, "line": _split_line(0.5)})
            assert res.status_code == 200, res.text
            etag = plan_flow.approve_http(client, plan["id"], res.json()["etag"], {},
                                          approver_headers=admin)
            t0 = time.monotonic()
            res = client.post(f"/plans/{plan['id']}/activate", json={},
                              headers={"If-Match": etag})
            assert res.status_code == 200, res.text
            new = client.get("/locate", params={"lon": top[0], "lat": top[1]}).json()
            assert new["grid"]["code"] != G1  # this worker: at once
            took = wait_for(lambda: grid_at(other, top) == new["grid"]["code"], 1.0)
            assert took is not None, "the other worker did not switch within 1 s"
            print(f"other worker switched {time.monotonic() - t0:.3f} s after activation")

            # scheduled: the new grid is retired into G1 in 2 s; nothing announces that moment
            res = client.post("/plans", json={"name": "undo", "region_code": C1})
            plan = res.json()
            res = client.post(f"/plans/{plan['id']}/edits", headers={"If-Match": plan["etag"]},
                              json={"op": "retire", "code": new["grid"]["code"], "into": G1})
            assert res.status_code == 200, res.text
            # the planner proposes the time on submit; the approval makes the scheduled
            # activation (it waited for it)
            when = datetime.now(UTC) + timedelta(seconds=2)
            res = client.post(f"/plans/{plan['id']}/submit",
                              json={"effective_at": when.isoformat()},
                              headers={"If-Match": res.json()["etag"]})
            assert res.status_code == 200 and res.json()["status"] == "submitted", res.text
            assert client.get("/locate", params={"lon": top[0], "lat": top[1]}
                              ).json()["grid"]["code"] == new["grid"]["code"]
            res = client.post(f"/plans/{plan['id']}/approve", json={},
                              headers={**admin, "If-Match": res.json()["etag"]})
            assert res.status_code == 200, res.text
            assert res.json()["activation"]["work"]["pending"] is True
            assert res.json()["plan"]["status"] == "activated"
            assert client.get("/locate", params={"lon": top[0], "lat": top[1]}
                              ).json()["grid"]["code"] == new["grid"]["code"]
            assert grid_at(other, top) == new["grid"]["code"]
            wait = (when - datetime.now(UTC)).total_seconds()
            assert wait > 0.2, "the test machine is too slow for this check"
            time.sleep(wait)
            late = wait_for(lambda: grid_at(other, top) == G1
                             and app.state.locator.snapshot.locate(*top)["grid"]["code"] == G1,
                             1.0)
            assert late is not None, "the workers did not switch within 1 s of effective_at"
            print(f"both workers switched {late:.3f} s after the scheduled time")
    finally:
        other.stop()


def test_two_concurrent_activations_on_one_grid_one_wins_the_other_gets_409(
        scratch: Engine) -> None:
    """Two planners, two transactions at once: the second waits for the first, then 409."""
    import threading

    from grids import plans
    from grids.access import Principal, Scope

    planner = Principal.make("user:p", "planner", Scope.of("990100"))
    with scratch.begin() as conn:
        opened = []
        for name, edit in (("a", {"op": "split", "code": G1, "line": _split_line(0.3)}),
                           ("b", {"op": "retire", "code": G1, "into": C1 + "002"})):
            plan = plans.create_plan(conn, name=name, region_code=C1, principal=planner)
            plan = plans.apply_edit(conn, plan["id"], edit, principal=planner,
                                    if_match=plan["etag"])
            opened.append(plan_flow.approve(conn, plan, planner))
    first, second = opened
    outcome: dict[str, Any] = {}
    c1 = scratch.connect()
    t1 = c1.begin()
    plans.activate(c1, first["id"], principal=planner, if_match=first["etag"])  # not committed

    def other() -> None:
        with scratch.connect() as c2, c2.begin():
            try:
                plans.activate(c2, second["id"], principal=planner, if_match=second["etag"])
                outcome["result"] = "activated"
            except plans.PlanConflict as exc:
                outcome["result"] = exc.detail

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the second activation should wait for the first"
    t1.commit()
    c1.close()
    thread.join(10)
    assert isinstance(outcome["result"], dict), outcome
    assert outcome["result"]["other_changes"][0]["plan_id"] == first["id"]


def test_reroute_moves_open_incidents_only_and_records_it(scratch: Engine) -> None:
    """Through the domain on a committed city: open cases follow, closed ones keep their grid."""
    from grids import plans
    from grids.access import Principal, Scope
    from layers.incidents import reroute

    planner = Principal.make("user:p", "planner", Scope.of("990100"))
    with scratch.connect() as conn, conn.begin() as tx:
        cat = conn.execute(text(
            "INSERT INTO category (code, name, family) VALUES ('PT01', '测试', 'event') "
            "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id")).scalar_one()
        grid = conn.execute(text("SELECT code FROM region_current WHERE level = 'grid' AND "
                                 "ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4490)) "
                                 "ORDER BY code LIMIT 1"),
                            dict(zip("xy", at(0.5, 0.9), strict=True))).scalar_one()
        ids = {}
        for state in ("dispatched", "closed"):
            ids[state] = conn.execute(text(
                "INSERT INTO incident (source, external_id, category_id, state, region_code, "
                "grid_code, community_code, geom) VALUES ('hotline_12345', :e, :cat, :s, :g, :g, "
                ":c, ST_SetSRID(ST_MakePoint(:x, :y), 4490)) RETURNING id"),
                {"e": f"plan-{state}", "cat": cat, "s": state, "g": grid, "c": C1,
                 "x": at(0.5, 0.9)[0], "y": at(0.5, 0.9)[1]}).scalar_one()
        plan = plans.create_plan(conn, name="r", region_code=C1, principal=planner)
        plan = plans.apply_edit(conn, plan["id"], {"op": "split", "code": grid,
                                                   "line": _split_line(0.8)},
                                principal=planner, if_match=plan["etag"])
        impact = reroute.plan_impact(conn, plan["id"], principal=planner)
        assert [i["id"] for i in impact["incidents"]["items"]] == [ids["dispatched"]]
        plan = plan_flow.approve(conn, plan, planner)
        result = reroute.activate_plan(conn, plan["id"], principal=planner,
                                       if_match=plan["etag"], reroute_open_incidents=True)
        assert result["rerouted"] == 1
        rows = dict(conn.execute(text("SELECT state, grid_code FROM incident WHERE id = ANY(:i)"),
                                 {"i": list(ids.values())}).all())
        assert rows["closed"] == grid and rows["dispatched"] != grid
        event = conn.execute(text("SELECT action, note FROM incident_event WHERE incident_id = :i"),
                             {"i": ids["dispatched"]}).one()
        assert event.action == "reroute" and grid in event.note
        tx.rollback()

