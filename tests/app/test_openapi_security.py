"""The OpenAPI document says how to authenticate (app/openapi_security.py): the schemes, and a
requirement on every route that needs a caller, none on the public ones; and what it declares is
what the server accepts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app import users
from app.auth import route_permissions
from app.main import create_app
from app.settings import Settings
from grids.access import Principal
from tests.app.test_access_matrix import PUBLIC
from tests.conftest import token_for


@pytest.fixture(scope="module")
def document(settings: Settings) -> tuple[FastAPI, dict[str, Any]]:
    app = create_app(settings)
    return app, app.openapi()


def test_the_schemes_are_declared(document) -> None:
    _, doc = document
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                 "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-API-Key")
    assert (schemes["apiKeyQuery"]["in"], schemes["apiKeyQuery"]["name"]) == ("query", "api_key")
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "citygrid_session")
    assert (schemes["csrf"]["in"], schemes["csrf"]["name"]) == ("header", "X-CSRF-Token")
    assert "/auth/token" in schemes["bearer"]["description"]


def test_every_guarded_route_has_a_requirement_and_no_public_one_has(document) -> None:
    app, doc = document
    table = route_permissions(app)
    checked = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            key = (method.upper(), path)
            if key not in table:
                continue
            if key in PUBLIC or table[key] is None:
                assert "security" not in op, key
                continue
            alternatives = [sorted(r) for r in op["security"]]
            assert ["bearer"] in alternatives and ["apiKey"] in alternatives, key
            session = ["csrf", "session"] if method.upper() != "GET" else ["session"]
            assert session in alternatives, key
            checked += 1
    assert checked > 50
    # The public routes the access matrix names are in the document without a requirement.
    for method, path in PUBLIC:
        op = doc["paths"].get(path, {}).get(method.lower())
        if op is not None:
            assert "security" not in op, (method, path)


def test_only_open311_takes_the_key_in_the_query(document) -> None:
    _, doc = document
    query = {(m, p) for p, ops in doc["paths"].items() for m, op in ops.items()
             if ["apiKeyQuery"] in [sorted(r) for r in op.get("security", [])]}
    assert query and all(p.startswith("/open311/") for _, p in query)
    assert ("get", "/locate") not in query


def test_what_the_document_declares_the_server_accepts(api) -> None:
    app, client = api
    doc = app.openapi()
    schemes = doc["components"]["securitySchemes"]
    assert doc["paths"]["/locate"]["get"]["security"]
    with app.state.engine.begin() as c:
        key = users.create_api_key(c, name="openapi-doc", role="dispatcher",
                                   region_code=app.state.directory.by_name["t_admin"].region_code,
                                   principal=Principal.system())["key"]
    try:
        with app.state.engine.connect() as c:
            app.state.directory.reload(c)
        params = {"lon": 120.07, "lat": 29.31}
        bearer = client.get("/locate", params=params,
                            headers={"Authorization": f"Bearer {token_for(app, 't_admin')}"})
        by_key = client.get("/locate", params=params, headers={schemes["apiKey"]["name"]: key})
        nothing = client.get("/locate", params=params)
        assert bearer.status_code == 200 and by_key.status_code == 200, (bearer.text,
                                                                         by_key.text)
        assert nothing.status_code == 401
        feed = client.get("/open311/v2/requests.json",
                          params={schemes["apiKeyQuery"]["name"]: key})
        assert feed.status_code == 200, feed.text
    finally:
        with app.state.engine.begin() as c:
            c.execute(text("DELETE FROM api_key WHERE name = 'openapi-doc'"))
        with app.state.engine.connect() as c:
            app.state.directory.reload(c)


def test_docs_page_is_swagger(api) -> None:
    _, client = api
    assert "swagger-ui" in client.get("/docs").text
