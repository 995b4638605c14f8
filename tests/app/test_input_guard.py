"""Bad input answers 4xx with the field named, never 500 (app.input_guard, app.errors).

Every case here was a 500 (or a broken stream) before the guard; see docs/security.md,
"Text in requests".
"""

from __future__ import annotations

import io
import math

import orjson
import pytest
from fastapi.testclient import TestClient

NUL = "a\x00b"
BELL = "a\u0007b"

QUERY_CASES = [
    ("/regions", "q"),
    ("/incidents", "assignee"),
    ("/audit", "entity"),
    ("/patrols/tracks", "staff"),
    ("/maps/counts", "category"),
    ("/incidents/export.csv", "category"),
]


@pytest.mark.parametrize(("path", "field"), QUERY_CASES)
def test_a_nul_in_a_query_parameter_is_a_422_naming_it(client: TestClient, path: str,
                                                        field: str) -> None:
    res = client.get(path, params={field: NUL})
    assert res.status_code == 422, res.text
    body = res.json()
    assert body["code"] == "invalid_text"
    assert body["detail"][0]["field"] == field and body["detail"][0]["in"] == "query"


def test_a_nul_on_the_hot_path_is_refused_too(client: TestClient) -> None:
    res = client.get("/locate", params={"lon": "120.07", "lat": "29.3", "crs": NUL})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "crs"


def test_a_nul_in_the_path_is_refused(client: TestClient) -> None:
    res = client.get("/regions/3307%0082")
    assert res.status_code == 422 and res.json()["detail"][0]["in"] == "path"


INCIDENT = {"source": "hotline_12345", "external_id": "guard-1", "category": "E0101",
            "description": "x", "lon": 120.075, "lat": 29.305}

BODY_CASES = [
    ("POST", "/incidents", {**INCIDENT, "description": NUL}, "description"),
    ("POST", "/auth/token", {"username": "t_admin", "password": NUL}, "password"),
    ("POST", "/patrols/fixes", {"fixes": [{"staff_code": NUL, "lon": 120.0, "lat": 29.3,
                                           "at": "2026-01-01T08:00:00+08:00"}]},
     "fixes.0.staff_code"),
    ("POST", "/plans", {"name": NUL}, "name"),
    ("POST", "/users", {"username": "guard_u", "password": "a-long-password-1",
                        "role": "viewer", "region_code": "330782", "display_name": NUL},
     "display_name"),
    ("POST", "/api-keys", {"name": NUL, "role": "viewer", "region_code": "330782"}, "name"),
    ("PUT", "/categories/GUARD1", {"name": NUL, "family": "event"}, "name"),
    ("PATCH", "/staff/ANY", {"status": NUL}, "status"),
    ("POST", "/incidents/1/actions", {"action": "register", "note": NUL}, "note"),
    ("PATCH", "/users/t_viewer", {"display_name": NUL}, "display_name"),
]


@pytest.mark.parametrize(("method", "path", "payload", "field"), BODY_CASES)
def test_a_nul_in_a_json_body_is_a_422_naming_the_field(client: TestClient, method: str,
                                                         path: str, payload: dict,
                                                         field: str) -> None:
    res = client.request(method, path, json=payload)
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "invalid_text"
    assert res.json()["detail"][0] == {"field": field, "in": "body", "type": "control_character",
                                       "expected": "text without control characters other "
                                                   "than tab, line feed and carriage return"}


def test_other_c0_controls_are_refused_at_intake(client: TestClient) -> None:
    res = client.post("/incidents", json={**INCIDENT, "description": BELL})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "description"
    # Tab, line feed and carriage return are text.
    ok = client.post("/incidents", json={**INCIDENT, "description": "line 1\r\n\tline 2"})
    assert ok.status_code in (200, 201), ok.text


@pytest.mark.parametrize("how", ["query", "form"])
def test_open311_answers_the_refusal_in_the_spec_form(client: TestClient, how: str) -> None:
    fields = {"service_code": NUL, "lat": "29.3", "long": "120.07"}
    res = (client.get("/open311/v2/requests.json", params=fields) if how == "query"
           else client.post("/open311/v2/requests.json", data=fields))
    assert res.status_code == 400, res.text
    assert res.json() == [{"code": 400, "description": "Invalid request: check service_code."}]


