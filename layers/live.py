"""New incidents as they arrive, for the portal's live view (server-sent events).

Every write to ``incident`` sends ``NOTIFY citygrid_change, 'incident'`` after commit (migration
0006). One :class:`LiveHub` per API process holds one listening connection and wakes every waiting
stream; each stream then asks the cheap question "which incidents in my jurisdiction have an id
above the last one I sent?" (:func:`new_incidents`, the primary key index). The NOTIFY carries no
id, and need not: the since-id query finds whatever arrived, even if two commits shared a
notification, and a stream that missed a wake-up (listener reconnecting) catches up at its next
safety poll.

Ids are taken before commit, so a transaction holding a lower id may commit after a higher one
was sent: :func:`new_incidents` looks back :data:`LOOKBACK_IDS` ids below its cursor and skips
those the stream has already seen (sent, or there when it started), so such a late case still
appears.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from grids.access import Permission, Principal
from grids.sql import in_scope
from layers.incidents import handling

log = logging.getLogger("citygrid.live")
CHANNEL = "citygrid_change"
# Incidents with ids this far below the newest sent are looked at again (late commits).
LOOKBACK_IDS = 200
MAX_BATCH = 50


def latest_id(conn: Connection) -> int:
    """The highest incident id now visible (0 when there is none)."""
    return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM incident")).scalar_one())


@dataclass(frozen=True, slots=True)
class Batch:
    """What a stream sends next: new incidents, or (more than a batch arrived at once, e.g. a
    bulk import) ``overflow``: no items, and the page should reload its list instead."""

    items: list[dict[str, Any]]
    overflow: bool = False


def _scope_sql(principal: Principal, where: list[str], params: dict[str, Any]) -> None:
    scope = principal.locate_scope()
    cond, scoped = in_scope(scope, "region_code")
    where.append(cond)
    params |= scoped


def seen_ids(conn: Connection, *, principal: Principal, after_id: int) -> set[int]:
    """The ids a stream starting at ``after_id`` counts as already seen: those in its
    jurisdiction within :data:`LOOKBACK_IDS` at or below the cursor (they are not new)."""
    principal.require(Permission.INCIDENTS_READ)
    where = ["id > :floor", "id <= :cursor"]
    params: dict[str, Any] = {"floor": max(0, after_id - LOOKBACK_IDS), "cursor": after_id}
    _scope_sql(principal, where, params)
    return {i for (i,) in conn.execute(text(
        f"SELECT id FROM incident WHERE {' AND '.join(where)}"), params)}


def new_incidents(conn: Connection, *, principal: Principal, after_id: int,
                  seen: set[int] | None = None, limit: int = MAX_BATCH) -> Batch:
    """Incidents in the caller's jurisdiction the stream has not seen, oldest first.

    Without ``seen``: those with an id above ``after_id``. With ``seen`` (the ids the stream has
    seen in the last :data:`LOOKBACK_IDS`, see :func:`seen_ids`): also those below the cursor
    that were not visible before, i.e. a transaction that took a lower id but committed later.
    Each item is the incident as ``GET /incidents/{id}`` shows it to the caller (same masking),
    without its history. More than ``limit`` at once gives an overflow batch rather than a flood.
    """
    principal.require(Permission.INCIDENTS_READ)
    where = ["id > :floor"]
    floor = after_id - LOOKBACK_IDS if seen is not None else after_id
    params: dict[str, Any] = {"floor": max(0, floor), "limit": limit + 1 + LOOKBACK_IDS}
    _scope_sql(principal, where, params)
    seen = seen or set()
    ids = [i for (i,) in conn.execute(text(
        f"SELECT id FROM incident WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit"),
        params) if i not in seen][:limit + 1]
    if len(ids) > limit:
        return Batch(items=[], overflow=True)
    out = []
    for incident_id in ids:
        item = handling.get(conn, incident_id, principal=principal)
        item.pop("history", None)
        out.append(item)
    return Batch(items=out)


class LiveHub:
    """One LISTEN connection per process; wakes the asyncio streams waiting on it."""

    def __init__(self, engine: Engine, *, tables: frozenset[str] = frozenset({"incident"})
                 ) -> None:
        self.engine = engine
        self.tables = tables
        self.connected = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="portal-live",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def subscribe(self) -> tuple[asyncio.Event, Callable[[], None]]:
        """An event set on every change of the watched tables, and a function to unsubscribe."""
        self.start()
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)

        def unsubscribe() -> None:
            with self._lock:
                self._waiters.discard(entry)

        return entry[1], unsubscribe

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: its stream is gone
                with self._lock:
                    self._waiters.discard((loop, event))

    def _dsn(self) -> str:
        return make_url(self.engine.url).set(drivername="postgresql").render_as_string(
            hide_password=False)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn(), autocommit=True, connect_timeout=3,
                                     application_name="citygrid-portal-live") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")  # a constant, not a value
                    self.connected = True
                    self._wake()  # anything may have happened while we were not listening
                    while not self._stop.is_set():
                        payloads = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1)}
                        if payloads:
                            payloads |= {n.payload for n in conn.notifies(timeout=0.001)}
                        if payloads & self.tables:
                            self._wake()
                        elif not payloads:
                            conn.execute("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - streams fall back to their safety poll
                if self.connected:
                    log.warning("portal live listener lost the database (%s)",
                                exc.__class__.__name__)
                self.connected = False
                self._stop.wait(1.0)
