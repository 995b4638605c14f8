"""The dispatchers' hot path, answered before the router: ``GET /locate``.

``/locate`` is the question dispatchers ask all day, and its work (an in-memory lookup whose answer
bytes are cached per snapshot) costs less than the framework around it: routing through the
included routers, the exception middleware, the exit-stack middleware. This pure ASGI layer sits
just inside Starlette's ``ServerErrorMiddleware`` and answers ``GET /locate`` itself, with the same
endpoint function the router declares (so OpenAPI, the permission table and the access matrix see
one route), the same authorisation (:func:`app.auth.authorize`) and the same error bodies: an
exception is rendered by the handler the app registered for its class, as Starlette's
``ExceptionMiddleware`` would. Everything else passes through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import authorize
from grids.access import Permission

# The principal is None only on a public route (permission None).
Endpoint = Callable[[Request, Any], Awaitable[Response]]


class HotPath:
    """Answer ``GET`` on ``routes`` (path → (permission, endpoint)) without the router.

    A permission of ``None`` makes the route public (the endpoint gets ``None`` for a principal):
    the benchmark's ``/_baseline/trivial_hot`` uses it, to measure this path's own floor.
    """

    def __init__(self, app: ASGIApp, *,
                 routes: dict[str, tuple[Permission | None, Endpoint]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.routes.get(scope["path"]) if scope["type"] == "http" \
            and scope["method"] == "GET" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        permission, endpoint = hot
        request = Request(scope, receive)
        try:
            response = await endpoint(
                request, None if permission is None else authorize(request, permission))
        except Exception as exc:  # noqa: BLE001 - rendered by the app's own handler, as elsewhere
            response = await _handle(request, exc)
        await response(scope, receive, send)


async def _handle(request: Request, exc: Exception) -> Response:
    """The response the app's registered exception handlers give for ``exc``."""
    handlers: dict[Any, Any] = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc  # pragma: no cover - the app registers a handler for Exception
