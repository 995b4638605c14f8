"""The nearest grid to a point outside every grid (the locator's outline-edge index), on real
PostGIS data, against a brute-force oracle: ``shapely`` distance from the point to every grid
read from PostGIS, the lowest code among the nearest, the geodesic metres to the nearest point.

PostGIS decides which points are outside every grid (``ST_Covers``); the demo city for near and
far (50-100 km) points, the tiny city for a gap and for ties at a vertex two grids share.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import Connection, text

from grids.locate import load_snapshot
from tests.tiny_city import G1, G2, G3, at

GEOD = Geod(ellps="GRS80")


def grids_from_postgis(conn: Connection) -> tuple[list[str], np.ndarray]:
    rows = conn.execute(text("SELECT code, ST_AsBinary(geom) AS wkb FROM region_current "
                             "WHERE level = 'grid' ORDER BY code")).all()
    return [r.code for r in rows], shapely.from_wkb([r.wkb for r in rows])


def outside_every_grid(conn: Connection, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no grid covers, by PostGIS."""
    rows = conn.execute(text(
        "SELECT p.i FROM unnest(CAST(:x AS float8[]), CAST(:y AS float8[])) "
        "WITH ORDINALITY AS p(x, y, i) WHERE NOT EXISTS (SELECT 1 FROM region_current g "
        "WHERE g.level = 'grid' AND ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4490)))"
        " ORDER BY p.i"), {"x": x.tolist(), "y": y.tolist()}).scalars().all()
    return np.asarray(rows, dtype=np.int64) - 1


def oracle(codes: list[str], polys: np.ndarray, x: np.ndarray, y: np.ndarray
           ) -> tuple[list[str], np.ndarray]:
    pts = shapely.points(x, y)
    dist = shapely.distance(polys[None, :], pts[:, None])
    best = dist.argmin(axis=1)  # first minimum: the lowest code (rows are in code order)
    ends = shapely.get_coordinates(shapely.shortest_line(polys[best], pts))[0::2]
    _, _, metres = GEOD.inv(x, y, ends[:, 0], ends[:, 1])
    return [codes[i] for i in best], np.asarray(metres)


def test_outside_points_match_the_brute_force_oracle(conn: Connection) -> None:
    codes, polys = grids_from_postgis(conn)
    snap = load_snapshot(conn)
    x0, y0, x1, y1 = shapely.total_bounds(polys)
    rng = np.random.default_rng(2026)
    near_x = rng.uniform(x0 - 0.03, x1 + 0.03, 3000)
    near_y = rng.uniform(y0 - 0.03, y1 + 0.03, 3000)
    angle = rng.uniform(0, 2 * np.pi, 60)
    reach = rng.uniform(0.5, 1.0, 60)  # degrees: 50-100 km off the city
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    far_x = cx + np.cos(angle) * ((x1 - x0) / 2 + reach)
    far_y = cy + np.sin(angle) * ((y1 - y0) / 2 + reach)
    x, y = np.r_[near_x, far_x], np.r_[near_y, far_y]
    out = outside_every_grid(conn, x, y)
    near_out = out[out < 3000][:400]
    pick = np.r_[near_out, out[out >= 3000]]
    x, y = x[pick], y[pick]
    assert len(near_out) == 400 and len(pick) == 460
    region, metres = snap.nearest_many(x, y)
    want_codes, want_metres = oracle(codes, polys, x, y)
    assert [snap.regions[i].code for i in region] == want_codes
    assert np.array_equal(metres, want_metres)  # the same nearest point, bit for bit
    assert metres[-60:].min() > 40_000  # the far ones are far
    # the single lookup says the same, rounded to 0.1 m
    for i in range(0, len(x), 23):
        answer = snap.locate(float(x[i]), float(y[i]))
        if answer["status"] == "outside":
            assert answer["nearest"]["code"] == want_codes[i]
            assert answer["nearest"]["distance_m"] == round(float(want_metres[i]), 1)


@pytest.mark.parametrize(("point", "code", "nearest", "tied", "status"), [
    (at(1, 1.5), G1, at(1, 1), 2, "outside"),  # above the top corner G1 and G2 share
    (at(1, -0.5), G1, at(1, 0), 2, "outside"),  # below their bottom corner
    (at(2, -0.25), G2, at(2, 0), 2, "outside"),  # below the corner G2 and G3 share
    (at(2.5, 0.75), G3, at(2.5, 0.5), 1, "gap"),  # in C2 north of G3: G3's top edge
])
def test_ties_at_a_shared_vertex_go_to_the_lowest_code(
        tiny_city: Connection, point: tuple[float, float], code: str,
        nearest: tuple[float, float], tied: int, status: str) -> None:
    snap = load_snapshot(tiny_city)
    codes, polys = grids_from_postgis(tiny_city)
    d = shapely.distance(polys, shapely.Point(*point))
    assert (d == d.min()).sum() == tied  # 2: a real tie between two grids
    assert snap.locate(*point)["status"] == status
    region, metres = snap.nearest_many(np.array([point[0]]), np.array([point[1]]))
    assert snap.regions[int(region[0])].code == code
    _, _, want = GEOD.inv(point[0], point[1], nearest[0], nearest[1])
    assert metres[0] == want
    if status == "gap":
        return
    answer = snap.locate(*point)
    assert answer["nearest"]["code"] == code and code in (G1, G2) and code < G3
    assert answer["nearest"]["distance_m"] == round(want, 1)
    assert oracle(codes, polys, np.array([point[0]]), np.array([point[1]]))[0] == [code]
