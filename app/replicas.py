"""Heavy reads on streaming hot standbys (docs/scale.md, "Read replicas").

``CITYGRID_REPLICA_URLS`` names the standbys (``python -m app.devdb replica up`` starts one beside
the private cluster). The heavy GETs (tiles, heat, counts, assessment, analysis, OGC, lists,
exports) take :data:`app.deps.ReadConn`, which asks :meth:`Replicas.pick` for a standby:

- **Healthy and close enough.** Each standby's replay position is measured in the background
  every ``CITYGRID_REPLICA_CHECK_S`` (a request never waits for it). Its lag is an upper bound on
  how old its data is: the primary's WAL position is sampled at each check, and a standby that
  has replayed past the sample taken at time *t* has everything committed before *t*; so has one
  whose last replayed commit is stamped *t*. A standby whose lag passes
  ``CITYGRID_REPLICA_MAX_LAG_S``, that is down, or whose last check is too old is skipped: the
  read goes to the primary.
- **Read your writes.** Every committed write answers with the primary's WAL position after the
  commit (a cookie, ``citygrid_lsn``, and the header ``X-CityGrid-Write-LSN``; a client without
  cookies sends it back as ``X-CityGrid-Min-LSN``). Until a standby has replayed past it, that
  client's reads stay on the primary.
- **No error from a failing standby.** If the standby cannot be reached the read starts on the
  primary; if it fails mid-request (stopped, a recovery conflict cancelled the query) the
  middleware drops the failed answer before anything was sent and runs the request again on the
  primary. The standby is then skipped until a check finds it back.
- ``X-CityGrid-Read: primary|replica`` says where a response was read; ``GET /health`` lists the
  standbys with their lag.

Writes, the locator's snapshot and its LISTEN, the user directory and the rate limits stay on the
primary. Cached map tiles are dropped again once a standby can have replayed a change the primary
announced (:meth:`Replicas.echo`), so a tile drawn from a standby that was still behind is not
kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import make_engine
from app.settings import DatabaseSettings, ReplicaSettings

log = logging.getLogger("citygrid.replicas")

TRACE_KEY = "citygrid.read"  # the request's ReadTrace, in the ASGI scope
LSN_COOKIE = "citygrid_lsn"
MIN_LSN_HEADER = b"x-citygrid-min-lsn"
READ_HEADER = b"x-citygrid-read"
WRITE_LSN_HEADER = b"x-citygrid-write-lsn"
LSN_COOKIE_MAX_AGE_S = 600
SAFE = frozenset({"GET", "HEAD"})
# What the tile cache listens to (app/main.py): the same changes are echoed after the lag bound.
MAP_TABLES = frozenset({"incident", "region", "region_boundary", "boundary_version",
                        "patrol_grid_cover"})


# -- WAL positions ---------------------------------------------------------------------------------
def parse_lsn(value: str | None) -> int | None:
    """``'16/B374D848'`` as a number (None if it is not a WAL position)."""
    if not value or "/" not in value or len(value) > 17:
        return None
    hi, _, lo = value.strip().partition("/")
    try:
        return (int(hi, 16) << 32) + int(lo, 16)
    except ValueError:
        return None


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


# -- what one request did --------------------------------------------------------------------------
@dataclass
class ReadTrace:
    """Set by the middleware, filled by the connection dependencies (app/deps.py)."""

    replicated: bool = False  # standbys are configured
    min_lsn: int | None = None  # the client's last write: reads stay on the primary until then
    force_primary: bool = False  # the second run after a standby failed
    read: str | None = None  # "primary" | "replica": where the request's connection was
    replica_failed: bool = False
    write_lsn: str | None = None  # the primary's position after this request's commit


def trace_of(scope: Scope) -> ReadTrace | None:
    return scope.get(TRACE_KEY)


def replica_failure(exc: BaseException) -> bool:
    """Could the primary answer what the standby did not? Lost connections, shutdowns, recovery
    conflicts and a read-only refusal: yes. The client's bad data (22xxx, 23xxx): no."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return exc.connection_invalidated or not sqlstate.startswith(("22", "23"))
    return False


# -- the standbys ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    state: str  # "up" | "down" | "unknown"
    checked_at: float  # time.monotonic()
    replay_lsn: int | None = None
    lag_s: float | None = None
    error: str | None = None


@dataclass
class Standby:
    name: str  # host:port/database, no credentials
    engine: Engine
    status: Status


