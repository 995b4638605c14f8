"""Database wiring: one engine per app, one transaction per request, Alembic migrations."""

from __future__ import annotations

import hashlib
import hmac
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


def migrate(url: str, revision: str = "head", *, secret_key: str | None = None) -> None:
    """Bring the schema to ``revision`` (idempotent) and install the audit key (migration 0013)
    derived from ``secret_key`` (default: ``CITYGRID_SECRET_KEY``). ``url`` is the owner's."""
    command.upgrade(alembic_config(url), revision)
    install_audit_key(url, secret_key)


def audit_key(secret_key: str | None = None) -> bytes:
    """The key that attests the audit actor: derived from the app's secret, never stored by it."""
    if secret_key is None:
        from app.settings import get_settings

        secret_key = get_settings().auth.secret_key
    return hmac.new(secret_key.encode(), b"citygrid audit actor v1", hashlib.sha256).digest()


def install_audit_key(url: str, secret_key: str | None = None) -> None:
    """Put the audit key where only the owner can read it (no-op before migration 0013)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.execute(text("SELECT to_regclass('audit_signing_key')")).scalar() is None:
                return
            conn.execute(text(
                "INSERT INTO audit_signing_key (id, key) VALUES (1, :k) "
                "ON CONFLICT (id) DO UPDATE SET key = excluded.key "
                "WHERE audit_signing_key.key <> excluded.key"), {"k": audit_key(secret_key)})
    finally:
        engine.dispose()


def set_actor(conn: Connection, actor: str, ip: str | None = None, *,
              key: bytes | None = None) -> None:
    """Name who is writing in this transaction, for the audit log (migrations 0002, 0013).

    The claim is attested with HMAC(audit key, actor, ip, transaction id): the audit triggers
    refuse a claimed actor without it, so a session of the application role cannot name someone
    else by setting ``citygrid.actor`` itself (it cannot read the key).
    """
    actor, ip = actor[:200], ip or ""
    txid = conn.execute(text("SELECT txid_current()")).scalar_one()
    proof = hmac.new(key or audit_key(), f"{actor}\n{ip}\n{txid}".encode(),
                     hashlib.sha256).hexdigest()
    conn.execute(text("SELECT set_config('citygrid.actor', :a, true), "
                      "set_config('citygrid.ip', :ip, true), "
                      "set_config('citygrid.proof', :p, true)"), {"a": actor, "ip": ip, "p": proof})


def is_empty(conn: Connection) -> bool:
    """True when no region exists yet (a fresh database)."""
    return conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM region)")).scalar_one()
