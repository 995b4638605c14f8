"""The benchmark database: ``citygrid_bench`` with the 10,000-grid synthetic city, loaded once.

    python -m bench.city          # ensure it exists; prints the counts
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app import devdb
from app.db import migrate
from data.divisions import DEMO_SEED

ROOT = Path(__file__).resolve().parent.parent
DBNAME = "citygrid_bench"
GRIDS = 10_000
SEED = DEMO_SEED


def url(dbname: str = DBNAME) -> str:
    return devdb.url(dbname)


def _grid_count(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM region_current WHERE level = 'grid'")).scalar_one())


def ensure(verbose: bool = True, *, dbname: str = DBNAME) -> dict[str, int]:
    """Create, migrate and load ``dbname`` (default ``citygrid_bench``) if needed; reuse it when
    already loaded. ``bench.scale`` uses the same city in ``citygrid_scale``."""
    subprocess.run([sys.executable, "-m", "app.devdb", "up", dbname], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    migrate(url(dbname))
    engine = create_engine(url(dbname))
    try:
        with engine.connect() as conn:
            regions = int(conn.execute(text("SELECT count(*) FROM region")).scalar_one())
        if regions == 0:
            from app.seed import load_demo

            t0 = time.perf_counter()
            with engine.begin() as conn:
                counts = load_demo(conn, grids=GRIDS, seed=SEED)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            if verbose:
                print(f"loaded the {GRIDS}-grid city in {time.perf_counter() - t0:.1f} s: {counts}",
                      flush=True)
        grids = _grid_count(engine)
        if grids != GRIDS:
            raise SystemExit(
                f"{dbname} holds {grids} grids, not {GRIDS}; drop it "
                f"(psql -h 127.0.0.1 -p $CITYGRID_PGPORT -U citygrid -d postgres "
                f"-c 'DROP DATABASE {dbname}') "
                "and run again")
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT (SELECT count(*) FROM region) AS regions, "
                "(SELECT count(*) FROM staff) AS staff, "
                "(SELECT count(*) FROM assignment) AS assignments")).one()
        return {"regions": row.regions, "grids": grids, "staff": row.staff,
                "assignments": row.assignments}
    finally:
        engine.dispose()


def city_bbox(dbname: str = DBNAME) -> tuple[float, float, float, float]:
    """lon/lat bounds of the city region."""
    engine = create_engine(url(dbname))
    try:
        with engine.connect() as conn:
            b = conn.execute(text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom) AS e FROM region_current WHERE level = 'city') s")).one()
        return float(b[0]), float(b[1]), float(b[2]), float(b[3])
    finally:
        engine.dispose()


if __name__ == "__main__":
    print(ensure())
    print("bbox", city_bbox())
