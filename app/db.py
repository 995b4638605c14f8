"""Database wiring: one engine per app, one transaction per request, Alembic migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, text

from app.settings import DatabaseSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(settings: DatabaseSettings) -> Engine:
    """The app's engine. Statement timeout keeps a runaway query from holding a worker.

    JIT compilation is off: the service's queries run in milliseconds and PostgreSQL's cost
    threshold misfires on them (a month's grid tile: 40 ms of JIT on a 40 ms query).
    """
    return create_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        # Requests are held to pool_size by the in-flight limit (app/backpressure.py); the
        # overflow serves the background work, and a short timeout turns an exhausted pool into
        # a fast 503 server_busy instead of a 30 s stall.
        max_overflow=settings.pool_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=True,
        connect_args={
            "options": f"-c statement_timeout={settings.statement_timeout_ms} -c jit=off",
            "connect_timeout": 5,
        },
    )


def alembic_config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


def unit_of_work(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction: committed if the body returns, rolled back if it raises."""
    with engine.begin() as conn:
        yield conn


def set_actor(conn: Connection, actor: str, ip: str | None = None) -> None:
    """Name who is writing in this transaction, for the audit log (see migration 0002)."""
    conn.execute(text("SELECT set_config('citygrid.actor', :a, true), "
                      "set_config('citygrid.ip', :ip, true)"), {"a": actor[:200], "ip": ip or ""})


def is_empty(conn: Connection) -> bool:
    """True when no region exists yet (a fresh database)."""
    return conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM region)")).scalar_one()
