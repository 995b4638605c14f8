"""What the region and roster importers share: reading a CSV or XLSX table under the upload
limits, turning a cell into text, and one ``ImportRejected`` that lists every problem."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from grids.errors import ImportRejected
from grids.upload_limits import UploadLimits, UploadTooLarge, check_csv_rows, read_xlsx_rows

# Boundaries in force at :at (NULL = now); the idiom of ``grids.registry``.
IN_FORCE = (
   "b.valid_from <= coalesce(CAST(:at AS timestamptz), now()) AND "
   "(b.valid_to IS NULL OR b.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
)

MAX_PROBLEMS = 100
"""A rejection lists at most this many problems (``detail['total']`` says how many there were)."""



def read_table(path: Path, sheet: str | None, limits: UploadLimits
                ) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """Header and (spreadsheet row number, values) of a CSV or the first/named XLSX sheet,
    read under ``limits`` (grids/upload_limits.py: inflated size, rows, time)."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        try:
            rows = list(enumerate(read_xlsx_rows(path, limits, sheet=sheet), start=1))
        except UploadTooLarge:
            raise
        except Exception as exc:  # zipfile and openpyxl raise several types: re-raised as one
            raise ImportRejected(
                f"Cannot read {path.name} as an Excel workbook.",
                detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                    "reason": f"not a readable .xlsx file: {exc}"}]}) from exc
    elif suffix in (".csv", ".txt"):
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                content = raw.decode("gb18030")
            except UnicodeDecodeError as exc:
                raise ImportRejected(
                    f"{path.name} is neither UTF-8 nor GB18030 text.",
                    detail={"errors": [{"row": None, "staff_code": None, "field": "encoding",
                                        "reason": "the file is neither UTF-8 nor GBK/GB18030 "
                                                  f"(byte {exc.start}); save it as CSV UTF-8"}]}
                ) from exc
        rows = []
        for i, v in enumerate(csv.reader(content.splitlines()), start=1):
            check_csv_rows(i, limits)
            rows.append((i, list(v)))
    else:
        raise ImportRejected(
            f"Cannot read a roster from {path.name}: use .csv or .xlsx.",
            detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                "reason": "the file must be .csv or .xlsx"}]},
            code="unsupported_format",
        )
    if not rows:
        return [], []
    header = [cell_text(h) for h in rows[0][1]]
    return header, rows[1:]



def cell_text(value: Any) -> str:
    """A cell as trimmed text: None/NaN → '', 13800000000.0 → '13800000000'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value).strip()


def problem_at(feature: int | None, code: str | None, field: str | None, reason: str) -> dict[str, Any]:
    return {"feature": feature, "code": code, "field": field, "reason": reason}


def sorted_problems(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """File-level problems first, then by feature position (stable within a feature)."""
    return sorted(errors, key=lambda e: -1 if e.get("feature") is None else e["feature"])



def rejected(errors: list[dict[str, Any]], what: str, *, unit: str = "feature"
              ) -> ImportRejected:
    return ImportRejected(_summary(errors, what, unit=unit),
                          detail={"errors": errors[:MAX_PROBLEMS], "total": len(errors),
                                  "truncated": len(errors) > MAX_PROBLEMS})


def _summary(errors: list[dict[str, Any]], what: str, *, unit: str = "feature") -> str:
    first = errors[0]
    where = first.get(unit)
    head = f"{unit} {where}: " if where is not None else ""
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" \
        if len(errors) > 1 else ""
    return f"{what} was rejected: {head}{first['reason'].rstrip('.')}{more}."

