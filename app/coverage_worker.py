"""The background worker that keeps the daily patrol coverage behind the grid tiles.

Fixes are noted as they are written (a trigger, migration 0012); every ``interval_s`` seconds this
worker takes the notes and recomputes the coverage of those days and places
(:func:`layers.patrols.grid_cover.refresh_stale`) in one transaction of its own, then the tile
cache drops (the write bumps the map data version and NOTIFYs). One thread per API process; an
advisory lock lets one process work at a time. ``CITYGRID_COVERAGE_REFRESH_S=0`` switches it off.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

from layers.patrols import grid_cover

log = logging.getLogger(__name__)


class CoverageWorker:
    def __init__(self, engine: Engine, *, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.rounds = 0
        self.last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, Any] | None:
        """One round: the notes' days and places recomputed and the notes deleted, or nothing
        (None: another process holds the lock)."""
        with self.engine.begin() as conn:
            done = grid_cover.refresh_stale(conn)
        self.rounds += 1
        self.last = done
        if done and done["notes"]:
            log.info("patrol coverage refreshed: %s", done)
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # logged with its traceback; the notes stay; try again next round
                log.exception("patrol coverage refresh failed; will retry")

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="coverage-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
