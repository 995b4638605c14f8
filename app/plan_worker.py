"""The background worker that moves the open work of scheduled plan activations when they come.

A plan activated with a future ``effective_at`` writes its boundaries and staffing at once (they
start then, and the locator reloads at that moment); its open cases, call-ups, duty tasks and
address book entries move when the time comes. Every ``interval_s`` seconds this worker calls
:func:`layers.redraw.run_due` in a transaction of its own (``FOR UPDATE SKIP LOCKED``: one
process moves a plan). One thread per API process; ``CITYGRID_PLAN_WORK_S=0`` switches it off.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

from app.db import set_actor
from layers import redraw

log = logging.getLogger(__name__)


class PlanWorker:
    def __init__(self, engine: Engine, *, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.rounds = 0
        self.last: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[dict[str, Any]]:
        """One round: the work of every due plan moved (what moved, per plan)."""
        with self.engine.begin() as conn:
            set_actor(conn, "system:plan-worker")  # the audit log names the worker
            done = redraw.run_due(conn)
        self.rounds += 1
        self.last = done
        if done:
            log.info("scheduled plan work moved: %s", done)
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # logged with its traceback; the plan stays due; next round
                log.exception("moving the work of a scheduled plan failed; will retry")

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="plan-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
