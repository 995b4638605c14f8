"""Keeps each API worker's locator snapshot fresh: LISTEN/NOTIFY, debounced reloads, staleness.

Triggers on region, region_boundary, boundary_version, staff and assignment send
``NOTIFY citygrid_change`` on every statement, whoever made it (API, CLI, psql, QGIS). A daemon
thread per worker listens, reloads the snapshot and swaps it in atomically. The batch raster is
built after the swap, so single lookups are fresh at once and the batch path catches up.

If the database connection is lost, the last snapshot keeps answering and :attr:`stale` is True
until a reload succeeds again; the listener logs a warning and reconnects with a growing wait
(:data:`BACKOFF_S` up to :data:`MAX_BACKOFF_S`). Any other error while reloading is a bug, not an
outage: it is logged with its traceback, kept in :attr:`failure` (``/health`` reports the worker
``degraded`` with it) and the listener keeps retrying, so a fix deployed in the data (or a
transient fault) heals it without a restart.

Scheduled changes (a plan activated with a future ``effective_at``, an assignment starting
later) send their NOTIFY when they are written, not when they take effect. So after every reload
the service also reads the next instant at which a boundary or assignment starts or ends
(:attr:`next_change_at`), and the listener reloads when that instant passes: the switch happens
within the listener's poll (≤ 0.5 s) plus one reload of it.

Cold start from a file (``snapshot_dir``, the setting ``CITYGRID_LOCATOR_SNAPSHOT_DIR``): a full
reload first reads the boundaries' etag (:func:`grids.locate_cache.boundary_etag`, one query); if
the folder holds a snapshot written for it, the boundaries, indexes and rasters come from the file
and only the staff from SQL. Otherwise the snapshot is loaded from SQL as without the setting and,
once its rasters are built, written to the folder atomically for the next process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

import psycopg
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from gis.index import RasterStats
from grids.locate import Snapshot, load_snapshot, reload_staff
from grids.locate_cache import boundary_etag, read_snapshot, snapshot_path, write_snapshot

log = logging.getLogger("citygrid.locator")
CHANNEL = "citygrid_change"
# Tables whose changes the locator must see.
LOCATOR_TABLES = frozenset({"region", "region_boundary", "boundary_version", "staff", "assignment"})
# Of those, the ones that change people, not places (a cheaper reload).
PEOPLE_TABLES = frozenset({"staff", "assignment"})
# Cell size of the batch raster, in degrees (~10 m at 29°N). Communities, streets and the city are
# large, so a coarser table answers gaps and 'outside' as well at a sixteenth of the memory.
RASTER_CELL_DEG = 1e-4
AREAS_RASTER_CELL_DEG = 4e-4
# The next time something the locator holds starts or ends (NULL: nothing scheduled).
_NEXT_CHANGE = text(
    "SELECT least((SELECT min(valid_from) FROM region_boundary WHERE valid_from > now()), "
    "(SELECT min(valid_to) FROM region_boundary WHERE valid_to > now()), "
    "(SELECT min(valid_from) FROM assignment WHERE valid_from > now()), "
    "(SELECT min(valid_to) FROM assignment WHERE valid_to > now()))"
)
POLL_S = 0.5
# Reconnect waits: the first retry after BACKOFF_S, doubling up to MAX_BACKOFF_S.
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
# What a lost or refused database raises (psycopg directly, or wrapped by SQLAlchemy); a
# statement timeout (QueryCanceled) is an OperationalError too. Anything else is a bug.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError, psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
)


def is_database_error(exc: BaseException) -> bool:
    """True when ``exc`` means the database is unreachable, not that the code is wrong."""
    if isinstance(exc, DATABASE_ERRORS):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


def next_change(conn: Connection) -> datetime | None:
    """When the boundaries or assignments in force next change by themselves (scheduled)."""
    return conn.execute(_NEXT_CHANGE).scalar()


class LocatorStatus(TypedDict):
    """What ``GET /locate/status`` says about this worker's in-memory locator."""

    stale: bool
    reloads: int
    source: str | None
    loaded_at: str | None
    boundary_version: int | None
    next_change_at: str | None
    grids: int
    raster: RasterStats | None
    failure: str | None


