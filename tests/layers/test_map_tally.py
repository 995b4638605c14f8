"""The tallies of migration 0008 against the raw rows: kept exact by the triggers through
inserts, updates and deletes, and every tallied answer equal to the raw query's.

Incidents are made inside each test's rolled-back transaction, spread over months, days,
categories, states and two streets, so windows fall on whole years/months/days and between.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, text

from gis.crs import EARTH_M
from grids.access import Principal, Scope
from layers import maps
from layers.maps import choropleth, heatmap
from layers.maps import tally as map_tally

STREET_A, STREET_B = "330782001", "330782002"
T = datetime.fromisoformat


def grids(conn: Connection, prefix: str, n: int) -> list[str]:
    return list(conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE :p ORDER BY code "
        "LIMIT :n"), {"p": prefix + "%", "n": n}).scalars())


def spread(conn: Connection, grid: str, n: int, *, tag: str, seed: float) -> None:
    """``n`` incidents in ``grid``: random points, received over 2025-11-20..2026-11-10 at any
    hour, categories E0101/E0501/S0101, states open and closed, due 3 days later."""
    conn.execute(text("SELECT setseed(:s)"), {"s": seed})
    conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, geom, state, region_code, "
        "grid_code, community_code, street_code, received_at, due_at) "
        "SELECT 'hotline_12345', :tag || '-' || d.path[1], "
        "(SELECT id FROM category WHERE code = (ARRAY['E0101','E0501','S0101'])"
        "[1 + (d.path[1] % 3)]), d.geom, "
        "(ARRAY['handling','closed','received','closed','dispatched'])[1 + (d.path[1] % 5)], "
        "r.code, r.code, left(r.code, 12), left(r.code, 9) || '000', w.at, "
        "w.at + interval '3 days' "
        "FROM region_current r CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(r.geom, :n, 11)) d "
        "CROSS JOIN LATERAL (SELECT TIMESTAMPTZ '2025-11-20 00:00+08' "
        "+ random() * interval '355 days' + 0 * d.path[1] * interval '1 s' AS at OFFSET 0) w "
        "WHERE r.code = :g"), {"tag": tag, "n": n, "g": grid})


@pytest.fixture
def city(conn: Connection) -> Connection:
    for k, g in enumerate(grids(conn, STREET_A, 3) + grids(conn, STREET_B, 2)):
        spread(conn, g, 120, tag=f"tally-{k}", seed=0.1 * (k + 1))
    return conn


def tally_snapshot(conn: Connection) -> tuple[set, set]:
    cells = {tuple(r) for r in conn.execute(text(
        "SELECT k, span, t0, cx, cy, rkey, category_id, state, n FROM incident_cell_tally "
        "WHERE n <> 0"))}
    grid = {tuple(r) for r in conn.execute(text(
        "SELECT span, t0, region_code, grid_code, community_code, street_code, category_id, "
        "state, due_day::text, n FROM incident_grid_tally WHERE n <> 0"))}
    return cells, grid


def test_triggers_keep_the_tallies_equal_to_a_rebuild(city: Connection) -> None:
    conn = city
    # workflow steps, a move, an edit that touches no key, a deletion, a bulk update
    conn.execute(text("UPDATE incident SET state = 'closed', closed_at = received_at + "
                      "interval '1 day' WHERE external_id LIKE 'tally-0-%' AND state = 'handling'"))
    conn.execute(text("UPDATE incident SET received_at = received_at - interval '40 days' "
                      "WHERE external_id LIKE 'tally-1-1%'"))
    conn.execute(text("UPDATE incident SET description = 'edited' WHERE external_id LIKE "
                      "'tally-2-%'"))
    conn.execute(text("UPDATE incident SET geom = ST_Translate(geom, 0.003, 0.002), "
                      "due_at = due_at + interval '2 days' WHERE external_id LIKE 'tally-3-2%'"))
    conn.execute(text("DELETE FROM incident WHERE external_id LIKE 'tally-4-3%'"))
    kept = tally_snapshot(conn)
    assert len(kept[0]) > 100 and len(kept[1]) > 100
    conn.execute(text("SELECT citygrid_tally_rebuild()"))
    assert tally_snapshot(conn) == kept



# -- the reference: the raw rows filtered and binned here, in numpy, from lon/lat ---------------
# Nothing below uses the product's filter SQL (IncidentFilter.sql), its bin arithmetic (bin_box,
# tile_bin_box, cell sizes) or PostGIS transforms, so a bug there cannot cancel out.

R_EARTH = 6378137.0  # the EPSG:3857 sphere
WORLD_M = 2 * math.pi * R_EARTH


class Reference:
    """Every incident as plain columns, read once per test."""

    def __init__(self, conn: Connection) -> None:
        rows = conn.execute(text(
            "SELECT ST_X(i.geom), ST_Y(i.geom), extract(epoch FROM i.received_at), c.code, "
            "coalesce(pc.code, ''), i.state, coalesce(i.region_code, ''), "
            "coalesce(i.grid_code, ''), coalesce(i.street_code, ''), "
            "extract(epoch FROM i.due_at) FROM incident i JOIN category c ON c.id = i.category_id "
            "LEFT JOIN category pc ON pc.id = c.parent_id")).all()
        self.now = conn.execute(text("SELECT extract(epoch FROM now())")).scalar_one()
        df = pd.DataFrame(rows, columns=["lon", "lat", "received", "cat", "parent", "state",
                                         "region", "grid_code", "street_code", "due"])
        lon, lat = (df[c].astype(float).to_numpy() for c in ("lon", "lat"))
        self.x = R_EARTH * np.radians(lon)
        self.y = R_EARTH * np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))
        self.received, self.due = (df[c].astype(float).to_numpy() for c in ("received", "due"))
        self.cat, self.parent, self.state, self.region, self.grid_code, self.street_code = (
            df[c].to_numpy(dtype=str) for c in ("cat", "parent", "state", "region", "grid_code",
                                                "street_code"))

    def mask(self, f: maps.IncidentFilter, scope_prefix: str | None = None) -> np.ndarray:
        m = np.ones(len(self.received), dtype=bool)
        if f.since is not None:
            m &= self.received >= f.since.timestamp()
        if f.until is not None:
            m &= self.received < f.until.timestamp()
        if f.categories:
            m &= np.isin(self.cat, f.categories) | np.isin(self.parent, f.categories)
        if f.states:
            m &= np.isin(self.state, f.states)
        for prefix in (f.region and f.region.rstrip("0"), scope_prefix):
            if prefix:  # street codes here end in 000 after their 9 digits
                m &= np.char.startswith(self.region, prefix)
        return m

    def bins(self, size: float, m: np.ndarray, box: tuple[float, float, float, float] | None
             ) -> dict[tuple[int, int], int]:
        """Square bins of side ``size`` m, counted; only bins meeting ``box`` (mercator m)."""
        keep = m & np.isfinite(self.x)
        ix, iy = np.floor(self.x[keep] / size), np.floor(self.y[keep] / size)
        if box is not None:
            x0, y0, x1, y1 = box
            inside = (((ix + 1) * size > x0) & (ix * size <= x1)
                      & ((iy + 1) * size > y0) & (iy * size <= y1))
            ix, iy = ix[inside], iy[inside]
        return dict(Counter(zip(ix.astype(int).tolist(), iy.astype(int).tolist(), strict=True)))

    def heat(self, zoom: int, pixels: int, f: maps.IncidentFilter,
             bbox: tuple[float, float, float, float] | None = None,
             scope_prefix: str | None = None) -> dict[tuple[int, int], int]:
        box = None
        if bbox is not None:
            (x0, x1), (y0, y1) = ((R_EARTH * math.radians(v) for v in (bbox[0], bbox[2])),
                                  (R_EARTH * math.log(math.tan(math.pi / 4 + math.radians(v) / 2))
                                   for v in (bbox[1], bbox[3])))
            box = (x0, y0, x1, y1)
        return self.bins(pixels * WORLD_M / (256 * 2 ** zoom), self.mask(f, scope_prefix), box)

    def tile(self, z: int, x: int, y: int, f: maps.IncidentFilter) -> dict[tuple[int, int], int]:
        """16 × 16 bins a tile: the bins whose centres lie in tile z/x/y."""
        side = WORLD_M / 2 ** z
        size = side / 16
        x0, y1 = -WORLD_M / 2 + x * side, WORLD_M / 2 - y * side
        got = self.bins(size, self.mask(f), None)
        return {k: n for k, n in got.items()
                if x0 < (k[0] + 0.5) * size < x0 + side and y1 - side < (k[1] + 0.5) * size < y1}

    def counts(self, column: str, f: maps.IncidentFilter) -> dict[str, tuple[int, int, int]]:
        m = self.mask(f)
        codes = {"grid_code": self.grid_code, "street_code": self.street_code}[column][m]
        opened = np.isin(self.state[m], sorted(maps_open()))
        overdue = opened & (self.due[m] < self.now)
        sums = pd.DataFrame({"code": codes, "n": 1, "open": opened, "overdue": overdue}
                            ).groupby("code").sum()
        return {str(k): (int(a), int(b), int(c))
                for k, a, b, c in sums[["n", "open", "overdue"]].itertuples()}


def expected_tallies(conn: Connection) -> tuple[set, set]:
    """The tallies computed here, in Python, from the raw rows: migration 0008's layout (cells:
    months at levels 8, 10, 12, days at level 8, category and state at level 8 only; grids:
    years, months, days, and months per category, state and open due day), with none of the
    triggers' SQL (no shifts, no roll-ups)."""
    tz = ZoneInfo("Asia/Shanghai")
    opened = maps_open()
    cells: Counter = Counter()
    grid: Counter = Counter()
    for x, y, received, cat, state, region, gcode, community, street, due in conn.execute(text(
            "SELECT ST_X(g), ST_Y(g), received_at, category_id, state, region_code, grid_code, "
            "community_code, street_code, due_at "
            "FROM (SELECT ST_Transform(geom, 3857) AS g, * FROM incident) i")):
        day = received.astimezone(tz).date()
        month, year = day.replace(day=1), date(day.year, 1, 1)
        if x is not None:
            rkey = (region or "")[:9]
            for k in (8, 10, 12):
                side = map_tally.cell_m(k)
                cell = (math.floor(x / side), math.floor(y / side), rkey)
                cells[(k, "m", month, *cell, 0, "*")] += 1
                if k == 8:
                    cells[(k, "d", day, *cell, 0, "*")] += 1
                    cells[(k, "m", month, *cell, cat, state)] += 1
                    cells[(k, "d", day, *cell, cat, state)] += 1
        place = (region or "", gcode or "", community or "", street or "")
        due_day = (due.astimezone(tz).date().isoformat() if due is not None else "infinity") \
            if state in opened else "infinity"
        for span, t0 in (("y", year), ("m", month), ("d", day)):
            grid[(span, t0, *place, 0, "*", "infinity")] += 1
        grid[("m", month, *place, cat, state, due_day)] += 1
    return ({(*key, n) for key, n in cells.items()}, {(*key, n) for key, n in grid.items()})


