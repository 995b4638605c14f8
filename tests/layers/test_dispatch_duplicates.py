"""The duplicate matcher measured on the generator's labelled cross-channel clusters.

The demo generator's cases at the demo's density (~600 a day), with 2 % of them reported again
on other channels (:func:`data.duplicates.add_duplicate_clusters`); every case is paired with the
earlier cases the rule of ``duplicate_rule`` proposes, by the very SQL the desk runs
(:func:`layers.dispatch.duplicates.pair_sql`). Target: recall >= 0.95 at precision >= 0.90.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import Connection, text

from bench.duplicates import load_labelled
from data.duplicates import add_duplicate_clusters
from data.incidents import build_incidents
from grids.locate import load_snapshot
from layers.dispatch.duplicates import LIKELY, measure, operating_point, pair_sql
from layers.incidents.catalogue import list_categories

N, DAYS = 30_000, 50  # ~600 a day: the demo year's density (220,000 / 365)


@pytest.fixture(scope="module")
def labelled(engine):
    with engine.connect() as conn:
        snap = load_snapshot(conn)
        cats = list_categories(conn)
    frames = build_incidents(snap, cats, n=N, end=datetime(2026, 11, 1, tzinfo=UTC), days=DAYS)
    return add_duplicate_clusters(frames, snap, share=0.02).incidents


def test_generator_labels_cross_channel_clusters(labelled) -> None:
    dups = labelled[labelled["dup_cluster"] >= 0]
    assert 0.015 * N < dups["dup_cluster"].nunique() < 0.025 * N
    for _, group in list(dups.groupby("dup_cluster"))[:200]:
        assert group["source"].iloc[1:].ne(group["source"].iloc[0]).all()  # other channels
        assert len(group) in (2, 3)
    assert labelled["external_id"].is_unique
    assert np.isfinite(labelled["lon"]).all()


def test_matcher_recall_and_precision(conn: Connection, labelled) -> None:
    """Every pair inside the rule: recall; scored (score >= LIKELY): the target, recall >= 0.95
    at precision >= 0.90, on the demo seed (held-out seeds: bench/duplicates.py, docs/desk.md).
    The label-free operating point (no label read) keeps the target and rises with the asked
    precision."""
    load_labelled(conn, labelled)
    every = measure(conn, "dup_eval")
    ranked = measure(conn, "dup_eval", min_score=LIKELY)
    print({"all": every, f"score>={LIKELY}": ranked})  # docs/desk.md quotes it (-s)
    assert every["duplicates"] > 500
    assert every["recall"] >= 0.95, every
    assert ranked["recall"] >= 0.95, ranked
    assert ranked["precision"] >= 0.90, ranked
    point = operating_point(conn, "dup_eval", precision=0.90)
    assert LIKELY <= point < operating_point(conn, "dup_eval", precision=0.97) < 1
    at_point = measure(conn, "dup_eval", min_score=point)
    assert at_point["precision"] >= 0.90 and at_point["recall"] >= 0.95, (point, at_point)


def _score(conn: Connection, a: dict, b: dict) -> float:
    """The desk's score of ``b`` as a candidate of ``a`` (each: d metres east of a common
    point, hours, cat, source, phone; ``a`` also dens)."""
    _, score = pair_sql("a", "b", "a")
    row = {f"{k}_{side}": v for side, case in (("a", a), ("b", b)) for k, v in case.items()}
    sql = f"""
        WITH a AS (SELECT ST_SetSRID(ST_Point(120.0 + CAST(:d_a AS float8) / 97000.0, 29.3),
                                     4490) AS geom,
                          TIMESTAMPTZ '2026-11-01 08:00Z' + make_interval(hours => :h_a)
                              AS received_at,
                          CAST(:cat_a AS text) AS cat, CAST(:source_a AS text) AS source,
                          CAST(:phone_a AS text) AS phone, CAST(:dens_a AS int) AS dens),
             b AS (SELECT ST_SetSRID(ST_Point(120.0 + CAST(:d_b AS float8) / 97000.0, 29.3),
                                     4490) AS geom,
                          TIMESTAMPTZ '2026-11-01 08:00Z' + make_interval(hours => :h_b)
                              AS received_at,
                          CAST(:cat_b AS text) AS cat, CAST(:source_b AS text) AS source,
                          CAST(:phone_b AS text) AS phone)
        SELECT {score} FROM a, b"""
    return float(conn.execute(text(sql), row).scalar_one())


def test_score_reads_place_time_density_channel_and_phone(conn: Connection) -> None:
    a = {"d": 0, "h": 3, "cat": "C0101", "source": "grid_worker", "phone": None, "dens": 2}
    b = {"d": 10, "h": 1, "cat": "C0101", "source": "hotline_12345", "phone": None}
    base = _score(conn, a, b)
    assert 0.5 < base < 1
    assert _score(conn, a, {**b, "d": 45}) < base  # farther
    assert _score(conn, a, {**b, "h": -20}) < base  # longer apart
    assert _score(conn, {**a, "dens": 40}, b) < base  # a place where this is reported daily
    assert _score(conn, a, {**b, "cat": "C0202"}) < base  # a related category only
    assert _score(conn, a, {**b, "source": "grid_worker"}) < base  # the same channel
    same_phone = _score(conn, {**a, "phone": "19900000001", "source": "hotline_12345"},
                        {**b, "d": 40, "phone": "19900000001", "h": -10})
    other_phone = _score(conn, {**a, "phone": "19900000002", "source": "hotline_12345"},
                         {**b, "d": 40, "phone": "19900000001", "h": -10})
    assert same_phone > 5 * other_phone
    # in a market (dense) even a close report hours later is left below LIKELY
    assert _score(conn, {**a, "dens": 40}, {**b, "d": 35, "h": -3}) < LIKELY
