"""Heat bins, choropleth counts and vector tiles on the demo city, with incidents made here.

The test database holds the demo city but no demo incidents: each test inserts its own in its
rolled-back transaction (points spread inside known grids with ``ST_GeneratePoints``).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from grids.access import Principal, Scope
from layers import maps

WINDOW = {"since": "2026-10-01T00:00:00+08:00", "until": "2026-11-01T00:00:00+08:00"}


def grid_in(conn: Connection, prefix: str, offset: int = 0) -> str:
    return conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE :p "
        "ORDER BY code OFFSET :o LIMIT 1"), {"p": prefix + "%", "o": offset}).scalar_one()


def scatter(conn: Connection, grid: str, n: int, *, tag: str, state: str = "handling",
            category: str = "E0101", received_at: str = "2026-10-10T10:00:00+08:00") -> None:
    """``n`` incidents at random points inside ``grid``, placed there as intake would."""
    conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, geom, state, region_code, "
        "grid_code, community_code, street_code, received_at, due_at) "
        "SELECT 'hotline_12345', :tag || '-' || (row_number() OVER ()), c.id, d.geom, :state, "
        "r.code, r.code, left(r.code, 12), left(r.code, 9) || '000', "
        "CAST(:at AS timestamptz), CAST(:at AS timestamptz) + interval '5 days' "
        "FROM region_current r CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(r.geom, :n, 7)) d, "
        "category c WHERE r.code = :g AND c.code = :cat"),
        {"tag": tag, "n": n, "state": state, "g": grid, "cat": category, "at": received_at})


def tile_xy(conn: Connection, grid: str, z: int) -> tuple[int, int]:
    """The z/x/y tile holding a point inside ``grid``."""
    lon, lat = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
        "FROM region_current WHERE code = :g"), {"g": grid}).one()
    import math

    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def mvt_features(conn: Connection, tile: bytes) -> int:
    """Features in a tile, counted without a decoder: PostGIS cannot read MVT, so count the
    feature tag (field 2, wire type 2 = 0x12) inside the layer message."""
    return _count_features(tile)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, value
        elif wire == 2:
            size, i = _varint(buf, i)
            yield field, buf[i:i + size]
            i += size
        elif wire == 5:
            yield field, buf[i:i + 4]
            i += 4
        else:
            raise ValueError(f"wire type {wire}")


def _count_features(tile: bytes) -> int:
    return sum(1 for f, layer in _fields(tile) if f == 3
               for g, _ in _fields(layer) if g == 2)


def layer_name(tile: bytes) -> str:
    layer = next(v for f, v in _fields(tile) if f == 3)
    return next(v for f, v in _fields(layer) if f == 1).decode()


# -- heat ----------------------------------------------------------------------------------------

def test_square_bins_add_up_to_the_raw_count(conn: Connection) -> None:
    a, b = grid_in(conn, "330782001"), grid_in(conn, "330782002")
    scatter(conn, a, 400, tag="heat-a")
    scatter(conn, b, 300, tag="heat-b")
    admin = Principal.system()
    f = maps.IncidentFilter(since=None, until=None, categories=("E01",))
    out = maps.heat(conn, principal=admin, zoom=14, filters=f)
    assert out["kind"] == "bins" and out["total"] >= 700
    raw = conn.execute(text(
        "SELECT count(*) FROM incident i JOIN category c ON c.id = i.category_id "
        "WHERE i.geom IS NOT NULL AND (c.code = 'E01' OR "
        "c.parent_id = (SELECT id FROM category WHERE code = 'E01'))")).scalar()
    assert sum(ft["properties"]["count"] for ft in out["features"]) == out["total"] == raw
    assert len(out["features"]) < out["total"]  # binned, not points
    ring = out["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 5 and 119 < ring[0][0] < 121  # a square, in lon/lat


def test_hexagons_count_each_point_once(conn: Connection) -> None:
    a = grid_in(conn, "330782001")
    scatter(conn, a, 600, tag="hex")
    out = maps.heat(conn, principal=Principal.system(), zoom=15, shape="hex",
                    filters=maps.IncidentFilter(region=a))
    assert out["kind"] == "bins" and out["total"] == 600
    assert sum(ft["properties"]["count"] for ft in out["features"]) == 600
    assert len(out["features"][0]["geometry"]["coordinates"][0]) == 7


def test_few_matches_come_back_as_points_and_bbox_cuts(conn: Connection) -> None:
    a = grid_in(conn, "330782001")
    scatter(conn, a, 12, tag="few", state="closed")
    f = maps.IncidentFilter(states=("closed",), region=a)
    out = maps.heat(conn, principal=Principal.system(), zoom=12, filters=f)
    assert out["kind"] == "points" and out["total"] == 12 == len(out["features"])
    assert set(out["features"][0]["properties"]) == {"id", "state", "category", "count"}
    far = maps.heat(conn, principal=Principal.system(), zoom=12, filters=f,
                    bbox=(100.0, 20.0, 101.0, 21.0))
    assert far["total"] == 0


def test_heat_and_counts_keep_to_the_jurisdiction(anonymous: TestClient, headers,
                                                  conn: Connection) -> None:
    inside, outside = grid_in(conn, "330782001"), grid_in(conn, "330782002")
    scatter(conn, inside, 30, tag="j-in")
    scatter(conn, outside, 50, tag="j-out")
    sup = anonymous.get("/maps/heat", params={"zoom": 13, **WINDOW},
                        headers=headers("t_supervisor"))
    assert sup.status_code == 200, sup.text
    assert sup.json()["total"] == 30
    disp = anonymous.get("/maps/heat", params={"zoom": 13, **WINDOW},
                         headers=headers("t_dispatcher")).json()
    assert disp["total"] == 80  # dispatchers see the whole city
    # a street-wide jurisdiction and a whole month: both answered from the tallies
    assert sup.json()["source"] == disp["source"] == "tally"

    res = anonymous.get("/maps/counts", params={"level": "grid", **WINDOW},
                        headers=headers("t_supervisor"))
    assert res.status_code == 200, res.text
    body = res.json()
    assert all(i["code"].startswith("330782001") for i in body["items"])
    row = next(i for i in body["items"] if i["code"] == inside)
    assert row["incidents"] == 30 == row["open"] and row["per_1000_households"] is None
    assert row["per_km2"] == pytest.approx(30 / row["area_km2"], rel=1e-3)
    assert body["total"] == 30 and "household" in body["notes"]["per_1000_households"]
    street = anonymous.get("/maps/counts", params={"level": "street", **WINDOW},
                           headers=headers("t_dispatcher")).json()
    by = {i["code"]: i["incidents"] for i in street["items"]}
    assert by["330782001000"] == 30 and by["330782002000"] == 50
    assert anonymous.get("/maps/heat", params={"zoom": 13}).status_code == 401


# -- tiles ---------------------------------------------------------------------------------------

def test_grid_tile_carries_counts_and_matches_postgis(conn: Connection) -> None:
    grid = grid_in(conn, "330782001")
    scatter(conn, grid, 20, tag="tile")
    x, y = tile_xy(conn, grid, 14)
    cache = maps.TileCache()
    data = maps.tile(conn, "grids", 14, x, y, principal=Principal.system(), cache=cache)
    assert data and layer_name(data) == "grids"
    expected = conn.execute(text(
        "SELECT count(*) FROM region_current WHERE level = 'grid' AND "
        "ST_Intersects(ST_Transform(geom, 3857), "
        "ST_TileEnvelope(14, :x, :y, margin => :m))"),  # the tile and its 64/4096 buffer
        {"x": x, "y": y, "m": maps.MVT_BUFFER / maps.MVT_EXTENT}).scalar()
    assert mvt_features(conn, data) == expected > 0
    assert b"incidents" in data and grid.encode() in data
    # The supervisor of another street gets no grids of 稠城 in the same tile.
    other = Principal.make("u", "supervisor", Scope.of("330782002000"))
    theirs = maps.tile(conn, "grids", 14, x, y, principal=other, cache=cache)
    assert grid.encode() not in theirs


def decoded(tile: bytes) -> list[tuple[tuple[tuple[str, bytes], ...], bytes]]:
    """Each feature of a one-layer tile as (its attributes as key/encoded-value pairs, its
    geometry commands), sorted: two tiles holding the same features in another order agree."""
    layer = next(v for f, v in _fields(tile) if f == 3)
    keys = [v.decode() for f, v in _fields(layer) if f == 3]
    values = [v for f, v in _fields(layer) if f == 4]
    out = []
    for f, feature in _fields(layer):
        if f != 2:
            continue
        parts = dict(_fields(feature))
        tags, i = [], 0
        packed = parts.get(2, b"")
        while i < len(packed):
            k, i = _varint(packed, i)
            v, i = _varint(packed, i)
            tags.append((keys[k], values[v]))
        out.append((tuple(sorted(tags)), parts[4]))
    return sorted(out)


def test_pre_cut_grid_tiles_equal_the_ones_cut_on_the_fly(conn: Connection) -> None:
    """Migration 0009 cuts the outlines per tile up to z13: the same features, bit for bit in
    each feature's geometry and attributes, as cutting them in the query (z14+ always does)."""
    grid = grid_in(conn, "330782001")
    scatter(conn, grid, 12, tag="pieces")
    admin = Principal.system()
    for z in (6, 10, 12, 13):
        x, y = tile_xy(conn, grid, z)
        cut = maps.tile(conn, "grids", z, x, y, principal=admin, cache=None)
        live = maps.tile(conn, "grids", z, x, y, principal=admin, cache=None, pretiled=False)
        assert cut and decoded(cut) == decoded(live), z
        assert grid.encode() in cut
    assert conn.execute(text("SELECT count(*) FROM grid_tile_piece WHERE z > :z"),
                        {"z": maps.PRETILED_MAX_ZOOM}).scalar() == 0


