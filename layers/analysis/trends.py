"""Twelve months of the jurisdiction's figures, for the trend chart and the meeting pack.

One query for the counts: the months are joined to the incidents with the assessment's own
conditions (:data:`layers.assessment.FIGURE_SQL`, its ``:s``/``:e`` bound to each month's window),
so each month's point equals :func:`layers.analysis.month.total` for that month. Coverage per
month comes from the monthly coverage rows, as in the assessment.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.city import profile
from layers import assessment
from layers.analysis.month import _scope_where, shift_month

COUNTS = assessment.COLUMNS[2:10]


def _per_month(sql: str) -> str:
    return re.sub(r":e\b", "m.e", re.sub(r":s\b", "m.s", sql))


def series(conn: Connection, *, principal: Principal, month: str, months: int = 12,
           region: str | None = None, as_of: datetime | None = None,
           tally: bool = True) -> dict[str, Any]:
    """The ``months`` months ending with ``month``: counts, rates, mean handling time, coverage.

    Each month's point is :func:`layers.assessment.figures`' total for the month, the same as
    :func:`layers.analysis.month.total`: from the monthly tallies (migration 0028) when they
    can answer (``tally`` and a jurisdiction and region no finer than a street), else from the
    incidents (one statement for the twelve months).
    """
    tz = profile(conn).tz
    principal.require(Permission.ASSESSMENT_READ)
    names = [shift_month(month, k) for k in range(-(months - 1), 1)]
    wins = [assessment.month_window(m, tz) for m in names]
    params: dict[str, Any] = {"as_of": as_of or datetime.now(tz)}
    where = _scope_where(principal, region, params)
    got = assessment.figures(conn, where=where, params=params, windows=wins, levels=[],
                             region=region, scope=principal.locate_scope(), total=True, p90=[],
                             tally=tally)
    out = []
    for name, g in zip(names, got, strict=True):
        tot = g["total"]
        out.append({"month": name, **{k: tot[k] for k in COUNTS},
                    **{k: tot[k] for k in ("closure_rate", "on_time_rate", "rework_rate",
                                           "mean_handling_h", "patrol_coverage")}})
    return {"month": month, "region": region, "months": names, "rows": out,
            "formulas": assessment.FORMULAS}


# ---- category spikes -------------------------------------------------------------------------
SPIKE_P = 0.01
SPIKE_MIN_CASES = 5
SPIKE_MIN_RATIO = 1.5
SPIKE_HISTORY = 12


def poisson_sf(k: int, lam: float) -> float:
    """P(X ≥ k) for X ~ Poisson(lam).

    >>> round(poisson_sf(10, 4.0), 5), poisson_sf(0, 3.0)
    (0.00813, 1.0)
    """
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    term = math.exp(-lam)
    cdf = term
    for i in range(1, k):
        term *= lam / i
        cdf += term
    return max(0.0, 1.0 - cdf)


def is_spike(count: int, history: list[int]) -> tuple[bool, float, float]:
    """The spike rule: against the category's own past ``history`` (the months before, at least
    3 of them), with λ their mean: a spike when count ≥ 5, count ≥ 1.5 λ and
    P(X ≥ count | Poisson(λ)) < 0.01 (λ floored at 0.5 so a new category is not a spike for
    its first couple of cases). Returns (spike, λ, p).

    >>> is_spike(30, [10, 12, 9, 11])[0], is_spike(12, [10, 12, 9, 11])[0]
    (True, False)
    """
    if len(history) < 3:
        return False, float("nan"), 1.0
    lam = max(0.5, sum(history) / len(history))
    p = poisson_sf(count, lam)
    return (count >= SPIKE_MIN_CASES and count >= SPIKE_MIN_RATIO * lam and p < SPIKE_P), lam, p


class Spikes(TypedDict):
    """What :func:`spikes` returns (``GET /analysis/spikes``)."""

    month: str
    region: str | None
    spikes: list[dict[str, Any]]  # category, category_name, count, baseline, ratio, p, history
    params: dict[str, int | float]
    rule: str


def spikes(conn: Connection, *, principal: Principal, month: str, region: str | None = None
           ) -> Spikes:
    """Categories whose count in ``month`` spikes against their own previous 12 months."""
    tz = profile(conn).tz
    principal.require(Permission.ASSESSMENT_READ)
    names = [shift_month(month, k) for k in range(-SPIKE_HISTORY, 1)]
    s0, _ = assessment.month_window(names[0], tz)
    _, e = assessment.month_window(month, tz)
    params: dict[str, Any] = {"s": s0, "e": e, "tz": tz.key}
    where = _scope_where(principal, region, params)
    counts: dict[tuple[str, str], int] = {}
    cats: dict[str, str] = {}
    for code, name, m, n in conn.execute(text(
            "SELECT c.code, c.name, to_char(i.received_at AT TIME ZONE :tz, 'YYYY-MM'), count(*) "
            "FROM incident i JOIN category c ON c.id = i.category_id "
            f"WHERE {assessment.RECEIVED_SQL} AND {where} GROUP BY 1, 2, 3"), params):
        counts[(code, m)] = int(n)
        cats[code] = name
    first_seen = {c: min(m for (cc, m) in counts if cc == c) for c in cats}
    out: list[dict[str, Any]] = []
    for code, name in cats.items():
        hist = [counts.get((code, m), 0) for m in names[:-1] if m >= first_seen[code]]
        now = counts.get((code, month), 0)
        spike, lam, p = is_spike(now, hist)
        if spike:
            out.append({"category": code, "category_name": name, "count": now,
                        "baseline": round(lam, 2), "ratio": round(now / lam, 2),
                        "p": float(f"{p:.3g}"), "history": hist})
    out.sort(key=lambda r: (r["p"], -r["ratio"]))
    return {"month": month, "region": region, "spikes": out,
            "params": {"min_cases": SPIKE_MIN_CASES, "ratio": SPIKE_MIN_RATIO,
                       "history": SPIKE_HISTORY, "p": SPIKE_P},
            "rule": f"count ≥ {SPIKE_MIN_CASES}, ≥ {SPIKE_MIN_RATIO}× the mean λ of the "
                    f"category's previous {SPIKE_HISTORY} months (since its first case, at "
                    f"least 3), and Poisson P(X ≥ count | λ) < {SPIKE_P}"}
