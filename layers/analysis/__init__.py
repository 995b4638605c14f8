"""The supervisor's month: figures compared and ranked, the cases behind a figure, a grid's
summary, scoring, trends, and 研判 (hot spots, recurring places, spikes, hot topics).

The city's time zone and metric CRS come from here (one place each), so the city profile can
replace them at merge: nothing in this package writes a zone name or an EPSG code of its own.
"""

from __future__ import annotations

from layers.assessment import CITY_TZ

# Metric CRS for distances (DBSCAN's eps, heat cells): CGCS2000 3° Gauss–Krüger CM 120°E.
METRIC_SRID = 4549

__all__ = ["CITY_TZ", "METRIC_SRID"]
