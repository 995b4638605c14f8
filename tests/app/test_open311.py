"""Open311 GeoReport v2 on the demo city: every answer checked against the spec's JSON schemas.

The schemas are the ones published with the spec (``shared/open311/schema``: a copy in
``tests/data/open311/schema`` is used first if there is one). ``requests.json`` and
``services.json`` refer to ``request.json`` and ``service.json`` by relative ``$ref``, resolved
through a :class:`referencing.Registry`. The POST answer has no schema file of its own: it is
checked against Swagger's ``RequestResponse``, with the optional fields allowed to be null as the
standalone schemas allow them (the spec's own example answers ``"account_id": null``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT4
from sqlalchemy import Connection, text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIRS = [ROOT / "tests" / "data" / "open311" / "schema",
               ROOT.parent / "shared" / "open311" / "schema"]
SCHEMAS = next((d for d in SCHEMA_DIRS if (d / "request.json").is_file()), None)
if SCHEMAS is None:  # pragma: no cover - a broken checkout, not a reason to pass quietly
    pytest.fail(f"Open311 JSON schemas not found in {[str(d) for d in SCHEMA_DIRS]}",
                pytrace=False)
V2 = "/open311/v2"

# -- the schemas -----------------------------------------------------------------------------------
FORMATS = FormatChecker(formats=())
_W3 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$")


@FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    """The spec's W3C profile of ISO 8601, time zone required."""
    return not isinstance(value, str) or bool(_W3.match(value))


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlparse(value)
    return bool(parts.scheme and parts.netloc)


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


REGISTRY = Registry().with_resources(
    (name, DRAFT4.create_resource(_load(name)))
    for name in ("service.json", "services.json", "service-definition.json", "request.json",
                 "requests.json"))


def _nullable_optionals(schema: dict[str, Any], required: list[str]) -> dict[str, Any]:
    props = {k: v if k in required else {"anyOf": [v, {"type": "null"}]}
             for k, v in schema["properties"].items()}
    return {**schema, "properties": props, "required": required}


POSTED = {"type": "array", "minItems": 1, "items": _nullable_optionals(
    _load("swagger.json")["definitions"]["RequestResponse"], ["service_request_id"])}
ERRORS = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["code", "description"], "additionalProperties": False,
    "properties": {"code": {"type": "integer"}, "description": {"type": "string",
                                                                "minLength": 1}}}}
REQUEST_FIELDS = set(_load("request.json")["properties"])


def validate(body: Any, schema: str | dict[str, Any]) -> Any:
    """Check ``body`` against a schema file (by name) or a schema; returns the body."""
    root = {"$ref": schema} if isinstance(schema, str) else schema
    errors = sorted(Draft4Validator(root, registry=REGISTRY, format_checker=FORMATS)
                    .iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    return body


def ok(res: Any, schema: str | dict[str, Any]) -> Any:
    assert res.status_code == 200, res.text[:500]
    assert res.headers["content-type"].startswith("application/json")
    return validate(res.json(), schema)


def spec_error(res: Any, status: int, *words: str) -> str:
    """An error in the spec's form, with ``status`` as HTTP status and code; its descriptions."""
    assert res.status_code == status, res.text[:500]
    body = validate(res.json(), ERRORS)
    assert all(e["code"] == status for e in body)
    said = " ".join(e["description"] for e in body)
    for word in words:
        assert word in said, (word, said)
    return said


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def make_key(anonymous: TestClient, headers, api, own_directory, conn: Connection):
    """``make_key(name, region, role='viewer', rate=600)`` → a fresh API key, usable at once."""

    def make(name: str, region: str, role: str = "viewer", rate: int = 600) -> str:
        res = anonymous.post("/api-keys", headers=headers("t_admin"), json={
            "name": name, "role": role, "region_code": region, "rate_limit_per_minute": rate})
        assert res.status_code == 201, res.text
        api[0].state.directory.reload(conn)  # the key was made inside this test's transaction
        return res.json()["key"]

    return make


def _point_in(conn: Connection, grid: str) -> dict[str, Any]:
    row = conn.execute(text(
        "SELECT code AS grid, name, ST_X(ST_PointOnSurface(geom)) AS lon, "
        "ST_Y(ST_PointOnSurface(geom)) AS lat FROM region_current WHERE code = :g"),
        {"g": grid}).mappings().one()
    return dict(row)


@pytest.fixture
def spot(conn: Connection, api) -> dict[str, Any]:
    """A point in the test grid worker's own grid, in 稠城街道 (330782001)."""
    return _point_in(conn, api[0].state.directory.by_name["t_worker"].grid_codes[0])


@pytest.fixture
def elsewhere(conn: Connection) -> dict[str, Any]:
    """A point in a grid of 江东街道 (330782002)."""
    return _point_in(conn, conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE '330782002%' "
        "ORDER BY code LIMIT 1")).scalar_one())


