"""Rendered tiles cached per process, never served stale."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Connection, text


def data_version(conn: Connection) -> int | None:
    """The map data version (migration 0006); None if that migration is not there."""
    return conn.execute(text(
        "SELECT pg_sequence_last_value(to_regclass('map_data_version'))")).scalar()


class TileCache:
    """An in-process LRU of rendered tiles that is never stale.

    Keys carry the map data version (a sequence every write to incident and the boundaries
    bumps before it commits) and a local generation that :meth:`invalidate` bumps when NOTIFY
    reports a committed change. A tile drawn from a snapshot that did not yet see a write is
    either keyed by the old version, or (drawn during the writer's transaction) dropped by the
    NOTIFY that follows the commit.
    """

    def __init__(self, *, max_entries: int = 4096, max_bytes: int = 256 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._bytes = 0
        self._data: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def invalidate(self, conn: Any = None) -> None:
        """Drop everything (``LocatorService.subscribe`` passes a connection: unused)."""
        with self._lock:
            self.generation += 1
            self._data.clear()
            self._bytes = 0

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            tile = self._data.get(key)
            if tile is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return tile

    def put(self, key: tuple[Any, ...], tile: bytes, generation: int) -> None:
        with self._lock:
            if generation != self.generation:  # invalidated while it was being drawn
                return
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._data[key] = tile
            self._bytes += len(tile)
            while self._data and (len(self._data) > self.max_entries
                                  or self._bytes > self.max_bytes):
                _, dropped = self._data.popitem(last=False)
                self._bytes -= len(dropped)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._data), "bytes": self._bytes, "hits": self.hits,
                "misses": self.misses, "generation": self.generation}


TILE_CACHE = TileCache()