def test_pre_cut_pieces_follow_a_boundary_edit(conn: Connection) -> None:
    grid = grid_in(conn, "330782001", 3)
    admin = Principal.system()
    x, y = tile_xy(conn, grid, 12)
    before = maps.tile(conn, "grids", 12, x, y, principal=admin, cache=None)
    conn.execute(text(
        "UPDATE region_boundary b SET geom = ST_Multi(ST_Buffer(b.geom, -0.0005)) "
        "FROM region_current r WHERE r.boundary_id = b.id AND r.code = :g"), {"g": grid})
    after = maps.tile(conn, "grids", 12, x, y, principal=admin, cache=None)
    live = maps.tile(conn, "grids", 12, x, y, principal=admin, cache=None, pretiled=False)
    assert decoded(after) == decoded(live) != decoded(before)
    assert conn.execute(text(
        "SELECT count(*) FROM grid_tile_piece p JOIN region_current r "
        "ON r.boundary_id = p.boundary_id WHERE r.code = :g AND p.z = 12"), {"g": grid}).scalar()


def test_incident_and_bin_tiles(conn: Connection) -> None:
    grid = grid_in(conn, "330782001")
    scatter(conn, grid, 25, tag="pts")
    admin = Principal.system()
    f = maps.IncidentFilter(region=grid)
    x, y = tile_xy(conn, grid, 16)
    points = maps.tile(conn, "incidents", 16, x, y, principal=admin, filters=f, cache=None)
    in_tile = conn.execute(text(
        "SELECT count(*) FROM incident WHERE region_code = :g AND "
        "ST_Intersects(ST_Transform(geom, 3857), ST_TileEnvelope(16, :x, :y))"),
        {"g": grid, "x": x, "y": y}).scalar()
    assert mvt_features(conn, points) == in_tile
    x12, y12 = tile_xy(conn, grid, 12)
    assert maps.tile(conn, "incidents", 12, x12, y12, principal=admin, filters=f) == b""
    bins = maps.tile(conn, "bins", 12, x12, y12, principal=admin, filters=f, cache=None)
    assert layer_name(bins) == "bins" and 0 < mvt_features(conn, bins) <= 25


