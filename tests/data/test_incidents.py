"""The generated year of incidents: shares, rhythms, places, a workflow that replays, and the load."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from app.seed_incidents import DEMO_END, load_demo_incidents, load_incidents
from data.incidents import SOURCE_SHARES, IncidentFrames, build_incidents
from grids.locate import Snapshot, load_snapshot
from layers.incidents import catalogue
from layers.incidents.workflow import (
    STATES,
    IllegalTransition,
    next_state,
    total_limit_hours,
)

N = 20_000
END = DEMO_END
# Catalogue rows as list_categories returns them, without a database.
CATEGORIES = [
    {"code": code, "parent_code": parent, "name": name, "family": family, "department": dept,
     "routing": routing, "limits": limits}
    for code, parent, name, _en, family, dept, routing, limits in catalogue.CATEGORIES
]
LIMITS = {c["code"]: c["limits"] for c in CATEGORIES}


@pytest.fixture(scope="module")
def snapshot(engine: Engine) -> Snapshot:
    with engine.connect() as conn:
        return load_snapshot(conn)


@pytest.fixture(scope="module")
def frames(snapshot: Snapshot) -> IncidentFrames:
    return build_incidents(snapshot, CATEGORIES, n=N, end=END)


@pytest.fixture(scope="module")
def incidents(frames: IncidentFrames) -> pd.DataFrame:
    return frames.incidents


@pytest.fixture(scope="module")
def events(frames: IncidentFrames) -> pd.DataFrame:
    return frames.events


def _local(times: pd.Series) -> pd.Series:
    return times.dt.tz_convert("Asia/Shanghai")


# -- what, when, from where ----------------------------------------------------------------------
def test_every_state_appears_and_old_cases_are_done(incidents: pd.DataFrame) -> None:
    assert len(incidents) == N
    # 'merged' is the desk's doing (a dispatcher merges duplicates), never generated
    assert set(incidents["state"]) == set(STATES) - {"merged"}
    age = END - incidents["received_at"]
    old = incidents[age > timedelta(days=90)]
    assert old["state"].isin(["closed", "evaluated", "voided"]).mean() > 0.98
    recent = incidents[age < timedelta(days=2)]
    assert recent["state"].isin(["received", "registered", "dispatched", "handling", "reported",
                                 "verified"]).mean() > 0.3
    assert 0.015 < (incidents["state"] == "voided").mean() < 0.025


def test_times_lie_in_the_window_in_utc(incidents: pd.DataFrame, events: pd.DataFrame) -> None:
    for col in ("received_at", "state_since", "due_at", "closed_at"):
        assert str(incidents[col].dt.tz) == "UTC"
    assert incidents["received_at"].min() >= END - timedelta(days=365)
    assert incidents["received_at"].max() < END
    assert incidents["received_at"].is_monotonic_increasing  # ids ascend with time
    assert events["at"].max() < END
    assert (incidents["state_since"] >= incidents["received_at"]).all()


def test_source_shares(incidents: pd.DataFrame) -> None:
    shares = incidents["source"].value_counts(normalize=True)
    assert set(shares.index) == set(SOURCE_SHARES)
    for source, expected in SOURCE_SHARES.items():
        assert abs(shares[source] - expected) < max(0.015, 0.3 * expected), source


def test_external_ids_are_unique_per_source(incidents: pd.DataFrame) -> None:
    assert not incidents.duplicated(["source", "external_id"]).any()
    hotline = incidents.loc[incidents["source"] == "hotline_12345", "external_id"]
    assert hotline.str.fullmatch(r"12345-20\d{6}-\d{6}").all()
    # the date in the id is the Beijing date of receipt
    first = incidents[incidents["source"] == "hotline_12345"].iloc[0]
    day = _local(pd.Series([first["received_at"]])).iloc[0].strftime("%Y%m%d")
    assert first["external_id"] == f"12345-{day}-000001"


def test_daily_rhythm(incidents: pd.DataFrame) -> None:
    hours = _local(incidents["received_at"]).dt.hour.value_counts().reindex(range(24), fill_value=0)
    peaks = hours[[9, 10, 14, 15, 16]].mean()
    night = hours[[1, 2, 3, 4]].mean()
    assert peaks > 10 * night
    assert hours[[9, 10]].mean() > hours[12]  # the lunch dip
    field = incidents[incidents["source"].isin(["grid_worker", "supervisor"])]
    field_hours = _local(field["received_at"]).dt.hour
    assert field_hours.between(7, 18).mean() > 0.9  # patrols work days


def test_weekly_rhythm(incidents: pd.DataFrame) -> None:
    weekday = _local(incidents["received_at"]).dt.day_of_week

    def weekend_ratio(mask: pd.Series) -> float:  # per weekend day / per weekday
        return ((weekday[mask] >= 5).sum() / 2) / ((weekday[mask] < 5).sum() / 5)

    family = incidents["category_code"].str[0]
    assert weekend_ratio(family == "E") < 0.85  # city management rests at weekends
    assert weekend_ratio(incidents["category_code"].str.startswith("S01")) > 1.0  # disputes don't


def test_seasons(incidents: pd.DataFrame) -> None:
    month = _local(incidents["received_at"]).dt.month
    assert (month == 2).sum() < 0.85 * (month == 7).sum()  # Spring Festival dip, summer high
    flooded = month[incidents["category_code"] == "E0401"]
    assert flooded.isin([6, 7, 8]).mean() > 0.5


def test_categories(incidents: pd.DataFrame) -> None:
    counts = incidents["category_code"].value_counts()
    leaves = {c["code"] for c in CATEGORIES if c["parent_code"]}
    assert set(counts.index) <= leaves
    assert counts.index[0] == "E0101"  # exposed rubbish leads
    for common in ("E0101", "E0501", "E0502", "S0101"):
        assert counts[common] > 10 * counts["E0402"], common  # fire hazards are rare
    dept = {c["code"]: c["department"] for c in CATEGORIES}
    assert (incidents["department_code"] == incidents["category_code"].map(dept)).all()


def test_hot_spots(incidents: pd.DataFrame, snapshot: Snapshot) -> None:
    urban = incidents["street_code"].str[6:9].astype(int) < 100
    assert urban.mean() > 0.65
    per_grid = incidents["grid_code"].value_counts()
    top = per_grid.iloc[: len(snapshot.grid_ids) // 20].sum() / len(incidents)
    assert top > 0.25  # a twentieth of the grids hold a quarter of the cases
    # category-specific: street vending gathers in town, workplace hazards in industrial zones
    by_category = urban.groupby(incidents["category_code"]).mean()
    assert by_category["E0501"] > by_category["S0202"] + 0.1


def test_places_come_from_the_snapshot(incidents: pd.DataFrame, snapshot: Snapshot) -> None:
    assert incidents["grid_code"].notna().all()
    assert (incidents["region_code"] == incidents["grid_code"]).all()
    assert (incidents["community_code"] == incidents["grid_code"].str[:12]).all()
    assert (incidents["street_code"] == incidents["grid_code"].str[:9] + "000").all()
    assert (incidents["boundary_version_id"] == snapshot.version_id).all()
    index = {r.code: i for i, r in enumerate(snapshot.regions)}
    for row in incidents.sample(50, random_state=1).itertuples():
        answer = snapshot.answer(index[row.grid_code])
        assert row.responsible_code == answer["responsible"]["code"]
        assert (row.fallback if isinstance(row.fallback, str) else None) == answer["fallback"]
    region, status = snapshot.locate_many(incidents["lon"].to_numpy(), incidents["lat"].to_numpy())
    assert (status == 0).all()
    codes = np.array([r.code for r in snapshot.regions], dtype=object)
    assert (codes[region] == incidents["grid_code"].to_numpy(dtype=object)).all()


def test_reporters_are_fake_and_only_for_calls_and_app(incidents: pd.DataFrame) -> None:
    named = incidents[incidents["reporter_phone"].notna()]
    assert 0.2 * N < len(named) < 0.5 * N
    assert named["source"].isin(["hotline_12345", "citizen_app"]).all()
    assert named["reporter_phone"].str.fullmatch(r"19900\d{6}").all()
    assert named["reporter_name"].str.fullmatch(r".(先生|女士)").all()


# -- the closed loop -----------------------------------------------------------------------------
def test_events_replay_through_the_workflow(incidents: pd.DataFrame,
                                            events: pd.DataFrame) -> None:
    inc = events["incident"]
    assert inc.is_monotonic_increasing
    assert inc.nunique() == N
    first = inc != inc.shift()
    head = events[first]
    assert (head["action"] == "receive").all() and head["from_state"].isna().all()
    assert (head["to_state"] == "received").all()
    assert (head["at"].to_numpy() == incidents["received_at"].to_numpy()).all()
    rest = events[~first]
    prev_to = events["to_state"].shift()[~first]
    assert (rest["from_state"] == prev_to).all()  # every step starts where the last one ended
    for (action, state, target), _ in rest.groupby(["action", "from_state", "to_state"]):
        assert next_state(action, state) == target, (action, state, target)
    assert (events["at"].diff()[~first] >= pd.Timedelta(0)).all()  # in time order
    last = events.groupby("incident").tail(1).set_index("incident")
    assert (last["to_state"].to_numpy() == incidents["state"].to_numpy()).all()
    assert (events.groupby("incident").size().to_numpy() == incidents["version"].to_numpy()).all()


def test_replay_case_by_case(incidents: pd.DataFrame, events: pd.DataFrame) -> None:
    """The same check written plainly, one case at a time, for a sample."""
    sample = set(incidents.sample(500, random_state=2).index)
    for case, history in events[events["incident"].isin(sample)].groupby("incident"):
        state = None
        for action, from_state, to_state in history[["action", "from_state", "to_state"]].itertuples(
                index=False):
            if state is None:
                assert (action, to_state) == ("receive", "received")
            else:
                assert from_state == state
                assert next_state(action, state) == to_state
            state = to_state
        assert state == incidents.at[case, "state"]
    with pytest.raises(IllegalTransition):
        next_state("close", "handling")


def test_side_paths_match_the_history(incidents: pd.DataFrame, events: pd.DataFrame) -> None:
    per_case = events.groupby("incident")["action"]
    reworks = per_case.apply(lambda a: int((a == "rework").sum()))
    assert (reworks.to_numpy() == incidents["rework_count"].to_numpy()).all()
    assert (incidents["rework_count"] > 0).mean() > 0.03
    assert (incidents["rework_count"] > 1).any()
    extended = per_case.apply(lambda a: bool((a == "extend").any()))
    assert (extended.to_numpy() == (incidents["extension_hours"] > 0).to_numpy()).all()
    assert 0.02 < extended.mean() < 0.15
    cards = events[events["action"] == "card"].groupby("incident")["note"].last()
    card = incidents["card"].astype(object).where(incidents["card"].notna(), None)
    assert (card.iloc[cards.index].to_numpy() == cards.to_numpy()).all()
    assert card.drop(index=cards.index).isna().all()
    assert {"yellow", "red"} <= set(cards)
    assert (events["action"] == "return").any()
    evaluated = incidents["state"] == "evaluated"
    assert incidents.loc[evaluated, "score"].between(1, 5).all()
    assert incidents.loc[~evaluated, "score"].isna().all()


def test_times_and_on_time(incidents: pd.DataFrame, events: pd.DataFrame) -> None:
    total = incidents["category_code"].map(lambda c: total_limit_hours(LIMITS[c]))
    allowed = pd.to_timedelta(total + incidents["extension_hours"], unit="h")
    assert (incidents["due_at"] == incidents["received_at"] + allowed).all()
    closed = incidents["state"].isin(["closed", "evaluated"])
    assert incidents.loc[closed, "closed_at"].notna().all()
    assert incidents.loc[~closed, ["closed_at", "closed_on_time"]].isna().all().all()
    close_at = events[events["action"] == "close"].set_index("incident")["at"]
    assert (incidents.loc[close_at.index, "closed_at"] == close_at).all()
    on_time = incidents.loc[closed, "closed_at"] - incidents.loc[closed, "received_at"] \
        <= allowed[closed]
    assert (on_time == incidents.loc[closed, "closed_on_time"].astype(bool)).all()
    assert 0.80 <= on_time.mean() <= 0.95
    # state_since: the last event that changed the state (extensions and cards do not)
    changes = events[events["from_state"].isna() | (events["from_state"] != events["to_state"])]
    since = changes.groupby("incident")["at"].last()
    assert (since.to_numpy() == incidents["state_since"].to_numpy()).all()


def test_actors(events: pd.DataFrame, incidents: pd.DataFrame) -> None:
    assert events["actor"].str.fullmatch(
        r"user:(dispatcher|supervisor|hotline)-\d\d|staff:S\d{6}|dept:[A-Z]+|citizen:app|"
        r"system:[a-z0-9-]+|user:duty-officer").all()
    desk = events["action"].isin(["register", "dispatch", "verify", "close", "rework", "void"])
    assert events.loc[desk, "actor"].str.startswith("user:dispatcher-").all()
    accept = events[(events["action"] == "accept")]
    workers = incidents["responsible_code"].iloc[accept["incident"]].to_numpy(dtype=object)
    own = accept["actor"].str.startswith("staff:").to_numpy()
    assert (accept["actor"].to_numpy(dtype=object)[own] == "staff:" + workers[own]).all()


def test_deterministic(snapshot: Snapshot) -> None:
    a = build_incidents(snapshot, CATEGORIES, n=3000, end=END, seed=7)
    b = build_incidents(snapshot, CATEGORIES, n=3000, end=END, seed=7)
    pd.testing.assert_frame_equal(a.incidents, b.incidents)
    pd.testing.assert_frame_equal(a.events, b.events)
    c = build_incidents(snapshot, CATEGORIES, n=3000, end=END, seed=8)
    assert not a.incidents["lon"].equals(c.incidents["lon"])


def test_rejects_a_naive_end(snapshot: Snapshot) -> None:
    with pytest.raises(ValueError, match="timezone"):
        build_incidents(snapshot, CATEGORIES, n=10, end=datetime(2026, 11, 1))


# -- the load ------------------------------------------------------------------------------------
def test_load_into_postgis(conn: Connection, frames: IncidentFrames) -> None:
    catalogue.seed(conn)
    before = conn.execute(text("SELECT coalesce(max(id), 0) FROM incident")).scalar_one()
    counts = load_incidents(conn, frames)
    assert counts == {"incidents": N, "events": len(frames.events)}
    loaded = conn.execute(text(
        "SELECT count(*), count(DISTINCT (source, external_id)), min(received_at), "
        "max(received_at), count(*) FILTER (WHERE ST_SRID(geom) = 4490) "
        "FROM incident WHERE id > :b"), {"b": before}).one()
    assert loaded[:2] == (N, N)
    assert (loaded[2], loaded[3]) == (frames.incidents["received_at"].iloc[0],
                                      frames.incidents["received_at"].iloc[-1])
    assert loaded[4] == N
    n_events = conn.execute(text("SELECT count(*) FROM incident_event WHERE incident_id > :b"),
                            {"b": before}).scalar_one()
    assert n_events == len(frames.events)
    by_state = dict(conn.execute(text(
        "SELECT state, count(*) FROM incident WHERE id > :b GROUP BY state"), {"b": before}).all())
    assert by_state == frames.incidents["state"].value_counts().to_dict()
    # ids follow the frame's order; the last event of each case is its state
    mismatched = conn.execute(text(
        "SELECT count(*) FROM incident i WHERE i.id > :b AND i.state <> "
        "(SELECT e.to_state FROM incident_event e WHERE e.incident_id = i.id "
        " ORDER BY e.id DESC LIMIT 1)"), {"b": before}).scalar_one()
    assert mismatched == 0
    # codes resolved to ids: category and department agree with the frame
    rows = conn.execute(text(
        "SELECT i.external_id, c.code, d.code FROM incident i JOIN category c ON c.id = "
        "i.category_id LEFT JOIN department d ON d.id = i.department_id WHERE i.id > :b "
        "ORDER BY i.id LIMIT 500"), {"b": before}).all()
    head = frames.incidents.iloc[:500]
    assert [r[0] for r in rows] == head["external_id"].tolist()
    assert [r[1] for r in rows] == head["category_code"].tolist()
    assert [r[2] for r in rows] == head["department_code"].tolist()


def test_loaded_grids_agree_with_st_covers(conn: Connection, frames: IncidentFrames) -> None:
    catalogue.seed(conn)
    before = conn.execute(text("SELECT coalesce(max(id), 0) FROM incident")).scalar_one()
    load_incidents(conn, frames)
    rows = conn.execute(text(
        "SELECT i.grid_code, (SELECT r.code FROM region r JOIN region_boundary b "
        "  ON b.region_id = r.id WHERE r.level = 'grid' AND b.valid_from <= now() "
        "  AND (b.valid_to IS NULL OR b.valid_to > now()) AND ST_Covers(b.geom, i.geom) "
        "  ORDER BY r.code LIMIT 1) "
        "FROM incident i WHERE i.id > :b AND (i.id - :b) % (:n / 200) = 0"),
        {"b": before, "n": N}).all()
    assert len(rows) == 200
    assert all(loaded == covering for loaded, covering in rows)


def test_load_demo_incidents(conn: Connection) -> None:
    had_incidents = conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar_one()
    if not had_incidents:
        counts = load_demo_incidents(conn, n=2000)
        assert counts["incidents"] == 2000 and counts["events"] > 10_000
        ids = conn.execute(text(
            "SELECT external_id FROM incident ORDER BY id LIMIT 1")).scalar_one()
        first = (DEMO_END - timedelta(days=365)).strftime("%Y%m%d")
        assert re.fullmatch(rf"[A-Z0-9]+-{first}-000001", ids)
    with pytest.raises(ValueError, match="already holds incidents"):
        load_demo_incidents(conn, n=10)
