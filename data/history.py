"""A city's incident history as an import file would hold it (for the bulk import's tests and
bench): ``n`` incidents at points inside random grids, categories from the catalogue, received
over ``days`` from ``start``. Deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text


def history_frame(conn: Connection, n: int, *, seed: int, start: str, days: int,
                  source: str = "hotline_12345", prefix: str = "hist",
                  jitter_deg: float = 0.0) -> pd.DataFrame:
    """Columns of ``layers.bulk.history`` files: each row at a grid's point on surface, moved by
    up to ``jitter_deg`` in each axis; external ids ``{prefix}-{i}``."""
    rng = np.random.default_rng(seed)
    pts = conn.execute(text(
        "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT ST_PointOnSurface(geom) AS p "
        "FROM region_current WHERE level = 'grid' ORDER BY code) g")).all()
    cats = list(conn.execute(text(
        "SELECT code FROM category WHERE parent_id IS NOT NULL AND active ORDER BY code"))
        .scalars())
    pick = rng.integers(0, len(pts), n)
    received = (pd.Timestamp(start)
                + pd.to_timedelta(rng.integers(0, days * 86400, n), unit="s"))
    categories = [cats[i] for i in rng.integers(0, len(cats), n)]
    jitter = rng.uniform(-jitter_deg, jitter_deg, (n, 2)) if jitter_deg else np.zeros((n, 2))
    return pd.DataFrame({
        "source": source, "external_id": [f"{prefix}-{i}" for i in range(n)],
        "category": categories, "description": "历史工单", "address": "",
        "lon": [repr(float(pts[i].x + jitter[k, 0])) for k, i in enumerate(pick)],
        "lat": [repr(float(pts[i].y + jitter[k, 1])) for k, i in enumerate(pick)],
        "received_at": [t.isoformat() for t in received]})
