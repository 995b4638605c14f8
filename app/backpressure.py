"""Back-pressure: a worker takes on no more database work than it can finish, and says so fast.

Why. Routes are sync functions run on AnyIO's thread pool, and the request's transaction
(:func:`app.deps.get_conn`) is entered in one thread call and committed in another. With more
requests in flight than pooled connections, threads pile up waiting for a connection while the
requests that hold one wait for a free thread to commit: both pools starve each other until
the pool timeout (30 s by default) turns everything into 500s, and row locks held by the stalled
transactions make concurrent idempotent retries time out too.

What. :class:`InFlightLimit` (pure ASGI) admits at most ``limit`` requests at once (the pool
size by default); up to ``queue_max`` more wait, each at most ``queue_wait_s``, for a slot;
anything beyond gets a 503 ``server_busy`` with ``Retry-After`` at once. The thread pool is
sized above the limit (:func:`size_thread_pool`), so an admitted request always finds a thread
to commit on, and the connection pool's timeout is short (``pool_timeout_s``) so that if the
background work ever exhausts it, a request fails in seconds with a message saying so.
Requests answered from memory (``GET /locate``, the locator status, ``/health``, the portal's
static files and event stream) are not counted: lookups keep answering under any write load.

:func:`describe_db_failure` words a database failure by what happened (a statement timeout, a
busy pool, a lost connection, a lock conflict), for the 503 handlers in :mod:`app.errors`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import anyio.to_thread
import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("citygrid")

EXEMPT_PATHS = frozenset({"/locate", "/locate/status", "/locate/batch", "/health", "/events"})
EXEMPT_PREFIXES = ("/portal/static/",)


class InFlightLimit:
    """At most ``limit`` requests in the app at once; a bounded, time-limited queue; then 503."""

    def __init__(self, app: ASGIApp, *, limit: int, queue_max: int, queue_wait_s: float,
                 retry_after_s: int) -> None:
        self.app = app
        self.limit = max(1, limit)
        self.queue_max = queue_max
        self.queue_wait_s = queue_wait_s
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.waiting = 0
        self.refused = 0
        self._slots: asyncio.Semaphore | None = None  # made on the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _exempt(scope):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        if slots.locked():
            if self.waiting >= self.queue_max:
                await self._refuse(send, "queue_full")
                return
            self.waiting += 1
            try:
                await asyncio.wait_for(slots.acquire(), self.queue_wait_s)
            except TimeoutError:
                await self._refuse(send, "queue_wait")
                return
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            slots.release()

    async def _refuse(self, send: Send, why: str) -> None:
        self.refused += 1
        if self.refused % 100 == 1:
            log.warning("overloaded (%s): %d in flight, %d waiting; %d refused so far",
                        why, self.in_flight, self.waiting, self.refused)
        body = orjson.dumps({
            "code": "server_busy",
            "message": "The server is busy with other requests; try again in "
                       f"{self.retry_after_s} s.",
            "detail": {"reason": why, "in_flight": self.in_flight, "waiting": self.waiting,
                       "retry_after_s": self.retry_after_s}})
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"retry-after", str(self.retry_after_s).encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _exempt(scope: Scope) -> bool:
    path: str = scope["path"]
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def size_thread_pool(in_flight: int, *, spare: int = 16) -> int:
    """Give AnyIO's default thread limiter room for every admitted request plus the
    uncounted ones (static files, the event stream's polls); never shrink it. Call on the
    server's event loop (the lifespan)."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(int(limiter.total_tokens), in_flight + spare)
    return int(limiter.total_tokens)


@dataclass(frozen=True)
class Failure:
    """What went wrong with the database, in words a caller can act on."""

    code: str
    message: str
    retry_after_s: int | None


def describe_db_failure(exc: BaseException, *, statement_timeout_ms: int | None = None
                        ) -> Failure:
    """Tell a statement timeout, a busy pool, a lock conflict and a lost database apart."""
    if isinstance(exc, PoolTimeout):
        return Failure("server_busy",
                       "All database connections of this server are busy; try again shortly.", 2)
    sqlstate = ""
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if sqlstate == "57014":  # query_canceled: statement_timeout
        within = f" within {statement_timeout_ms} ms" if statement_timeout_ms else ""
        return Failure("statement_timeout",
                       f"The database did not finish the request{within} (statement timeout); "
                       "it was cancelled and nothing was written. Try again, or ask for less.",
                       2)
    if sqlstate == "55P03":  # lock_not_available: lock_timeout
        return Failure("lock_timeout",
                       "The data is locked by another change in progress; try again shortly.", 1)
    if sqlstate in ("40001", "40P01"):  # serialization failure, deadlock
        return Failure("write_conflict",
                       "The change collided with a concurrent one and was rolled back; "
                       "try again.", 1)
    if sqlstate.startswith("53"):  # insufficient resources (too many connections, ...)
        return Failure("database_busy",
                       "The database is out of resources (connections or memory); try again "
                       "shortly.", 5)
    return Failure("database_unavailable",
                   "The database is unreachable; writes and history queries fail until it is "
                   "back. Lookups keep answering from memory.", 5)
