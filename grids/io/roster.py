"""Staff rosters (CSV, XLSX) read, checked and written with their assignments.

Problems are ``{row, staff_code, field, reason}``, ``row`` as a spreadsheet shows it (the header
is row 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from grids import store
from grids.codes import normalise
from grids.errors import ImportRejected, InvalidCode
from grids.io.tables import IN_FORCE, cell_text, read_table, rejected
from grids.upload_limits import UploadLimits

ROSTER_COLUMNS = ["staff_code", "name", "phone", "role", "status", "region_code", "duty"]
_REQUIRED_ROSTER = ["staff_code", "name", "phone", "role"]
ROLES = ("grid_chief", "full_time", "part_time", "community_head", "street_officer",
         "command_duty")
STATUSES = ("available", "seconded", "on_leave")
DUTIES = ("primary", "backup", "head")
# The Chinese labels of the work plan, as people type them into a roster.
_ROLE_LABELS = {"网格长": "grid_chief", "专职网格员": "full_time", "兼职网格员": "part_time"}
_STATUS_LABELS = {"可工作": "available", "临时抽调": "seconded", "休假": "on_leave"}
_PHONE = re.compile(r"^1[0-9]{10}$")
_STAFF_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def read_roster(
    path: str | Path, *, sheet: str | None = None, limits: UploadLimits | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a staff roster from CSV (UTF-8, or GB18030 as Excel in China saves it) or XLSX.

    One row per assignment: columns staff_code, name, phone, role, status, region_code, duty.
    A member with several assignments repeats on several rows (which must agree); a row without
    region_code is staff only. status may be left empty (available). Roles, statuses and duties
    are the registry's words (``grid_chief``, ``on_leave``, ``primary``, ...); the Chinese role
    and status labels of the work plan (网格长, 休假, ...) are accepted too.

    Returns
    -------
    (staff, assignments)
        ``staff``: code, name, phone, role, status, row (first row of the member);
        ``assignments``: staff_code, region_code, duty, row. ``row`` is the spreadsheet's row.

    Raises
    ------
    ImportRejected
        Listing every bad row: ``{row, staff_code, field, reason}``.
    """
    staff, assignments, errors = _parse_roster(Path(path), sheet, limits or UploadLimits())
    if errors:
        raise rejected(errors, Path(path).name, unit="row")
    return staff, assignments


def load_roster(conn: Connection, path: str | Path, *, sheet: str | None = None,
                valid_from: datetime | None = None,
                limits: UploadLimits | None = None) -> dict[str, int]:
    """Read, check and import a roster file in one go, in the caller's transaction.

    Unlike :func:`read_roster` followed by :func:`import_roster`, the rows are also checked
    against the registry (regions in force, later assignments) when some rows of the file are
    bad, so one rejection lists every problem of the file: ``{row, staff_code, field,
    reason}`` sorted by row, at most :data:`MAX_PROBLEMS` (``detail['total']`` counts them
    all). Returns what :func:`import_roster` returns.
    """
    path = Path(path)
    staff, assignments, errors = _parse_roster(path, sheet, limits or UploadLimits())
    bad_staff = {e["staff_code"] for e in errors if e.get("staff_code")}
    registry_errors, keep = _roster_registry_problems(conn, staff, assignments, valid_from,
                                                     known_bad=bad_staff)
    errors = sorted(errors + registry_errors,
                    key=lambda e: (e["row"] if e.get("row") is not None else 0))
    if errors:
        raise rejected(errors, path.name, unit="row")
    return _write_roster(conn, staff, assignments, keep, valid_from)


