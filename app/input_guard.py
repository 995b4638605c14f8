"""Control characters in requests, refused in one place (docs/security.md, "Text in requests").

The rule: text in a request may hold tab, line feed and carriage return, but no other C0 control
character (U+0000–U+001F). PostgreSQL cannot store U+0000 at all (psycopg refuses it before the
statement is sent, which used to surface as a 500), and the others break the XLSX exports and
have no business in a name, an address or a description. A request that has one is answered
**422** ``invalid_text`` naming the field, before any endpoint runs:

- the path and every query parameter (name or value, after percent-decoding), on every route,
  the ``/locate`` hot path included;
- every string (and object key) of a JSON body, and every field of a form body, on writes;
- the cells of a bulk CSV or XLSX upload (:func:`check_frame`, called by the bulk endpoint,
  which names the row as well).

It costs almost nothing on clean requests: a byte scan finds the percent escapes (``%00``–``%1F``)
or JSON escapes (``\\u0000``–``\\u001f``) that could decode to a control before anything is
decoded. Raw control bytes cannot be valid JSON, so the JSON parser refuses them as it always did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ErrorResponse, error_body
from grids.errors import GridError

# C0 controls other than tab (09), line feed (0A) and carriage return (0D): openpyxl's
# ILLEGAL_CHARACTERS_RE, and U+0000 which PostgreSQL text cannot hold.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
EXPECTED = "text without control characters other than tab, line feed and carriage return"
# What could decode to a control: a raw control byte, or a percent escape of one.
_QUERY_SUSPECT = re.compile(rb"[\x00-\x1f]|%[01][0-9a-fA-F]")
# A JSON escape of a control (an escaped backslash before it is checked after parsing).
_JSON_SUSPECT = re.compile(rb"\\u00[01][0-9a-fA-F]")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class TextRefused(GridError):
    """A request's text holds a control character: 422 ``invalid_text``."""


def refuse_text(value: str, field: str, where: str, **extra: Any) -> TextRefused | None:
    """The error for ``value`` of ``field`` if it holds a refused control character, else None.

    >>> refuse_text("tab\\tis fine", "q", "query") is None
    True
    >>> refuse_text("a\\x00b", "q", "query").detail[0]["field"]
    'q'
    """
    if not CONTROL.search(value):
        return None
    return TextRefused(f"Invalid request: check {field}.", code="invalid_text",
                       detail=[{"field": field, "in": where, **extra,
                                "type": "control_character", "expected": EXPECTED}])


def find_control(doc: Any) -> str | None:
    """The dotted path of the first string (or key) in ``doc`` holding a refused control.

    Iterative, so a deeply nested document cannot exhaust the stack."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if CONTROL.search(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if CONTROL.search(key):
                    return name
                stack.append((item, name))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}" if path else str(i))
                         for i, item in enumerate(value))
    return None


def _first_bad_pair(pairs: Iterable[tuple[str, str]]) -> str | None:
    for name, value in pairs:
        if CONTROL.search(name) or CONTROL.search(value):
            return name
    return None


def check_frame(frame: Any) -> None:
    """Raise :class:`TextRefused` for the first cell of a bulk upload (a pandas frame of text,
    the header being row 1) that holds a refused control."""
    for column in frame.columns:
        if isinstance(column, str) and CONTROL.search(column):
            raise refuse_text(column, column, "body", row=1)  # type: ignore[misc]
        values = frame[column].astype(str)
        hits = values.str.contains(CONTROL.pattern, regex=True)
        if hits.any():
            row = int(hits.to_numpy().nonzero()[0][0])
            raise refuse_text(values.iloc[row], str(column), "body",  # type: ignore[misc]
                              row=row + 2)


class InputGuard:
    """Pure ASGI middleware applying the rule above to the path, the query and text bodies."""

    def __init__(self, app: ASGIApp, *,
                 renderers: dict[str, Callable[[TextRefused], Response]] | None = None) -> None:
        """``renderers``: path prefix → how an API with its own error form (Open311) answers."""
        self.app = app
        self.renderers = renderers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = None
        if CONTROL.search(scope["path"]):
            refused = refuse_text(scope["path"], "path", "path")
        qs: bytes = scope.get("query_string", b"")
        if refused is None and qs and _QUERY_SUSPECT.search(qs):
            name = _first_bad_pair(parse_qsl(qs.decode("latin-1"), keep_blank_values=True))
            if name is not None:
                refused = refuse_text("\x00", name, "query")
        if refused is None and scope["method"] in _WRITES:
            kind = _body_kind(scope)
            if kind is not None:
                body, more = await _read_body(receive)
                refused = _check_body(kind, body)
                receive = _replay(body, more, receive)
        if refused is not None:
            await self._render(scope["path"], refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)


    def _render(self, path: str, refused: TextRefused) -> Response:
        for prefix, render in self.renderers.items():
            if path.startswith(prefix):
                return render(refused)
        return ErrorResponse(error_body(refused.code, refused.message, refused.detail),
                             status_code=422)


def _body_kind(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            ctype = value.split(b";")[0].strip().lower()
            if ctype == b"application/json" or ctype.endswith(b"+json"):
                return "json"
            if ctype == b"application/x-www-form-urlencoded":
                return "form"
            return None
    return None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body (the size limit outside this middleware still counts it as it comes)."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return b"".join(parts), False
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), True


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay if complete else receive


def _check_body(kind: str, body: bytes) -> TextRefused | None:
    if kind == "json":
        if not _JSON_SUSPECT.search(body):
            return None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # the endpoint refuses invalid JSON in its own words
        path = find_control(doc)
        return None if path is None else refuse_text("\x00", path, "body")
    if not _QUERY_SUSPECT.search(body):
        return None
    name = _first_bad_pair(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    return None if name is None else refuse_text("\x00", name, "body")
