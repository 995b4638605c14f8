"""The jurisdiction filter in one place: the SQL condition that a region code lies in a scope.

Every query that a principal's jurisdiction cuts uses :func:`in_scope`::

    cond, params = in_scope(principal, "i.region_code")
    conn.execute(text(f"SELECT ... FROM incident i WHERE {cond} AND ..."), params | more)

The fragment is SQL text with a bound parameter (``LIKE ANY(:scope)``, one ``LIKE`` pattern per
code prefix of the scope); the column is code-supplied SQL, never a request's value. An
unrestricted scope (the system, city-wide roles whose scope is everything) gives ``TRUE``, so
rows without a code (an incident outside every grid) are seen only by it.
"""

from __future__ import annotations

import re
from typing import Any

from grids.access import Principal, Scope

# A column, or an expression of columns such as ``coalesce(i.grid_code, i.region_code)``:
# letters, digits, '_', '.', ',', spaces and parentheses (no quotes, no parameters).
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_., ()]*$")


def in_scope(who: Principal | Scope, column: str, *, param: str = "scope"
             ) -> tuple[str, dict[str, Any]]:
    """``(condition, params)``: ``column`` (a region code) lies in ``who``'s jurisdiction.

    ``who`` is a principal (its ``scope``) or a scope (e.g. ``principal.locate_scope()``);
    ``param`` names the bound parameter, for a query that holds two scopes.

    >>> in_scope(Scope.of("510131101000"), "r.code")
    ('r.code LIKE ANY(:scope)', {'scope': ['510131101%']})
    >>> in_scope(Scope.everything(), "r.code")
    ('TRUE', {})
    """
    scope = who.scope if isinstance(who, Principal) else who
    if scope.covers(None):
        like_any(column, param=param)  # the column is checked all the same
        return "TRUE", {}
    return like_any(column, param=param), {param: scope.like_patterns()}


def like_any(column: str, *, param: str = "scope") -> str:
    """The condition alone, for a query written once at import time; the caller binds
    ``param`` to ``scope.like_patterns()`` (an unrestricted scope then matches every row that
    has a code, unlike :func:`in_scope`'s ``TRUE``).

    >>> like_any("o.region_code")
    'o.region_code LIKE ANY(:scope)'
    """
    if not _COLUMN.match(column):
        raise ValueError(f"not a column expression: {column!r}")
    return f"{column} LIKE ANY(:{param})"
