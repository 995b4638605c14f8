"""The supervisor's month: figures compared and ranked, the cases behind a figure, a grid's
summary, scoring, trends, and 研判 (hot spots, recurring places, spikes, hot topics).

The city's time zone and metric CRS come from the city profile (``grids.city.profile``): nothing
in this package writes a zone name or an EPSG code of its own.
"""
