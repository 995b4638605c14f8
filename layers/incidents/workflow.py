"""The closed loop as an explicit state machine, and the traffic light of each step.

受理 received → 立案 registered → 派遣 dispatched → 处置 handling → 反馈 reported →
核查 verified → 结案 closed → 评价 evaluated, with the side paths: 回退 return (one step back),
作废 void, 延时 extension, 返工 rework (a failed check sends the case back to dispatch) and 督办
supervision cards (yellow, red).

Each action names the states it leaves from, the state it leads to, and the roles that may take it.
Jurisdiction is checked by the caller (:mod:`layers.incidents.handling`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from layers.incidents.calendar import WorkCalendar, used_fraction

STATES = ("received", "registered", "dispatched", "handling", "reported", "verified", "closed",
          "evaluated", "voided", "merged")  # merged: a duplicate closed into a lead (dispatch desk)
OPEN_ORDER = ("received", "registered", "dispatched", "handling", "reported", "verified")
"""The open states, in the order a case goes through them (the one definition; pages keep a copy)."""
OPEN_STATES = frozenset(OPEN_ORDER)
OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN_ORDER) + ")"
"""``state IN {OPEN_SQL}``: a literal list (not a bound array) so that the planner matches the
partial indexes whose predicate is this same list (migrations 0008, 0011, 0015)."""
# The step whose time limit runs while the case is in a state (category limits are keyed by it).
STEP_OF_STATE = {"received": "register", "registered": "dispatch", "dispatched": "accept",
                 "handling": "handle", "reported": "verify", "verified": "close"}
DEFAULT_LIMITS_H = {"register": 2, "dispatch": 2, "accept": 4, "handle": 72, "verify": 24,
                    "close": 24}
# The whole case must be closed within the sum of its limits (按期结案).

DESK = frozenset({"admin", "dispatcher", "supervisor"})
FIELD = frozenset({"admin", "supervisor", "grid_worker"})
CHECKERS = frozenset({"admin", "dispatcher", "supervisor"})


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    sources: frozenset[str]
    target: str | None  # None: stays in its state (extension, card)
    roles: frozenset[str]
    label_zh: str


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("register", frozenset({"received"}), "registered", DESK, "立案"),
    Action("dispatch", frozenset({"registered"}), "dispatched", DESK, "派遣"),
    Action("accept", frozenset({"dispatched"}), "handling", FIELD, "处置"),
    Action("report", frozenset({"handling"}), "reported", FIELD, "反馈"),
    Action("verify", frozenset({"reported"}), "verified", CHECKERS, "核查"),
    Action("rework", frozenset({"reported"}), "dispatched", CHECKERS, "返工"),
    Action("close", frozenset({"verified"}), "closed", CHECKERS, "结案"),
    Action("evaluate", frozenset({"closed"}), "evaluated", frozenset({"admin", "supervisor"}),
           "评价"),
    Action("return", frozenset({"registered", "dispatched", "handling"}), None,
           DESK | FIELD, "回退"),
    Action("void", frozenset({"received", "registered"}), "voided", DESK, "作废"),
    Action("extend", frozenset({"dispatched", "handling"}), None,
           frozenset({"admin", "supervisor"}), "延时"),
    Action("card", OPEN_STATES, None, frozenset({"admin", "supervisor"}), "督办"),
)}
RETURN_TO = {"registered": "received", "dispatched": "registered", "handling": "dispatched"}


class IllegalTransition(Exception):
    """An action that is not allowed from the incident's state (409)."""

    code = "illegal_transition"

    def __init__(self, action: str, state: str) -> None:
        allowed = allowed_actions(state)
        super().__init__(f"Cannot {action} an incident that is {state}.")
        self.message = (f"Cannot {action} an incident that is {state}; allowed now: "
                        f"{', '.join(allowed) or 'nothing'}.")
        self.detail = {"field": "action", "state": state, "action": action, "allowed": allowed}


def allowed_actions(state: str, role: str | None = None) -> list[str]:
    """Actions possible from ``state`` (for ``role``, if given), in workflow order.

    >>> allowed_actions("reported")
    ['verify', 'rework', 'card']
    >>> allowed_actions("reported", "grid_worker")
    []
    """
    return [a.name for a in ACTIONS.values()
            if state in a.sources and (role is None or role in a.roles)]


