"""The duplicate matcher measured on the generator's labelled cross-channel clusters.

The demo generator's cases at the demo's density (~600 a day), with 2 % of them reported again
on other channels (:func:`data.incidents.add_duplicate_clusters`); every case is paired with the
earlier cases the rule of ``duplicate_rule`` proposes, by the very SQL the desk runs
(:func:`layers.dispatch.duplicates.pair_sql`). Target: recall >= 0.95 at precision >= 0.90.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from sqlalchemy import Connection, text

from data.incidents import add_duplicate_clusters, build_incidents
from grids.locate import load_snapshot
from layers.dispatch.duplicates import measure
from layers.incidents.catalogue import list_categories

N, DAYS = 30_000, 50  # ~600 a day: the demo year's density (220,000 / 365)


@pytest.fixture(scope="module")
def labelled(engine):
    with engine.connect() as conn:
        snap = load_snapshot(conn)
        cats = list_categories(conn)
    frames = build_incidents(snap, cats, n=N, end=datetime(2026, 11, 1, tzinfo=UTC), days=DAYS)
    return add_duplicate_clusters(frames, snap, share=0.02).incidents


def load_labelled(conn: Connection, inc) -> None:
    conn.execute(text("CREATE TEMP TABLE dup_eval (id bigint PRIMARY KEY, geom geometry(Point, "
                      "4490), received_at timestamptz, cat text, cluster bigint) ON COMMIT DROP"))
    geom = shapely.to_wkb(shapely.set_srid(shapely.points(inc["lon"], inc["lat"]), 4490),
                          hex=True, include_srid=True)
    cluster = inc["dup_cluster"].to_numpy()
    raw = conn.connection.driver_connection
    with raw.cursor().copy("COPY dup_eval FROM STDIN") as copy:
        for i, (g, t, c, k) in enumerate(zip(geom, inc["received_at"], inc["category_code"],
                                             cluster, strict=True)):
            copy.write_row((i, g, t, c, None if k < 0 else int(k)))
    conn.execute(text("CREATE INDEX ON dup_eval USING gist (geom)"))
    conn.execute(text("ANALYZE dup_eval"))


def test_generator_labels_cross_channel_clusters(labelled) -> None:
    dups = labelled[labelled["dup_cluster"] >= 0]
    assert 0.015 * N < dups["dup_cluster"].nunique() < 0.025 * N
    for _, group in list(dups.groupby("dup_cluster"))[:200]:
        assert group["source"].iloc[1:].ne(group["source"].iloc[0]).all()  # other channels
        assert len(group) in (2, 3)
    assert labelled["external_id"].is_unique
    assert np.isfinite(labelled["lon"]).all()


def test_matcher_recall_and_precision(conn: Connection, labelled) -> None:
    """Recall meets the target; precision does NOT yet (see docs/desk.md): the generator's own
    hot spots put same-category cases within tens of metres and a day of each other, which the
    rule cannot tell from a second report. Guarded here against regressions, reported as is."""
    load_labelled(conn, labelled)
    every = measure(conn, "dup_eval")
    ranked = measure(conn, "dup_eval", min_score=0.5)
    print({"all": every, "score>=0.5": ranked})  # docs/desk.md quotes it (-s)
    assert every["duplicates"] > 500
    assert every["recall"] >= 0.95, every
    assert every["precision"] >= 0.40, every
    assert ranked["precision"] >= 0.85 and ranked["recall"] >= 0.80, ranked
