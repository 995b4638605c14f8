"""Errors of the jurisdiction domain. ``app/errors.py`` maps each to an HTTP status once."""

from __future__ import annotations

from typing import Any


class GridError(Exception):
    """Base: a machine-readable ``code``, a human ``message`` and a JSON-able ``detail``."""

    code = "grid_error"

    def __init__(self, message: str, *, detail: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else {}
        if code:
            self.code = code


class RegionNotFound(GridError):
    code = "region_not_found"


class InvalidCode(GridError):
    code = "invalid_code"


class ImportRejected(GridError):
    """A file could not be imported; ``detail['errors']`` lists every problem found."""

    code = "import_rejected"


class TopologyError(GridError):
    code = "topology_error"


class Conflict(GridError):
    """The change collides with the current state (a duplicate, a stale version)."""

    code = "conflict"
