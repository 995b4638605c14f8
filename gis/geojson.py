"""GeoJSON shapes as TypedDicts (RFC 7946), for the functions that build FeatureCollections.

The geometry stays a plain mapping (what ``shapely.geometry.mapping`` or ``ST_AsGeoJSON``
give); the properties and the collection's foreign members are typed by the caller::

    class TrackProps(TypedDict): ...
    class TrackDay(FeatureCollection[Feature[TrackProps]]):
        properties: DayProps

The API's pydantic models for the same shapes are in ``app/geojson_schemas.py``.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

P = TypeVar("P")
F = TypeVar("F")

Geometry = dict[str, Any]
"""A GeoJSON geometry object (``type``, ``coordinates``; PostGIS may add ``crs``)."""


class Feature(TypedDict, Generic[P]):
    """A GeoJSON Feature with typed ``properties`` (``id`` where the producer gives one)."""

    type: Literal["Feature"]
    id: NotRequired[str]
    geometry: Geometry | None
    properties: P


class FeatureCollection(TypedDict, Generic[F]):
    """A GeoJSON FeatureCollection of ``F``; subclasses add the collection's foreign members."""

    type: Literal["FeatureCollection"]
    features: list[F]