def test_triggers_keep_the_tallies_equal_to_the_raw_rows(city: Connection) -> None:
    conn = city
    # one statement writing many keys at once; moves in time and space; a key-less edit;
    # a state change of part of a statement's rows; deletions; rows without a point
    conn.execute(text("UPDATE incident SET state = 'closed', closed_at = received_at + "
                      "interval '1 day' WHERE external_id LIKE 'tally-0-%' AND state = 'handling'"))
    conn.execute(text("UPDATE incident SET received_at = received_at - interval '40 days' "
                      "WHERE external_id LIKE 'tally-1-1%'"))
    conn.execute(text("UPDATE incident SET received_at = received_at + interval '9 hours' "
                      "WHERE external_id LIKE 'tally-1-2%'"))
    conn.execute(text("UPDATE incident SET description = 'edited' WHERE external_id LIKE "
                      "'tally-2-%'"))
    conn.execute(text("UPDATE incident SET geom = ST_Translate(geom, 0.003, 0.002), "
                      "due_at = due_at + interval '2 days' WHERE external_id LIKE 'tally-3-2%'"))
    conn.execute(text("UPDATE incident SET geom = NULL WHERE external_id LIKE 'tally-3-3%'"))
    conn.execute(text("DELETE FROM incident WHERE external_id LIKE 'tally-4-3%'"))
    got = tally_snapshot(conn)
    want = expected_tallies(conn)
    assert len(want[0]) > 100 and len(want[1]) > 100
    assert got[0] == want[0]
    assert got[1] == want[1]