class Replicas:
    """The configured standbys, their measured lag and the choice of one per read."""

    def __init__(self, settings: ReplicaSettings, db: DatabaseSettings) -> None:
        self.max_lag_s = settings.replica_max_lag_s
        self.check_s = settings.replica_check_s
        self.standbys: list[Standby] = []
        for u in settings.replica_urls:
            parsed = make_url(u)
            name = f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"
            engine = make_engine(db.model_copy(update={"database_url": u}))
            self.standbys.append(Standby(name, engine, Status("unknown", 0.0)))
        self.primary: Engine | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=512)  # (time.time(), primary lsn)
        self._lock = threading.Lock()
        self._checking = False
        self._checked_at = 0.0
        self._next = 0
        self._echo_lock = threading.Lock()
        self.picked = {"replica": 0, "primary": 0}

    @property
    def enabled(self) -> bool:
        return bool(self.standbys)

    @property
    def trust_s(self) -> float:
        """How long a check is believed: a standby not checked for longer is not used."""
        return max(3 * self.check_s, self.check_s + 2.0)

    # -- choosing --------------------------------------------------------------------------------
    def pick(self, min_lsn: int | None = None) -> Standby | None:
        """A standby for one read, or None for the primary. Never blocks on a check."""
        now = time.monotonic()
        if now - self._checked_at >= self.check_s:
            self.check_soon()
        usable = [s for s in self.standbys if self._usable(s.status, now, min_lsn)]
        if not usable:
            self.picked["primary"] += 1
            return None
        self.picked["replica"] += 1
        self._next += 1
        return usable[self._next % len(usable)]

    def _usable(self, st: Status, now: float, min_lsn: int | None) -> bool:
        return (st.state == "up" and now - st.checked_at <= self.trust_s
                and st.lag_s is not None and st.lag_s <= self.max_lag_s
                and (min_lsn is None or (st.replay_lsn is not None and st.replay_lsn >= min_lsn)))

    def failed(self, standby: Standby, exc: BaseException) -> None:
        """The standby failed a read: skip it until a check finds it back."""
        log.warning("standby %s failed a read (%s); reads go to the primary",
                    standby.name, type(exc).__name__)
        standby.status = Status("down", time.monotonic(), error=type(exc).__name__)

    # -- measuring -------------------------------------------------------------------------------
    def check_soon(self) -> None:
        """Measure the standbys in a background thread (one at a time)."""
        with self._lock:
            if self._checking:
                return
            self._checking = True
        threading.Thread(target=self._check_in_background, name="replica-check",
                         daemon=True).start()

    def _check_in_background(self) -> None:
        try:
            self.check()
        except Exception:  # a check never takes the process down
            log.exception("standby check failed")
        finally:
            with self._lock:
                self._checking = False

    def check(self) -> None:
        """Measure every standby now: its replay position and an upper bound on its lag."""
        self._checked_at = time.monotonic()
        if self.primary is not None:
            t = time.time()  # before the query: everything committed before t is at or below
            try:
                with self.primary.connect() as conn:
                    lsn = parse_lsn(conn.execute(text("SELECT pg_current_wal_lsn()::text"))
                                    .scalar_one())
                if lsn is not None:
                    self._samples.append((t, lsn))
            except DBAPIError:
                pass  # the primary away: the standbys' own replay times still bound their lag
        for standby in self.standbys:
            standby.status = self._measure(standby)

    def _measure(self, standby: Standby) -> Status:
        now = time.monotonic()
        try:
            with standby.engine.connect() as conn:
                row = conn.execute(text(
                    "SELECT pg_is_in_recovery() AS standby, "
                    "pg_last_wal_replay_lsn()::text AS replayed, "
                    "extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS since"
                )).one()
        except DBAPIError as exc:
            return Status("down", now, error=type(exc.orig or exc).__name__)
        if not row.standby:
            return Status("down", now, error="not a standby (promoted, or the primary itself)")
        replayed = parse_lsn(row.replayed)
        lag = float(row.since) if row.since is not None else float("inf")
        if replayed is not None:
            wall = time.time()
            for t, lsn in reversed(self._samples):
                if lsn <= replayed:
                    lag = min(lag, wall - t)
                    break
        return Status("up", now, replayed, max(lag, 0.0))

    def report(self) -> list[dict[str, Any]]:
        """The standbys for ``/health``."""
        now = time.monotonic()
        out = []
        for s in self.standbys:
            st = s.status
            state = st.state
            if state == "up" and not self._usable(st, now, None):
                state = "lagging"
            lag = None if st.lag_s is None or st.lag_s == float("inf") else round(st.lag_s, 3)
            out.append({"name": s.name, "state": state, "lag_s": lag,
                        "replayed": format_lsn(st.replay_lsn) if st.replay_lsn else None,
                        "checked_s_ago": round(now - st.checked_at, 3) if st.checked_at else None,
                        **({"error": st.error} if st.error else {})})
        return out

    # -- cached things drawn from a standby ------------------------------------------------------
    def echo(self, drop: Callable[[Any], None]) -> Callable[[Any], None]:
        """``drop`` again once every standby that may be used has replayed the change: a tile
        drawn on a standby still behind a change the primary announced is not kept."""
        delay = self.max_lag_s + self.trust_s + 1.0
        pending: dict[str, Any] = {"timer": None, "due": 0.0}

        def fire() -> None:
            with self._echo_lock:
                pending["timer"] = None
                again = pending["due"] - time.monotonic()
                if again > 0.05:
                    _arm(again)
            drop(None)

        def _arm(after: float) -> None:
            timer = threading.Timer(after, fire)
            timer.daemon = True
            pending["timer"] = timer
            timer.start()

        def later(conn: Any = None) -> None:
            with self._echo_lock:
                pending["due"] = time.monotonic() + delay
                if pending["timer"] is None:
                    _arm(delay)

        return later

    def close(self) -> None:
        for s in self.standbys:
            s.engine.dispose()


