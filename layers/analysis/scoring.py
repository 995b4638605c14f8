"""Monthly scores of streets and departments by configurable rules (CJ/T 292 style).

The rules are data: ``scoring_rules.json`` beside this file, or the file named by
``CITYGRID_SCORING_RULES``. A score is ``base`` plus, for each rule, either ``points × rate``
(``kind: rate``) or ``points × cases`` (``kind: case``), each rule's total bounded by its ``cap``
(a deduction never below ``cap``, a bonus never above it), the sum clamped to [min, max]. Units are
ranked by score (ties share a rank). The measures (all for the month, unit as at intake):

* ``on_time_rate``: 按期结案率 of :mod:`layers.assessment` (due_closed_on_time / due; 0 when due = 0
  would reward a unit for having nothing due, so a unit with nothing due gets the rule's full
  points only if it has no overdue case either: it is treated as rate 1).
* ``overdue``: due in the month and not closed on time by ``as_of``
  (:data:`layers.assessment.FIGURE_SQL` ``due_late``).
* ``reworked``: closed in the month after at least one rework.
* ``returned``: 回退 events (``incident_event.action = 'return'``) in the month.
* ``supervised``: 督办 cards (``incident_event.action = 'card'``) issued in the month.
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.city import profile
from layers import assessment
from layers.analysis.month import _scope_where

RULES_FILE = Path(__file__).with_name("scoring_rules.json")
MEASURES = ("on_time_rate", "overdue", "reworked", "returned", "supervised")
KEYS = {"street": ("i.street_code", "SELECT code, name FROM region WHERE code = ANY(:codes)"),
        "department": ("d.code", "SELECT code, name FROM department WHERE code = ANY(:codes)")}


def load_rules(path: str | Path | None = None) -> dict[str, Any]:
    """The rules from ``path``, ``$CITYGRID_SCORING_RULES`` or the packaged default; checked."""
    p = Path(path or os.environ.get("CITYGRID_SCORING_RULES") or RULES_FILE)
    rules = json.loads(p.read_text(encoding="utf-8"))
    for r in rules["rules"]:
        if r["measure"] not in MEASURES or r["kind"] not in ("rate", "case"):
            raise assessment.AssessmentError(
                f"scoring rule {r.get('key')!r}: unknown measure or kind",
                detail={"measures": list(MEASURES), "kinds": ["rate", "case"]})
    return rules


def _counts(conn: Connection, *, principal: Principal, month: str, level: str,
            region: str | None, as_of: datetime | None) -> dict[str | None, dict[str, Any]]:
    tz = profile(conn).tz
    key = KEYS[level][0]
    s, e = assessment.month_window(month, tz)
    params: dict[str, Any] = {"s": s, "e": e, "as_of": as_of or datetime.now(tz)}
    where = _scope_where(principal, region, params)
    f = assessment.FIGURE_SQL
    ev = ("(SELECT count(*) FROM incident_event x WHERE x.incident_id = i.id "
          "AND x.action = '{a}' AND x.at >= :s AND x.at < :e)")
    rows = conn.execute(text(
        f"SELECT {key} AS code, count(*) FILTER (WHERE {f['due']}) AS due, "
        f"count(*) FILTER (WHERE {f['due_closed_on_time']}) AS due_on_time, "
        f"count(*) FILTER (WHERE {f['due_late']}) AS overdue, "
        f"count(*) FILTER (WHERE {f['reworked']}) AS reworked, "
        f"coalesce(sum({ev.format(a='return')}), 0) AS returned, "
        f"coalesce(sum({ev.format(a='card')}), 0) AS supervised "
        "FROM incident i LEFT JOIN department d ON d.id = i.department_id "
        f"WHERE {where} AND (({f['due']}) OR {f['closed']} OR i.id IN (SELECT incident_id FROM "
        "incident_event WHERE action IN ('return', 'card') AND at >= :s AND at < :e)) "
        "GROUP BY 1"), params).mappings().all()
    out: dict[str | None, dict[str, Any]] = {}
    for r in rows:
        out[r["code"]] = {
            "due": int(r["due"]), "on_time_rate": (r["due_on_time"] / r["due"]) if r["due"]
            else (1.0 if not r["overdue"] else 0.0),
            "overdue": int(r["overdue"]), "reworked": int(r["reworked"]),
            "returned": int(r["returned"]), "supervised": int(r["supervised"])}
    return out


def score_unit(measures: dict[str, Any], rules: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """A unit's score and each rule's points.

    >>> rules = {"base": 60, "min": 0, "max": 100, "rules": [
    ...   {"key": "t", "measure": "on_time_rate", "kind": "rate", "points": 40},
    ...   {"key": "o", "measure": "overdue", "kind": "case", "points": -0.5, "cap": -20}]}
    >>> score_unit({"on_time_rate": 0.9, "overdue": 50}, rules)
    (76.0, {'t': 36.0, 'o': -20.0})
    """
    pts: dict[str, float] = {}
    for r in rules["rules"]:
        v = float(measures[r["measure"]]) * float(r["points"])
        cap = r.get("cap")
        if cap is not None:
            v = max(v, float(cap)) if cap < 0 else min(v, float(cap))
        pts[r["key"]] = round(v, 2)
    total = float(rules["base"]) + sum(pts.values())
    return round(min(float(rules["max"]), max(float(rules["min"]), total)), 2), pts


def scores(conn: Connection, *, principal: Principal, month: str, region: str | None = None,
           as_of: datetime | None = None, rules: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Scores and ranks of the streets and departments with cases in the month."""
    principal.require(Permission.ASSESSMENT_READ)
    rules = rules or load_rules()
    out: dict[str, Any] = {"month": month, "region": region, "base": rules["base"],
                           "min": rules["min"], "max": rules["max"], "rules": rules["rules"],
                           "about": rules.get("about", "")}
    for level in ("street", "department"):
        counts = _counts(conn, principal=principal, month=month, level=level, region=region,
                         as_of=as_of)
        codes = [c for c in counts if c is not None]
        names: dict[str, str] = (dict(conn.execute(text(KEYS[level][1]),
                                                   {"codes": codes}).all()) if codes else {})
        rows = []
        for code, m in counts.items():
            if code is None:
                continue
            sc, pts = score_unit(m, rules)
            rows.append({"code": code, "name": names.get(code, code), "score": sc,
                         "points": pts, "counts": {r["key"]: (round(m[r["measure"]], 4)
                                                              if r["kind"] == "rate"
                                                              else m[r["measure"]])
                                                   for r in rules["rules"]},
                         "due": m["due"]})
        rows.sort(key=lambda r: (-r["score"], r["code"]))
        prev, rank = None, 0
        for i, r in enumerate(rows, start=1):
            if r["score"] != prev:
                rank, prev = i, r["score"]
            r["rank"] = rank
        out[level] = rows
    return out