WINDOWS = [
    (None, None),
    ("2026-10-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00"),  # one month
    ("2026-01-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00"),  # one year
    ("2025-12-14T13:30:00+08:00", "2026-10-17T08:00:00+08:00"),  # months, days, raw ends
    ("2026-03-03T10:00:00+08:00", "2026-03-05T09:00:00+08:00"),  # days and raw
    ("2026-06-15T02:00:00Z", None),
    (None, "2026-02-10T00:00:00+08:00"),
]


@pytest.mark.parametrize("since,until", WINDOWS)
def test_heat_from_the_tallies_equals_raw_binning(city: Connection, since, until) -> None:
    admin = Principal.system()
    ref = Reference(city)
    f = maps.IncidentFilter(since=since and T(since), until=until and T(until))
    for zoom, pixels in ((12, 32), (14, 32), (16, 16)):
        got = maps.heat(city, principal=admin, zoom=zoom, pixels=pixels, filters=f,
                        point_threshold=0)
        assert got["source"] == "tally"
        raw = ref.heat(zoom, pixels, f)
        assert map_tally.raw_heat_bins(city, zoom=zoom, pixels=pixels, bbox=None,
                                       filters=f) == raw
        assert {tuple(ft["properties"]["ix_iy"]): ft["properties"]["count"]
                for ft in got["features"]} == raw
        assert got["total"] == sum(raw.values()) > 0 or since == "2026-03-03T10:00:00+08:00"


