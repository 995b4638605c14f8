"""Credentials for the benchmark client: the app requires them on every measured route.

The bench uses one API key of its own, ``bench-load``: role ``dispatcher`` (city-wide locate, the
hotline's machine client), the city as jurisdiction and a rate limit far above what a benchmark
sends. The key is created with the app's own :func:`app.auth.new_api_key` and kept in
``bench/results/`` (git-ignored) for later runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import create_engine, text

from bench import city
from bench.common import RESULTS

KEY_NAME = "bench-load"
KEY_ROLE = "dispatcher"
KEY_RATE = 2_000_000_000  # per minute: the limiter runs, but never refuses the load test
KEY_FILE = RESULTS / ".bench_api_key"


@lru_cache
def api_key() -> str:
    from app.auth import new_api_key

    engine = create_engine(city.url())
    try:
        with engine.begin() as conn:
            if KEY_FILE.exists():
                key = KEY_FILE.read_text().strip()
                prefix = key.split("_", 2)[1] if key.startswith("cgk_") else ""
                ok = conn.execute(text(
                    "SELECT 1 FROM api_key WHERE name = :n AND prefix = :p AND NOT disabled"),
                    {"n": KEY_NAME, "p": prefix}).first()
                if ok:
                    return key
            conn.execute(text("DELETE FROM api_key WHERE name = :n"), {"n": KEY_NAME})
            key, prefix, key_hash = new_api_key()
            conn.execute(text(
                "INSERT INTO api_key (name, prefix, key_hash, role, region_id, "
                "rate_limit_per_minute) VALUES (:n, :p, :h, :r, "
                "(SELECT id FROM region WHERE level = 'city' ORDER BY code LIMIT 1), :rate)"),
                {"n": KEY_NAME, "p": prefix, "h": key_hash, "r": KEY_ROLE, "rate": KEY_RATE})
        RESULTS.mkdir(parents=True, exist_ok=True)
        KEY_FILE.write_text(key + "\n")
        KEY_FILE.chmod(0o600)
        return key
    finally:
        engine.dispose()


def headers() -> dict[str, str]:
    return {"X-API-Key": api_key()}


def principal() -> Any:
    """The same principal in process (for functions that take one)."""
    from grids.access import Principal, Scope

    engine = create_engine(city.url())
    with engine.connect() as conn:
        code = conn.execute(text("SELECT code FROM region WHERE level = 'city'")).scalar_one()
    engine.dispose()
    return Principal.make(f"key:{KEY_NAME}", KEY_ROLE, Scope.of(code))
