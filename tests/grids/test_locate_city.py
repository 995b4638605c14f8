"""The locator on the demo city against brute-force PostGIS ``ST_Covers``, point by point."""

from __future__ import annotations

import numpy as np
import shapely
from sqlalchemy import Connection, text

from grids.locate import load_snapshot


def postgis_answers(conn: Connection, lon: np.ndarray, lat: np.ndarray) -> list[str | None]:
    """The lowest-code grid covering each point, by PostGIS alone (the documented rule)."""
    conn.execute(text("CREATE TEMP TABLE probe (id integer, geom geometry(Point, 4490)) "
                      "ON COMMIT DROP"))
    raw = conn.connection.driver_connection
    with raw.cursor().copy("COPY probe (id, geom) FROM STDIN") as copy:
        for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
            copy.write_row((i, f"SRID=4490;POINT({x!r} {y!r})"))
    conn.execute(text("CREATE INDEX ON probe USING gist (geom); ANALYZE probe"))
    # Loop over grids (few) rather than points (many): the plan the anchors recommend.
    rows = conn.execute(text(
        "SELECT p.id, min(g.code) FROM region_current g "
        "JOIN probe p ON ST_Covers(g.geom, p.geom) WHERE g.level = 'grid' GROUP BY p.id"))
    out: list[str | None] = [None] * len(lon)
    for i, code in rows:
        out[i] = code
    return out


def test_100k_random_points_and_every_shared_vertex_agree_with_postgis(conn: Connection) -> None:
    snap = load_snapshot(conn)
    city = snap.areas.polygons[-1]
    xmin, ymin, xmax, ymax = shapely.bounds(city)
    rng = np.random.default_rng(2026)
    lon = rng.uniform(xmin, xmax, 100_000)
    lat = rng.uniform(ymin, ymax, 100_000)
    # The hard cases: 5,000 vertices of grid boundaries (shared by 2–3 grids) and edge midpoints.
    coords = shapely.get_coordinates(shapely.boundary(snap.grids.polygons))
    pick = rng.choice(len(coords) - 1, 5000, replace=False)
    mids = (coords[pick] + coords[pick + 1]) / 2
    lon = np.concatenate([lon, coords[pick, 0], mids[:, 0]])
    lat = np.concatenate([lat, coords[pick, 1], mids[:, 1]])

    truth = postgis_answers(conn, lon, lat)
    snap.grids.build_raster(1e-4)
    region, status = snap.locate_many(lon, lat)
    ours = [snap.regions[r].code if s == 0 else None for r, s in zip(region, status, strict=True)]
    disagree = [(lon[i], lat[i], truth[i], ours[i]) for i in range(len(lon)) if truth[i] != ours[i]]
    assert not disagree, disagree[:10]
    # The single-lookup path reads the same table: check it on every vertex and midpoint and on a
    # sample of the random points.
    sample = np.r_[np.arange(100_000, len(lon)), rng.choice(100_000, 10_000, replace=False)]
    single = [snap.grids.query_one(lon[i], lat[i]) for i in sample]
    codes = [snap.regions[snap.grid_ids[g]].code if g >= 0 else None for g in single]
    assert codes == [truth[i] for i in sample]
    inside = sum(t is not None for t in truth[:100_000])
    assert inside > 35_000  # the city fills ~43 % of its bbox: the grids really were exercised
