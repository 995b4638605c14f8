"""Hot topics (热点话题): words from the descriptions of the month's cases, segmented with jieba,
counted per month and street.

Rule: the descriptions of the cases received in the month (voided ones too: a complaint is a
signal even if it was a duplicate) are cut with ``jieba.lcut`` (precise mode, HMM on); a word
counts once per case; words of one character, numbers, and the stop words below are dropped. A
topic is *rising* when its count is at least twice last month's and at least 5.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, TypedDict

from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.city import profile
from layers import assessment
from layers.analysis.month import _scope_where, shift_month

STOP = frozenset([
    "的", "了", "在", "是", "和", "与", "有", "无", "及", "或", "等", "被", "把", "对", "从",
    "到", "为", "这", "那", "一个", "没有", "我们", "你们", "他们", "反映", "市民", "群众", "来电",
    "来电人", "称", "表示", "希望", "要求", "请求", "处理", "情况", "问题", "相关", "部门", "附近",
    "位置", "现场", "目前", "已经", "一直", "经常", "多次", "存在", "进行", "发现", "上报", "网格员",
    "巡查", "监督员", "热线", "联动", "转办", "事件", "12345", "110", "尽快", "时间", "地方", "这里",
    "那里", "一下", "非常", "网格", "通过", "app", "反映称", "有关"
])
_NUMBER = re.compile(r"^[0-9０-９.%]+$")


def words(description: str) -> set[str]:
    """The words of one description that count (each once).

    >>> sorted(words("市民反映：某小区门口占道经营，占道经营严重"))
    ['严重', '小区', '经营', '门口']
    """
    import jieba

    return {w for w in (x.strip() for x in jieba.lcut(description or ""))
            if len(w) > 1 and w.lower() not in STOP and not _NUMBER.match(w)}


def _counts(conn: Connection, principal: Principal, month: str, region: str | None
            ) -> tuple[Counter[str], dict[str, Counter[str]], dict[str, str], int]:
    tz = profile(conn).tz
    s, e = assessment.month_window(month, tz)
    params: dict[str, Any] = {"s": s, "e": e}
    where = _scope_where(principal, region, params)
    total: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {}
    n = 0
    for street, desc in conn.execute(text(
            "SELECT i.street_code, i.description FROM incident i "
            f"WHERE {assessment.RECEIVED_SQL} AND {where}"), params):
        ws = words(desc)
        n += 1
        total.update(ws)
        per.setdefault(street or "", Counter()).update(ws)
    codes = [c for c in per if c]
    names: dict[str, str] = dict(conn.execute(text("SELECT code, name FROM region WHERE code = ANY(:c)"),
                              {"c": codes}).all()) if codes else {}
    return total, per, names, n


class Topics(TypedDict):
    """What :func:`topics` returns (``GET /analysis/topics``)."""

    month: str
    region: str | None
    cases: int
    cases_prev: int
    overall: list[dict[str, Any]]  # word, count, prev, rising
    streets: list[dict[str, Any]]  # code, name, words: [{word, count}]
    rule: str


def topics(conn: Connection, *, principal: Principal, month: str, region: str | None = None,
           top: int = 15) -> Topics:
    """The month's top words overall and per street, with last month's counts."""
    principal.require(Permission.ASSESSMENT_READ)
    cur, per, names, n = _counts(conn, principal, month, region)
    prev, _, _, n_prev = _counts(conn, principal, shift_month(month, -1), region)
    overall = [{"word": w, "count": c, "prev": prev.get(w, 0),
                "rising": c >= 5 and c >= 2 * prev.get(w, 0)} for w, c in cur.most_common(top)]
    streets = [{"code": code, "name": names.get(code, code or "(none)"),
                "words": [{"word": w, "count": c} for w, c in cnt.most_common(5)]}
               for code, cnt in sorted(per.items())]
    return {"month": month, "region": region, "cases": n, "cases_prev": n_prev,
            "overall": overall, "streets": streets,
            "rule": "jieba precise mode; a word once per case; 1-character words, numbers and "
                    "stop words dropped; rising: ≥ 5 and ≥ 2× last month"}
