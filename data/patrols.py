"""A week of patrol GPS for the demo city's grid workers, generated without a database.

:func:`build_fixes` draws the fixes; :func:`load_demo_patrols` picks the workers from the database
and COPYs the fixes into ``patrol_fix`` in the caller's transaction (it does not commit).

What is drawn, per worker (their primary grid), day and session (08:30–11:30 and 14:00–17:30,
Beijing time, a fix every 30 s):

- **Behaviour**, fixed per worker: 65 % *walkers* cover their grid well (a smooth random walk at
  about 1.2 m/s, reflected at the grid's bounding box, so mostly inside the grid); 20 % *idlers*
  stay near one spot of the grid all session (what jitter collapses and coverage exposes);
  15 % *strays* walk like walkers but spend 40–90 minutes of each afternoon at a spot
  300–800 m outside their grid (what the alerts catch).
- 8 % of worker-days nobody goes out (leave, meetings): no fixes at all.
- **GPS**: Gaussian noise of 4 m on every fix, a reported accuracy of 5–25 m; 0.5 % of fixes are
  outliers 300–2,000 m off, half of them honest about it (accuracy 150–500 m), half not.

The default subset is the primary workers of 稠城街道 and 江东街道 (330782001, 330782002: the two
streets the scoped test accounts use), 444 workers, about 2.3 million fixes; pass ``streets`` for
others (all 14 streets would be about 14 million rows: too many for a demo load).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gis.transform import transformer

LOCAL = timezone(timedelta(hours=8))
SESSIONS = ((time(8, 30), time(11, 30)), (time(14, 0), time(17, 30)))
STEP_S = 30
DEMO_STREETS = ("330782001", "330782002")
BEHAVIOURS = ("walker", "idler", "stray")
SHARES = (0.65, 0.20, 0.15)


def build_fixes(workers: pd.DataFrame, *, days: int = 7, end: date, seed: int = 2026,
                step_s: int = STEP_S) -> pd.DataFrame:
    """Fixes for ``workers`` (columns ``staff_id`` and ``geom``: grid polygons in EPSG:4549).

    Returns ``staff_id``, ``at`` (UTC), ``x``, ``y`` (EPSG:4549), ``accuracy_m``, sorted by worker
    and time; the days are the ``days`` before ``end`` (exclusive).

    >>> w = pd.DataFrame({"staff_id": [1, 2], "geom": [shapely.box(0, 0, 500, 400)] * 2})
    >>> f = build_fixes(w, days=1, end=date(2026, 5, 2), seed=1)
    >>> sorted(f.columns), f["at"].min().isoformat()
    (['accuracy_m', 'at', 'staff_id', 'x', 'y'], '2026-05-01T00:30:00+00:00')
    """
    rng = np.random.default_rng([seed, 6])
    w = len(workers)
    geoms = np.asarray(workers["geom"].to_numpy(), dtype=object)
    behaviour = rng.choice(len(BEHAVIOURS), size=w, p=SHARES)
    bounds = shapely.bounds(geoms)  # (w, 4)
    frames = []
    for d in range(days):
        day = end - timedelta(days=days - d)
        present = rng.random(w) >= 0.08
        for s, (t0, t1) in enumerate(SESSIONS):
            start = datetime.combine(day, t0, LOCAL).astimezone(UTC)
            n = int((datetime.combine(day, t1) - datetime.combine(day, t0)).total_seconds()
                    // step_s)
            frames.append(_session(rng, workers["staff_id"].to_numpy(), geoms, bounds, behaviour,
                                   present, start, n, afternoon=s == 1, step_s=step_s))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["staff_id", "at"], kind="stable", ignore_index=True)


def _session(rng: np.random.Generator, staff: np.ndarray, geoms: np.ndarray, bounds: np.ndarray,
             behaviour: np.ndarray, present: np.ndarray, start: datetime, n: int, *,
             afternoon: bool, step_s: int = STEP_S) -> pd.DataFrame:
    w = staff.size
    x0, y0, x1, y1 = (bounds[:, i][:, None] for i in range(4))
    # A smooth random walk: heading drifts, steps of ~36 m (1.2 m/s), folded into the grid's box.
    heading = rng.uniform(0, 2 * np.pi, (w, 1)) + np.cumsum(rng.normal(0, 0.35, (w, n)), axis=1)
    step = np.clip(rng.normal(36, 8, (w, n)), 0, None)
    home = shapely.get_coordinates(shapely.point_on_surface(geoms))
    px = home[:, :1] + np.cumsum(step * np.cos(heading), axis=1)
    py = home[:, 1:] + np.cumsum(step * np.sin(heading), axis=1)
    px, py = _fold(px, x0, x1), _fold(py, y0, y1)
    # Idlers stand near one spot of the grid.
    idle = behaviour == 1
    if idle.any():
        px[idle] = home[idle, :1] + rng.normal(0, 3, (idle.sum(), n))
        py[idle] = home[idle, 1:] + rng.normal(0, 3, (idle.sum(), n))
    # Strays spend part of the afternoon at a spot outside their grid.
    stray = (behaviour == 2) & afternoon
    if stray.any():
        k = stray.sum()
        length = rng.integers(80, 181, k)  # 40–90 min of 30 s fixes
        first = rng.integers(0, n - 180, k)
        angle = rng.uniform(0, 2 * np.pi, k)
        radius = np.hypot(x1 - x0, y1 - y0)[stray, 0] / 2 + rng.uniform(300, 800, k)
        cx = (x0[stray, 0] + x1[stray, 0]) / 2 + radius * np.cos(angle)
        cy = (y0[stray, 0] + y1[stray, 0]) / 2 + radius * np.sin(angle)
        cols = np.arange(n)
        away = (cols >= first[:, None]) & (cols < (first + length)[:, None])
        sx, sy = px[stray], py[stray]
        sx[away] = np.broadcast_to(cx[:, None], away.shape)[away]
        sy[away] = np.broadcast_to(cy[:, None], away.shape)[away]
        px[stray], py[stray] = sx, sy
    px = px + rng.normal(0, 4, (w, n))
    py = py + rng.normal(0, 4, (w, n))
    accuracy = rng.uniform(5, 25, (w, n))
    outlier = rng.random((w, n)) < 0.005
    m = outlier.sum()
    off, ang = rng.uniform(300, 2000, m), rng.uniform(0, 2 * np.pi, m)
    px[outlier] += off * np.cos(ang)
    py[outlier] += off * np.sin(ang)
    accuracy[outlier] = np.where(rng.random(m) < 0.5, rng.uniform(150, 500, m), accuracy[outlier])
    keep = np.repeat(present[:, None], n, axis=1)
    at = pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * step_s, unit="s")
    return pd.DataFrame({
        "staff_id": np.repeat(staff, n)[keep.ravel()],
        "at": np.tile(at, w)[keep.ravel()],
        "x": px[keep], "y": py[keep], "accuracy_m": np.round(accuracy[keep], 1)})


def _fold(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect a walk into [lo, hi] (a mirror at each side)."""
    span = np.maximum(hi - lo, 1.0)
    u = np.mod(p - lo, 2 * span)
    return lo + span - np.abs(u - span)