def _citizen_incidents(conn: Connection) -> int:
    return conn.execute(text("SELECT count(*) FROM incident WHERE source = 'citizen_app'")
                        ).scalar_one()


def _post(client: TestClient, spot: dict[str, Any], key: str | None = None,
          headers: dict[str, str] | None = None, **fields: Any) -> Any:
    data = {"service_code": "E0101", "lat": spot["lat"], "long": spot["lon"], **fields}
    if key is not None:
        data["api_key"] = key
    return client.post(f"{V2}/requests.json", data=data, headers=headers or {})


def _posted_id(res: Any) -> int:
    body = ok(res, POSTED)
    assert len(body) == 1 and body[0]["account_id"] is None and body[0]["service_notice"]
    return int(body[0]["service_request_id"])


@pytest.fixture
def reader(anonymous: TestClient, headers) -> Any:
    """Reads service requests with credentials (city-level dispatcher): the feed is not public
    by default (tests/app/test_auth_hardening.py covers who may read what)."""

    class Reader:
        def get(self, url: str, **kwargs: Any) -> Any:
            return anonymous.get(url, **{**kwargs, "headers": {
                **kwargs.get("headers", {}), **headers("t_dispatcher")}})

    return Reader()


# -- services ------------------------------------------------------------------------------------
def test_services_are_the_catalogue_leaf_categories(anonymous: TestClient) -> None:
    res = anonymous.get(f"{V2}/services.json")  # no key: open, as the spec says
    assert res.headers["content-type"] == "application/json; charset=utf-8"
    services = {s["service_code"]: s for s in ok(res, "services.json")}
    assert "E01" not in services and "C01" not in services  # groups are not services
    rubbish = services["E0101"]
    assert rubbish["service_name"] == "暴露垃圾" and rubbish["group"] == "市容环境"
    assert rubbish["metadata"] is False and rubbish["type"] == "realtime"
    assert "Exposed rubbish" in rubbish["keywords"] and "City appearance" in rubbish["keywords"]
    assert "综合行政执法局" in rubbish["description"]
    assert services["C0101"]["group"] == "公用设施"


def test_service_definitions_have_no_attributes(anonymous: TestClient) -> None:
    body = ok(anonymous.get(f"{V2}/services/E0502.json"), "service-definition.json")
    assert body == {"service_code": "E0502", "attributes": []}
    spec_error(anonymous.get(f"{V2}/services/NOPE.json"), 404, "service_code", "NOPE")
    spec_error(anonymous.get(f"{V2}/services/E01.json"), 404, "E01")  # a group, not a service


def test_xml_and_other_formats_are_refused_in_the_spec_form(
    anonymous: TestClient, headers, spot: dict[str, Any], conn: Connection
) -> None:
    for url in (f"{V2}/services.xml", f"{V2}/services/E0101.xml", f"{V2}/requests.xml",
                f"{V2}/requests/1.xml"):
        spec_error(anonymous.get(url), 400, "XML", ".json")
    spec_error(anonymous.get(f"{V2}/services.csv"), 400, "json")
    before = _citizen_incidents(conn)
    res = anonymous.post(f"{V2}/requests.xml", headers=headers("t_dispatcher"), data={
        "service_code": "E0101", "lat": spot["lat"], "long": spot["lon"]})
    spec_error(res, 400, "XML")
    assert _citizen_incidents(conn) == before


