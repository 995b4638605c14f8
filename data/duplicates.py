"""Labelled cross-channel duplicates for the dispatch desk's matcher (issue 16).

The same event reported again on another channel, added to a generated year of incidents
(:func:`data.incidents.build_incidents`) with the cluster it belongs to, so the desk's duplicate
candidates can be measured for precision and recall (bench/duplicates.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data.incidents import (
    CST,
    SOURCE_CRS,
    SOURCE_INTRO,
    SOURCE_PREFIX,
    SOURCES,
    IncidentFrames,
    _place_columns,
)

# The same event reported again, on another channel: the related category a second caller may
# choose instead (a broken manhole cover is also "a damaged road"), and how far and how late.
DUPLICATE_RELATED = {"C0101": "C0202", "C0202": "C0101", "E0101": "E0103", "E0103": "E0101",
                     "E0501": "E0502", "E0502": "E0501", "E0402": "X0102", "X0102": "E0402"}
DUPLICATE_RELATED_SHARE = 0.15
DUPLICATE_SPREAD_M = {"hotline_12345": 25.0}  # an address read out on the phone, geocoded
DUPLICATE_SPREAD_DEFAULT_M = 12.0  # a phone's or a patrol's GPS
DUPLICATE_DELAY_MEAN_H = 2.0


def add_duplicate_clusters(frames: IncidentFrames, snapshot: Any, *, share: float = 0.02,
                           seed: int = 330782) -> IncidentFrames:
    """Append labelled duplicates: ``share`` of the cases get one or two more reports of the same
    event from other channels, near in place (a few metres to tens of metres, wider for phone
    calls) and time (hours), sometimes under a related category.

    The incidents frame gains a ``dup_cluster`` column: the row position of the first report for
    every member of a cluster (itself included), -1 elsewhere. Original rows keep their order and
    values (new rows are appended, so ids given to the originals do not move); a new row is a
    fresh case just received (its only event is ``receive``).
    """
    inc = frames.incidents
    n = len(inc)
    rng = np.random.default_rng([seed, 33, 6])
    leads = np.flatnonzero(rng.random(n) < share)
    copies = 1 + (rng.random(leads.size) < 0.35).astype(int)
    lead_of = np.repeat(leads, copies)
    m = lead_of.size
    src_names = np.array(SOURCES, dtype=object)
    lead_src = inc["source"].to_numpy(dtype=object)[lead_of]
    # another channel than the lead's (the same caller calling twice is not a cross-channel case)
    src = src_names[rng.integers(0, len(SOURCES), m)]
    same = src == lead_src
    while same.any():
        src[same] = src_names[rng.integers(0, len(SOURCES), int(same.sum()))]
        same = src == lead_src
    spread = np.array([DUPLICATE_SPREAD_M.get(s, DUPLICATE_SPREAD_DEFAULT_M) for s in src])
    lat0 = inc["lat"].to_numpy(dtype=float)[lead_of]
    lon0 = inc["lon"].to_numpy(dtype=float)[lead_of]
    lat = lat0 + rng.normal(0, 1, m) * spread / 111_320.0
    lon = lon0 + rng.normal(0, 1, m) * spread / (111_320.0 * np.cos(np.radians(lat0)))
    delay = pd.to_timedelta(rng.exponential(DUPLICATE_DELAY_MEAN_H * 3600, m).round(), unit="s")
    received = inc["received_at"].iloc[lead_of].reset_index(drop=True) + delay
    cat = inc["category_code"].to_numpy(dtype=object)[lead_of].copy()
    swap = (rng.random(m) < DUPLICATE_RELATED_SHARE) & np.isin(cat, list(DUPLICATE_RELATED))
    cat[swap] = [DUPLICATE_RELATED[c] for c in cat[swap]]
    dept_of = dict(zip(inc["category_code"], inc["department_code"], strict=False))
    # what the new caller says: their channel's opening and the category's name (not the lead's
    # own text: a second report is written by someone else)
    lead_intro = inc["source"].map(SOURCE_INTRO).fillna("").to_numpy(dtype=object)
    what = {c: d[len(i):] for c, d, i in zip(inc["category_code"], inc["description"],
                                             lead_intro, strict=True)}
    place = _place_columns(snapshot, lon, lat)
    intro = np.array([SOURCE_INTRO[s] for s in src], dtype=object)
    day = received.dt.tz_convert(CST).dt.strftime("%Y%m%d").to_numpy(dtype=object)
    prefix = np.array([SOURCE_PREFIX[s] for s in src], dtype=object)
    ext = [f"{p}-{d}-D{k:05d}" for k, (p, d) in enumerate(zip(prefix, day, strict=True))]
    extra = pd.DataFrame({
        "source": src, "external_id": ext, "category_code": cat,
        "department_code": [dept_of.get(c) for c in cat],
        "description": intro + np.array([what.get(c, c) for c in cat], dtype=object),
        "address": place.pop("address"), "lon": lon, "lat": lat,
        "crs_in": np.array([SOURCE_CRS[s] for s in src], dtype=object),
        "reporter_name": None, "reporter_phone": None, "state": "received", **place,
        "card": None, "extension_hours": 0.0, "rework_count": 0,
        "score": pd.array([None] * m, dtype="Int64"),
        "received_at": received, "state_since": received,
        "due_at": received + pd.to_timedelta(
            inc["due_at"].iloc[lead_of].reset_index(drop=True)
            - inc["received_at"].iloc[lead_of].reset_index(drop=True)),
        "closed_at": pd.Series([pd.NaT] * m, dtype=inc["closed_at"].dtype),
        "closed_on_time": pd.array([None] * m, dtype="boolean"), "version": 1,
    })
    cluster = np.full(n, -1, dtype=np.int64)
    cluster[leads] = leads
    out = pd.concat([inc.assign(dup_cluster=cluster), extra.assign(dup_cluster=lead_of)],
                    ignore_index=True)
    events = pd.DataFrame({
        "incident": np.arange(n, n + m), "at": received, "actor": "system:intake",
        "action": "receive", "from_state": None, "to_state": "received",
        "note": [f"via {s}" for s in src]})
    return IncidentFrames(incidents=out, events=pd.concat([frames.events, events],
                                                          ignore_index=True))
