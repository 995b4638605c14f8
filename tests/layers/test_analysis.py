"""The supervisor's month: compared figures, the cases behind them, a grid's summary, scores,
trends, Gi*, recurring places, spikes and topics, on hand-made incidents in the real PostGIS."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Connection, text

from grids.access import Principal
from layers import assessment
from layers.analysis import gi, month, recurring, scoring, topics, trends
from tests.layers.test_assessment import _insert, insert_month
from tests.layers.test_maps import grid_in, scatter

METRIC_SRID = 4549  # the test city's metric CRS (its profile)

SYSTEM = Principal.system()
COUNTS = ("received", "registered", "closed", "closed_on_time", "reworked", "due", "due_closed",
          "due_closed_on_time")


@pytest.fixture
def grids(conn: Connection) -> tuple[str, str, str]:
    a, b, other = insert_month(conn)
    # the month before and the same month last year, for the comparison
    _insert(conn, a, [("p1", "closed", "2026-09-03 08:00", "2026-09-04 08:00", True,
                       "2026-09-05 08:00", 0),
                      ("y1", "closed", "2025-10-03 08:00", "2025-10-10 08:00", False,
                       "2025-10-05 08:00", 0)], "W-A")
    return a, b, other


@pytest.mark.parametrize("level", ["grid", "street", "worker", "department"])
def test_every_count_lists_exactly_its_cases(conn: Connection, grids, level: str) -> None:
    figures = assessment.monthly(conn, principal=SYSTEM, month="2026-10", level=level,
                                 region="330782001")
    assert figures["rows"]
    for row in figures["rows"]:
        for fig in COUNTS:
            got = month.cases(conn, principal=SYSTEM, month="2026-10", level=level,
                              code=row["code"], figure=fig, region="330782001")
            assert got["total"] == row[fig] == len(got["rows"]), (level, row["code"], fig)
        # a rate lists its denominator, with the numerator's cases marked
        rate = month.cases(conn, principal=SYSTEM, month="2026-10", level=level,
                           code=row["code"], figure="on_time_rate", region="330782001")
        assert rate["total"] == row["due"] and rate["hits"] == row["due_closed_on_time"]
        assert sum(r["hit"] for r in rate["rows"]) == row["due_closed_on_time"]


def test_compare_ranks_and_shows_the_month_before_and_last_year(conn: Connection,
                                                                 grids) -> None:
    a, b, _ = grids
    out = month.compare(conn, principal=SYSTEM, month="2026-10", level="grid",
                        region="330782001")
    assert out["prev_month"] == "2026-09" and out["last_year_month"] == "2025-10"
    rows = {r["code"]: r for r in out["rows"]}
    assert rows[a]["on_time_rate"] == 0.5 and rows[a]["prev"]["on_time_rate"] == 1.0
    assert rows[a]["last_year"]["on_time_rate"] == 0.0
    assert rows[a]["rank"]["on_time_rate"] == 1  # the only grid with cases due
    assert rows[b]["rank"]["on_time_rate"] is None
    # the total equals the sum of the street's rows
    tot = out["total"]["current"]
    street = assessment.monthly(conn, principal=SYSTEM, month="2026-10", level="street",
                                region="330782001")["rows"]
    for k in COUNTS:
        assert tot[k] == sum(r[k] for r in street)
    assert month._ranks([{"code": "x", "v": 0.5}, {"code": "y", "v": 0.9},
                         {"code": "z", "v": 0.5}], "v") == {"y": 1, "x": 2, "z": 2}
    assert month._ranks([{"code": "x", "mean_handling_h": 5.0},
                         {"code": "y", "mean_handling_h": 2.0}], "mean_handling_h") == {
        "y": 1, "x": 2}


def test_trend_points_equal_the_month_totals(conn: Connection, grids) -> None:
    out = trends.series(conn, principal=SYSTEM, month="2026-10", region="330782001")
    assert out["months"][0] == "2025-11" and out["months"][-1] == "2026-10"
    for m, r in zip(out["months"], out["rows"], strict=True):
        if m in ("2026-09", "2026-10", "2026-01"):
            tot = month.total(conn, principal=SYSTEM, month=m, region="330782001")
            assert {k: r[k] for k in COUNTS} == {k: tot[k] for k in COUNTS}
            assert r["on_time_rate"] == tot["on_time_rate"]


def test_grid_summary_and_scope(conn: Connection, grids) -> None:
    a, _, other = grids
    out = month.grid_summary(conn, principal=SYSTEM, code=a, month="2026-10")
    # a3 (handling) and a5 (received) are open
    assert out["open"]["total"] == 2 and sum(out["open"]["lights"].values()) == 2
    assert out["figures"]["on_time_rate"] == 0.5
    assert out["primary"] is not None and out["name"]
    from grids.access import Scope
    from grids.errors import RegionNotFound

    street = Principal.make("user:s", "supervisor", Scope.of("330782001000"))
    with pytest.raises(RegionNotFound):
        month.grid_summary(conn, principal=street, code=other, month="2026-10")


def test_scores_follow_the_rules(conn: Connection, grids) -> None:
    out = scoring.scores(conn, principal=SYSTEM, month="2026-10", region="330782001")
    st = next(r for r in out["street"] if r["code"] == "330782001000")
    # due 4 (a1, a2, a3, a6), on time 2: rate 0.5 → 20 of 40; overdue 2 → −1; rework 1 → −1
    assert st["counts"] == {"on_time": 0.5, "overdue": 2, "rework": 1, "returned": 0,
                            "supervised": 0}
    assert st["points"] == {"on_time": 20.0, "overdue": -1.0, "rework": -1.0, "returned": 0.0,
                            "supervised": 0.0}
    assert st["score"] == 78.0 and st["rank"] == 1
    book = load_workbook(io.BytesIO(scoring.to_xlsx(out)))
    assert book.sheetnames == ["街道考核", "部门考核", "评分规则"]
    sheet = list(book["街道考核"].iter_rows(min_row=3, values_only=True))
    assert any(r[1] == "330782001000" and r[3] == 78.0 for r in sheet)
    assert scoring.load_rules()["rules"][0]["measure"] == "on_time_rate"


def test_returns_and_cards_are_deducted(conn: Connection, grids) -> None:
    a = grids[0]
    iid = conn.execute(text("SELECT id FROM incident WHERE external_id = 'assess-a3'")).scalar()
    for action in ("return", "card", "card"):
        conn.execute(text("INSERT INTO incident_event (incident_id, at, actor, action, "
                          "from_state, to_state) VALUES (:i, '2026-10-13 10:00+08', 'test', :a, "
                          "'handling', 'handling')"),
                     {"i": iid, "a": action})
    out = scoring.scores(conn, principal=SYSTEM, month="2026-10", region=a)
    st = out["street"][0]
    assert st["counts"]["returned"] == 1 and st["counts"]["supervised"] == 2
    assert st["points"]["returned"] == -0.5 and st["points"]["supervised"] == -2.0


# ---- Gi* -----------------------------------------------------------------------------------
def test_esda_gi_star_equals_the_formula_on_a_fixture() -> None:
    from libpysal.weights import lat2W

    w = lat2W(5, 4, rook=False)  # 20 cells, queen
    y = np.array([0, 1, 0, 2, 1, 0, 9, 8, 0, 1, 7, 9, 1, 0, 0, 1, 0, 2, 1, 0], dtype=float)
    z = gi.gi_star(y, w)
    nb = [list(w.neighbors[i]) for i in range(20)]
    assert z == pytest.approx(gi.gi_star_z(y, nb), abs=1e-9)
    # by hand for cell 0 (neighbours 1, 4, 5): Σ = 0 + 1 + 1 + 0 = 2, W = 4
    n, mean = 20, y.mean()
    s = math.sqrt((y ** 2).mean() - mean ** 2)
    assert set(nb[0]) == {1, 4, 5}
    assert z[0] == pytest.approx((2 - mean * 4) / (s * math.sqrt((n * 4 - 16) / (n - 1))))
    assert gi.classify(float(z[11]))[0] == "hot"


def test_esda_on_the_graph_equals_esda_on_the_w_and_the_formula() -> None:
    """The production weights (a Graph with the diagonal set) give esda's z of the plain W, and
    the formula's, with an isolated grid (scored on itself alone) and a neighbour outside."""
    from libpysal.weights import lat2W

    w = lat2W(6, 5, rook=False)
    codes = [f"g{i:02d}" for i in range(31)]  # g30: an island
    nb = {codes[i]: [codes[j] for j in w.neighbors[i]] for i in range(30)}
    nb["g30"] = []
    nb["g00"].append("elsewhere")  # not among the codes: ignored by both
    y = np.random.default_rng(3).poisson(4, 31).astype(float)
    y[[7, 8, 13, 14]] += 12
    z_graph = gi.gi_star(y, gi.graph(nb, codes))
    plain = {c: [x for x in v if x in codes] for c, v in nb.items()}
    z_w = gi.gi_star(y, gi.weights(plain, codes))
    idx = {c: i for i, c in enumerate(codes)}
    z_f = gi.gi_star_z(y, [[idx[x] for x in plain[c]] for c in codes])
    assert z_graph == pytest.approx(z_w, abs=1e-9)
    assert z_graph == pytest.approx(z_f, abs=1e-9)
    assert gi.classify(float(z_graph[8]))[0] == "hot"


