"""Domain errors of the ``gis`` kernel.

Every error carries a ``code`` (snake_case, stable, for clients), a ``message`` (one human
sentence) and a JSON-serialisable ``detail``. ``app/errors.py`` maps them to HTTP once; other
packages subclass :class:`GisError`'s pattern for their own errors.

>>> err = UnknownCRS("Unknown CRS 'foo'.", detail={"field": "crs", "value": "foo"})
>>> err.code, err.message, err.detail
('unknown_crs', "Unknown CRS 'foo'.", {'field': 'crs', 'value': 'foo'})
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every package's errors: ``code``, ``message`` and a JSON-serialisable ``detail``.

    It lives here, in the lowest layer, so ``grids``, ``layers`` and ``app`` share one shape and
    ``app/errors.py`` can map them all once.
    """

    code: str = "error"

    def __init__(self, message: str, *, detail: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else {}
        if code:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class GisError(DomainError):
    """Errors of the coordinate and geometry kernel."""

    code = "gis_error"


class UnknownCRS(GisError):
    """A CRS name or code that is neither an alias we know nor an EPSG code pyproj knows."""

    code = "unknown_crs"


class InvalidBBox(GisError):
    """A bounding box that is not four finite numbers ``minlon,minlat,maxlon,maxlat`` in range."""

    code = "invalid_bbox"


class InvalidCoordinate(GisError):
    """A coordinate that is not a finite number (``nan``) or out of range (``out_of_range``)."""

    code = "invalid_coordinate"


class SwappedCoordinate(GisError):
    """Latitude and longitude given in the wrong order; ``detail['corrected']`` has the fix."""

    code = "swapped_coordinate"


class PointFarOutside(GisError):
    """A point farther outside the reference area (the city) than allowed."""

    code = "point_far_outside"


class InvalidGeometry(GisError):
    """A geometry that is not valid (self-intersection, ring not closed, ...)."""

    code = "invalid_geometry"
