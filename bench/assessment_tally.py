"""What the assessment tallies (migration 0028) cost intake and state changes, beside the same
work with their triggers disabled, in the same run.

    .venv/bin/python -m bench.assessment_tally [--url postgresql://…] [--rows 20000]

On a database with the demo city and no incidents (e.g. the tests' ``citygrid_test``): the demo
generator's incidents (``data.incidents.build_incidents``) written by ``load_incidents`` (COPY,
every other trigger on), then 500 single-row state changes (one ``UPDATE`` each, as
``layers.incidents.handling.act`` writes them), each variant inside a transaction rolled back,
alternating, best of ``--repeat``. Writes ``bench/results/assessment_tally.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import RESULTS

TRIGGERS = ("incident_assessment_tally_insert", "incident_assessment_tally_update",
            "incident_assessment_tally_delete")


def run(conn: Any, frames: Any, *, tally: bool) -> tuple[float, float]:
    from app.seed_incidents import load_incidents

    if not tally:
        for trig in TRIGGERS:
            conn.execute(text(f"ALTER TABLE incident DISABLE TRIGGER {trig}"))
    t0 = time.perf_counter()
    load_incidents(conn, frames)
    t_load = time.perf_counter() - t0
    ids = list(conn.execute(text(
        "SELECT id FROM incident WHERE state = 'closed' ORDER BY id LIMIT 500")).scalars())
    t0 = time.perf_counter()
    for i in ids:
        conn.execute(text("UPDATE incident SET state = 'evaluated', score = 4, "
                          "version = version + 1 WHERE id = :id"), {"id": i})
    return t_load, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.url is None:
        from app.settings import get_settings

        args.url = get_settings().db.owner_url
    from app.seed_incidents import DEMO_END, DEMO_SEED
    from data.incidents import build_incidents
    from grids.locate import load_snapshot
    from layers.incidents.catalogue import list_categories

    eng = create_engine(args.url)
    with eng.connect() as conn:
        if conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one():
            raise SystemExit("run on a database without incidents")
        frames = build_incidents(load_snapshot(conn, at=DEMO_END), list_categories(conn),
                                 n=args.rows, end=DEMO_END, days=365, seed=DEMO_SEED)
        conn.rollback()
    times: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    for _ in range(args.repeat):
        for variant in ("on", "off"):
            with eng.connect() as conn:
                times[variant].append(run(conn, frames, tally=variant == "on"))
                conn.rollback()
    eng.dispose()
    best = {v: (min(t[0] for t in ts), min(t[1] for t in ts)) for v, ts in times.items()}
    res = {"rows": args.rows, "load_on_s": best["on"][0], "load_off_s": best["off"][0],
           "updates": 500, "updates_on_s": best["on"][1], "updates_off_s": best["off"][1]}
    print(f"intake of {args.rows:,} incidents (COPY + every trigger): with 0028's tally "
          f"{best['on'][0]:.2f} s · without it {best['off'][0]:.2f} s "
          f"(+{(best['on'][0] / best['off'][0] - 1) * 100:.0f} %)")
    print(f"500 single-row state changes: with {best['on'][1] * 1000:.0f} ms · without "
          f"{best['off'][1] * 1000:.0f} ms ({best['on'][1] / 500 * 1000:.2f} vs "
          f"{best['off'][1] / 500 * 1000:.2f} ms each)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "assessment_tally.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