def test_hotspots_on_the_grids_find_the_planted_cluster(conn: Connection) -> None:
    counts = gi.grid_counts(conn, principal=SYSTEM, month="2026-10", region="330782001")
    codes = list(counts)
    nb = gi.grid_neighbours(conn, codes)
    assert sum(len(v) for v in nb.values()) > 2 * len(codes)  # a tiling: several neighbours
    centre = codes[len(codes) // 2]
    for c in [centre, *nb[centre]]:
        scatter(conn, c, 40, tag=f"gi-{c}", received_at="2026-10-12T09:00:00+08:00")
    out = gi.hotspots(conn, principal=SYSTEM, month="2026-10", region="330782001",
                      neighbours=nb)
    by = {g["code"]: g for g in out["grids"]}
    assert by[centre]["kind"] == "hot" and by[centre]["confidence"] == 99
    y = np.array([by[c]["count"] for c in codes], dtype=float)
    idx = {c: i for i, c in enumerate(codes)}
    ref = gi.gi_star_z(y, [[idx[x] for x in nb[c]] for c in codes])
    assert [by[c]["z"] for c in codes] == pytest.approx(np.round(ref, 3).tolist(), abs=1e-3)
    em = gi.trend(conn, principal=SYSTEM, month="2026-10", months=3, region="330782001")
    assert {g["code"]: g["kind"] for g in em["grids"]}[centre] == "new"


def test_neighbours_are_kept_per_set_of_boundaries(conn: Connection) -> None:
    """The cached adjacency is the adjacency PostGIS gives, and a grid whose boundary ends is
    not in the next answer (a new set of boundaries, a new key)."""
    codes = list(gi.grid_counts(conn, principal=SYSTEM, month="2026-10", region="330782001"))
    fresh = gi.grid_neighbours(conn, codes, cache=False)
    first = gi.grid_neighbours(conn, codes)
    again = gi.grid_neighbours(conn, codes)
    assert first == fresh and again == fresh
    again[codes[0]].append("not-a-grid")  # a caller's change does not reach the cache
    assert gi.grid_neighbours(conn, codes) == fresh
    gone = next(c for c in codes if fresh[c])
    conn.execute(text(
        "UPDATE region_boundary b SET valid_to = now() - interval '1 second' FROM region r "
        "WHERE r.id = b.region_id AND r.code = :c AND b.valid_to IS NULL"), {"c": gone})
    after = gi.grid_neighbours(conn, codes)
    assert after[gone] == [] and all(gone not in v for v in after.values())
    assert after == gi.grid_neighbours(conn, codes, cache=False)


# ---- recurring places --------------------------------------------------------------------
def test_recurring_places_equal_a_brute_force_dbscan(conn: Connection) -> None:
    g = grid_in(conn, "330782001", 3)
    # three tight groups (3, 4 and 2 cases) and scattered noise, in one category, in October
    cx, cy = conn.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), "
        f"{METRIC_SRID}) AS p FROM region_current WHERE code = :g) s"), {"g": g}).one()
    rng = np.random.default_rng(5)
    pts = []
    for dx, dy, n in [(0, 0, 3), (300, 0, 4), (0, 300, 2)]:
        for _ in range(n):
            pts.append((cx + dx + rng.uniform(-15, 15), cy + dy + rng.uniform(-15, 15)))
    pts += [(cx + rng.uniform(-900, 900), cy + rng.uniform(-900, 900)) for _ in range(25)]
    for i, (x, y) in enumerate(pts):
        conn.execute(text(
            "INSERT INTO incident (source, external_id, category_id, geom, state, region_code, "
            "grid_code, street_code, received_at) SELECT 'supervisor', :t, c.id, "
            f"ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), {METRIC_SRID}), 4490), 'handling', "
            ":g, :g, left(:g, 9) || '000', CAST(:at AS timestamptz) FROM category c "
            "WHERE c.code = 'E0102'"),
            {"t": f"rec-{i}", "x": x, "y": y, "g": g,
             "at": f"2026-10-{1 + i % 28:02d}T10:00:00+08:00"})
    out = recurring.recurring(conn, principal=SYSTEM, month="2026-10", region="330782001")
    ids = dict(conn.execute(text("SELECT external_id, id FROM incident WHERE external_id LIKE "
                                 "'rec-%'")).all())
    # the oracle over every E0102 case of the window in the street (others may exist)
    rows = conn.execute(text(
        "SELECT i.id, ST_X(ST_Transform(i.geom, :srid)), ST_Y(ST_Transform(i.geom, :srid)) "
        "FROM incident i JOIN category c ON c.id = i.category_id WHERE c.code = 'E0102' "
        "AND i.geom IS NOT NULL AND i.state <> 'voided' AND i.region_code LIKE '330782001%' "
        "AND i.received_at >= CAST(:s AS timestamptz) AND i.received_at < CAST(:e AS "
        "timestamptz)"), {"srid": METRIC_SRID, "s": out["from"], "e": out["to"]}).all()
    oracle = recurring.dbscan_oracle([(int(i), x, y) for i, x, y in rows], 50.0, 3)
    got = {frozenset(p["ids"]) for p in out["places"] if p["category"] == "E0102"}
    assert got == oracle
    mine = {frozenset(ids[f"rec-{i}"] for i in range(3)),
            frozenset(ids[f"rec-{i}"] for i in range(3, 7))}
    assert mine <= got  # the pair (rec-7, rec-8) is below the threshold
    ranked = [p["cases"] for p in out["places"]]
    assert ranked == sorted(ranked, reverse=True)


