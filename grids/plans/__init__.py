"""Redraw plans in the registry: open, edit, validate, preview, activate, discard.

A plan is a draft over one street or community. Opening it copies the boundaries in force under
that region into ``plan_region``; edits change only those rows (geometry work in
:mod:`grids.plans.edits`), so nobody else sees anything until activation. Activation writes a new
boundary version in the caller's transaction: the changed regions' boundaries in force are closed
at ``effective_at`` and the new ones start there (history is kept, so ``at=`` before it answers
with the old ones).

Concurrency
-----------
- Each plan has a ``revision``; its ETag is ``"<id>-<revision>"``. Every write names the ETag it
  read (``if_match``); a stale one raises :class:`PlanConflict` (409) naming the edit made since.
  The plan row is locked (``FOR UPDATE``) while it is checked and changed.
- A plan remembers the boundaries in force under its region when it was opened. Activation locks
  them and refuses (409) if any has been closed or a new one added since: another plan over the
  same grids was activated first.
- The database itself refuses overlapping siblings (migration 0007's deferred guard);
  activation asks for that check before it returns, so it surfaces as a 409 here.

Every function takes a connection inside the caller's transaction and never commits.

Modules
-------
- geometry, no database: :mod:`~grids.plans.draft` (the draft, its items and problems, measuring),
  :mod:`~grids.plans.checks` (the exact tiling checker), :mod:`~grids.plans.edits` (the seven
  edits and ``apply``);
- in the registry: :mod:`~grids.plans.store` (plan rows, the draft read and written, the edit
  log), :mod:`~grids.plans.drafting` (open, edit, validate, discard), :mod:`~grids.plans.views`
  (features, impact), :mod:`~grids.plans.activation`, :mod:`~grids.plans.io` (GeoPackage round
  trips), :mod:`~grids.plans.history` (versions, diff).

The names below are the service API (``from grids import plans; plans.create_plan(...)``).
"""

from grids.plans.activation import activate
from grids.plans.drafting import apply_edit, create_plan, discard, validate_plan
from grids.plans.store import (
    STATUSES,
    InvalidEdit,
    PlanConflict,
    PlanNotDraft,
    PlanNotFound,
    etag_of,
    get_plan,
    list_plans,
    load_draft,
    log_edit,
    plan_row,
    problems_json,
    store_draft,
)
from grids.plans.views import features, impact

__all__ = [
    "STATUSES", "InvalidEdit", "PlanConflict", "PlanNotDraft", "PlanNotFound", "activate",
    "apply_edit", "create_plan", "discard", "etag_of", "features", "get_plan", "impact",
    "list_plans", "load_draft", "log_edit", "plan_row", "problems_json", "store_draft",
    "validate_plan",
]