def month_days(end: date) -> int:
    """Days from the first of the month before ``end``'s month up to ``end`` (exclusive): the
    last full month before ``end`` and this month so far.

    >>> month_days(date(2026, 12, 5))
    34
    """
    first = (end.replace(day=1) - timedelta(days=1)).replace(day=1)
    return (end - first).days


def load_demo_patrols(conn: Connection, *, days: int | None = 7, seed: int = 2026,
                      streets: tuple[str, ...] | None = None, end: date | None = None,
                      step_s: int | None = None) -> dict[str, Any]:
    """Generate and COPY fixes for the primary workers of ``streets`` (default: the demo city's
    two central streets, or the first two streets of another city).

    The days are the ``days`` before ``end`` (default: today, Beijing time), so a fresh demo
    has yesterday's patrols to show; the same seed draws the same walks whatever the dates.
    ``days=None``: from the first of last month to yesterday (:func:`month_days`), so the last
    full month has patrols on every day for the monthly assessment; these month-long loads take
    a fix every 60 s (``step_s``, the slow end of the usual 10–60 s) to stay about 5 million rows.
    Runs in the caller's transaction and does not commit.
    """
    from grids.city import profile

    city = profile(conn)
    end = end or datetime.now(city.tz).date()
    if days is None:
        days = month_days(end)
        step_s = step_s or 60
    step_s = step_s or STEP_S
    if streets is None:
        streets = DEMO_STREETS
        if not all(s.startswith(city.region_prefix) for s in streets):
            streets = tuple(conn.execute(text(
                "SELECT left(code, 9) FROM region_current WHERE level = 'street' "
                "ORDER BY code LIMIT 2")).scalars())
    rows = conn.execute(text(
        "SELECT DISTINCT ON (a.staff_id) a.staff_id, "
        "ST_AsBinary(ST_Transform(r.geom, (SELECT citygrid_metric_srid()))) "
        "FROM assignment a JOIN region_current r ON r.id = a.region_id "
        "JOIN staff s ON s.id = a.staff_id WHERE a.duty = 'primary' AND r.level = 'grid' "
        "AND a.valid_to IS NULL AND s.status = 'available' AND left(r.code, 9) = ANY(:streets) "
        "ORDER BY a.staff_id, r.code"), {"streets": list(streets)}).all()
    if not rows:
        return {"workers": 0, "fixes": 0}
    workers = pd.DataFrame({"staff_id": [r[0] for r in rows],
                            "geom": shapely.from_wkb([bytes(r[1]) for r in rows])})
    fixes = build_fixes(workers, days=days, end=end, seed=seed, step_s=step_s)
    lon, lat = transformer(city.metric_crs, "EPSG:4490").transform(fixes["x"].to_numpy(),
                                                                   fixes["y"].to_numpy())
    wkb = shapely.to_wkb(shapely.set_srid(shapely.points(lon, lat), 4490), hex=True,
                         include_srid=True)
    at = np.datetime_as_string(fixes["at"].dt.tz_convert(None).to_numpy(), unit="s")
    raw = conn.connection.driver_connection
    assert raw is not None
    chunk = 200_000
    with raw.cursor() as cur, cur.copy(
            "COPY patrol_fix (staff_id, at, geom, accuracy_m, crs_in) FROM STDIN") as copy:
        staff = fixes["staff_id"].astype(str).to_numpy()
        acc = fixes["accuracy_m"].astype(str).to_numpy()
        for lo in range(0, len(fixes), chunk):
            sl = slice(lo, lo + chunk)
            lines = [f"{s}\t{t}+00\t{g}\t{a}\tEPSG:4490"
                     for s, t, g, a in zip(staff[sl], at[sl], wkb[sl], acc[sl], strict=True)]
            copy.write(("\n".join(lines) + "\n").encode())
    return {"workers": len(workers), "fixes": len(fixes), "days": days,
            "from": (end - timedelta(days=days)).isoformat(), "to": end.isoformat()}