# -- POST requests -------------------------------------------------------------------------------
def test_a_request_with_a_key_becomes_a_placed_incident(
    reader: Any, anonymous: TestClient, make_key, spot: dict[str, Any], conn: Connection
) -> None:
    key = make_key("citizen-app", "330782001")
    res = _post(anonymous, spot, key, description="小区门口垃圾堆放三天", first_name="三",
                last_name="张", phone="13812345678", email="zhang@example.org",
                device_id="dev-1", account_id="acct-9", address_string="稠州北路 1 号",
                media_url="https://img.example.org/p/1.jpg", jurisdiction_id="yiwu.gov.cn",
                **{"attribute[WHISPAWN]": "123"})
    new_id = _posted_id(res)
    notice = res.json()[0]["service_notice"]
    assert spot["grid"] in notice and "综合行政执法局" in notice
    row = conn.execute(text(
        "SELECT i.source, i.external_id, c.code AS category, i.grid_code, i.region_code, "
        "i.responsible_code, i.reporter_name, i.reporter_phone, i.attachments, i.description, "
        "i.address, i.crs_in, i.state, d.code AS department FROM incident i "
        "JOIN category c ON c.id = i.category_id LEFT JOIN department d ON d.id = i.department_id "
        "WHERE i.id = :id"), {"id": new_id}).mappings().one()
    assert row["source"] == "citizen_app" and row["external_id"].startswith("open311-")
    assert row["category"] == "E0101" and row["department"] == "CGJ"
    assert row["grid_code"] == spot["grid"] and row["region_code"] == spot["grid"]
    assert row["responsible_code"] and row["state"] == "received"
    assert row["reporter_name"] == "张三" and row["reporter_phone"] == "13812345678"
    assert row["attachments"] == ["https://img.example.org/p/1.jpg"]
    assert row["description"] == "小区门口垃圾堆放三天" and row["address"] == "稠州北路 1 号"
    assert row["crs_in"] == "EPSG:4326"
    actor = conn.execute(text("SELECT actor FROM incident_event WHERE incident_id = :id"),
                         {"id": new_id}).scalar_one()
    assert actor == "key:citizen-app"

    # The same request read back: the spec's fields only, no personal data anywhere.
    got = reader.get(f"{V2}/requests/{new_id}.json")
    body = ok(got, "requests.json")
    assert len(body) == 1
    request = body[0]
    assert set(request) == REQUEST_FIELDS
    assert request["service_request_id"] == str(new_id) and request["status"] == "open"
    assert request["service_code"] == "E0101" and request["service_name"] == "暴露垃圾"
    assert request["agency_responsible"] == f"{spot['grid']} {spot['name']} / 综合行政执法局"
    assert request["lat"] == pytest.approx(spot["lat"], abs=1e-6)
    assert request["long"] == pytest.approx(spot["lon"], abs=1e-6)
    assert request["media_url"] == "https://img.example.org/p/1.jpg"
    assert request["requested_datetime"].endswith("+08:00")
    assert request["expected_datetime"] > request["requested_datetime"]
    for personal in ("张三", "13812345678", "zhang@example.org", "dev-1", "acct-9"):
        assert personal not in got.text


def test_the_key_may_come_as_a_header_or_a_token_may_be_used(
    reader: Any, anonymous: TestClient, make_key, headers, spot: dict[str, Any], conn: Connection
) -> None:
    key = make_key("citizen-header", "330782001")
    _posted_id(_post(anonymous, spot, headers={"X-API-Key": key}))
    # a dispatcher (city-wide) may report an address alone: kept at the city level
    res = anonymous.post(f"{V2}/requests.json", headers=headers("t_dispatcher"), data={
        "service_code": "E0502", "address_string": "稠州北路与工人路口", "lat": "", "long": ""})
    new_id = _posted_id(res)
    assert "dispatcher" in res.json()[0]["service_notice"]
    request = ok(reader.get(f"{V2}/requests/{new_id}.json"), "requests.json")[0]
    assert request["lat"] is None and request["long"] is None
    assert request["address"] == "稠州北路与工人路口"
    assert request["agency_responsible"].startswith("330782000000 ")
    assert request["agency_responsible"].endswith(" / 公安局")


def test_no_key_or_a_bad_key_is_a_403_in_the_spec_form(
    anonymous: TestClient, headers, spot: dict[str, Any], conn: Connection
) -> None:
    before = _citizen_incidents(conn)
    spec_error(_post(anonymous, spot), 403, "api_key")
    spec_error(_post(anonymous, spot, "cgk_nope_nothing"), 403, "api_key")
    spec_error(_post(anonymous, spot, headers={"X-API-Key": "cgk_nope_nothing"}), 403)
    spec_error(_post(anonymous, spot, headers=headers("t_planner")), 403)  # may not submit
    assert _citizen_incidents(conn) == before


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({"lat": "abc"}, 400, ["lat"]),
    ({"long": "12x"}, 400, ["long"]),
    ({"long": ""}, 400, ["long", "not provided"]),
    ({"lat": "", "long": ""}, 400, ["lat", "long", "address_string"]),
    ({"lat": "", "long": "", "address_id": "545483"}, 400, ["address_id"]),
    ({"lat": "95"}, 400, ["lat"]),
    ({"lat": "39.9", "long": "116.4"}, 400, ["long"]),  # Beijing: far outside the city
    ({"service_code": ""}, 400, ["service_code", "not provided"]),
    ({"service_code": "ZZ99"}, 404, ["service_code", "ZZ99"]),
    ({"service_code": "E01"}, 404, ["service_code"]),
    ({"media_url": "javascript:alert(1)"}, 400, ["media_url"]),
    ({"description": "长" * 4001}, 400, ["description"]),
    ({"phone": "1" * 31}, 400, ["phone"]),
])
def test_bad_requests_name_the_field_and_write_nothing(
    anonymous: TestClient, headers, spot: dict[str, Any], conn: Connection,
    fields: dict[str, str], status: int, words: list[str]
) -> None:
    before = _citizen_incidents(conn)
    spec_error(_post(anonymous, spot, headers=headers("t_dispatcher"), **fields), status, *words)
    assert _citizen_incidents(conn) == before