def test_a_tile_changes_when_the_data_under_it_changes(anonymous: TestClient, headers,
                                                       conn: Connection) -> None:
    """Through the API and its process cache: the data version (a sequence bumped by the
    incident trigger) is part of the cache key, so the tile changes inside this very transaction,
    with no NOTIFY (which never leaves a rolled-back transaction) and no explicit invalidation."""
    grid = grid_in(conn, "330782001")
    x, y = tile_xy(conn, grid, 15)
    url = f"/tiles/grids/15/{x}/{y}.mvt"
    h = headers("t_supervisor")
    first = anonymous.get(url, headers=h)
    assert first.status_code == 200 and first.headers["content-type"].startswith(
        "application/vnd.mapbox-vector-tile")
    again = anonymous.get(url, headers=h)
    assert again.content == first.content
    hits = maps.TILE_CACHE.hits
    assert anonymous.get(url, headers=h).content == first.content
    assert maps.TILE_CACHE.hits == hits + 1  # served from the cache

    version = conn.execute(text("SELECT pg_sequence_last_value('map_data_version')")).scalar()
    generation = maps.TILE_CACHE.generation
    scatter(conn, grid, 5, tag="stale")
    assert conn.execute(text("SELECT pg_sequence_last_value('map_data_version')")
                        ).scalar() > (version or 0)
    changed = anonymous.get(url, headers=h)
    assert changed.status_code == 200 and changed.content != first.content
    assert maps.TILE_CACHE.generation == generation  # not invalidated: the key changed


