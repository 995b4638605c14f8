"""Errors of the jurisdiction domain. ``app/errors.py`` maps each to an HTTP status once."""

from __future__ import annotations

from gis.errors import DomainError


class GridError(DomainError):
    """Errors of the jurisdiction domain."""

    code = "grid_error"


class RegionNotFound(GridError):
    code = "region_not_found"


class InvalidCode(GridError):
    code = "invalid_code"


class ImportRejected(GridError):
    """A file could not be imported; ``detail['errors']`` lists every problem found."""

    code = "import_rejected"


class TopologyError(GridError):
    code = "topology_error"


class PreconditionRequired(GridError):
    """A write that must name the state it edits (an ``If-Match`` ETag) and did not (428)."""

    code = "precondition_required"


class Conflict(GridError):
    """The change collides with the current state (a duplicate, a stale version)."""

    code = "conflict"
