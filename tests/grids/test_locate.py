"""The locator on the tiny city: edges, vertices, gaps, outside, fallbacks, history, batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Connection, text

from grids.locate import load_snapshot, locate_at
from tests.tiny_city import C1, C2, G1, G2, G3, STREET, T0, U, at


def postgis_covering(conn: Connection, lon: float, lat: float) -> list[str]:
    """Every grid whose boundary covers the point, by PostGIS ST_Covers (the ground truth)."""
    return list(conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND "
        "ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4490)) ORDER BY code"),
        {"x": lon, "y": lat}).scalars())


def test_inside_names_primary_and_backup(tiny_city: Connection) -> None:
    snap = load_snapshot(tiny_city)
    ans = snap.locate(*at(0.5, 0.5))
    assert ans["status"] == "inside"
    assert ans["grid"]["code"] == G1
    assert [c["code"] for c in ans["chain"]] == [G1, C1, STREET, "990100000000"]
    assert ans["responsible"]["code"] == "W1" and ans["responsible"]["duty"] == "primary"
    assert ans["backup"]["code"] == "B1"
    assert ans["fallback"] is None
    assert ans["boundary_version"] == snap.version_id


@pytest.mark.parametrize(
    ("x", "y", "expected", "covering"),
    [
        (1.0, 0.5, G1, [G1, G2]),  # on the edge G1|G2: both cover, lowest code wins
        (1.0, 0.0, G1, [G1, G2]),  # a vertex shared by G1 and G2 on the city's edge
        (2.0, 0.5, G2, [G2, G3]),  # G3's corner on G2's edge
        (2.0, 0.25, G2, [G2, G3]),  # the edge G2|G3
        (0.0, 0.5, G1, [G1]),  # the city's outer edge still counts as inside (covers)
    ],
)
def test_edges_and_vertices_follow_the_documented_rule(
    tiny_city: Connection, x: float, y: float, expected: str, covering: list[str]
) -> None:
    lon, lat = at(x, y)
    assert postgis_covering(tiny_city, lon, lat) == covering  # the geometry really is shared
    snap = load_snapshot(tiny_city)
    assert snap.locate(lon, lat)["grid"]["code"] == expected
    assert snap.grids.covering(lon, lat) == sorted(
        int(np.flatnonzero([snap.regions[i].code == c for i in snap.grid_ids])[0]) for c in covering
    )
    # Batch paths (exact and raster) give the same answer as the single lookup.
    region, status = snap.locate_many(np.array([lon]), np.array([lat]))
    assert snap.regions[region[0]].code == expected and status[0] == 0
    snap.grids.build_raster(U / 10)
    region, _ = snap.locate_many(np.array([lon]), np.array([lat]))
    assert snap.regions[region[0]].code == expected


def test_unavailable_grid_staff_fall_back_to_the_community_head(tiny_city: Connection) -> None:
    ans = load_snapshot(tiny_city).locate(*at(1.5, 0.5))
    assert ans["grid"]["code"] == G2
    assert ans["responsible"]["code"] == "H1"
    assert ans["fallback"] == "community_head"
    assert ans["backup"]["code"] == "SO"  # next available up the chain
    assert {p["code"] for p in ans["unavailable"]} == {"W2", "B2"}


def test_no_available_head_falls_back_to_the_street_officer(tiny_city: Connection) -> None:
    ans = load_snapshot(tiny_city).locate(*at(2.5, 0.25))
    assert ans["grid"]["code"] == G3
    assert ans["responsible"]["code"] == "SO" and ans["fallback"] == "street_officer"
    assert ans["backup"]["code"] == "CD"


def test_everyone_unavailable_reaches_the_command_centre(tiny_city: Connection) -> None:
    tiny_city.execute(text("UPDATE staff SET status = 'on_leave' WHERE code = 'SO'"))
    ans = load_snapshot(tiny_city).locate(*at(2.5, 0.25))
    assert ans["responsible"]["code"] == "CD" and ans["fallback"] == "command_centre"
    tiny_city.execute(text("UPDATE staff SET status = 'seconded' WHERE code = 'CD'"))
    ans = load_snapshot(tiny_city).locate(*at(2.5, 0.25))
    assert ans["responsible"] is None and ans["fallback"] == "none_available"


def test_gap_falls_back_to_the_smallest_covering_region(tiny_city: Connection) -> None:
    ans = load_snapshot(tiny_city).locate(*at(2.5, 0.75))
    assert ans["status"] == "gap"
    assert ans["grid"] is None
    assert ans["region"]["code"] == C2
    assert [c["code"] for c in ans["chain"]][:2] == [C2, STREET]
    assert ans["responsible"]["code"] == "SO"  # C2's head is on leave
    assert ans["fallback"] == "street_officer"


def test_outside_names_the_nearest_grid_and_distance(tiny_city: Connection) -> None:
    lon, lat = at(3.5, 0.25)  # 0.5 units (≈ 486 m at 29°N) east of G3
    ans = load_snapshot(tiny_city).locate(lon, lat)
    assert ans["status"] == "outside"
    assert ans["nearest"]["code"] == G3
    expected = tiny_city.execute(text(
        "SELECT ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4490)::geography) "
        "FROM region_current WHERE code = :c"), {"x": lon, "y": lat, "c": G3}).scalar_one()
    assert ans["nearest"]["distance_m"] == pytest.approx(expected, abs=1.0)
    assert 400 < ans["nearest"]["distance_m"] < 600


def test_history_answers_as_of_a_past_time(tiny_city: Connection) -> None:
    change = T0 + timedelta(days=30)
    tiny_city.execute(text(
        "UPDATE assignment SET valid_to = :t FROM staff s WHERE s.id = assignment.staff_id "
        "AND s.code = 'W1'"), {"t": change})
    tiny_city.execute(text(
        "INSERT INTO staff (code, name, phone, role) VALUES ('W9', '王九', '19900009999', "
        "'full_time')"))
    tiny_city.execute(text(
        "INSERT INTO assignment (staff_id, region_id, duty, valid_from) SELECT s.id, r.id, "
        "'primary', :t FROM staff s, region r WHERE s.code = 'W9' AND r.code = :g"),
        {"t": change, "g": G1})
    lon, lat = at(0.5, 0.5)
    before = locate_at(tiny_city, lon, lat, at=change - timedelta(seconds=1))
    after = locate_at(tiny_city, lon, lat, at=change + timedelta(seconds=1))
    assert before["responsible"]["code"] == "W1"
    assert after["responsible"]["code"] == "W9"
    assert load_snapshot(tiny_city).locate(lon, lat)["responsible"]["code"] == "W9"
    # Before the city existed there is nothing to answer with.
    assert locate_at(tiny_city, lon, lat, at=T0 - timedelta(days=1))["status"] == "outside"


def test_history_agrees_with_the_snapshot(tiny_city: Connection) -> None:
    snap = load_snapshot(tiny_city)
    now = datetime.now(UTC)
    for x, y in [(0.5, 0.5), (1.0, 0.5), (1.5, 0.2), (2.5, 0.25), (2.5, 0.75), (2.0, 0.5)]:
        live = snap.locate(*at(x, y))
        past = locate_at(tiny_city, *at(x, y), at=now)
        for key in ("status", "region", "chain", "responsible", "backup", "fallback"):
            assert live[key] == past[key], (x, y, key)


def test_batch_matches_single_lookups(tiny_city: Connection) -> None:
    snap = load_snapshot(tiny_city)
    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.uniform(-0.5, 3.5, 2000), [1.0, 2.0, 2.0, 0.0, 3.0]])
    ys = np.concatenate([rng.uniform(-0.2, 1.2, 2000), [0.5, 0.5, 0.25, 0.0, 1.0]])
    lon, lat = at(xs, ys)
    region, status = snap.locate_many(lon, lat)
    for i in range(len(xs)):
        single = snap.locate(lon[i], lat[i])
        want = single["region"]["code"] if single["region"] else None
        got = snap.regions[region[i]].code if region[i] >= 0 else None
        assert got == want, (xs[i], ys[i])
        assert ["inside", "gap", "outside"][status[i]] == single["status"]


def test_a_people_only_reload_keeps_the_indexes(tiny_city: Connection) -> None:
    from grids.locate import reload_staff

    snap = load_snapshot(tiny_city)
    tiny_city.execute(text("UPDATE staff SET status = 'on_leave' WHERE code = 'W1'"))
    fresh = reload_staff(tiny_city, snap)
    assert fresh.grids is snap.grids and fresh.areas is snap.areas
    assert fresh.locate(*at(0.5, 0.5))["responsible"]["code"] == "B1"
    assert snap.locate(*at(0.5, 0.5))["responsible"]["code"] == "W1"  # the old one is untouched