def test_filters_bbox_and_jurisdiction_on_the_tallies(city: Connection) -> None:
    since, until = T("2025-12-20T06:00:00+08:00"), T("2026-09-09T00:00:00+08:00")
    bbox_grid = grids(city, STREET_A, 1)[0]
    x0, y0, x1, y1 = city.execute(text(
        "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM region_current "
        "WHERE code = :g"), {"g": bbox_grid}).one()
    cases = [
        (maps.IncidentFilter(since=since, until=until, categories=("E01",)), None, None),
        (maps.IncidentFilter(since=since, until=until, states=("closed", "handling")), None, None),
        (maps.IncidentFilter(since=since, categories=("S0101",), states=("closed",)), None, None),
        (maps.IncidentFilter(until=until, region=STREET_B), None, None),
        (maps.IncidentFilter(since=since, until=until), (x0, y0, x1, y1), None),
        (maps.IncidentFilter(since=since, until=until), None, Scope.of(STREET_A + "000")),
    ]
    ref = Reference(city)
    for f, bbox, scope in cases:
        principal = (Principal.system() if scope is None
                     else Principal.make("u", "supervisor", scope))
        got = maps.heat(city, principal=principal, zoom=12, bbox=bbox, filters=f,
                        point_threshold=0)
        assert got["source"] == "tally", f
        raw = ref.heat(12, 32, f, bbox, scope_prefix=scope and STREET_A)
        assert {tuple(ft["properties"]["ix_iy"]): ft["properties"]["count"]
                for ft in got["features"]} == raw, f
        assert raw
    # finer than a street, or details below level 8: the raw path, same numbers
    f = maps.IncidentFilter(since=since, until=until, categories=("E01",))
    assert maps.heat(city, principal=Principal.system(), zoom=15, filters=f,
                     point_threshold=0)["source"] == "raw"


def _bins(conn: Connection, z: int, x: int, y: int, f: maps.IncidentFilter, *, raw: bool):
    size = EARTH_M / 2 ** z * 16 / 256
    sql, params, source = heatmap.bins_sql(size, z, map_tally.tile_bin_box(z, x, y, 16), f,
                                         Scope.everything(), raw=raw, tz=ZoneInfo("Asia/Shanghai"))
    return source, {(int(a), int(b)): int(n) for a, b, n in conn.execute(text(sql), params)}