def _parse_roster(
    path: Path, sheet: str | None, limits: UploadLimits
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Staff and assignments of the good rows, and every problem of the bad ones."""
    _refuse_empty_roster(path)
    header, records = read_table(path, sheet, limits)
    errors: list[dict[str, Any]] = []
    columns = {h.strip().lower(): j for j, h in enumerate(header) if h and h.strip()}
    missing = [c for c in _REQUIRED_ROSTER if c not in columns]
    if missing:
        available = ", ".join(cell_text(h) for h in header if h) or "no columns"
        raise ImportRejected(
            f"{path.name}: missing column(s) {', '.join(missing)}.",
            detail={"errors": [{"row": 1, "staff_code": None, "field": c,
                                "reason": f"missing column {c!r}; the header has: {available}"}
                               for c in missing]},
        )

    staff: dict[str, dict[str, Any]] = {}
    assignments: list[dict[str, Any]] = []
    seen_assign: dict[tuple[str, str, str], int] = {}
    for row, values in records:
        rec = {c: cell_text(values[columns[c]]) if columns.get(c, len(values)) < len(values) else ""
               for c in ROSTER_COLUMNS}
        if not any(rec.values()):
            continue  # a blank line
        problems = _roster_row_problems(rec)
        code = rec["staff_code"]
        member = {"code": code, "name": rec["name"], "phone": rec["phone"],
                  "role": _ROLE_LABELS.get(rec["role"], rec["role"].lower()),
                  "status": _STATUS_LABELS.get(rec["status"], rec["status"].lower())
                  or "available", "row": row}
        first = staff.get(code)
        if not problems and first is not None:
            differ = [f for f in ("name", "phone", "role", "status") if first[f] != member[f]]
            if differ:
                problems.append((differ[0], f"staff {code} is on row {first['row']} with a "
                                            f"different {', '.join(differ)}"))
        region = normalise(rec["region_code"]) if rec["region_code"] and not problems else None
        key = (code, region or "", rec["duty"].lower())
        if region is not None and key in seen_assign:
            problems.append(("region_code", f"the same assignment is on row {seen_assign[key]}"))
        if problems:
            errors.extend({"row": row, "staff_code": code or None, "field": f, "reason": r}
                          for f, r in problems)
            continue
        staff.setdefault(code, member)
        if region is not None:
            seen_assign[key] = row
            assignments.append({"staff_code": code, "region_code": region, "duty": key[2],
                                "row": row})
    if not staff and not errors:
        errors.append({"row": None, "staff_code": None, "field": None,
                       "reason": "the roster has no rows"})
    staff_frame = pd.DataFrame(list(staff.values()),
                               columns=["code", "name", "phone", "role", "status", "row"])
    assign_frame = pd.DataFrame(assignments, columns=["staff_code", "region_code", "duty", "row"])
    return staff_frame, assign_frame, errors


def _refuse_empty_roster(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        raise ImportRejected(
            f"No file {path.name}.",
            detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                "reason": f"no such file: {path}"}]}) from None
    if size == 0 or (size < 4096 and not path.read_bytes().strip()):
        raise ImportRejected(
            f"{path.name} is empty ({size} bytes).",
            detail={"errors": [{"row": None, "staff_code": None, "field": None,
                                "reason": f"the file is empty ({size} bytes)"}]},
            code="empty_file")


def _roster_row_problems(rec: dict[str, str]) -> list[tuple[str, str]]:
    """(field, reason) for each problem of one roster row taken on its own."""
    problems = []
    if not _STAFF_CODE.match(rec["staff_code"]):
        problems.append(("staff_code",
                         "a staff code of 1 to 32 letters, digits, '-' or '_' is required"))
    if not (1 <= len(rec["name"]) <= 100):
        problems.append(("name", "a name of 1 to 100 characters is required"))
    if not _PHONE.match(rec["phone"]):
        problems.append(("phone", f"phone {rec['phone']!r} is not a mainland mobile number "
                                  "(11 digits starting with 1)"))
    if _ROLE_LABELS.get(rec["role"], rec["role"].lower()) not in ROLES:
        problems.append(("role", f"unknown role {rec['role']!r}; expected one of {list(ROLES)}"))
    if (_STATUS_LABELS.get(rec["status"], rec["status"].lower()) or "available") not in STATUSES:
        problems.append(("status", f"unknown status {rec['status']!r}; expected one of "
                                   f"{list(STATUSES)}"))
    if rec["region_code"]:
        try:
            normalise(rec["region_code"])
        except InvalidCode as exc:
            problems.append(("region_code", f"{exc.message} Got {rec['region_code']!r}."))
        if rec["duty"].lower() not in DUTIES:
            problems.append(("duty", f"unknown duty {rec['duty']!r}; expected one of "
                                     f"{list(DUTIES)}"))
    elif rec["duty"]:
        problems.append(("region_code", f"duty {rec['duty']!r} is given without a region_code"))
    return problems


def import_roster(
    conn: Connection, staff: pd.DataFrame, assignments: pd.DataFrame, *,
    valid_from: datetime | None = None,
) -> dict[str, int]:
    """Write a roster read by :func:`read_roster`, in the caller's transaction.

    Staff are inserted or updated by code. Each assignment starts at ``valid_from`` (None = now)
    and needs its region in force then and its staff member in the roster or the registry. An
    assignment that is already in force is left as it is (re-importing a roster is harmless); one
    that would collide with a later one is rejected. Assignments not in the roster are not
    ended. Returns ``{staff, assignments, unchanged}``.
    """
    errors, keep = _roster_registry_problems(conn, staff, assignments, valid_from)
    if errors:
        raise rejected(errors, "the roster", unit="row")
    return _write_roster(conn, staff, assignments, keep, valid_from)


def _write_roster(conn: Connection, staff: pd.DataFrame, assignments: pd.DataFrame,
                  keep: list[bool], valid_from: datetime | None) -> dict[str, int]:
    n_staff = store.upsert_staff(conn, staff)
    n_assign = store.insert_assignments(conn, assignments.loc[np.array(keep, dtype=bool)],
                                        valid_from=valid_from)
    return {"staff": n_staff, "assignments": n_assign, "unchanged": len(keep) - sum(keep)}


def _roster_registry_problems(
    conn: Connection, staff: pd.DataFrame, assignments: pd.DataFrame,
    valid_from: datetime | None, *, known_bad: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Problems of assignments against the registry, and which assignments are new.

    ``known_bad``: staff whose rows were already refused (not reported again as missing).
    """
    known_bad = set(known_bad)
    errors: list[dict[str, Any]] = []
    rows = assignments["row"] if "row" in assignments else pd.Series([None] * len(assignments))
    regions = sorted(set(assignments["region_code"]))
    known = set(conn.execute(
        text(
            "SELECT r.code FROM region r JOIN region_boundary b ON b.region_id = r.id "
            f"WHERE r.code = ANY(CAST(:codes AS text[])) AND {IN_FORCE}"
        ),
        {"codes": regions, "at": valid_from},
    ).scalars())
    members = set(staff["code"])
    existing = {
        (r.staff_code, r.region_code, r.duty): r.starts_later
        for r in conn.execute(
            text(
                "SELECT s.code AS staff_code, r.code AS region_code, a.duty, "
                "a.valid_from > coalesce(CAST(:at AS timestamptz), now()) AS starts_later "
                "FROM assignment a JOIN staff s ON s.id = a.staff_id "
                "JOIN region r ON r.id = a.region_id "
                "WHERE r.code = ANY(CAST(:codes AS text[])) "
                "AND (a.valid_to IS NULL OR a.valid_to > coalesce(CAST(:at AS timestamptz), now()))"
            ),
            {"codes": regions, "at": valid_from},
        )
    }
    keep = []
    for row, s, r, d in zip(rows, assignments["staff_code"], assignments["region_code"],
                            assignments["duty"], strict=True):
        if r not in known:
            errors.append({"row": row, "staff_code": s, "field": "region_code",
                           "reason": f"no region {r} is in force"})
        if s not in members and s not in known_bad:
            errors.append({"row": row, "staff_code": s, "field": "staff_code",
                           "reason": f"staff {s} is not in the roster"})
        later = existing.get((s, r, d))
        if later:
            errors.append({"row": row, "staff_code": s, "field": "duty",
                           "reason": f"{s} already has a later {d} assignment to {r}"})
        keep.append(later is None)
    return errors, keep

