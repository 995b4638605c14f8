"""Rate limits shared by every worker process and host through PostgreSQL.

Fixed-window counters in the UNLOGGED table ``rate_counter`` (migration 0013): per-minute limits of
API keys (taken in leases, so a busy key costs a round trip every few requests) and the login
throttle (per username and address, and per address). :mod:`app.auth` turns a refusal into a 429.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, text


class SharedCounters:
    """Fixed-window counters in the UNLOGGED table ``rate_counter`` (migration 0013).

    One atomic upsert adds to a (key, window) counter and returns the new total, so two workers
    (or two hosts on one database) count together. Each call is its own short transaction on
    ``engine``, apart from the request's, so a request that fails still counts.
    """

    def __init__(self) -> None:
        self._purged = 0.0

    @staticmethod
    def window(now: float, window_s: int) -> tuple[datetime, float]:
        """The window holding ``now``: (its start, seconds until it ends)."""
        start = now - now % window_s
        return datetime.fromtimestamp(start, UTC), start + window_s - now

    def add(self, engine: Engine, key: str, window_s: int, n: int = 1,
            now: float | None = None) -> int:
        """Add ``n`` to ``key``'s counter in the current window; the new total."""
        start, _ = self.window(time.time() if now is None else now, window_s)
        with engine.begin() as conn:
            total = conn.execute(text(
                "INSERT INTO rate_counter (key, window_start, n) VALUES (:k, :w, :n) "
                "ON CONFLICT (key, window_start) DO UPDATE SET n = rate_counter.n + excluded.n "
                "RETURNING n"), {"k": key, "w": start, "n": n}).scalar_one()
            if time.monotonic() - self._purged > 60:
                self._purged = time.monotonic()
                conn.execute(text("DELETE FROM rate_counter "
                                  "WHERE window_start < now() - interval '1 day'"))
        return int(total)

    def totals(self, engine: Engine, keys: list[str], window_s: int,
               now: float | None = None) -> dict[str, int]:
        start, _ = self.window(time.time() if now is None else now, window_s)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT key, n FROM rate_counter WHERE key = ANY(:k) AND window_start = :w"),
                {"k": keys, "w": start}).all()
        return {r.key: int(r.n) for r in rows}

    def clear(self, engine: Engine, key: str) -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM rate_counter WHERE key = :k"), {"k": key})


class KeyRateLimit:
    """Per-key limits a minute, shared by the workers, at most one round trip per lease.

    A worker takes a *lease* of ``max(1, rate // 20)`` requests from the shared counter and
    spends it locally, so a key allowed 600 a minute costs a database round trip every 30
    requests, and a key allowed 5 a minute one per request. A lease is only ever granted out of
    what is left in the minute, so the workers together never exceed the limit (a lease unspent
    when the minute ends is lost: a client can get slightly fewer, never more).
    """

    WINDOW_S = 60

    def __init__(self, counters: SharedCounters) -> None:
        self.counters = counters
        # key -> (the window's start in epoch seconds, requests left of the lease)
        self._leases: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def take(self, engine: Engine, key: str, rate_per_minute: int) -> float:
        """Take one request; 0 if allowed, else seconds until the next window."""
        now = time.time()
        first = now - now % self.WINDOW_S  # no datetime on the way that needs no round trip
        with self._lock:
            window, remaining = self._leases.get(key, (first, 0))
            if window == first and remaining > 0:
                self._leases[key] = (first, remaining - 1)
                return 0.0
        _, left_s = self.counters.window(now, self.WINDOW_S)
        lease = max(1, rate_per_minute // 20)
        total = self.counters.add(engine, f"key:{key}", self.WINDOW_S, lease, now=now)
        granted = max(0, min(lease, rate_per_minute - (total - lease)))
        if granted == 0:
            return max(left_s, 0.1)
        with self._lock:
            self._leases[key] = (first, granted - 1)
        return 0.0


class LoginThrottle:
    """Failed logins, counted per (username, address) and per address, shared by the workers.

    ``attempts`` failures for one username from one address, or ``per_address`` failures for any
    usernames from one address, within a ``window_s`` window, and that address gets 429 until
    the window ends. There is no per-username lock: failures from one address never lock the
    user out at another.
    """

    def __init__(self, counters: SharedCounters, attempts: int, window_s: int,
                 per_address: int = 20) -> None:
        self.counters = counters
        self.attempts = attempts
        self.window_s = window_s
        self.per_address = per_address

    @staticmethod
    def _keys(username: str, ip: str) -> tuple[str, str]:
        return f"login:{ip}:{username}", f"login-ip:{ip}"

    def check(self, engine: Engine, username: str, ip: str) -> int:
        """0 if ``username`` may try from ``ip``; else whole seconds until the window ends."""
        pair, address = self._keys(username, ip)
        totals = self.counters.totals(engine, [pair, address], self.window_s)
        if totals.get(pair, 0) >= self.attempts or totals.get(address, 0) >= self.per_address:
            _, left = self.counters.window(time.time(), self.window_s)
            return int(left) + 1
        return 0

    def failed(self, engine: Engine, username: str, ip: str) -> None:
        for key in self._keys(username, ip):
            self.counters.add(engine, key, self.window_s)

    def succeeded(self, engine: Engine, username: str, ip: str) -> None:
        self.counters.clear(engine, self._keys(username, ip)[0])
