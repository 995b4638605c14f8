"""The API against its own OpenAPI document, with schemathesis: a bounded, seeded run in CI.

Every operation gets schema-valid (positive) and schema-invalid (negative) requests from a fixed
seed (Hypothesis ``derandomize``), as the admin with a bearer token, against a live server on a
database of its own (the tiny city: writes are kept away from the shared demo database). The run
must find no 5xx at all; undocumented status codes are collected and listed too.

The login operations (``/auth/token``, ``/auth/session``) carry an API key and a generous
per-run login limit, so the throttle's 429s (documented) do not drown what the run is looking for.
``/portal/events`` is a server-sent stream that runs for up to an hour: it is left out here and
covered by tests/app/test_portal_data.py.

Budget: ``EXAMPLES`` per operation and mode: about 30 s of CPU (90 s wall on the shared 2-core
machine with seven other test runs going).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from app.main import create_app
from app.settings import AuthSettings, DatabaseSettings, Settings
from tests.conftest import app_role_url, live_server, tiny_city_engine

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
# uvicorn (h11) answers this, as text/plain, to a request line over its 16 KB limit; the app is
# never called. A proxy in front answers 414 for the same request.
UVICORN_REFUSED = "Invalid HTTP request received."
SKIP = {("GET", "/portal/events")}
LOGIN = {"/auth/token", "/auth/session"}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Any]]:
    engine = tiny_city_engine("citygrid_contract", users=(("c_admin", "admin"),), catalogue=True)
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    cfg = Settings(db=DatabaseSettings(database_url=app_role_url(url), migration_url=url),
                   auth=AuthSettings(login_attempts=100))
    app = create_app(cfg)
    with live_server(app) as base:
        yield base, app


def test_the_api_keeps_its_contract(server: tuple[str, Any]) -> None:
    base, app = server
    user = app.state.directory.by_name["c_admin"]
    token = app.state.auth.issue(user)[0]
    with requests.Session() as s:
        key = s.post(f"{base}/api-keys", headers={"Authorization": f"Bearer {token}"},
                     json={"name": "contract", "role": "admin", "region_code": "990100"})
        assert key.status_code == 201, key.text
        api_key = key.json()["key"]
    schema = schemathesis.openapi.from_dict(app.openapi())
    # The run sends its own credentials (below), so the security schemes' headers are not
    # generated: a 'negative' Authorization the run then replaces would make a valid request look
    # like invalid data accepted.
    schema.config.generation.update(with_security_parameters=False)
    server_errors: list[str] = []
    found: dict[tuple[str, str, str], str] = {}
    session = requests.Session()

    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        auth = ({"X-API-Key": api_key} if operation.path in LOGIN
                else {"Authorization": f"Bearer {token}"})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(operation, mode, base, session, auth, server_errors, found)
            with contextlib.suppress(Unsatisfiable):  # nothing to get wrong (no parameters)
                run()

    session.close()
    assert not server_errors, "\n".join(server_errors[:30])
    report = [f"{m} {p}: {t}: {msg}" for (m, p, t), msg in sorted(found.items())]
    assert not report, "\n\n".join(report)


def _runner(operation: Any, mode: Any, base: str, session: requests.Session,
            auth: dict[str, str], server_errors: list[str],
            found: dict[tuple[str, str, str], str]) -> Any:
    """A seeded Hypothesis test of ``operation`` in ``mode`` that records what goes wrong."""
    method, path = operation.method.upper(), operation.path

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        try:
            res = case.call(base_url=base, session=session, headers=auth, timeout=30)
        except requests.RequestException as exc:  # a dropped connection is a failure too
            server_errors.append(f"{method} {path}: {exc!r} ({case.as_curl_command()})")
            return
        if res.status_code == 400 and res.text == UVICORN_REFUSED:
            return  # the HTTP server's own answer to a request line too long, before the app
        if res.status_code >= 500:
            server_errors.append(f"{method} {path} → {res.status_code} {res.text[:200]} "
                                 f"({case.as_curl_command()})")
        try:
            case.validate_response(res, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # a Failure or a group of them
            for failure in getattr(exc, "exceptions", [exc]):
                title = getattr(failure, "title", type(failure).__name__)
                if (title == "Schema-violating request accepted" and " in query" in str(failure)
                        and _query_valid_as_sent(operation, res.request.url)):
                    continue  # e.g. a boolean false sent as the text "false" for a text field
                found.setdefault((method, path, title),
                                 f"{str(failure)[:300]} [{res.status_code} {res.text[:80]!r}] "
                                 f"({case.as_curl_command()[:2000]})")

    return run


def _coerced(value: str) -> list[Any]:
    """The JSON values a query string's text may stand for."""
    out: list[Any] = [value]
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            out.append(cast(value))
    out += {"true": [True], "false": [False]}.get(value, [])
    return out


def _query_valid_as_sent(operation: Any, url: str) -> bool:
    """Whether the query string that went over the wire satisfies the operation's schema: a
    'negative' case whose invalid value serialises to valid text (false → "false") is not invalid
    data the server accepted."""
    from jsonschema import Draft202012Validator

    sent = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for param in operation.iter_parameters():
        if str(param.location).rsplit(".", 1)[-1].lower() != "query":
            continue
        schema = param.definition.get("schema", {})
        values = sent.pop(param.name, None)
        if values is None:
            if param.is_required:
                return False
            continue
        whole = Draft202012Validator(schema)
        items = [s["items"] for s in [schema, *schema.get("anyOf", [])] if "items" in s]
        item = Draft202012Validator({"anyOf": items}) if items else None
        if item is not None and all(any(item.is_valid(c) for c in _coerced(v)) for v in values):
            continue  # an array parameter: every repeated value is a valid item
        if len(values) == 1 and any(whole.is_valid(c) for c in _coerced(values[0])):
            continue
        return False
    return not sent  # otherwise a parameter the operation does not declare