def test_tiles_go_gzipped_to_who_accepts_it(anonymous: TestClient, headers,
                                            conn: Connection) -> None:
    import gzip

    from app.routers.maps import _accepts_gzip

    grid = grid_in(conn, "330782001")
    x, y = tile_xy(conn, grid, 12)
    url = f"/tiles/grids/12/{x}/{y}.mvt"
    h = headers("t_supervisor")
    plain = anonymous.get(url, headers=h | {"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    for _ in range(2):  # drawn, then from the cache
        packed = anonymous.get(url, headers=h | {"Accept-Encoding": "gzip, deflate"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "Accept-Encoding"
        assert packed.content == plain.content  # httpx undoes the gzip
        assert packed.num_bytes_downloaded < len(plain.content) / 1.5
    data = maps.tile(conn, "grids", 12, x, y, principal=Principal.system(), cache=None)
    assert gzip.decompress(maps.gzipped_tile(conn, "grids", 12, x, y,
                                             principal=Principal.system(), cache=None)) == data
    empty = anonymous.get("/tiles/incidents/12/0/0.mvt", headers=h | {"Accept-Encoding": "gzip"})
    assert empty.content == b"" and "content-encoding" not in empty.headers
    assert _accepts_gzip("br, gzip;q=0.5") and _accepts_gzip("*")
    assert not _accepts_gzip("gzip;q=0") and not _accepts_gzip("identity") and not _accepts_gzip("")


def test_cache_drops_a_tile_drawn_before_an_invalidation() -> None:
    cache = maps.TileCache(max_entries=2)
    gen = cache.generation
    cache.invalidate()
    cache.put(("k",), b"old", gen)  # drawn before the NOTIFY arrived: not kept
    assert cache.get(("k",)) is None
    for k in "abc":
        cache.put((k,), b"x", cache.generation)
    assert cache.get(("a",)) is None and cache.get(("c",)) == b"x"  # LRU bound


def test_bad_tile_requests(client: TestClient) -> None:
    assert client.get("/tiles/roads/10/1/1.mvt").status_code == 422
    out = client.get("/tiles/grids/3/9/1.mvt")  # x beyond 2**3 - 1
    assert out.status_code == 422 and out.json()["code"] == "invalid_map_request"
    assert out.json()["detail"] == {"field": "z/x/y", "value": [3, 9, 1]}
    out = client.get("/maps/heat", params={"zoom": 12, "bbox": "1,2,3"})
    assert out.status_code == 422 and out.json()["code"] == "invalid_bbox"
    assert out.json()["detail"]["field"] == "bbox"
