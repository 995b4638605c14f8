"""The yearly analysis: each month's assessment figures per unit (street by default) over a year.

Each month is :func:`layers.assessment.monthly` (the figures the supervisor's month view and the
meeting pack show), run as the system over the whole jurisdiction with one ``as_of`` for all
months (a figure that depends on "now", like overdue open cases, must not drift between months
computed at different moments). Read only; the months are the partitions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from grids.access import Principal
from layers import assessment
from layers.analysis.month import shift_month
from layers.bulk.runner import Db, Runner, as_db


def months_of_year(last: str) -> list[str]:
    """The twelve months ending with ``last`` (``YYYY-MM``).

    >>> months_of_year("2026-02")[:2], months_of_year("2026-02")[-1]
    (['2025-03', '2025-04'], '2026-02')
    """
    return [shift_month(last, k) for k in range(-11, 1)]


def partition(db: Db, level: str, as_of: datetime, month: str) -> dict[str, Any]:
    """One month's figures per unit of ``level`` (rows sorted by code)."""
    with db.begin(read_only=True) as conn:
        got = assessment.monthly(conn, principal=Principal.system("bulk:yearly"), month=month,
                                 level=level, as_of=as_of)
    rows = sorted((dict(r) for r in got["rows"]),
                  key=lambda r: (r["code"] is None, r["code"] or ""))
    return {"month": month, "rows": rows}


def yearly(db: Db | str, runner: Runner, *, last: str, level: str = "street",
           as_of: datetime) -> dict[str, Any]:
    """Twelve months ending with ``last``, per unit of ``level``: ``{months, level, rows}`` with
    one row per month and unit (``month`` and the columns of
    :data:`layers.assessment.COLUMNS`)."""
    months = months_of_year(last)
    got = runner.map(partition, [(m,) for m in months], as_db(db), level, as_of)
    rows = [{"month": g["month"], **r} for g in got for r in g["rows"]]
    return {"months": months, "level": level, "rows": rows}
