"""Undo, redo, rename, naming, import into a draft and the impact's workers through the plans API
on the demo city (issue 19); every test runs in its own transaction, rolled back."""

from __future__ import annotations

import re
from typing import Any

import shapely
from fastapi.testclient import TestClient

from app.plan_schemas import ImpactPublic, PlanPublic
from app.schemas import ErrorPublic
from tests.app.test_plans_api import _grid_with_a_clean_cut


def _community(client: TestClient) -> str:
    page = client.get("/regions", params={"parent": "330782001000", "level": "community"}).json()
    return page["items"][0]["code"]


def _open(client: TestClient, region: str) -> dict[str, Any]:
    res = client.post("/plans", json={"name": "撤销测试", "region_code": region})
    assert res.status_code == 201, res.text
    return PlanPublic.model_validate(res.json()).model_dump()


def _post(client: TestClient, plan: dict[str, Any], path: str, **kw: Any) -> Any:
    return client.post(f"/plans/{plan['id']}/{path}", headers={"If-Match": plan["etag"]}, **kw)


def _features(client: TestClient, plan_id: int) -> dict[str, dict[str, Any]]:
    return {f["properties"]["code"]: f["properties"] for f in
            client.get(f"/plans/{plan_id}/features").json()["features"]
            if f["properties"]["change"] != "context"}


def test_undo_redo_over_http(client: TestClient) -> None:
    community = _community(client)
    code, blade = _grid_with_a_clean_cut(client, community)
    plan = _open(client, community)
    opened = _features(client, plan["id"])
    assert client.post(f"/plans/{plan['id']}/undo").status_code == 428
    nothing = _post(client, plan, "undo")
    assert nothing.status_code == 422 and nothing.json()["code"] == "nothing_to_undo"
    split = _post(client, plan, "edits", json={"op": "split", "code": code, "line": blade})
    assert split.status_code == 200, split.text
    after_split = _features(client, plan["id"])
    assert len(after_split) == len(opened) + 1
    stale = _post(client, plan, "undo")  # the ETag from before the split
    assert stale.status_code == 409 and stale.json()["code"] == "conflict"
    plan = split.json()
    undone = _post(client, plan, "undo")
    assert undone.status_code == 200, undone.text
    body = PlanPublic.model_validate(undone.json())
    assert undone.headers["etag"] == f'"{body.etag}"' and body.etag != plan["etag"]
    assert [e.state for e in body.edits] == ["undone"]
    assert _features(client, plan["id"]) == opened
    redone = _post(client, body.model_dump(), "redo")
    assert redone.status_code == 200, redone.text
    assert _features(client, plan["id"]) == after_split
    again = _post(client, redone.json(), "redo")
    assert again.status_code == 422 and ErrorPublic.model_validate(again.json()).code == \
        "nothing_to_redo"


def test_rename_and_the_naming_pattern_over_http(client: TestClient) -> None:
    community = _community(client)
    code, blade = _grid_with_a_clean_cut(client, community)
    community_name = client.get(f"/regions/{community}").json()["name"]
    plan = _open(client, community)
    siblings = [p["name"] for p in _features(client, plan["id"]).values()]
    # the demo city names grids "<short community name>第N网格" beside "...居民委员会"
    res = _post(client, plan, "edits", json={"op": "split", "code": code, "line": blade})
    plan = res.json()
    new_code = plan["edits"][-1]["facts"]["new_code"]
    new_name = _features(client, plan["id"])[new_code]["name"]
    assert new_name == plan["edits"][-1]["facts"]["new_name"]
    assert re.fullmatch(r".+第\d+网格", new_name)
    assert new_name.endswith(f"第{int(new_code[12:])}网格")
    prefix = new_name[: new_name.rindex("第")]
    assert all(s.startswith(prefix) for s in siblings), (prefix, siblings)
    if community_name.endswith("居民委员会") or community_name.endswith("村民委员会"):
        assert community_name not in new_name
    renamed = _post(client, plan, "edits", json={"op": "rename", "code": new_code,
                                                 "name": "新建南片网格"})
    assert renamed.status_code == 200, renamed.text
    assert _features(client, plan["id"])[new_code]["name"] == "新建南片网格"
    facts = renamed.json()["edits"][-1]["facts"]
    assert facts == {"op": "rename", "code": new_code, "old_name": new_name,
                     "name": "新建南片网格"}
    blank = _post(client, renamed.json(), "edits", json={"op": "rename", "code": new_code,
                                                         "name": ""})
    assert blank.status_code == 422


def test_impact_lists_no_worker_moving_to_the_grid_they_are_in(client: TestClient) -> None:
    community = _community(client)
    code, blade = _grid_with_a_clean_cut(client, community)
    plan = _open(client, community)
    res = _post(client, plan, "edits", json={"op": "split", "code": code, "line": blade})
    assert res.status_code == 200
    impact = ImpactPublic.model_validate(
        client.get(f"/plans/{plan['id']}/impact").json())
    assert code in {g.code for g in impact.grids}  # the split grid changes shape ...
    assert all(w.from_grid != w.to_grid for w in impact.workers.moving)  # ... its team stays
    assert impact.workers.moving == []


def test_import_into_an_open_plan_over_http(client: TestClient, tmp_path) -> None:
    import geopandas as gpd

    community = _community(client)
    plan = _open(client, community)
    path = tmp_path / "plan.gpkg"
    path.write_bytes(client.get(f"/plans/{plan['id']}/export.gpkg").content)
    frame = gpd.read_file(path, layer="plan_grids")
    a, b = sorted(frame["code"])[:2]
    merged = shapely.union_all([frame.loc[frame.code == a, "geometry"].iloc[0],
                                frame.loc[frame.code == b, "geometry"].iloc[0]])
    frame.loc[frame.code == a, "geometry"] = merged
    frame = frame[frame.code != b]
    edited = tmp_path / "edited.gpkg"
    frame.to_file(edited, layer="plan_grids", driver="GPKG")
    with edited.open("rb") as f:
        no_etag = client.post(f"/plans/{plan['id']}/import", files={"file": ("e.gpkg", f)})
    assert no_etag.status_code == 428
    with edited.open("rb") as f:
        res = _post(client, plan, "import", files={"file": ("edited.gpkg", f)})
    assert res.status_code == 200, res.text
    body = PlanPublic.model_validate(res.json())
    assert body.edits[-1].op == "import" and body.edits[-1].facts == {
        "op": "import", "file": "edited.gpkg", "changed": [a], "new": [], "retired": [b]}
    feats = _features(client, plan["id"])
    assert feats[a]["change"] == "changed" and feats[b]["change"] == "retired"
    bad = _post(client, body.model_dump(), "import",
                files={"file": ("x.gpkg", b"not a geopackage")})
    assert bad.status_code == 422 and bad.json()["code"] == "import_rejected"
