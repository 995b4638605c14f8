"""The crosswalk over the API on the demo city (rolled back): a split recorded and exported, and
a month's figure by the old boundaries equal to the figure from before the split."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from shapely.ops import split
from sqlalchemy import Connection, text

from tests import plan_flow
from tests.app.test_plans_api import _grid_with_a_clean_cut, _open

MONTH = "2026-11"


def activate(client: TestClient, plan_id: int, etag: str, admin: dict[str, str]
             ) -> dict[str, Any]:
    """The one place these tests activate a plan: proposed, approved by an admin, activated."""
    etag = plan_flow.approve_http(client, plan_id, etag.strip('"'), {}, approver_headers=admin)
    res = client.post(f"/plans/{plan_id}/activate", json={}, headers={"If-Match": etag})
    assert res.status_code == 200, res.text
    return res.json()


def _incident(conn: Connection, tag: str, grid: str, point: shapely.Point | None) -> None:
    conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, state, region_code, grid_code, "
        "community_code, street_code, received_at, geom) SELECT 'supervisor', :tag, c.id, "
        "'received', :g, :g, left(:g, 12), left(:g, 9) || '000', "
        "CAST('2026-11-15 10:00+08' AS timestamptz), "
        "CASE WHEN CAST(:wkt AS text) IS NULL THEN NULL ELSE ST_GeomFromText(:wkt, 4490) END "
        "FROM category c WHERE c.code = 'E0101'"),
        {"tag": tag, "g": grid, "wkt": None if point is None else point.wkt})


def _month(client: TestClient, level: str, region: str, boundaries: str | None = None
           ) -> dict[str | None, Any]:
    params = {"month": MONTH, "level": level, "region": region}
    if boundaries:
        params["boundaries"] = boundaries
    res = client.get("/assessment", params=params)
    assert res.status_code == 200, res.text
    assert res.json()["boundaries"] == (boundaries or "then")
    return {r["code"]: r["received"] for r in res.json()["rows"]}


class Cut(NamedTuple):
    community: str
    code: str  # the grid
    blade: dict[str, Any]  # the cut line, GeoJSON
    geom: shapely.Geometry  # the grid before the cut
    small: shapely.Geometry  # its smaller side


def cases_either_side_of_a_cut(client: TestClient, conn: Connection, tag: str) -> Cut:
    """A grid of the first community with a clean cut through it, 3 cases on its bigger side and
    2 on the smaller (external ids ``{tag}-big-n`` / ``{tag}-small-n``)."""
    community = client.get("/regions", params={"parent": "330782001000", "level": "community"}
                           ).json()["items"][0]["code"]
    code, blade = _grid_with_a_clean_cut(client, community)
    geom = shapely.geometry.shape(client.get(f"/regions/{code}").json()["geometry"])
    big, small = sorted(split(geom, shapely.geometry.shape(blade)).geoms, key=lambda g: -g.area)
    for n in range(3):
        _incident(conn, f"{tag}-big-{n}", code, big.representative_point())
    for n in range(2):
        _incident(conn, f"{tag}-small-{n}", code, small.representative_point())
    return Cut(community, code, blade, geom, small)


@pytest.fixture
def planner(anonymous: TestClient, headers) -> TestClient:
    anonymous.headers.update(headers("t_planner"))
    return anonymous


def test_a_split_keeps_the_month_comparable(planner: TestClient, conn: Connection, headers
                                            ) -> None:
    client = planner
    community, code, blade, geom, small = cases_either_side_of_a_cut(client, conn, "cw")
    _incident(conn, "cw-nowhere", code, None)  # no point: carried by the area shares
    before = _month(client, "grid", community)
    before_c = _month(client, "community", community)
    trend_before = client.get("/analysis/trend", params={"month": MONTH, "region": community}
                              ).json()["rows"][-1]["received"]

    plan, etag = _open(client, community)
    done = client.post(f"/plans/{plan['id']}/edits", json={"op": "split", "code": code,
                                                           "line": blade},
                       headers={"If-Match": etag})
    assert done.status_code == 200, done.text
    activate(client, plan["id"], done.headers["etag"], headers("t_admin"))
    new = next(f["properties"]["code"] for f in client.get(
        f"/plans/{plan['id']}/features").json()["features"] if f["properties"]["change"] == "new")

    # the crosswalk, as JSON and CSV
    cw = client.get(f"/plans/{plan['id']}/crosswalk")
    assert cw.status_code == 200, cw.text
    rows = {(r["old_code"], r["new_code"]): r for r in cw.json()["rows"]}
    assert set(rows) == {(code, code), (code, new)}
    share_new = rows[(code, new)]["area_share"]
    assert share_new == pytest.approx(small.area / geom.area, rel=1e-3)  # same latitude: ~ratio
    assert rows[(code, code)]["area_share"] + share_new == pytest.approx(1.0, abs=1e-12)
    assert cw.json()["today"][code] == {code: pytest.approx(1 - share_new),
                                        new: pytest.approx(share_new)}
    got = client.get(f"/plans/{plan['id']}/crosswalk", params={"format": "csv"})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(got.text.lstrip("\ufeff"))))
    assert {(r["old_code"], r["new_code"]) for r in table} == set(rows)
    assert {r["change"] for r in table} == {"split"} and all(r["household_share"] == ""
                                                             for r in table)

    gpkg = client.get(f"/plans/{plan['id']}/export.gpkg")
    assert gpkg.status_code == 200
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.gpkg"
        path.write_bytes(gpkg.content)
        layer = pyogrio.read_dataframe(path, layer="crosswalk")
    assert sorted(zip(layer["old_code"], layer["new_code"], strict=True)) == sorted(rows)
    assert layer["area_share"].sum() == pytest.approx(1.0)

    # by the month's boundaries: exactly the figures from before the split
    assert _month(client, "grid", community, "then") == before
    assert _month(client, "community", community, "then") == before_c
    # by today's: the old grid's cases divide between its two parts, by where they happened
    today = _month(client, "grid", community, "today")
    assert today[new] == pytest.approx(2 + share_new, abs=1e-3)
    assert today[code] + today[new] == pytest.approx(before[code], abs=1e-3)
    assert {k: v for k, v in today.items() if k not in (code, new)} == {
        k: v for k, v in before.items() if k != code}
    assert _month(client, "community", community, "today") == pytest.approx(before_c)
    trend = client.get("/analysis/trend", params={"month": MONTH, "region": community,
                                                  "boundaries": "today"})
    assert trend.status_code == 200 and trend.json()["boundaries"] == "today"
    assert trend.json()["rows"][-1]["received"] == pytest.approx(trend_before)
    book = client.get("/assessment.xlsx", params={"month": MONTH, "level": "grid",
                                                  "region": community, "boundaries": "today"})
    assert book.status_code == 200
    codes = [r[0] for r in load_workbook(io.BytesIO(book.content)).active.iter_rows(
        min_row=4, values_only=True)]
    assert new in codes


def test_a_draft_has_an_empty_crosswalk(planner: TestClient) -> None:
    community = planner.get("/regions", params={"parent": "330782001000", "level": "community"}
                            ).json()["items"][0]["code"]
    plan, _ = _open(planner, community)
    res = planner.get(f"/plans/{plan['id']}/crosswalk", params={"format": "csv"})
    assert res.status_code == 200 and res.text.lstrip("\ufeff").strip() == ",".join(
        ["version", "effective_at", "old_code", "new_code", "change", "old_area_m2", "area_m2",
         "area_share", "household_share"])
    assert planner.get(f"/plans/{plan['id']}/crosswalk", params={"format": "xml"}
                       ).status_code == 422