# -- the connection for a heavy read ---------------------------------------------------------------
def read_connection(request: Any, primary: Callable[[Any], Iterator[Connection]]
                    ) -> Iterator[Connection]:
    """A standby's connection when one is fit, else ``primary(request)`` (app/deps.py)."""
    replicas: Replicas | None = getattr(request.app.state, "replicas", None)
    trace = trace_of(request.scope)
    if (replicas is None or not replicas.enabled or trace is None or trace.force_primary
            or request.method not in SAFE):
        yield from primary(request)
        return
    standby = replicas.pick(trace.min_lsn)
    if standby is None:
        yield from primary(request)
        return
    try:
        conn = standby.engine.connect()
    except DBAPIError as exc:  # not reachable: start on the primary at once
        replicas.failed(standby, exc)
        yield from primary(request)
        return
    except PoolTimeout:  # its pool is busy: this read on the primary, the standby stays up
        yield from primary(request)
        return
    trace.read = "replica"
    try:
        with conn.begin():
            yield conn
    except Exception as exc:
        if replica_failure(exc):
            replicas.failed(standby, exc)
            trace.replica_failed = True  # the middleware runs the request again on the primary
        raise
    finally:
        conn.close()


# -- the middleware --------------------------------------------------------------------------------
class ReadRouting:
    """Per request: a :class:`ReadTrace`, the ``X-CityGrid-Read`` header, the write position
    cookie, and the second run on the primary when a standby failed. On the app's lifespan: the
    first check of the standbys, the tile cache's echo, and the standbys' pools closed."""

    def __init__(self, app: ASGIApp, replicas: Replicas, *,
                 echo: dict[frozenset[str], Callable[[Any], None]] | None = None) -> None:
        self.app = app
        self.replicas = replicas
        self.echoes = echo or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        replicas = self.replicas

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and replicas.enabled:
                state = scope["app"].state
                replicas.primary = state.engine
                await run_in_threadpool(replicas.check)
                locator = getattr(state, "locator", None)
                if locator is not None:
                    for tables, drop in self.echoes.items():
                        locator.subscribe(tables, replicas.echo(drop))
            elif message["type"] == "lifespan.shutdown.complete":
                replicas.close()
            await send(message)

        await self.app(scope, receive, sending)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        replicated = self.replicas.enabled
        method = scope["method"]
        min_lsn = None
        if replicated and method in SAFE:
            min_lsn = _requested_lsn(scope)
        trace = ReadTrace(replicated=replicated, min_lsn=min_lsn)
        scope[TRACE_KEY] = trace
        if not replicated or method not in SAFE:
            await self.app(scope, receive, self._sender(scope, send, trace))
            return
        # A read that may land on a standby: keep what was received, to run it again.
        received: list[Message] = []

        async def recording() -> Message:
            message = await receive()
            received.append(message)
            return message

        dropped = False
        sending = self._sender(scope, send, trace)

        async def holding(message: Message) -> None:
            nonlocal dropped
            if trace.replica_failed and message["type"].startswith("http.response"):
                dropped = True  # the standby failed before anything was sent: answer again
                return
            await sending(message)

        try:
            await self.app(scope, recording, holding)
        except Exception:
            if not trace.replica_failed:
                raise
            dropped = True
        if not dropped:
            return
        replay = list(received)

        async def replaying() -> Message:
            return replay.pop(0) if replay else await receive()

        again = ReadTrace(replicated=True, min_lsn=min_lsn, force_primary=True)
        scope[TRACE_KEY] = again
        await self.app(scope, replaying, self._sender(scope, send, again))

    def _sender(self, scope: Scope, send: Send, trace: ReadTrace) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if trace.read:
                    headers.append((READ_HEADER, trace.read.encode()))
                if (trace.replicated and scope["method"] not in SAFE and trace.write_lsn is None
                        and message["status"] < 400):
                    # a write that did not go through app.deps.get_conn: ask the primary
                    trace.write_lsn = await run_in_threadpool(self._primary_lsn, scope)
                if trace.write_lsn:
                    lsn = trace.write_lsn
                    headers.append((WRITE_LSN_HEADER, lsn.encode()))
                    headers.append((b"set-cookie", (
                        f"{LSN_COOKIE}={lsn}; Max-Age={LSN_COOKIE_MAX_AGE_S}; Path=/; HttpOnly; "
                        "SameSite=Lax").encode()))
                message = {**message, "headers": headers}
            await send(message)

        return sending

    @staticmethod
    def _primary_lsn(scope: Scope) -> str | None:
        engine = getattr(scope["app"].state, "engine", None)
        if engine is None:
            return None
        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT pg_current_wal_insert_lsn()::text")).scalar_one()
        except DBAPIError:
            return None


def _requested_lsn(scope: Scope) -> int | None:
    """The client's last write position: the header, else the cookie."""
    cookie = None
    for name, value in scope.get("headers", []):
        if name == MIN_LSN_HEADER:
            return parse_lsn(value.decode("latin-1"))
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == LSN_COOKIE:
                    cookie = val
    return parse_lsn(cookie)