def test_bin_tiles_from_the_tallies_equal_raw(city: Connection) -> None:
    lon, lat = city.execute(text(
        "SELECT ST_X(geom), ST_Y(geom) FROM incident WHERE external_id LIKE 'tally-%' "
        "AND received_at >= '2026-04-02' AND received_at < '2026-07-18' ORDER BY id LIMIT 1")
    ).one()
    month = maps.IncidentFilter(since=T("2026-04-01T00:00:00+08:00"),
                                until=T("2026-07-19T15:00:00+08:00"))
    ref = Reference(city)
    for z in range(10, 17):
        n = 2 ** z
        x = int((lon + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        for f in (maps.IncidentFilter(), month):
            src, got = _bins(city, z, x, y, f, raw=False)
            assert src == "tally"
            assert got == ref.tile(z, x, y, f) and got, (z, f)
            assert _bins(city, z, x, y, f, raw=True)[1] == got


def maps_open() -> frozenset[str]:
    from layers.incidents.workflow import OPEN_STATES

    return OPEN_STATES


@pytest.mark.parametrize("since,until", WINDOWS[:4])
def test_grid_counts_from_the_tallies_equal_raw(city: Connection, since, until) -> None:
    # some open cases falling due today, before and after now
    city.execute(text("UPDATE incident SET received_at = now() - interval '2 days', "
                      "due_at = now() - interval '1 minute' WHERE external_id LIKE 'tally-0-1%'"))
    city.execute(text("UPDATE incident SET received_at = now() - interval '2 days', "
                      "due_at = now() + interval '1 minute' WHERE external_id LIKE 'tally-0-2%'"))
    ref = Reference(city)
    for f in (maps.IncidentFilter(since=since and T(since), until=until and T(until)),
              maps.IncidentFilter(since=since and T(since), until=until and T(until),
                                  categories=("E0501",), states=("closed", "handling"))):
        for column in ("grid_code", "street_code"):
            sql, params = choropleth.grid_counts(f, Scope.everything(), column,
                                            tz=ZoneInfo("Asia/Shanghai"))
            got = {r[0]: tuple(r[1:]) for r in city.execute(text(sql), params)
                   if any(r[1:])}
            raw = ref.counts(column, f)
            assert got == raw and raw, (column, f)


def test_each_point_lands_in_the_hexagon_that_covers_it(city: Connection) -> None:
    f = maps.IncidentFilter(since=T("2026-01-01T00:00:00+08:00"))
    for zoom in (12, 15):
        size = maps.cell_size_m(zoom)
        out = maps.heat(city, principal=Principal.system(), zoom=zoom, shape="hex", filters=f,
                        point_threshold=0)
        where, params = f.sql(Scope.everything())
        n, covered = city.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE ST_Covers(ST_Hexagon(:s, h[1], h[2], "
            "ST_SetSRID(ST_MakePoint(0, 0), 3857)), g)) FROM (SELECT g, "
            "citygrid_hex(ST_X(g), ST_Y(g), :s) AS h FROM (SELECT ST_Transform(i.geom, 3857) AS g "
            f"FROM incident i WHERE i.geom IS NOT NULL AND {where}) p) q"),
            params | {"s": size}).one()
        assert n == covered == out["total"] > 0
        assert sum(ft["properties"]["count"] for ft in out["features"]) == n
        # heat's hexagons are citygrid_hex's, hexagon by hexagon
        expected = sorted((c, json.dumps(json.loads(g), sort_keys=True)) for c, g in city.execute(text(
            "SELECT count(*), ST_AsGeoJSON(ST_Transform(ST_Hexagon(:s, h[1], h[2], "
            "ST_SetSRID(ST_MakePoint(0, 0), 3857)), 4326), 6) FROM (SELECT "
            "citygrid_hex(ST_X(g), ST_Y(g), :s) AS h FROM (SELECT ST_Transform(i.geom, 3857) AS g "
            f"FROM incident i WHERE i.geom IS NOT NULL AND {where}) p) q GROUP BY h"),
            params | {"s": size}))
        got = sorted((ft["properties"]["count"], json.dumps(ft["geometry"], sort_keys=True))
                     for ft in out["features"])
        assert got == expected
