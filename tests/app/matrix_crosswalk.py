"""Access-matrix rows for the crosswalk router (merged by tests/app/test_access_matrix.py).

Like the plans routes that address one plan by id: called with a plan that does not exist, a
role with ``plans:read`` gets a clean 404, the others 403, anonymous callers 401.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NO_PLAN = 2_000_000_000

SAMPLES: dict[tuple[str, str], Callable[[Any], tuple[str, str, dict[str, Any]]]] = {
    ("GET", "/plans/{plan_id}/crosswalk"): lambda p: (
        "GET", f"/plans/{NO_PLAN}/crosswalk", {"params": {"format": "csv"}}),
}
MISSING = {("GET", "/plans/{plan_id}/crosswalk")}