def test_outside_the_keys_jurisdiction_is_not_found(
    anonymous: TestClient, make_key, spot: dict[str, Any], elsewhere: dict[str, Any],
    conn: Connection
) -> None:
    key = make_key("citizen-street", "330782001")
    before = _citizen_incidents(conn)
    spec_error(_post(anonymous, elsewhere, key), 404, "jurisdiction")
    assert _citizen_incidents(conn) == before


def test_a_keys_rate_limit_is_answered_in_the_spec_form(
    anonymous: TestClient, make_key, spot: dict[str, Any]
) -> None:
    key = make_key("citizen-slow", "330782001", rate=1)
    _posted_id(_post(anonymous, spot, key))
    res = _post(anonymous, spot, key)
    spec_error(res, 429, "Rate limit")
    assert "retry-after" in res.headers


def test_a_failure_after_the_write_rolls_it_back(
    anonymous: TestClient, headers, spot: dict[str, Any], conn: Connection, monkeypatch
) -> None:
    """Errors are converted without swallowing them: the unit of work still rolls back."""
    from layers.incidents import open311 as layer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("reading back failed")

    monkeypatch.setattr(layer, "get_request", broken)
    before = _citizen_incidents(conn)
    said = spec_error(_post(anonymous, spot, headers=headers("t_dispatcher")), 500, "logged")
    assert "reading back failed" not in said
    assert _citizen_incidents(conn) == before


# -- GET requests --------------------------------------------------------------------------------
@pytest.fixture
def requests_made(anonymous: TestClient, headers, spot: dict[str, Any], conn: Connection
                  ) -> dict[str, int]:
    """Four requests: open, closed, voided (all recent) and one received 120 days ago."""
    h = headers("t_dispatcher")
    made = {name: _posted_id(_post(anonymous, spot, headers=h, service_code=code,
                                   first_name="五", last_name="王", phone="13900001111",
                                   description="来电 13900001111 反映：垃圾未清运",
                                   address_string="稠州北路 8 号，联系 wang5@example.org"))
            for name, code in (("open", "E0101"), ("closed", "E0502"), ("voided", "E0101"),
                               ("old", "E0101"))}
    conn.execute(text("UPDATE incident SET state = 'closed', state_since = now(), "
                      "closed_at = now() - interval '1 hour' WHERE id = :id"),
                 {"id": made["closed"]})
    conn.execute(text("UPDATE incident SET state = 'voided', state_since = now() WHERE id = :id"),
                 {"id": made["voided"]})
    conn.execute(text("UPDATE incident SET received_at = now() - interval '120 days', "
                      "state_since = now() - interval '120 days' WHERE id = :id"),
                 {"id": made["old"]})
    return made


def _ids(res: Any, made: dict[str, int]) -> set[str]:
    """The names of our requests among those answered (the database may hold others)."""
    by_id = {str(v): k for k, v in made.items()}
    return {by_id[r["service_request_id"]] for r in ok(res, "requests.json")
            if r["service_request_id"] in by_id}