def next_state(action: str, state: str) -> str:
    """The state an action leads to from ``state``; raises :class:`IllegalTransition`.

    >>> next_state("return", "handling"), next_state("rework", "reported")
    ('dispatched', 'dispatched')
    """
    act = ACTIONS.get(action)
    if act is None or state not in act.sources:
        raise IllegalTransition(action, state)
    if action == "return":
        return RETURN_TO[state]
    return act.target or state


def step_limit_hours(limits: dict[str, float], state: str) -> float | None:
    step = STEP_OF_STATE.get(state)
    if step is None:
        return None
    return float(limits.get(step, DEFAULT_LIMITS_H[step]))


def total_limit_hours(limits: dict[str, float]) -> float:
    return float(sum(limits.get(s, h) for s, h in DEFAULT_LIMITS_H.items()))


def light(state: str, state_since: datetime, limits: dict[str, float], extension_h: float,
          now: datetime, *, unit: str = "hours", calendar: WorkCalendar | None = None
          ) -> str | None:
    """Traffic light of the current step: under 80 % of its limit green, 80–100 % yellow,
    over 100 % red; None once the case is closed or voided. For a category on working time
    (``unit`` ``work_hours`` or ``work_days``) both the limit and the time used are office time
    of ``calendar``.

    >>> from datetime import UTC, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> [light("handling", t0, {"handle": 10}, 0, t0 + timedelta(hours=h)) for h in (7, 9, 11)]
    ['green', 'yellow', 'red']
    """
    limit = step_limit_hours(limits, state)
    if limit is None:
        return None
    used = used_fraction(calendar, state_since, now, limit, unit, extension_h)
    return "green" if used < 0.8 else "yellow" if used <= 1.0 else "red"


def light_sql(prefix: str = "i", category: str = "c") -> str:
    """The same light as a SQL expression over incident ``prefix`` and category ``category``."""
    step = ("CASE {i}.state WHEN 'received' THEN 'register' WHEN 'registered' THEN 'dispatch' "
            "WHEN 'dispatched' THEN 'accept' WHEN 'handling' THEN 'handle' "
            "WHEN 'reported' THEN 'verify' WHEN 'verified' THEN 'close' END")
    defaults = ("CASE {i}.state WHEN 'received' THEN 2 WHEN 'registered' THEN 2 "
                "WHEN 'dispatched' THEN 4 WHEN 'handling' THEN 72 WHEN 'reported' THEN 24 "
                "WHEN 'verified' THEN 24 END")
    step_limit = f"coalesce(({{c}}.limits ->> ({step}))::float8, {defaults})"
    # Calendar hours: seconds since the step began over the limit. Working time: office seconds
    # since then (citygrid_work_seconds, migration 0018) over the limit in office seconds (a
    # working day is one office day), so the yellow comes at 80 % of office time too.
    used_h = (f"extract(epoch FROM now() - {{i}}.state_since) / "
              f"nullif(({step_limit} + {{i}}.extension_hours) * 3600.0, 0)")
    used_w = (f"citygrid_work_seconds({{i}}.state_since, now()) / nullif("
              f"CASE {{c}}.limit_unit WHEN 'work_days' THEN {step_limit} * "
              f"citygrid_office_day_seconds() ELSE {step_limit} * 3600.0 END "
              f"+ {{i}}.extension_hours * 3600.0, 0)")
    # No subquery here: its estimated cost would push every query that shows a light over the
    # JIT threshold (seconds of compiling for a millisecond of work).
    expr = (f"CASE WHEN {{i}}.state NOT IN {OPEN_SQL} THEN NULL "
            f"WHEN {{c}}.limit_unit = 'hours' THEN CASE WHEN {used_h} < 0.8 THEN 'green' "
            f"WHEN {used_h} <= 1.0 THEN 'yellow' ELSE 'red' END "
            f"ELSE citygrid_light_of({used_w}) END")
    return expr.format(i=prefix, c=category)
