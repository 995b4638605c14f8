"""``GET /health``: what this worker can do right now (docs/security.md, "Health").

Always answered (never a 500), in one of three states:

- ``ok`` (200): the database answers and the locator has its snapshot;
- ``degraded`` (200): one of the two is missing. With the database away the locator still
  answers ``/locate`` and ``/locate/batch`` from its last snapshot (marked ``stale``), while
  writes, history and lists fail with 503. A load balancer should keep the worker: lookups work;
- ``down`` (503): neither (nothing useful can be answered).

A locator whose reloads fail for a reason other than the database (a bug: see
``app/locator_service.py``) makes the worker ``degraded`` too, with the error in ``reason``: it
still answers from its last snapshot, but someone should look at the log.

``works`` says which kinds of request succeed, so a monitor does not have to guess.

With standbys configured (``CITYGRID_REPLICA_URLS``, app/replicas.py), ``replicas`` lists each
with its state (``up``, ``lagging``: further behind than ``CITYGRID_REPLICA_MAX_LAG_S``, or
``down``) and its lag in seconds, measured afresh for this answer. A standby away does not make the
worker degraded: its reads go to the primary.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

PING_TIMEOUT_MS = 2000


def _database_up(engine: Any) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {PING_TIMEOUT_MS}"))
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure to reach the database means it is down for us
        return False


async def health(request: Request) -> JSONResponse:
    state = request.app.state
    engine = getattr(state, "engine", None)
    database = engine is not None and await run_in_threadpool(_database_up, engine)
    locator = getattr(state, "locator", None)
    loaded = locator is not None and locator.snapshot is not None
    failure = getattr(locator, "failure", None) if locator is not None else None
    status = "ok" if database and loaded else "degraded" if database or loaded else "down"
    if status == "ok" and failure:
        status = "degraded"
    body = {
        "status": status,
        "database": "up" if database else "down",
        "locator": {"loaded": loaded,
                    "stale": bool(loaded and (getattr(locator, "stale", False) or not database))},
        "works": {"locate": loaded, "reads": database, "writes": database},
    }
    if failure:
        body["reason"] = f"locator reload failing: {failure}"
    replicas = getattr(state, "replicas", None)
    if replicas is not None and replicas.enabled:
        await run_in_threadpool(replicas.check)
        body["replicas"] = replicas.report()
    return JSONResponse(body, status_code=503 if status == "down" else 200)
