"""Bulk intake of 100,000 incidents, located, beside a raw COPY of the same rows (issue 5).

    python -m bench.bulk_intake [--rows 100000] [--repeat 1] [--tallies-off] [--mixed]

Both runs go into ``citygrid_bench`` (the 10,000-grid city) and are committed; the rows are
removed again afterwards, and the tables vacuumed so that the next run does not meet
autovacuum (this is a benchmark database, not a test one).

- *baseline*: ``COPY`` of the same CSV rows (as text) into an unlogged table with the same
  columns: the floor for moving the bytes into PostgreSQL;
- *CityGrid*: ``layers.incidents.intake.read_bulk`` + ``bulk``: parse, validate every field,
  convert and locate every point against the 10,000 grids (in-memory snapshot with its raster),
  resolve the responsible worker, and insert the incidents and their first history events
  (the map tally triggers of migrations 0008/0011 run inside the incident COPY);
- with ``--tallies-off``, the same intake again with the tally triggers disabled (the cost of
  the tallies, measured in the same run); ``--repeat`` runs each variant that many times,
  alternating, and reports every time and the best.

With ``--mixed`` the file is not only fresh ids inside grids (:func:`mixed_csv`): 10 % of the
rows repeat an id already stored (imported, untimed, before each run), 5 % repeat an id earlier
in the same file, 10 % fall in gaps between grids (inside a community, in no grid; fewer if the
city has few gaps), 5 % lie outside the city (0.002–0.05° beyond its edge). The intake runs
with ``partial=True`` (in-file repeats and points outside the city are bad rows, listed; the
rest go in). The baseline COPY moves the same bytes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sqlalchemy import create_engine, text

from bench import city
from bench.common import RESULTS

HEADER = "source,external_id,category,description,lon,lat,received_at\n"
CATS = ["E0101", "E0501", "E0502", "S0101", "C0102", "X0102"]


def _line(n: int, lon: float, lat: float) -> str:
    return (f"hotline_12345,bench-{n:07d},{CATS[n % len(CATS)]},群众来电反映第{n}号问题,"
            f"{lon:.7f},{lat:.7f},2026-11-28T{8 + n % 10:02d}:{n % 60:02d}:00+08:00\n")


def _points(snap, rows: int, want: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Up to ``rows`` random points of locate status ``want`` (0 inside, 1 gap)."""
    import shapely

    x0, y0, x1, y1 = shapely.total_bounds(snap.grids.polygons)
    # rounded as the file writes them, so a point on a boundary is located as the intake will
    lon = np.round(rng.uniform(x0, x1, max(rows * 3, 1000)), 7)
    lat = np.round(rng.uniform(y0, y1, max(rows * 3, 1000)), 7)
    _, status = snap.locate_many(lon, lat)
    keep = np.flatnonzero(status == want)[:rows]
    return lon[keep], lat[keep]


def make_csv(rows: int, snap, seed: int = 7) -> bytes:
    """``rows`` hotline rows at random points inside grids (uniform over the grids' area)."""
    lon, lat = _points(snap, rows, 0, np.random.default_rng(seed))
    return (HEADER + "".join(_line(n, x, y) for n, (x, y) in enumerate(zip(lon, lat, strict=True)))
            ).encode()