# ---- spikes and topics -------------------------------------------------------------------
def test_spike_rule() -> None:
    assert trends.is_spike(30, [10, 12, 9, 11])[0]
    assert not trends.is_spike(14, [10, 12, 9, 11])[0]
    assert not trends.is_spike(4, [0, 0, 0])[0]  # under 5 cases is never a spike
    assert not trends.is_spike(50, [1, 2])[0]  # too little history
    assert trends.poisson_sf(3, 1.0) == pytest.approx(1 - math.exp(-1) * (1 + 1 + 0.5))


def test_spikes_and_topics_in_the_database(conn: Connection) -> None:
    g = grid_in(conn, "330782002", 2)
    for m in ("2026-06", "2026-07", "2026-08", "2026-09"):
        scatter(conn, g, 2, tag=f"sp-{m}", category="E0301", received_at=f"{m}-10T10:00:00+08:00")
    scatter(conn, g, 25, tag="sp-oct", category="E0301", received_at="2026-10-10T10:00:00+08:00")
    conn.execute(text("UPDATE incident SET description = '小区门口垃圾堆放，垃圾很臭' "
                      "WHERE external_id LIKE 'sp-oct-%'"))
    out = trends.spikes(conn, principal=SYSTEM, month="2026-10", region=g)
    hit = next(s for s in out["spikes"] if s["category"] == "E0301")
    assert hit["count"] == 25 and hit["baseline"] == 2.0
    top = topics.topics(conn, principal=SYSTEM, month="2026-10", region=g)
    words = {w["word"]: w for w in top["overall"]}
    assert words["垃圾"]["count"] == 25 and words["垃圾"]["rising"]  # once per case
    assert "小区" in words and top["streets"][0]["words"][0]["count"] == 25


# ---- through the API ---------------------------------------------------------------------
def test_the_api_scopes_and_drills(anonymous: TestClient, headers,
                                   grids) -> None:
    h = headers("t_supervisor")
    res = anonymous.get("/analysis/month", params={"month": "2026-10", "level": "grid"},
                        headers=h)
    assert res.status_code == 200, res.text
    body = res.json()
    row = next(r for r in body["rows"] if r["due"])
    cases = anonymous.get("/analysis/cases", params={
        "month": "2026-10", "level": "grid", "code": row["code"], "figure": "closure_rate"},
        headers=h).json()
    assert cases["total"] == row["due"] and cases["hits"] == row["due_closed"]
    bad = anonymous.get("/analysis/cases", params={"month": "2026-10", "figure": "nope"},
                        headers=h)
    assert bad.status_code == 422 and bad.json()["code"]
    assert anonymous.get("/analysis/scores.xlsx", params={"month": "2026-10"},
                         headers=h).status_code == 200
    assert anonymous.get("/analysis/grids/" + row["code"], params={"month": "2026-10"},
                         headers=h).json()["code"] == row["code"]
    assert anonymous.get("/analysis/month", params={"month": "2026-10"},
                         headers=headers("t_viewer")).status_code in (200, 403)