def test_an_escaped_backslash_is_not_a_control(client: TestClient) -> None:
    # "\\u0000" in JSON is a backslash and the letters u0000: plain text.
    raw = orjson.dumps({**INCIDENT, "external_id": "guard-2", "description": "\\u0000"})
    res = client.post("/incidents", content=raw, headers={"content-type": "application/json"})
    assert res.status_code in (200, 201), res.text


def test_bulk_csv_with_a_nul_is_refused(client: TestClient) -> None:
    csv = (b"source,external_id,category,description,lon,lat\n"
           b"hotline_12345,bulk-guard-1,E0101,a\x00b,120.075,29.305\n")
    res = client.post("/incidents/bulk", content=csv, headers={"content-type": "text/csv"})
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["field"] == "description"
    assert res.json()["detail"][0]["row"] == 2


def _xlsx_with(cell_xml: str) -> bytes:
    """A workbook whose description cell holds ``cell_xml`` verbatim in its XML."""
    import zipfile

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["source", "external_id", "category", "description", "lon", "lat"])
    ws.append(["hotline_12345", "bulk-guard-2", "E0101", "PLACEHOLDER", 120.075, 29.305])
    first = io.BytesIO()
    wb.save(first)
    out = io.BytesIO()
    with zipfile.ZipFile(first) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data.replace(b"PLACEHOLDER", cell_xml.encode()))
    return out.getvalue()


@pytest.mark.parametrize("cell", ["a&#7;b", "a&#0;b", "_x0007_"])
def test_bulk_xlsx_with_a_control_is_a_422(client: TestClient, cell: str) -> None:
    # XML 1.0 cannot hold a C0 control: such a file is unreadable (422), never a 500; the
    # _xHHHH_ escape is read as the literal text it is.
    res = client.post("/incidents/bulk", content=_xlsx_with(cell), headers={
        "content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    if cell == "_x0007_":
        assert res.status_code == 200 and res.json()["imported"] == 1, res.text
    else:
        assert res.status_code == 422, res.text
        assert res.json()["code"] in ("unreadable_file", "invalid_text")


def test_export_survives_any_stored_text(client: TestClient, conn) -> None:
    from sqlalchemy import text

    made = client.post("/incidents", json={**INCIDENT, "external_id": "guard-export"})
    assert made.status_code in (200, 201), made.text
    # Text that came in before the guard (or by psql) is still exported.
    conn.execute(text("UPDATE incident SET description = :d, address = :a WHERE id = :i"),
                 {"d": "bell\u0007 esc\u001b tab\tnl\n", "a": "\u0001\u007f", "i": made.json()["id"]})
    res = client.get("/incidents/export.xlsx", params={"source": "hotline_12345"})
    assert res.status_code == 200, res.text
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(res.content)).active
    rows = list(ws.values)
    col = rows[0].index("description")
    mine = [r for r in rows[1:] if r[rows[0].index("external_id")] == "guard-export"]
    assert mine[0][col] == "bell\ufffd esc\ufffd tab\tnl\n"
    csv = client.get("/incidents/export.csv", params={"source": "hotline_12345"})
    assert csv.status_code == 200


def test_find_control_names_the_path() -> None:
    from app.input_guard import find_control, refuse_text

    assert find_control({"a": [1, {"b": "x\x00"}]}) == "a.1.b"
    assert find_control({"k\x07": "v"}) == "k\x07"
    assert find_control({"a": "tab\tok\n\r"}) is None
    assert refuse_text("a\x00", "q", "query").detail[0]["field"] == "q"


@pytest.mark.parametrize("bbox", ["nan,29,120.1,29.4", "120,29,inf,29.4", "-inf,29,120.1,29.4",
                                  "120,NaN,120.1,29.4"])
@pytest.mark.parametrize("path", ["/maps/heat", "/portal/outlines"])
def test_a_non_finite_bbox_is_a_4xx(client: TestClient, path: str, bbox: str) -> None:
    res = client.get(path, params={"zoom": 12, "bbox": bbox})
    assert res.status_code in (400, 422), res.text
    assert res.json()["detail"]["field"] == "bbox"


def test_the_error_renderer_survives_non_finite_values() -> None:
    from app.errors import error_body, safe_json

    body = safe_json(error_body("x", "y", {"bbox": [math.nan, math.inf, -math.inf, 1.5],
                                           "deep": {"v": (math.nan,)}, "big": 2**70}))
    assert orjson.loads(body)["detail"] == {"bbox": [None, None, None, 1.5],
                                            "deep": {"v": [None]}, "big": str(2**70)}


@pytest.mark.parametrize("path", ["/maps/counts", "/tiles/grids/14/13657/6793.mvt"])
def test_a_window_inside_one_day_is_counted(client: TestClient, path: str) -> None:
    res = client.get(path, params={"since": "2026-03-10T09:00:00+08:00",
                                   "until": "2026-03-10T17:00:00+08:00"})
    assert res.status_code == 200, res.text


def test_a_deeply_nested_batch_is_refused_before_the_stream(client: TestClient) -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    res = client.post("/locate/batch", json=[{"lon": 120.075, "lat": 29.305, "x": deep}])
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "nested_too_deep"


def test_a_moderately_nested_batch_still_works(client: TestClient) -> None:
    deep: object = 1
    for _ in range(20):
        deep = {"d": deep}
    res = client.post("/locate/batch", json=[{"lon": 120.075, "lat": 29.305, "x": deep}])
    assert res.status_code == 200, res.text
    assert res.json()[0]["x"] == deep


@pytest.mark.parametrize("path", ["/tiles/incidents/0/429/58417235936106487808.mvt",
                                  "/tiles/grids/3/9/1.mvt"])
def test_a_tile_off_the_grid_is_a_4xx(client: TestClient, path: str) -> None:
    # found by tests/app/test_contract.py: a 2**65 tile number broke the error renderer
    res = client.get(path)
    assert 400 <= res.status_code < 500, res.text


def test_health_says_ok_when_all_is_well(client: TestClient) -> None:
    res = client.get("/health")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "database": "up",
                          "locator": {"loaded": True, "stale": False},
                          "works": {"locate": True, "reads": True, "writes": True}}