def mixed_csv(rows: int, snap, seed: int = 7) -> tuple[bytes, bytes, dict[str, int]]:
    """(the file, the rows to store before it, counts per kind): see the module's text."""
    import shapely

    rng = np.random.default_rng(seed)
    stored, again = rows // 10, rows // 20
    gx, gy = _points(snap, rows // 10, 1, rng)  # gaps: as many as a sample finds, up to 10 %
    x0, y0, x1, y1 = shapely.total_bounds(snap.grids.polygons)
    n_out = rows // 20
    side = rng.integers(0, 4, n_out)
    off = rng.uniform(0.002, 0.05, n_out)
    ox = np.where(side == 0, x0 - off, np.where(side == 1, x1 + off, rng.uniform(x0, x1, n_out)))
    oy = np.where(side == 2, y0 - off, np.where(side == 3, y1 + off, rng.uniform(y0, y1, n_out)))
    fresh = rows - stored - again - len(gx) - n_out
    ix, iy = _points(snap, stored + fresh, 0, rng)
    lines = [_line(n, x, y) for n, (x, y) in enumerate(zip(ix, iy, strict=True))]
    first = len(lines)
    lines += [_line(first + n, x, y) for n, (x, y) in enumerate(zip(gx, gy, strict=True))]
    lines += [_line(first + len(gx) + n, x, y)
              for n, (x, y) in enumerate(zip(ox, oy, strict=True))]
    lines += [lines[stored + int(i)] for i in rng.integers(0, fresh, again)]  # in-file repeats
    order = rng.permutation(len(lines))
    body = (HEADER + "".join(lines[i] for i in order)).encode()
    before = (HEADER + "".join(lines[:stored])).encode()
    return body, before, {"rows": len(lines), "repeat_stored": stored, "repeat_in_file": again,
                          "gap": len(gx), "outside": n_out, "fresh_inside": fresh}


TALLY_TRIGGERS = ("incident_tally_insert", "incident_tally_update", "incident_tally_delete",
                  "incident_assessment_tally_insert", "incident_assessment_tally_update",
                  "incident_assessment_tally_delete")  # map tallies (0008) and 0028's


def _remove_rows(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incident_event WHERE incident_id IN "
                          "(SELECT id FROM incident WHERE external_id LIKE 'bench-%')"))
        conn.execute(text("DELETE FROM incident WHERE external_id LIKE 'bench-%'"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM incident, incident_event, incident_cell_tally, "
                          "incident_grid_tally, assessment_tally"))


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tallies-off", action="store_true",
                        help="also run with the tally triggers disabled (same run)")
    parser.add_argument("--mixed", action="store_true",
                        help="duplicates, points in gaps and outside the city (mixed_csv)")
    args = parser.parse_args()
    city.ensure(verbose=False)
    from grids.access import Principal
    from grids.locate import load_snapshot
    from layers.incidents import catalogue, intake

    engine = create_engine(city.url())
    with engine.begin() as conn:
        catalogue.seed(conn)
    _remove_rows(engine)
    with engine.connect() as conn:
        snap = load_snapshot(conn)
    t0 = time.perf_counter()
    snap.grids.build_raster(1e-4)
    snap.areas.build_raster(1e-4)
    raster_s = time.perf_counter() - t0
    before, kinds = b"", {}
    if args.mixed:
        body, before, kinds = mixed_csv(args.rows, snap)
    else:
        body = make_csv(args.rows, snap)

    # Baseline: raw COPY of the same rows.
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_raw_copy"))
        conn.execute(text("CREATE UNLOGGED TABLE bench_raw_copy (source text, external_id text, "
                          "category text, description text, lon text, lat text, "
                          "received_at text)"))
    t0 = time.perf_counter()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor().copy("COPY bench_raw_copy FROM STDIN WITH (FORMAT csv, HEADER true)"
                               ) as copy:
            copy.write(body)
    copy_s = time.perf_counter() - t0
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_raw_copy"))

    # CityGrid: parse, validate, locate, insert incidents and events, commit.
    principal = Principal.system("bench")
    times: dict[str, list[float]] = {"tallies_on": [], "tallies_off": []}
    variants = ["tallies_on"] + (["tallies_off"] if args.tallies_off else [])
    for _ in range(args.repeat):
        for variant in variants:
            if variant == "tallies_off":
                with engine.begin() as conn:
                    for trig in TALLY_TRIGGERS:
                        conn.execute(text(f"ALTER TABLE incident DISABLE TRIGGER {trig}"))
            try:
                if before:  # the ids the file repeats are stored first (not timed)
                    with engine.begin() as conn:
                        intake.bulk(conn, snap, intake.read_bulk(before, filename="before.csv"),
                                    principal=principal)
                t0 = time.perf_counter()
                frame = intake.read_bulk(body, filename="day.csv")
                parse_s = time.perf_counter() - t0
                with engine.begin() as conn:  # --mixed: the good rows in, the bad listed
                    result = intake.bulk(conn, snap, frame, principal=principal,
                                         partial=args.mixed)
                times[variant].append(time.perf_counter() - t0)
                with engine.begin() as conn:
                    placed = conn.execute(text(
                        "SELECT count(*) FILTER (WHERE grid_code IS NOT NULL), count(*) "
                        "FROM incident WHERE external_id LIKE 'bench-%'")).one()
            finally:
                _remove_rows(engine)
                with engine.begin() as conn:
                    for trig in TALLY_TRIGGERS:
                        conn.execute(text(f"ALTER TABLE incident ENABLE TRIGGER {trig}"))
    engine.dispose()
    ours_s = min(times["tallies_on"])
    out = {
        "rows": args.rows, "mixed": kinds or None, "bytes": len(body),
        "imported": result["imported"], "duplicates": result.get("duplicates"),
        "bad_rows": result["bad_rows"], "placed_in_grid": placed[0],
        "raw_copy_s": round(copy_s, 3), "raw_copy_rows_per_s": round(args.rows / copy_s),
        "citygrid_s": round(ours_s, 3), "citygrid_rows_per_s": round(args.rows / ours_s),
        "citygrid_runs_s": [round(t, 3) for t in times["tallies_on"]],
        "parse_s": round(parse_s, 3), "ratio_to_copy": round(ours_s / copy_s, 2),
        "raster_build_s": round(raster_s, 2),
    }
    if times["tallies_off"]:
        off = min(times["tallies_off"])
        out |= {"tallies_off_s": round(off, 3), "tallies_off_rows_per_s": round(args.rows / off),
                "tallies_off_runs_s": [round(t, 3) for t in times["tallies_off"]],
                "tally_cost_ratio": round(ours_s / off, 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bulk_intake{'_mixed' if args.mixed else ''}.json").write_text(
        json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
