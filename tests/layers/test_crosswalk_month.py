"""``boundaries=today`` with no redraw since the month: exactly the month's figures.

The weighted pass of :mod:`layers.analysis.crosswalk` recomputes every count, rate and handling
time itself; on the assessment's hand-made month (tests/layers/test_assessment.py) it must agree
with :func:`layers.assessment.monthly` to the last figure, at every level.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from grids.access import Principal
from layers.analysis import crosswalk
from tests.layers.test_assessment import insert_month


@pytest.mark.parametrize("level", ["grid", "community", "street", "worker", "department"])
def test_today_equals_then_without_a_redraw(conn: Connection, level: str) -> None:
    insert_month(conn)
    args = {"principal": Principal.system(), "month": "2026-10", "level": level}
    then = crosswalk.monthly(conn, **args, boundaries="then")
    today = crosswalk.monthly(conn, **args, boundaries="today")
    assert then["rows"] and today["rows"] == then["rows"]
    assert today["boundaries"] == "today" and then["boundaries"] == "then"


def test_the_trend_today_equals_then_without_a_redraw(conn: Connection) -> None:
    insert_month(conn)
    args = {"principal": Principal.system(), "month": "2026-10", "months": 3,
            "region": "330782001"}
    then = crosswalk.series(conn, **args, boundaries="then")
    today = crosswalk.series(conn, **args, boundaries="today")
    assert any(r["received"] for r in then["rows"]) and today["rows"] == then["rows"]
