"""Who sits at the desk: dispatchers (值班员), supervisors (督办), and a department's liaison.

A liaison is an account listed in ``desk_liaison`` with the department it speaks for: the desk
shows it that department's open cases only, and offers it the department's steps only (accept,
report back, return). Roles and jurisdictions stay those of :mod:`grids.access`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from grids.access import Principal

# Who may merge and undo merges, and see the whole queue of their jurisdiction.
DESK_ROLES = frozenset({"admin", "dispatcher", "supervisor"})
# The steps a department's liaison takes on its own department's cases.
LIAISON_ACTIONS = ("accept", "report", "return")
# Who may reveal a phone in full (with a reason, audited): admins; dispatchers city-wide (they
# call reporters back); supervisors inside their jurisdiction. Never a liaison.
REVEAL_ROLES = frozenset({"admin", "dispatcher", "supervisor"})


@dataclass(frozen=True, slots=True)
class DeskUser:
    principal: Principal
    department: str | None  # the liaison's department code, None for everyone else
    department_name: str | None = None

    @property
    def is_liaison(self) -> bool:
        return self.department is not None

    @property
    def username(self) -> str | None:
        name = self.principal.name
        return name.split(":", 1)[1] if name.startswith("user:") else None


def desk_user(conn: Connection, principal: Principal) -> DeskUser:
    """The principal with the department it is liaison for, if any."""
    name = principal.name
    if not name.startswith("user:"):
        return DeskUser(principal, None)
    row = conn.execute(text(
        "SELECT d.code, d.name FROM desk_liaison l JOIN app_user u ON u.id = l.user_id "
        "JOIN department d ON d.id = l.department_id WHERE u.username = :u"),
        {"u": name.split(":", 1)[1]}).first()
    return DeskUser(principal, row[0] if row else None, row[1] if row else None)


def set_liaison(conn: Connection, username: str, department: str | None) -> None:
    """Make ``username`` the liaison of ``department`` (None: no longer a liaison). Admin tools
    and tests call this; the audit trigger records it."""
    if department is None:
        conn.execute(text("DELETE FROM desk_liaison WHERE user_id = "
                          "(SELECT id FROM app_user WHERE username = :u)"), {"u": username})
        return
    conn.execute(text(
        "INSERT INTO desk_liaison (user_id, department_id) SELECT u.id, d.id FROM app_user u, "
        "department d WHERE u.username = :u AND d.code = :d ON CONFLICT (user_id) DO UPDATE "
        "SET department_id = EXCLUDED.department_id"), {"u": username, "d": department})
