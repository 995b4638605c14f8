"""Precision and recall of the duplicate matcher on the generator's labelled clusters.

The demo generator's cases at the demo's density (~600 a day) with 2 % of them reported again on
other channels (:func:`data.duplicates.add_duplicate_clusters`); every case is paired with the
earlier cases the desk's own SQL proposes (:func:`layers.dispatch.duplicates.measure`). Run on
the demo seed and on a held-out seed (another city year, never looked at while choosing the
constants), then with each constant of the score halved and doubled (does the result hang on one
lucky value?).

    python -m bench.duplicates [--db citygrid_test] [--seed 330782] [--n 30000] [--days 50]
    python -m bench.duplicates --seed 20261205          # held out
    python -m bench.duplicates --sensitivity            # each constant x0.5 and x2

The database only lends the city (its grids, for the generator's places) and PostGIS; the
labelled set lives in a temporary table.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import shapely
from sqlalchemy import Connection, create_engine, text

from app import devdb
from data.duplicates import add_duplicate_clusters
from data.incidents import build_incidents
from grids.locate import load_snapshot
from layers.dispatch import duplicates
from layers.incidents.catalogue import list_categories

END = datetime(2026, 11, 1, tzinfo=UTC)


def labelled_set(conn: Connection, *, n: int, days: int, seed: int) -> pd.DataFrame:
    """Generated cases with labelled cross-channel clusters (``dup_cluster``)."""
    snap = load_snapshot(conn)
    cats = list_categories(conn)
    frames = build_incidents(snap, cats, n=n, end=END, days=days, seed=seed)
    return add_duplicate_clusters(frames, snap, share=0.02, seed=seed).incidents


def load_labelled(conn: Connection, inc: pd.DataFrame, table: str = "dup_eval") -> None:
    """Copy the labelled set into temporary ``table`` in the shape :func:`duplicates.measure`
    reads (dropped at commit)."""
    conn.execute(text(f"CREATE TEMP TABLE {table} (id bigint PRIMARY KEY, geom geometry(Point, "
                      "4490), received_at timestamptz, cat text, source text, phone text, "
                      "cluster bigint) ON COMMIT DROP"))
    geom = shapely.to_wkb(shapely.set_srid(shapely.points(inc["lon"], inc["lat"]), 4490),
                          hex=True, include_srid=True)
    raw = conn.connection.driver_connection
    with raw.cursor().copy(f"COPY {table} FROM STDIN") as copy:
        for i, (g, t, c, s, p, k) in enumerate(zip(
                geom, inc["received_at"], inc["category_code"], inc["source"],
                inc["reporter_phone"], inc["dup_cluster"].to_numpy(), strict=True)):
            copy.write_row((i, g, t, c, s, p if isinstance(p, str) else None,  # not NaN
                            None if k < 0 else int(k)))
    conn.execute(text(f"CREATE INDEX ON {table} USING gist (geom)"))
    conn.execute(text(f"ANALYZE {table}"))


def _line(label: str, m: dict[str, Any]) -> str:
    return (f"| {label} | {m['proposed']:,} | {m['right']:,} | {m['duplicates']:,} | "
            f"{m['found']:,} | **{m['precision']:.3f}** | **{m['recall']:.3f}** |")


SENSITIVE = ("P_DUP", "TAU_H", "DEFAULT_SPREAD_M", "DENSITY_RADIUS_M", "RELATED_WEIGHT",
             "SAME_CHANNEL_WEIGHT")


def run(db: str, *, n: int, days: int, seed: int, sensitivity: bool) -> None:
    eng = create_engine(devdb.url(db))
    with eng.begin() as conn:
        inc = labelled_set(conn, n=n, days=days, seed=seed)
        load_labelled(conn, inc)
        print(f"seed {seed}: {len(inc):,} cases, "
              f"{int((inc['dup_cluster'] >= 0).sum()):,} in labelled clusters")
        print("| proposed | pairs | right | duplicates | found | precision | recall |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        print(_line("every pair inside the rule", duplicates.measure(conn, "dup_eval")))
        print(_line(f"score >= {duplicates.LIKELY}",
                    duplicates.measure(conn, "dup_eval", min_score=duplicates.LIKELY)))
        print(_line("score >= 0.8", duplicates.measure(conn, "dup_eval", min_score=0.8)))
        t = duplicates.operating_point(conn, "dup_eval", precision=0.90)
        print(_line(f"score >= {t:.3f} (label-free: mean score of proposals >= 0.90)",
                    duplicates.measure(conn, "dup_eval", min_score=t)))
        saved = duplicates.SAME_CHANNEL_WEIGHT
        duplicates.SAME_CHANNEL_WEIGHT = 1.0
        print(_line(f"score >= {duplicates.LIKELY}, channel not used",
                    duplicates.measure(conn, "dup_eval", min_score=duplicates.LIKELY)))
        duplicates.SAME_CHANNEL_WEIGHT = saved
        if sensitivity:
            for name in SENSITIVE:
                base = getattr(duplicates, name)
                for f in (0.5, 2.0):
                    setattr(duplicates, name, base * f)
                    print(_line(f"{name} x{f} ({base * f:g})", duplicates.measure(
                        conn, "dup_eval", min_score=duplicates.LIKELY)))
                setattr(duplicates, name, base)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="citygrid_test")
    ap.add_argument("--seed", type=int, default=330782)
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--days", type=int, default=50)
    ap.add_argument("--sensitivity", action="store_true")
    a = ap.parse_args()
    run(a.db, n=a.n, days=a.days, seed=a.seed, sensitivity=a.sensitivity)


if __name__ == "__main__":
    main()