def test_get_requests_filters(reader: Any, requests_made: dict[str, int]) -> None:
    url = f"{V2}/requests.json"
    get = reader.get
    assert _ids(get(url), requests_made) == {"open", "closed", "voided"}  # the last 90 days
    assert _ids(get(url, params={"status": "open"}), requests_made) == {"open"}
    assert _ids(get(url, params={"status": "closed"}), requests_made) == {"closed", "voided"}
    assert _ids(get(url, params={"status": "open,closed"}), requests_made) == {
        "open", "closed", "voided"}
    assert _ids(get(url, params={"service_code": "E0502"}), requests_made) == {"closed"}
    assert _ids(get(url, params={"service_code": "E0101,E0502"}), requests_made) == {
        "open", "closed", "voided"}
    old = datetime.now(UTC) - timedelta(days=120)
    window = {"start_date": (old - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "end_date": (old + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")}
    assert _ids(get(url, params=window), requests_made) == {"old"}
    assert _ids(get(url, params={"start_date": window["start_date"]}), requests_made) == {"old"}
    # service_request_id overrides every other filter (the old one is outside 90 days)
    ids = f"{requests_made['open']},{requests_made['old']}"
    assert _ids(get(url, params={"service_request_id": ids, "status": "closed"}),
                requests_made) == {"open", "old"}

    answered = {r["service_request_id"]: r for r in ok(get(url, params={
        "service_request_id": ",".join(str(v) for v in requests_made.values())}),
        "requests.json")}
    closed, voided = (answered[str(requests_made[k])] for k in ("closed", "voided"))
    assert closed["status"] == "closed" and "结案" in closed["status_notes"]
    assert voided["status"] == "closed" and "voided" in voided["status_notes"]
    assert closed["updated_datetime"] < voided["updated_datetime"]  # the time it was closed
    assert answered[str(requests_made["open"])]["status_notes"].startswith("受理")


def test_get_requests_shows_no_personal_data(
    reader: Any, anonymous: TestClient, requests_made: dict[str, int]
) -> None:
    for res in (reader.get(f"{V2}/requests.json"),
                reader.get(f"{V2}/requests/{requests_made['open']}.json")):
        for request in ok(res, "requests.json"):
            assert set(request) == REQUEST_FIELDS  # no reporter field of any kind
        assert "王五" not in res.text and "13900001111" not in res.text
        assert "wang5@example.org" not in res.text
    request = ok(reader.get(f"{V2}/requests/{requests_made['open']}.json"), "requests.json")[0]
    assert request["description"] == "来电 139****1111 反映：垃圾未清运"  # typed-in numbers masked
    assert request["address"] == "稠州北路 8 号，联系 ***@***"


@pytest.mark.parametrize(("params", "words"), [
    ({"status": "pending"}, ["status", "open", "closed"]),
    ({"start_date": "2026-01-01"}, ["start_date", "time zone"]),
    ({"end_date": "yesterday"}, ["end_date"]),
    ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, ["90 days"]),
    ({"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, ["end_date"]),
    ({"service_request_id": "1,two"}, ["service_request_id"]),
])
def test_bad_request_queries_are_400s(reader: Any, params: dict[str, str],
                                      words: list[str]) -> None:
    spec_error(reader.get(f"{V2}/requests.json", params=params), 400, *words)


def test_an_unencoded_plus_in_a_date_is_read_as_meant(
    reader: Any, anonymous: TestClient, requests_made: dict[str, int]
) -> None:
    old = (datetime.now(UTC) - timedelta(days=121)).astimezone(
        ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M:%S")
    res = reader.get(f"{V2}/requests.json?start_date={old}+08:00")  # '+' arrives as ' '
    assert _ids(res, requests_made) == {"old"}


def test_unknown_requests_and_methods_answer_in_the_spec_form(
    reader: Any, anonymous: TestClient, client: TestClient
) -> None:
    spec_error(reader.get(f"{V2}/requests/999999999999.json"), 404, "999999999999")
    spec_error(reader.get(f"{V2}/requests/abc.json"), 404, "abc")
    res = anonymous.put(f"{V2}/services.json")
    spec_error(res, 405)
    assert res.headers["allow"] == "GET"
    # the rest of the API keeps its own error form
    res = client.get("/incidents/999999999999")
    assert res.status_code == 404 and {"code", "message", "detail"} <= set(res.json())


def test_social_cases_stay_out_of_the_open_feed(client: TestClient, conn) -> None:
    from sqlalchemy import text as sql

    lon, lat = conn.execute(sql(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM region_current "
        "WHERE level = 'grid' ORDER BY code LIMIT 1")).one()
    made = client.post("/incidents", json={"source": "hotline_12345", "external_id": "dispute-1",
                                           "category": "S0101", "lon": lon, "lat": lat})
    assert made.status_code == 201
    hidden = client.get(f"{V2}/requests/{made.json()['id']}.json")
    assert hidden.status_code == 404
    listed = client.get(f"{V2}/requests.json", params={"service_code": "S0101"}).json()
    assert all(r["service_request_id"] != str(made.json()["id"]) for r in listed)


def test_discovery_names_the_endpoint(anonymous: TestClient) -> None:
    body = anonymous.get("/open311/discovery.json").json()
    endpoint = body["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith("/open311/v2") and endpoint["formats"] == ["application/json"]
