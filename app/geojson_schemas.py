"""GeoJSON response models (RFC 7946): one reusable FeatureCollection, typed by its features.

``geometry`` stays a mapping (PostGIS may add a ``crs`` member, and the shapes are many);
``properties`` are typed per route where they are stable. Routes subclass the collection to add
their foreign members (``cases``, ``properties``, ``from_version``…). Field order is the order
the producers write (JSON keys come out in declaration order), so the bytes clients see did not
change when the routes got these models. The layers' TypedDicts for the same shapes are in
``gis/geojson.py``.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

P = TypeVar("P")
F = TypeVar("F")


class Feature(BaseModel, Generic[P]):
    """A Feature with typed properties (RFC 7946 member order: type, geometry, properties)."""

    type: Literal["Feature"]
    geometry: dict[str, Any] | None
    properties: P


class IdFeature(BaseModel, Generic[P]):
    """A Feature with a string ``id`` (``change:code``, ``side:code``)."""

    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None
    properties: P


class FeatureCollection(BaseModel, Generic[F]):
    """A FeatureCollection of ``F``."""

    type: Literal["FeatureCollection"]
    features: list[F]