def to_xlsx(result: dict[str, Any]) -> bytes:
    """The ranking as a workbook: sheets 街道考核, 部门考核 and 评分规则 (the rules)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    first = True
    for level, title in (("street", "街道考核"), ("department", "部门考核")):
        ws = wb.active if first else wb.create_sheet()
        first = False
        ws.title = title
        ws.append([f"{result['month']} {title}（基础分 {result['base']}，规则见“评分规则”）"])
        head = ["名次", "编码", "名称", "得分"]
        for r in result["rules"]:
            head += [r["label_zh"], f"{r['label_zh']}得分"]
        ws.append(head)
        for c in ws[2]:
            c.font = Font(bold=True)
        for row in result[level]:
            line = [row["rank"], row["code"], row["name"], row["score"]]
            for r in result["rules"]:
                line += [row["counts"][r["key"]], row["points"][r["key"]]]
            ws.append(line)
        ws.freeze_panes = "D3"
    ws = wb.create_sheet("评分规则")
    ws.append(["key", "measure", "kind", "points", "cap", "规则", "rule"])
    for r in result["rules"]:
        ws.append([r["key"], r["measure"], r["kind"], r["points"], r.get("cap"), r["label_zh"],
                   r["label_en"]])
    ws.append([])
    ws.append(["base", result["base"]])
    ws.append(["min", result["min"]])
    ws.append(["max", result["max"]])
    ws.append(["about", result.get("about", "")])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
