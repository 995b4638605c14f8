"""A point a few metres inside one grid from its neighbour, found by PostGIS alone (metres in the
city's metric CRS): for the lookup-uncertainty tests (API and page)."""

from __future__ import annotations

from sqlalchemy import Connection, text

EDGE_SQL = """
        WITH pair AS (
            SELECT a.code AS a, b.code AS b, a.geom AS ga, b.geom AS gb,
                   ST_LineMerge(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) AS line
            FROM region_current a JOIN region_current b ON a.code < b.code
             AND a.level = 'grid' AND b.level = 'grid' AND a.code LIKE '330782001%'
             AND b.code LIKE '330782001%' AND ST_Touches(a.geom, b.geom)
            LIMIT 20),
        mid AS (
            SELECT pair.*, ST_Transform(ST_LineInterpolatePoint(ST_GeometryN(line, 1), 0.5),
                                        citygrid_metric_srid()) AS m
            FROM pair WHERE ST_Length(ST_Transform(line, citygrid_metric_srid())) > 40),
        tries AS (
            SELECT mid.*, ST_Transform(ST_Translate(m, dx, dy), 4490) AS p
            FROM mid, (VALUES (6, 0), (-6, 0), (0, 6), (0, -6), (4, 4), (-4, -4), (4, -4),
                              (-4, 4)) d(dx, dy))
        SELECT a, b, ST_X(p) AS lon, ST_Y(p) AS lat,
               ST_Distance(ST_Transform(ST_Boundary(ga), citygrid_metric_srid()),
                           ST_Transform(p, citygrid_metric_srid())) AS edge_m,
               ST_Distance(ST_Transform(gb, citygrid_metric_srid()),
                           ST_Transform(p, citygrid_metric_srid())) AS to_b
        FROM tries WHERE ST_Covers(ga, p) AND NOT ST_Intersects(gb, p)
        ORDER BY a, b LIMIT 1"""


def edge_point(conn: Connection) -> dict:
    """``a`` (the grid the point is in), ``b`` (the neighbour), ``lon``/``lat`` (WGS84),
    ``edge_m`` (to a's edge) and ``to_b`` (to b), metres."""
    row = conn.execute(text(EDGE_SQL)).mappings().first()
    assert row is not None
    return dict(row)