def test_health_is_degraded_while_the_database_is_down(api, client: TestClient) -> None:
    from sqlalchemy import create_engine

    app, _ = api
    gone = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                         connect_args={"connect_timeout": 2})
    engine, app.state.engine = app.state.engine, gone
    try:
        res = client.get("/health")
        # and the locator does answer from its snapshot
        located = client.get("/locate", params={"lon": 120.075, "lat": 29.305})
    finally:
        app.state.engine = engine
        gone.dispose()
    assert res.status_code == 200
    assert res.json() == {"status": "degraded", "database": "down",
                          "locator": {"loaded": True, "stale": True},
                          "works": {"locate": True, "reads": False, "writes": False}}
    assert located.status_code == 200


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/incidents", "GET, POST"), ("PUT", "/plans/1", "DELETE, GET"),
    ("DELETE", "/users/x", "GET, PATCH"), ("DELETE", "/regions", "GET")])
def test_405_names_every_allowed_method(client: TestClient, method: str, path: str,
                                        allow: str) -> None:
    res = client.request(method, path)
    assert res.status_code == 405 and res.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/incidents", "/maps/counts", "/incidents/export.csv"])
def test_a_number_is_not_a_date_time(client: TestClient, path: str) -> None:
    res = client.get(path, params={"until": "0.5"})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "until"
    assert client.get(path, params={"until": "2026-03-10T17:00:00+08:00"}).status_code == 200


def test_a_number_is_not_a_boolean_or_a_time_in_a_body(client: TestClient) -> None:
    res = client.put("/categories/GUARD2", json={"name": "x", "family": "event", "active": 0})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "active"
    res = client.post("/incidents", json={**INCIDENT, "external_id": "guard-t", "received_at": 0})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "received_at"
    res = client.get("/locate/history", params={"lon": 120.075, "lat": 29.305, "at": "1e9"})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "at"


@pytest.mark.parametrize(("path", "name"), [("/regions/330782", "geometry"),
                                            ("/maps/counts", "geometry"),
                                            ("/incidents", "open_only")])
def test_a_query_boolean_is_true_or_false(client: TestClient, path: str, name: str) -> None:
    assert client.get(path, params={name: "0"}).status_code == 422
    assert client.get(path, params={name: "false"}).status_code == 200
    assert client.get(path, params={name: "true"}).status_code == 200


def test_a_body_boolean_is_true_or_false(client: TestClient) -> None:
    res = client.patch("/users/t_viewer", json={"disabled": 0})
    assert res.status_code == 422 and res.json()["detail"][0]["field"] == "disabled"