class LocatorService:
    """Holds the current :class:`Snapshot` for one process."""

    def __init__(self, engine: Engine, *, raster: bool = True, debounce_s: float = 0.05,
                 snapshot_dir: str | os.PathLike[str] | None = None) -> None:
        self.engine = engine
        self.raster = raster
        self.snapshot_dir = snapshot_dir
        # Where the current snapshot's boundaries came from: "sql" or "file" (a cold start).
        self.source: str | None = None
        self.debounce_s = debounce_s
        self.snapshot: Snapshot | None = None
        self.stale = True
        self.reloads = 0
        self.next_change_at: datetime | None = None
        # The last reload failure that was not the database going away (a bug): shown by
        # status() and /health until a reload succeeds again.
        self.failure: str | None = None
        self.backoff_s = BACKOFF_S
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._raster_thread: threading.Thread | None = None
        self._subscribers: list[tuple[frozenset[str], Callable[[Any], None]]] = []
        # Shown in pg_stat_activity, so an operator (or a test) can tell the listeners apart.
        self.listener_name = f"citygrid-locator-{os.getpid()}-{id(self) % 100000}"

    def subscribe(self, tables: set[str] | frozenset[str], reload: Callable[[Any], None]) -> None:
        """Also call ``reload(conn)`` at start and whenever one of ``tables`` changes."""
        self._subscribers.append((frozenset(tables), reload))

    def _notify_subscribers(self, tables: set[str] | None) -> None:
        for watched, reload in self._subscribers:
            if tables is None or watched & tables:
                with self.engine.connect() as conn:
                    reload(conn)

    # -- loading -----------------------------------------------------------------------------
    def reload(self) -> Snapshot:
        """Load a new snapshot now and swap it in (used at start and after the API's own writes)."""
        etag: str | None = None
        with self._lock, self.engine.connect() as conn:
            cached = None
            if self.snapshot_dir is not None:
                # The etag first: a change landing between it and the load below labels newer
                # boundaries with an older etag, which no later database state matches.
                etag = boundary_etag(conn, self._cells())
                cached = read_snapshot(snapshot_path(self.snapshot_dir), etag)
            if cached is not None:
                snap = reload_staff(conn, cached)
                self.source = "file"
            else:
                snap = load_snapshot(conn)
                self.source = "sql"
            self.next_change_at = next_change(conn)
            self.snapshot = snap
            self.stale = False
            self.reloads += 1
        if cached is not None:
            return snap  # the tables came with it
        if self.raster:
            self._build_raster_later(snap, etag)
        elif etag is not None:
            self._write(snap, etag)
        return snap

    def _cells(self) -> tuple[float, float] | None:
        return (RASTER_CELL_DEG, AREAS_RASTER_CELL_DEG) if self.raster else None

    def _write(self, snap: Snapshot, etag: str) -> None:
        assert self.snapshot_dir is not None
        try:
            t0 = time.perf_counter()
            size = write_snapshot(snap, snapshot_path(self.snapshot_dir), etag)
            log.info("locator snapshot written (%.1f MB) in %.2f s", size / 1e6,
                     time.perf_counter() - t0)
        except OSError as exc:  # a full or read-only disk costs the next cold start, no more
            log.warning("could not write the locator snapshot: %s", exc)

    def reload_people(self) -> Snapshot:
        """Staff or assignments changed, boundaries did not: keep the indexes, reload people."""
        with self._lock, self.engine.connect() as conn:
            if self.snapshot is None:
                snap = load_snapshot(conn)
            else:
                snap = reload_staff(conn, self.snapshot)
            self.next_change_at = next_change(conn)
            self.snapshot = snap
            self.stale = False
            self.reloads += 1
        return snap

    def _build_raster_later(self, snap: Snapshot, etag: str | None = None) -> None:
        def build() -> None:
            t0 = time.perf_counter()
            # Communities, streets and the city answer gaps and 'outside': a table for them too.
            # An empty index (a city with streets but no grids yet) gets none.
            snap.build_rasters(RASTER_CELL_DEG, AREAS_RASTER_CELL_DEG)
            log.info("batch raster built in %.2f s: %s", time.perf_counter() - t0,
                     snap.grids.raster_stats())
            if etag is not None:
                self._write(snap, etag)

        self._raster_thread = threading.Thread(target=build, name="locator-raster", daemon=True)
        self._raster_thread.start()

    def wait_raster(self, timeout: float = 60.0) -> None:
        if self._raster_thread is not None:
            self._raster_thread.join(timeout)

    def status(self) -> LocatorStatus:
        snap = self.snapshot
        return {
            "stale": self.stale,
            "reloads": self.reloads,
            "source": self.source,
            "loaded_at": snap.loaded_at.isoformat() if snap else None,
            "boundary_version": snap.version_id if snap else None,
            "next_change_at": self.next_change_at.isoformat() if self.next_change_at else None,
            "grids": len(snap.grids) if snap else 0,
            "raster": snap.grids.raster_stats() if snap else None,
            "failure": self.failure,
        }

    # -- listening ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="locator-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def _wait_s(self) -> float:
        """How long to wait for a notification: the poll, or less if a change is due sooner."""
        due = self.next_change_at
        if due is None:
            return POLL_S
        return min(POLL_S, max(0.001, (due - datetime.now(UTC)).total_seconds() + 0.005))

    def _scheduled_change_due(self) -> bool:
        due = self.next_change_at
        return due is not None and datetime.now(UTC) >= due

    def _dsn(self) -> str:
        url = make_url(self.engine.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _listen(self) -> None:
        wait = BACKOFF_S
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn(), autocommit=True, connect_timeout=3,
                                     application_name=self.listener_name) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Anything may have changed while we were not listening.
                    if self.stale or self.failure:
                        self.reload()
                        self._notify_subscribers(None)
                        self.failure = None
                    wait = BACKOFF_S
                    while not self._stop.is_set():
                        tables = {n.payload for n in conn.notifies(timeout=self._wait_s(),
                                                                   stop_after=1)}
                        if not tables and self._scheduled_change_due():
                            self.reload()  # a scheduled boundary or assignment took effect
                            self._notify_subscribers(None)
                        elif tables:
                            # Let a burst of statements settle, then drain and reload once.
                            time.sleep(self.debounce_s)
                            tables |= {n.payload for n in conn.notifies(timeout=0.001)}
                            changed = tables & LOCATOR_TABLES
                            if changed and changed <= PEOPLE_TABLES and self.snapshot:
                                self.reload_people()
                            elif changed:
                                self.reload()
                            self._notify_subscribers(tables)
                        else:
                            conn.execute("SELECT 1")  # notice a dead server within a second
            except Exception as exc:  # a dead listener = stale for good: told apart, logged below
                if is_database_error(exc):
                    if not self.stale:
                        log.warning("locator lost the database (%s: %s); answering from memory, "
                                    "reconnecting", exc.__class__.__name__, str(exc).strip()[:200])
                else:
                    # A bug in a reload: the traceback, and visible in status() and /health.
                    log.exception("locator reload failed (not a database outage); answering "
                                  "from the last snapshot, retrying in %.1f s", wait)
                    self.failure = f"{exc.__class__.__name__}: {str(exc)[:200]}"
                self.stale = True
                self.backoff_s = wait
                self._stop.wait(wait)
                wait = min(wait * 2, MAX_BACKOFF_S)
