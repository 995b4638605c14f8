"""Request size limits, as pure ASGI middleware (bodies are counted as they stream in)."""

from __future__ import annotations

import re

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Reject bodies over ``default`` bytes (``bulk`` on ``bulk_paths``, or on paths matching one
    of ``bulk_patterns``, e.g. an import into one plan) with a JSON 413."""

    def __init__(self, app: ASGIApp, *, default: int, bulk: int,
                 bulk_paths: tuple[str, ...],
                 bulk_patterns: tuple[re.Pattern[str], ...] = ()) -> None:
        self.app = app
        self.default = default
        self.bulk = bulk
        self.bulk_paths = bulk_paths
        self.bulk_patterns = bulk_patterns

    def _is_bulk(self, path: str) -> bool:
        return path.startswith(self.bulk_paths) or any(
            p.fullmatch(path) for p in self.bulk_patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.bulk if self._is_bulk(scope["path"]) else self.default
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await _reject(send, limit)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, limit)


async def _reject(send: Send, limit: int) -> None:
    body = orjson.dumps({"code": "payload_too_large",
                         "message": f"The request body is larger than {limit} bytes.",
                         "detail": {"field": "body", "max_bytes": limit}})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
