"""Read API of the registry on the demo city."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.schemas import ErrorPublic, RegionPage, RegionPublic, StaffAssignmentPublic


def test_docs_and_openapi_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/regions", "/regions/{code}", "/locate", "/locate/batch"} <= set(paths)


def test_streets_and_communities_have_their_real_names(client: TestClient) -> None:
    streets = RegionPage.model_validate(client.get("/regions", params={"level": "street"}).json())
    assert streets.total == 14
    names = {r.name for r in streets.items}
    assert {"稠城街道", "佛堂镇", "苏溪镇"} <= names
    communities = RegionPage.model_validate(
        client.get("/regions", params={"level": "community", "limit": 1000}).json())
    assert communities.total == 544 and len(communities.items) == 544
    grids = RegionPage.model_validate(client.get("/regions", params={"level": "grid"}).json())
    assert grids.total >= 2000
    assert len(grids.items) == 100  # the default page


def test_paging_is_stable_and_complete(client: TestClient) -> None:
    first = client.get("/regions", params={"level": "community", "limit": 300}).json()
    second = client.get("/regions", params={"level": "community", "limit": 300,
                                            "offset": 300}).json()
    codes = [r["code"] for r in first["items"] + second["items"]]
    assert len(codes) == len(set(codes)) == 544
    assert codes == sorted(codes)


def test_one_region_with_geometry_and_chain(client: TestClient) -> None:
    body = client.get("/regions/330782001").json()  # the 9-digit street code is accepted
    region = RegionPublic.model_validate(body)
    assert region.code == "330782001000" and region.name == "稠城街道"
    assert region.geometry["type"] == "MultiPolygon"
    assert [c.code for c in region.chain] == ["330782000000"]
    assert region.area_m2 > 1e6


def test_grid_chain_runs_up_to_the_city(client: TestClient) -> None:
    grid = client.get("/regions", params={"level": "grid", "parent": "330782001001"}).json()
    code = grid["items"][0]["code"]
    assert code.startswith("330782001001") and len(code) == 15
    region = RegionPublic.model_validate(client.get(f"/regions/{code}").json())
    assert [c.level for c in region.chain] == ["community", "street", "city"]


def test_children_and_staff(client: TestClient) -> None:
    children = RegionPage.model_validate(client.get("/regions/330782001000/children").json())
    assert children.total > 0 and all(c.level == "community" for c in children.items)
    grid = client.get("/regions", params={"level": "grid", "limit": 1}).json()["items"][0]["code"]
    staff = [StaffAssignmentPublic.model_validate(s)
             for s in client.get(f"/regions/{grid}/staff").json()]
    assert any(s.duty == "primary" for s in staff)


def test_unknown_and_malformed_codes_get_clear_errors(client: TestClient) -> None:
    missing = client.get("/regions/330782999999")
    assert missing.status_code == 404
    assert ErrorPublic.model_validate(missing.json()).code == "region_not_found"
    bad = client.get("/regions/abc")
    assert bad.status_code == 422
    assert bad.json()["detail"]["field"] == "code"
    bad_level = client.get("/regions", params={"level": "planet"})
    assert bad_level.status_code == 422
    assert bad_level.json()["detail"][0]["field"] == "level"
    assert client.get("/regions", params={"limit": 0}).status_code == 422


def test_search_by_name_is_literal(client: TestClient) -> None:
    page = client.get("/regions", params={"q": "稠城"}).json()
    assert any(r["name"] == "稠城街道" for r in page["items"])
    assert client.get("/regions", params={"q": "%"}).json()["total"] == 0
    assert client.get("/regions", params={"q": "' OR 1=1 --"}).json()["total"] == 0
