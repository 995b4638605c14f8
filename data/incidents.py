"""A year of incidents for the demo city: where, when, what, from which channel, and every step.

:func:`build_incidents` makes two tables, with no database: ``incidents`` (one row per case, the
columns of table ``incident``, codes instead of ids) and ``events`` (every step of the closed loop
actually taken, in order). :mod:`app.seed_incidents` writes them with COPY.

How it is drawn, in order (each part has its own random stream keyed by ``(seed, part)``, so
changing one part does not reshuffle the others):

1. **Source** with the shares of a county-level command centre (:data:`SOURCE_SHARES`), then the
   **category** given the source: every channel sees the catalogue's frequencies
   (:data:`CATEGORY_WEIGHT`) tilted towards what it typically reports (110 gets disputes and
   public order, supervisors components and city appearance, grid workers the priority scenes).
2. **Time**, per (kind of channel, category), over the hours of the window: a daily rhythm (peaks
   at 9–11 h and 14–17 h; field patrols only in working hours; 110 also in the evening), a weekly
   rhythm (city management lower at weekends, disputes higher), a mild seasonal wave and a growing
   trend, the Spring Festival dip (Yiwu's migrant workforce goes home) with wage disputes rising in
   the weeks before it, the plum-rain and typhoon season for flooded roads and fallen trees, a dry
   winter for fire hazards, and night work for construction noise.
3. **Place**: a mixture of hot spots (Gaussian clusters round markets, the old centre, the station,
   estates, construction sites and industrial zones; each kind attracts its own categories;
   construction sites are active for a few months only) and a background spread uniformly over
   grids (grids are sized by households, so this is already denser in town). Points are kept only
   inside a grid, then placed with the snapshot: region, grid, community, street, responsible
   worker, fallback and boundary version, as intake would have recorded them.
4. **Workflow**: every case follows the same template of steps (:data:`SLOTS`), each step's
   duration drawn against its category's limit (mostly well within, a long tail beyond), with side
   paths (void, return, extension, supervision cards, rework, evaluation) switched on per case, a
   few cases left hanging (挂账) in an open state, and everything after ``end`` cut off. Old cases
   are therefore mostly closed or evaluated and recent ones spread over the open states.
   ``closed_on_time`` compares ``closed_at - received_at`` with the total limit plus extension,
   exactly as :func:`layers.incidents.handling.act` does.

Timestamps are tz-aware UTC; all rhythms are in Beijing time (UTC+8, no daylight saving).

>>> [round(SOURCE_SHARES[s], 2) for s in ("hotline_12345", "grid_worker")]
[0.45, 0.25]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from layers.incidents.workflow import DEFAULT_LIMITS_H, total_limit_hours

CST = timezone(timedelta(hours=8), "CST")  # Asia/Shanghai: fixed UTC+8 since 1991

SOURCE_SHARES: dict[str, float] = {
    "hotline_12345": 0.45, "grid_worker": 0.25, "supervisor": 0.15, "citizen_app": 0.10,
    "police_110": 0.04, "other_centre": 0.01,
}
SOURCES = tuple(SOURCE_SHARES)
# external_id = PREFIX-YYYYMMDD-NNNNNN, numbered per source and (Beijing) day
SOURCE_PREFIX = {"hotline_12345": "12345", "grid_worker": "WGY", "supervisor": "SZCG",
                 "citizen_app": "APP", "police_110": "110", "other_centre": "QT"}
# What the channel's device or seat sends: dispatchers click the CGCS2000 map, phones send GCJ-02.
SOURCE_CRS = {"hotline_12345": "EPSG:4490", "grid_worker": "GCJ-02", "supervisor": "EPSG:4326",
              "citizen_app": "GCJ-02", "police_110": "EPSG:4326", "other_centre": "EPSG:4326"}
SOURCE_INTRO = {"hotline_12345": "市民来电反映：", "grid_worker": "网格员巡查发现：",
                "supervisor": "城管监督员巡查发现：", "citizen_app": "市民通过App上报：",
                "police_110": "110联动转办：", "other_centre": "其他中心转办："}
# Kinds of channel for the daily rhythm: desks answer round the clock, patrols work days.
SOURCE_KIND = {"hotline_12345": "desk", "citizen_app": "desk", "other_centre": "desk",
               "police_110": "police", "supervisor": "field", "grid_worker": "field"}
REPORTER_SHARE = {"hotline_12345": 0.55, "citizen_app": 0.7}  # others carry no reporter

# Relative frequency of each leaf category (unknown codes get 1.0): exposed rubbish, street vending,
# illegal parking and disputes lead; fire hazards are rare.
CATEGORY_WEIGHT: dict[str, float] = {
    "E0101": 16, "E0501": 12, "E0502": 12, "S0101": 8, "E0103": 6, "E0202": 5, "E0302": 5,
    "S0102": 4, "C0102": 4, "C0202": 3, "E0201": 3, "E0301": 3, "X0101": 3, "X0102": 3,
    "S0201": 2.5, "C0101": 2, "E0102": 2, "S0202": 2, "C0201": 1.5, "S0301": 1.5, "C0301": 1,
    "E0401": 1, "X0103": 1, "C0103": 0.7, "E0402": 0.4,
}
# P(category | source) ∝ weight × affinity (by family, then by code).
SOURCE_FAMILY_AFFINITY: dict[str, dict[str, float]] = {
    "police_110": {"social": 4.0, "scene": 1.0, "event": 0.4, "component": 0.3},
    "supervisor": {"component": 2.5, "event": 2.0, "social": 0.1, "scene": 0.3},
    "grid_worker": {"scene": 3.0, "social": 1.5, "event": 1.0, "component": 0.8},
    "citizen_app": {"component": 1.5, "event": 1.3, "social": 0.6, "scene": 0.8},
}
SOURCE_CODE_AFFINITY: dict[str, dict[str, float]] = {
    "police_110": {"E0502": 4.0, "E0402": 8.0, "E0302": 2.0},
}

# Local hour 0..23 → relative intake.
HOURLY: dict[str, NDArray[np.float64]] = {
    "desk": np.array([.15, .08, .05, .04, .04, .08, .25, .55, .95, 1.35, 1.45, 1.3,
                      .9, .85, 1.2, 1.35, 1.3, 1.1, .8, .7, .6, .5, .35, .22]),
    "field": np.array([.01, .005, .005, .005, .005, .02, .1, .6, 1.3, 1.6, 1.55, 1.1,
                       .4, .5, 1.3, 1.5, 1.4, 1.0, .35, .15, .08, .05, .03, .02]),
    "police": np.array([.5, .4, .3, .2, .15, .15, .25, .5, .8, 1.0, 1.05, 1.0,
                        .9, .9, 1.0, 1.05, 1.05, 1.0, 1.0, 1.1, 1.15, 1.1, .9, .7]),
}
# Monday..Sunday.
WEEKLY_KIND = {"desk": np.array([1, 1, 1, 1, 1, .95, .95]),
               "police": np.array([1, 1, 1, 1, 1.05, 1.1, 1.1]),
               "field": np.array([1.05, 1.05, 1.05, 1.05, 1, .55, .45])}
WEEKLY_FAMILY = {"event": np.array([1, 1, 1, 1, 1, .85, .8]),
                 "component": np.array([1, 1, 1, 1, 1, .85, .8]),
                 "social": np.array([.95, .95, .95, .95, 1, 1.3, 1.35]),
                 "scene": np.array([1, 1, 1, 1, 1, 1, 1.0])}
# Spring Festival (lunar new year's day): Yiwu's migrant workforce goes home.
SPRING_FESTIVAL = {date(2024, 2, 10), date(2025, 1, 29), date(2026, 2, 17), date(2027, 2, 6),
                   date(2028, 1, 26), date(2029, 2, 13), date(2030, 2, 3)}

# Hot spots that exist in the city (lon, lat WGS84, kind, sigma m, weight); more are drawn at random.
LANDMARKS: list[tuple[float, float, str, float, float]] = [
    (120.108, 29.337, "market", 550.0, 6.0),  # 国际商贸城 (Futian trade city)
    (120.080, 29.312, "market", 350.0, 4.0),  # 篁园/宾王 markets by the old centre
    (120.075, 29.306, "old_town", 600.0, 5.0),  # 稠城 old centre
    (120.105, 29.300, "residential", 500.0, 3.0),  # 江东 estates
    (120.046, 29.372, "transport", 300.0, 2.0),  # railway station
    (120.062, 29.338, "nightlife", 300.0, 2.0),  # 北苑 food street
    (120.030, 29.200, "old_town", 400.0, 2.0),  # 佛堂 old town
    (120.185, 29.400, "industrial", 700.0, 2.0),  # 苏溪 industrial zone
    (119.960, 29.245, "industrial", 700.0, 1.5),  # 义亭 industrial zone
    (120.162, 29.342, "industrial", 600.0, 1.5),  # 廿三里
]
RANDOM_HOTSPOTS = 26
HOTSPOT_KINDS = ("market", "old_town", "residential", "construction", "industrial", "transport",
                 "nightlife")
RANDOM_KIND_SHARES = (0.15, 0.05, 0.35, 0.25, 0.1, 0.0, 0.1)
# Category multipliers per kind of hot spot (1 for anything not listed).
HOTSPOT_AFFINITY: dict[str, dict[str, float]] = {
    "market": {"E0501": 6, "E0502": 4, "E0202": 4, "E0101": 3, "E0201": 3, "E0103": 3,
               "S0201": 2, "S0101": 0.4, "C0301": 0.3},
    "old_town": {"S0101": 4, "X0101": 5, "X0102": 5, "X0103": 3, "E0101": 2, "E0502": 2,
                 "C0102": 2, "C0101": 1.5, "S0301": 2, "E0402": 3},
    "residential": {"S0101": 3, "X0101": 3, "X0102": 4, "X0103": 2, "C0102": 2, "E0502": 2,
                    "E0101": 1.5, "S0301": 1.5},
    "construction": {"E0102": 12, "E0302": 8, "E0301": 5, "E0103": 3, "C0202": 3, "S0102": 3,
                     "S0101": 0.3, "E0501": 0.3},
    "industrial": {"S0102": 8, "S0202": 8, "X0101": 2, "E0102": 2, "E0402": 3, "C0103": 3,
                   "E0501": 0.3},
    "transport": {"E0502": 6, "E0501": 3, "S0201": 4, "C0201": 3, "E0202": 2},
    "nightlife": {"E0501": 5, "E0101": 4, "S0201": 3, "S0101": 2, "E0302": 0.5},
}
BACKGROUND_WEIGHT = 0.8  # against hot-spot weights normalised to 1: about half the cases
BACKGROUND_AFFINITY = {"C0301": 3, "E0401": 2, "C0202": 2, "S0301": 2, "E0301": 2, "C0102": 1.5}

# The template every case follows; side paths are switched on per case.
# (action, from_state, to_state); the 'card' slots are yellow then red.
MAX_REWORK = 2
SLOTS: list[tuple[str, str | None, str]] = [
    ("receive", None, "received"),
    ("void", "received", "voided"),
    ("register", "received", "registered"),
    ("void", "registered", "voided"),
    ("dispatch", "registered", "dispatched"),
    ("return", "dispatched", "registered"),
    ("dispatch", "registered", "dispatched"),
    ("accept", "dispatched", "handling"),
    ("extend", "handling", "handling"),
    ("card", "handling", "handling"),
    ("card", "handling", "handling"),
    ("report", "handling", "reported"),
    *[step for _ in range(MAX_REWORK) for step in (
        ("rework", "reported", "dispatched"), ("accept", "dispatched", "handling"),
        ("report", "handling", "reported"))],
    ("verify", "reported", "verified"),
    ("close", "verified", "closed"),
    ("evaluate", "closed", "evaluated"),
]
# Shares of side paths.
VOID_SHARE = 0.02  # of which 70 % at intake (duplicates, no substance), the rest after registering
RETURN_SHARE = 0.03  # sent to the wrong grid or department, returned and re-dispatched
REWORK_SHARE = 0.06  # failed the check at least once; a tenth of them twice
EVALUATE_SHARE = 0.6  # closed cases that get a satisfaction score
EXTEND_SHARE = 0.3  # of cases whose handling runs past 80 % of its limit
# Step durations: limit × median share × lognormal(sigma); a tail of slow handling beyond.
STEP_TIME = {"register": (0.25, 0.9), "dispatch": (0.3, 0.9), "accept": (0.3, 0.9),
             "handle": (0.4, 0.9), "verify": (0.3, 0.9), "close": (0.25, 0.9)}
SLOW_HANDLING_SHARE = 0.16  # × 1.5–5: waiting for parts, owners, other departments
CARD_SHARE = (0.5, 0.6)  # overdue cases that get a yellow card; of those twice overdue, a red one

_BIG = 10**9  # seconds: "never", for cases left hanging
_STREAMS = {"source": 1, "time": 2, "place": 3, "workflow": 4, "people": 5}
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐")


@dataclass(frozen=True)
class IncidentFrames:
    """Generated incidents and their history.

    Attributes
    ----------
    incidents
        One row per case, sorted by ``received_at``: the columns of table ``incident`` with
        ``category_code`` and ``department_code`` instead of ids and ``lon``/``lat`` (EPSG:4490)
        instead of the geometry.
    events
        One row per step, ordered by ``incident`` (row position in ``incidents``) then time:
        ``incident, at, actor, action, from_state, to_state, note``.
    """

    incidents: pd.DataFrame
    events: pd.DataFrame


def _rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([seed, 33, _STREAMS[part]])


def _lognormal(rng: np.random.Generator, median: NDArray[np.float64] | float, sigma: float,
               size: int) -> NDArray[np.float64]:
    return np.asarray(median) * np.exp(sigma * rng.standard_normal(size))


def build_incidents(snapshot: Any, categories: list[dict[str, Any]], *, n: int = 220_000,
                    end: datetime, days: int = 365, seed: int = 330782,
                    landmarks: list[tuple[float, float, str, float, float]] | None = None
                    ) -> IncidentFrames:
    """Generate ``n`` incidents received in ``[end - days, end)`` and their events.

    Parameters
    ----------
    snapshot
        A :class:`grids.locate.Snapshot` of the city (places and responsible staff).
    categories
        Catalogue rows (as from :func:`layers.incidents.catalogue.list_categories`): ``code``,
        ``parent_code``, ``family``, ``department``, ``limits`` and optionally ``name`` and
        ``routing``. Only leaf categories (with a parent) get incidents.
    n, end, days
        How many cases, received over how many days before ``end`` (tz-aware).
    seed
        The same arguments and seed give identical frames.
    """
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    if n < 1 or days < 1:
        raise ValueError("n and days must be positive")
    leaves = [c for c in categories if c.get("parent_code")]
    if not leaves:
        raise ValueError("the catalogue has no leaf categories")

    src, cat = _draw_sources_and_categories(n, leaves, seed)
    start = end.astimezone(CST) - timedelta(days=days)
    t0 = _draw_times(src, cat, leaves, start=start, days=days, seed=seed)
    order = np.argsort(t0, kind="stable")
    src, cat, t0 = src[order], cat[order], t0[order]
    lon, lat = _draw_places(snapshot, cat, t0, leaves, days=days, seed=seed,
                            landmarks=LANDMARKS if landmarks is None else landmarks)
    place = _place_columns(snapshot, lon, lat)
    # the actor of field steps: the responsible worker, or the duty officer where none is known
    staff = np.array(["user:duty-officer" if code is None else f"staff:{code}"
                      for code in place["responsible_code"].tolist()], dtype=object)
    flow = _workflow(src, cat, t0, leaves, staff=staff, end_s=days * 86400, seed=seed)

    start_utc = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "s")

    def stamp(seconds: NDArray[np.int64]) -> pd.Series:
        values = (start_utc + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
        return pd.Series(values).dt.tz_localize(UTC)

    sources = np.array(SOURCES, dtype=object)[src]
    codes = np.array([c["code"] for c in leaves], dtype=object)
    names = np.array([c.get("name") or c["code"] for c in leaves], dtype=object)
    depts = np.array([c.get("department") for c in leaves], dtype=object)
    intro = np.array([SOURCE_INTRO[s] for s in SOURCES], dtype=object)
    reporter_name, reporter_phone = _reporters(src, seed)
    closed = flow["closed_s"] >= 0
    incidents = pd.DataFrame({
        "source": sources,
        "external_id": _external_ids(src, t0, start),
        "category_code": codes[cat],
        "department_code": depts[cat],
        "description": intro[src] + names[cat],
        "address": place.pop("address"),
        "lon": lon, "lat": lat,
        "crs_in": np.array([SOURCE_CRS[s] for s in SOURCES], dtype=object)[src],
        "reporter_name": reporter_name, "reporter_phone": reporter_phone,
        "state": flow["state"],
        **place,
        "card": flow["card"],
        "extension_hours": flow["extension_hours"],
        "rework_count": flow["rework_count"],
        "score": pd.array(np.where(flow["score"] > 0, flow["score"], None), dtype="Int64"),
        "received_at": stamp(t0),
        "state_since": stamp(t0 + flow["state_since_s"]),
        "due_at": stamp(t0 + flow["due_s"]),
        "closed_at": stamp(t0 + np.maximum(flow["closed_s"], 0)),
        "closed_on_time": pd.array(flow["on_time"], dtype="boolean"),
        "version": flow["version"],
    })
    incidents.loc[~closed, ["closed_at", "closed_on_time"]] = pd.NA
    events = flow["events"]
    events["at"] = stamp(t0[events["incident"].to_numpy()] + events.pop("rel_s").to_numpy())
    events = events[["incident", "at", "actor", "action", "from_state", "to_state", "note"]]
    return IncidentFrames(incidents=incidents, events=events)


# -- what and from where -------------------------------------------------------------------------
def _draw_sources_and_categories(n: int, leaves: list[dict[str, Any]], seed: int
                                 ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    rng = _rng(seed, "source")
    shares = np.array([SOURCE_SHARES[s] for s in SOURCES])
    src = rng.choice(len(SOURCES), size=n, p=shares / shares.sum())
    cat = np.empty(n, dtype=np.int64)
    base = np.array([CATEGORY_WEIGHT.get(c["code"], 1.0) for c in leaves])
    for k, source in enumerate(SOURCES):
        fam = SOURCE_FAMILY_AFFINITY.get(source, {})
        by_code = SOURCE_CODE_AFFINITY.get(source, {})
        w = base * np.array([by_code.get(c["code"], fam.get(c["family"], 1.0)) for c in leaves])
        rows = np.flatnonzero(src == k)
        cat[rows] = rng.choice(len(leaves), size=rows.size, p=w / w.sum())
    return src, cat


# -- when ----------------------------------------------------------------------------------------
def _draw_times(src: NDArray[np.int64], cat: NDArray[np.int64], leaves: list[dict[str, Any]], *,
                start: datetime, days: int, seed: int) -> NDArray[np.int64]:
    """Seconds after ``start`` at which each case was received."""
    rng = _rng(seed, "time")
    hours = pd.date_range(start, periods=days * 24, freq="h")
    hod = hours.hour.to_numpy()
    dow = hours.day_of_week.to_numpy()
    doy = hours.day_of_year.to_numpy().astype(float)
    day = (np.arange(days * 24) // 24).astype(float)
    local_day = hours.normalize().tz_localize(None).to_numpy().astype("datetime64[D]")
    # the whole city: a seasonal wave (high in summer), a growing trend, the Spring Festival dip
    common = (1 + 0.1 * np.sin(2 * np.pi * (doy - 105) / 365.25)) * (1 + 0.1 * day / days)
    to_festival = np.full(hod.shape, 999.0)
    for festival in SPRING_FESTIVAL:
        delta = (np.datetime64(festival, "D") - local_day).astype(float)  # days until it
        to_festival = np.where(np.abs(delta) < np.abs(to_festival), delta, to_festival)
    common *= np.where((to_festival <= 5) & (to_festival > -10), 0.55, 1.0)
    kinds = np.array([SOURCE_KIND[s] for s in SOURCES])
    t0 = np.empty(src.size, dtype=np.int64)
    group = src * len(leaves) + cat
    for key in np.unique(group):
        rows = np.flatnonzero(group == key)
        k, c = divmod(int(key), len(leaves))
        leaf = leaves[c]
        kind = str(kinds[k])
        w = (common * HOURLY[kind][hod] * WEEKLY_KIND[kind][dow]
             * WEEKLY_FAMILY.get(leaf["family"], WEEKLY_FAMILY["scene"])[dow]
             * _category_rhythm(leaf["code"], hod, doy, to_festival))
        slot = rng.choice(w.size, size=rows.size, p=w / w.sum())
        t0[rows] = slot * 3600 + rng.integers(0, 3600, size=rows.size)
    return t0


def _category_rhythm(code: str, hod: NDArray[np.int64], doy: NDArray[np.float64],
                     to_festival: NDArray[np.float64]) -> NDArray[np.float64] | float:
    if code == "E0401":  # flooded road: plum rain (mid June to early July), typhoons (August)
        return (0.3 + 6 * np.exp(-(((doy - 175) / 20) ** 2))
                + 4 * np.exp(-(((doy - 225) / 15) ** 2)))
    if code == "C0301":  # fallen trees: typhoons
        return 0.6 + 4 * np.exp(-(((doy - 225) / 20) ** 2))
    if code == "E0402":  # fire hazards: dry winter
        return 1 + 0.8 * np.cos(2 * np.pi * (doy - 15) / 365.25)
    if code == "S0102":  # wage disputes: the weeks before the Spring Festival
        return np.where((to_festival > 5) & (to_festival <= 40), 3.0, 1.0)
    if code == "E0302":  # construction noise: complaints about night work
        return np.where((hod >= 21) | (hod <= 1), 4.0, 1.0)
    if code == "S0101":  # neighbour disputes: evenings
        return np.where((hod >= 18) & (hod <= 21), 1.6, 1.0)
    return 1.0


# -- where ---------------------------------------------------------------------------------------
def _draw_places(snapshot: Any, cat: NDArray[np.int64], t0: NDArray[np.int64],
                 leaves: list[dict[str, Any]], *, days: int, seed: int,
                 landmarks: list[tuple[float, float, str, float, float]]
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = _rng(seed, "place")
    polys = np.asarray(snapshot.grids.polygons, dtype=object)
    grid_codes = np.array([snapshot.regions[i].code for i in snapshot.grid_ids], dtype=str)
    urban = np.array([int(c[6:9]) < 100 for c in grid_codes])
    centres = shapely.get_coordinates(shapely.point_on_surface(polys))

    # hot spots: the landmarks, then random ones (mostly in the urban streets)
    spots = [(x, y, kind, sigma, weight, 0, days * 86400) for x, y, kind, sigma, weight in landmarks]
    p_grid = np.where(urban, 5.0, 1.0)
    picks = rng.choice(len(polys), size=RANDOM_HOTSPOTS, replace=False, p=p_grid / p_grid.sum())
    kinds = rng.choice(len(HOTSPOT_KINDS), size=RANDOM_HOTSPOTS, p=RANDOM_KIND_SHARES)
    for g, k in zip(picks.tolist(), kinds.tolist(), strict=True):
        kind = HOTSPOT_KINDS[k]
        begin, length = 0, days * 86400
        if kind == "construction":  # a site lasts a few months
            length = int(rng.uniform(90, 240) * 86400)
            begin = int(rng.uniform(-60, days - 60) * 86400)
        spots.append((centres[g, 0], centres[g, 1], kind, float(rng.uniform(150, 450)),
                      float(rng.lognormal(0, 0.5)), begin, begin + length))
    weight = np.array([s[4] for s in spots])
    weight /= weight.sum()
    affinity = np.array([[HOTSPOT_AFFINITY[s[2]].get(c["code"], 1.0) for c in leaves]
                         for s in spots])  # spot × category
    background = BACKGROUND_WEIGHT * np.array([BACKGROUND_AFFINITY.get(c["code"], 1.0)
                                               for c in leaves])
    mix = np.empty((cat.size, len(spots) + 1), dtype=np.float32)
    for j, s in enumerate(spots):
        active = (t0 >= s[5]) & (t0 < s[6])
        mix[:, j] = weight[j] * affinity[j, cat] * active
    mix[:, -1] = background[cat]
    cum = np.cumsum(mix, axis=1)
    comp = (cum < rng.random(cat.size)[:, None] * cum[:, -1:]).sum(axis=1)
    comp = np.minimum(comp, len(spots))

    lon = np.full(cat.size, np.nan)
    lat = np.full(cat.size, np.nan)
    sx = np.array([s[0] for s in spots])
    sy = np.array([s[1] for s in spots])
    sigma = np.array([s[3] for s in spots])
    todo = np.flatnonzero(comp < len(spots))
    for _ in range(8):  # Gaussian round the spot; keep points inside a grid
        if not todo.size:
            break
        j = comp[todo]
        m_per_deg_x = 111_320.0 * np.cos(np.radians(sy[j]))
        x = sx[j] + rng.standard_normal(todo.size) * sigma[j] / m_per_deg_x
        y = sy[j] + rng.standard_normal(todo.size) * sigma[j] / 110_574.0
        _, status = snapshot.locate_many(x, y)
        ok = status == 0
        lon[todo[ok]], lat[todo[ok]] = x[ok], y[ok]
        todo = todo[~ok]
    # background (and the few hot-spot draws that kept falling outside): uniform over grids,
    # then uniform inside the grid
    todo = np.flatnonzero(np.isnan(lon))
    grid = rng.integers(0, len(polys), size=todo.size)
    bounds = shapely.bounds(polys)
    for _ in range(50):
        if not todo.size:
            break
        b = bounds[grid]
        x = rng.uniform(b[:, 0], b[:, 2])
        y = rng.uniform(b[:, 1], b[:, 3])
        ok = shapely.contains_xy(polys[grid], x, y)
        lon[todo[ok]], lat[todo[ok]] = x[ok], y[ok]
        todo, grid = todo[~ok], grid[~ok]
    if todo.size:  # a pathological sliver: its point on surface
        lon[todo], lat[todo] = centres[grid, 0], centres[grid, 1]
    return lon, lat


def _place_columns(snapshot: Any, lon: NDArray[np.float64], lat: NDArray[np.float64]
                   ) -> dict[str, Any]:
    """Where intake would have put each point: per-region values computed once, then indexed."""
    region, _ = snapshot.locate_many(lon, lat)
    cols = snapshot.batch_columns()  # per region, plus a final '' for 'none'
    regions = snapshot.regions

    def none_if_empty(values: NDArray[np.object_]) -> NDArray[np.object_]:
        out = values.copy()
        out[out == ""] = None
        return out

    code = np.array([r.code for r in regions] + [None], dtype=object)
    version = np.array([r.version_id for r in regions] + [0], dtype=np.int64)
    address = np.empty(len(regions) + 1, dtype=object)
    for i, r in enumerate(regions):
        chain = snapshot.chain(i)
        street = next((regions[j].name for j in chain if regions[j].level == "street"), "")
        address[i] = f"{street}{r.name}附近" if r.level != "street" else f"{r.name}附近"
    address[-1] = ""
    return {
        "region_code": code[region],
        "grid_code": none_if_empty(cols["grid_code"])[region],
        "community_code": none_if_empty(cols["community_code"])[region],
        "street_code": none_if_empty(cols["street_code"])[region],
        "boundary_version_id": pd.array(np.where(region >= 0, version[region], None),
                                        dtype="Int64"),
        "responsible_code": none_if_empty(cols["responsible_code"])[region],
        "fallback": none_if_empty(cols["fallback"])[region],
        "address": address[region],
    }


# -- the closed loop -----------------------------------------------------------------------------
def _workflow(src: NDArray[np.int64], cat: NDArray[np.int64], t0: NDArray[np.int64],
              leaves: list[dict[str, Any]], *, staff: NDArray[np.object_], end_s: int, seed: int
              ) -> dict[str, Any]:
    """Every case through :data:`SLOTS`, cut at ``end_s``; times in seconds after ``t0``.

    ``staff`` is the actor of each case's responsible worker (``staff:S000123``).
    """
    rng = _rng(seed, "workflow")
    n = src.size
    limit = {step: np.array([float(c["limits"].get(step, h)) for c in leaves])[cat]
             for step, h in DEFAULT_LIMITS_H.items()}
    total_h = np.array([total_limit_hours(c["limits"]) for c in leaves])[cat]

    def dur(step: str, share: float | None = None, sigma: float | None = None
            ) -> NDArray[np.float64]:
        median, spread = STEP_TIME[step]
        hours = _lognormal(rng, limit[step] * (share or median), sigma or spread, n)
        return np.maximum(hours * 3600, 60.0)

    # side paths
    u = rng.random(n)
    void = np.where(u < VOID_SHARE * 0.7, 1, np.where(u < VOID_SHARE, 2, 0))  # 1 at intake
    age_days = (end_s - t0) / 86400
    stuck = (void == 0) & (rng.random(n) < 0.002 + 0.03 * np.exp(-age_days / 20))
    stuck_at = np.where(stuck, rng.choice(6, size=n, p=[.12, .12, .2, .3, .13, .13]), -1)
    free = (void == 0) & ~stuck
    returned = free & (rng.random(n) < RETURN_SHARE)
    r = rng.random(n)
    rework = np.where(free & (r < REWORK_SHARE * 0.1), 2, np.where(free & (r < REWORK_SHARE), 1, 0))
    evaluated = rng.random(n) < EVALUATE_SHARE

    d_reg, d_disp, d_acc = dur("register"), dur("dispatch"), dur("accept")
    d_ret, d_disp2 = dur("accept", 0.4, 0.8), dur("dispatch")
    d_hand = dur("handle")
    slow = rng.random(n) < SLOW_HANDLING_SHARE
    d_hand = np.where(slow, d_hand * rng.uniform(1.5, 5.0, n), d_hand)
    d_ver, d_close = dur("verify"), dur("close")
    d_eval = np.minimum(_lognormal(rng, 12.0, 1.0, n), 15 * 24) * 3600
    loops = [(dur("verify", 0.3, 0.8), dur("accept", 0.3, 0.8), dur("handle", 0.2, 0.8))
             for _ in range(MAX_REWORK)]
    for state, d in enumerate((d_reg, d_disp, d_acc, d_hand, d_ver, d_close)):
        d[stuck_at == state] = _BIG

    extended = free | (stuck_at == 3)
    extended &= (d_hand > 0.8 * limit["handle"] * 3600) & (rng.random(n) < EXTEND_SHARE)
    ext_h = np.where(extended, limit["handle"] * rng.choice([0.5, 1.0], size=n), 0.0)
    card_after = (limit["handle"] + ext_h) * 3600

    # times of every slot (seconds after t0); flooring keeps them in order
    times: list[NDArray[np.float64]] = []
    active: list[NDArray[np.bool_]] = []
    alive = void == 0

    def add(t: NDArray[np.float64], on: NDArray[np.bool_]) -> None:
        times.append(t)
        active.append(on)

    zero = np.zeros(n)
    add(zero, np.ones(n, dtype=bool))  # receive
    add(d_reg, void == 1)  # void at intake
    t_reg = d_reg
    add(t_reg, void != 1)
    add(t_reg + d_disp, void == 2)  # void after registering
    t_disp = t_reg + d_disp
    add(t_disp, alive)
    t_ret = t_disp + d_ret
    add(t_ret, returned)
    t_disp2 = t_ret + d_disp2
    add(t_disp2, returned)
    t_acc = np.where(returned, t_disp2, t_disp) + d_acc
    add(t_acc, alive)
    add(t_acc + 0.7 * limit["handle"] * 3600, alive & extended)
    yellow = alive & (d_hand > card_after) & (rng.random(n) < CARD_SHARE[0])
    add(t_acc + card_after, yellow)
    add(t_acc + 2 * card_after, yellow & (d_hand > 2 * card_after) & (rng.random(n) < CARD_SHARE[1]))
    t_rep = t_acc + d_hand
    add(t_rep, alive)
    for k, (dv, da, dh) in enumerate(loops):
        on = alive & (rework > k)
        t_rw = t_rep + dv
        add(t_rw, on)
        add(t_rw + da, on)
        add(t_rw + da + dh, on)
        t_rep = np.where(on, t_rw + da + dh, t_rep)
    t_ver = t_rep + d_ver
    add(t_ver, alive)
    t_close = t_ver + d_close
    add(t_close, alive)
    add(t_close + d_eval, alive & evaluated)
    assert len(times) == len(SLOTS)

    rel = np.floor(np.vstack(times)).astype(np.int64)  # slot × case
    kept = np.vstack(active) & (t0[None, :] + rel < end_s)
    last = len(SLOTS) - 1 - np.argmax(kept[::-1], axis=0)  # last slot taken
    to_state = np.array([s[2] for s in SLOTS], dtype=object)
    changes = np.array([s[1] != s[2] for s in SLOTS])
    # state_since moves only when the state changes (as in handling.act): extensions and cards
    # leave the clock of the current step running
    last_change = len(SLOTS) - 1 - np.argmax((kept & changes[:, None])[::-1], axis=0)
    state = to_state[last]
    slot_of = {name: [i for i, s in enumerate(SLOTS) if s[0] == name] for name, *_ in SLOTS}
    close_slot = slot_of["close"][0]
    closed = kept[close_slot]
    closed_s = np.where(closed, rel[close_slot], -1)
    ext_kept = np.where(kept[slot_of["extend"][0]], ext_h, 0.0)
    yellow, red = (kept[i] for i in slot_of["card"])
    on_time = np.where(closed, closed_s <= (total_h + ext_kept) * 3600, False)
    reworks = sum(kept[i].astype(np.int64) for i in slot_of["rework"])

    # satisfaction: lower for late or reworked cases
    good = np.array([.03, .03, .08, .24, .62])  # P(score = 1..5)
    poor = np.array([.10, .10, .20, .30, .30])
    u = rng.random(n)
    happy = on_time & (reworks == 0)
    score = np.where(happy, np.searchsorted(np.cumsum(good), u * good.sum()),
                     np.searchsorted(np.cumsum(poor), u * poor.sum())) + 1
    score = np.where(kept[slot_of["evaluate"][0]], np.minimum(score, 5), 0)

    card = np.select([red, yellow], ["red", "yellow"], "").astype(object)  # the last one given
    card[card == ""] = None
    events = _events(src, cat, kept, rel, leaves, staff=staff, ext_h=ext_h, rng=rng)
    return {
        "state": state,
        "state_since_s": rel[last_change, np.arange(n)],
        "due_s": np.floor((total_h + ext_kept) * 3600).astype(np.int64),
        "closed_s": closed_s,
        "on_time": on_time,
        "extension_hours": ext_kept,
        "rework_count": reworks,
        "card": card,
        "score": score,
        "version": kept.sum(axis=0),
        "events": events,
    }


_DESK = np.array([f"user:dispatcher-{i:02d}" for i in range(1, 13)], dtype=object)
_SUPERVISORS = np.array([f"user:supervisor-{i:02d}" for i in range(1, 9)], dtype=object)
_HOTLINE = np.array([f"user:hotline-{i:02d}" for i in range(1, 21)], dtype=object)
_VOID_NOTES = np.array(["重复件", "无效信息", "非本市管辖"], dtype=object)


def _events(src: NDArray[np.int64], cat: NDArray[np.int64], kept: NDArray[np.bool_],
            rel: NDArray[np.int64], leaves: list[dict[str, Any]], *, staff: NDArray[np.object_],
            ext_h: NDArray[np.float64], rng: np.random.Generator) -> pd.DataFrame:
    """One row per kept slot, ordered by case then slot (which is time order).

    Desk steps (register, dispatch, verify, close, void, rework) are taken by dispatchers, field
    steps (accept, report, return) by the grid's worker, or the owning department for
    owner-routed components; extensions, cards and evaluations by supervisors.
    """
    n = src.size
    owner = np.array([c.get("routing") == "owner" for c in leaves])[cat]
    dept = np.array([f"dept:{c.get('department') or 'JD'}" for c in leaves], dtype=object)[cat]
    field = np.where(owner, dept, staff).astype(object)
    via = np.array([f"via {s}" for s in SOURCES], dtype=object)[src]
    receive_actor = np.empty(n, dtype=object)
    for k, source in enumerate(SOURCES):
        rows = src == k
        if source == "hotline_12345":
            receive_actor[rows] = _HOTLINE[rng.integers(0, _HOTLINE.size, rows.sum())]
        elif source == "supervisor":
            receive_actor[rows] = _SUPERVISORS[rng.integers(0, _SUPERVISORS.size, rows.sum())]
        elif source == "grid_worker":
            receive_actor[rows] = staff[rows]
        elif source == "citizen_app":
            receive_actor[rows] = "citizen:app"
        else:
            receive_actor[rows] = f"system:{source.replace('_', '-')}"
    ext_note = np.array([f"申请延时 {h:g} 小时" if h else "" for h in np.round(ext_h, 1)],
                        dtype=object)

    parts: list[dict[str, Any]] = []
    card_seen = 0
    for s, (action, *_) in enumerate(SLOTS):
        idx = np.flatnonzero(kept[s])
        m = idx.size
        if action == "receive":
            actor, note = receive_actor[idx], via[idx]
        elif action in ("accept", "report", "return"):
            actor = field[idx]
            note = np.full(m, "非本网格事项，退回重新派遣" if action == "return" else "", dtype=object)
        elif action in ("extend", "card", "evaluate"):
            actor = _SUPERVISORS[rng.integers(0, _SUPERVISORS.size, m)]
            if action == "extend":
                note = ext_note[idx]
            elif action == "card":
                note = np.full(m, "yellow" if card_seen == 0 else "red", dtype=object)
                card_seen += 1
            else:
                note = np.full(m, "", dtype=object)
        else:
            actor = _DESK[rng.integers(0, _DESK.size, m)]
            if action == "void":
                note = _VOID_NOTES[rng.integers(0, _VOID_NOTES.size, m)]
            elif action == "rework":
                note = np.full(m, "核查未通过，返工", dtype=object)
            else:
                note = np.full(m, "", dtype=object)
        parts.append({"incident": idx, "slot": np.full(m, s, dtype=np.int16),
                      "rel_s": rel[s, idx], "actor": actor, "note": note})
    incident = np.concatenate([p["incident"] for p in parts])
    slot = np.concatenate([p["slot"] for p in parts])
    order = np.lexsort((slot, incident))
    actions = np.array([s[0] for s in SLOTS], dtype=object)
    froms = np.array([s[1] for s in SLOTS], dtype=object)
    tos = np.array([s[2] for s in SLOTS], dtype=object)
    slot = slot[order]
    return pd.DataFrame({
        "incident": incident[order],
        "rel_s": np.concatenate([p["rel_s"] for p in parts])[order],
        "actor": np.concatenate([p["actor"] for p in parts])[order],
        "action": actions[slot], "from_state": froms[slot], "to_state": tos[slot],
        "note": np.concatenate([p["note"] for p in parts])[order],
    })


# -- names and numbers ---------------------------------------------------------------------------
def _external_ids(src: NDArray[np.int64], t0: NDArray[np.int64], start: datetime
                  ) -> NDArray[np.object_]:
    """``PREFIX-YYYYMMDD-NNNNNN``: numbered per source and Beijing day, in order of receipt."""
    offset = start.hour * 3600 + start.minute * 60 + start.second
    day = (t0 + offset) // 86400
    first = start.date()
    labels = [(first + timedelta(days=int(d))).strftime("%Y%m%d") for d in range(int(day.max()) + 1)]
    key = src * 100_000 + day
    seq = pd.Series(key).groupby(key).cumcount().to_numpy() + 1
    prefixes = [SOURCE_PREFIX[s] for s in SOURCES]
    return np.array([f"{prefixes[s]}-{labels[d]}-{q:06d}"
                     for s, d, q in zip(src.tolist(), day.tolist(), seq.tolist(), strict=True)],
                    dtype=object)


def _reporters(src: NDArray[np.int64], seed: int) -> tuple[NDArray[np.object_],
                                                           NDArray[np.object_]]:
    """Some hotline and app cases name a reporter: a surname and 先生/女士, a 19900 phone."""
    rng = _rng(seed, "people")
    n = src.size
    share = np.array([REPORTER_SHARE.get(s, 0.0) for s in SOURCES])[src]
    has = rng.random(n) < share
    surname = np.array(_SURNAMES, dtype=object)[rng.integers(0, len(_SURNAMES), n)]
    title = np.where(rng.random(n) < 0.5, "先生", "女士").astype(object)
    digits = rng.integers(0, 1_000_000, n)
    names = (surname + title).astype(object)
    names[~has] = None
    phones = np.array([f"19900{d:06d}" for d in digits.tolist()], dtype=object)
    phones[~has] = None
    return names, phones
