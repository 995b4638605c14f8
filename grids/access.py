"""Layered authorisation (分层授权): roles, permissions, jurisdiction and personal-data masking.

A :class:`Principal` is who is asking: a role and a jurisdiction. The jurisdiction is one or more
region-code prefixes: codes are hierarchical (province 2 digits, city 6, street 9, community 12,
grid 15), so a street's supervisor with jurisdiction ``510131101`` acts on every code that starts
with it, and a provincial supervisor (``51``) on every city of the province.
A grid worker's jurisdiction is the grids they are assigned to.

Domain functions take the principal (or its :class:`Scope`) as a required keyword, so a router
cannot forget to pass it; an object outside the scope is reported as not found, so guessing codes
or ids reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import overload

from grids.codes import level_of, normalise
from grids.errors import GridError


class Permission(StrEnum):
    REGIONS_READ = "regions:read"
    STAFF_READ = "staff:read"
    STAFF_WRITE = "staff:write"
    ASSIGNMENTS_WRITE = "assignments:write"
    LOCATE = "locate"
    LOCATE_CITYWIDE = "locate:citywide"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    APIKEYS_WRITE = "apikeys:write"
    AUDIT_READ = "audit:read"
    CATALOGUE_WRITE = "catalogue:write"
    INCIDENTS_READ = "incidents:read"
    INCIDENTS_CREATE = "incidents:create"
    INCIDENTS_HANDLE = "incidents:handle"
    PATROLS_WRITE = "patrols:write"
    PATROLS_READ = "patrols:read"
    MAPS_READ = "maps:read"
    ASSESSMENT_READ = "assessment:read"
    PLANS_READ = "plans:read"
    PLANS_WRITE = "plans:write"
    ADDRESSES_WRITE = "addresses:write"  # import the standard address book (grids/addresses.py)


ROLES = ("admin", "planner", "supervisor", "dispatcher", "grid_worker", "viewer")
P = Permission
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "planner": frozenset({P.REGIONS_READ, P.STAFF_READ, P.LOCATE, P.INCIDENTS_READ,
                          P.PATROLS_READ, P.MAPS_READ, P.ASSESSMENT_READ, P.PLANS_READ,
                          P.PLANS_WRITE, P.ADDRESSES_WRITE}),
    "supervisor": frozenset({P.REGIONS_READ, P.STAFF_READ, P.STAFF_WRITE, P.ASSIGNMENTS_WRITE,
                             P.LOCATE, P.USERS_READ, P.AUDIT_READ, P.INCIDENTS_READ,
                             P.INCIDENTS_CREATE, P.INCIDENTS_HANDLE, P.PATROLS_READ,
                             P.PATROLS_WRITE, P.MAPS_READ, P.ASSESSMENT_READ}),
    # Knowing who is responsible anywhere is a dispatcher's job: locate is city-wide for them.
    "dispatcher": frozenset({P.REGIONS_READ, P.STAFF_READ, P.LOCATE, P.LOCATE_CITYWIDE,
                             P.INCIDENTS_READ, P.INCIDENTS_CREATE, P.INCIDENTS_HANDLE,
                             P.MAPS_READ}),
    "grid_worker": frozenset({P.REGIONS_READ, P.STAFF_READ, P.LOCATE, P.INCIDENTS_READ,
                              P.INCIDENTS_CREATE, P.INCIDENTS_HANDLE, P.PATROLS_WRITE,
                              P.PATROLS_READ, P.MAPS_READ}),
    # Citizen apps report through keys with this role: they may submit, not handle.
    "viewer": frozenset({P.REGIONS_READ, P.LOCATE, P.INCIDENTS_READ, P.INCIDENTS_CREATE,
                         P.MAPS_READ}),
}
# Roles that see staff phones and reporters' names in full, inside their own jurisdiction.
FULL_PERSONAL_DATA = frozenset({"admin", "supervisor", "grid_worker"})


class Forbidden(GridError):
    """The role may not do this at all (403). Outside the jurisdiction is RegionNotFound (404)."""

    code = "forbidden"


def prefix_of(code: str) -> str:
    """The code prefix that a region's subtree shares.

    >>> prefix_of("510131000000"), prefix_of("510131101000"), prefix_of("510131101001")
    ('510131', '510131101', '510131101001')
    >>> prefix_of("510000000000")
    '51'
    """
    code = normalise(code)
    return {"province": code[:2], "city": code[:6], "street": code[:9], "community": code[:12],
            "grid": code}[level_of(code)]


@dataclass(frozen=True, slots=True)
class Scope:
    """A set of region subtrees, as code prefixes."""

    prefixes: tuple[str, ...]

    @classmethod
    def everything(cls) -> Scope:
        """No restriction (the CLI, migrations, the system itself)."""
        return cls(prefixes=("",))

    @classmethod
    def of(cls, *codes: str) -> Scope:
        return cls(prefixes=tuple(sorted({prefix_of(c) for c in codes})))

    def covers(self, code: str | None) -> bool:
        """True if the region ``code`` lies in this scope (None: only the unrestricted scope)."""
        if code is None:
            return "" in self.prefixes
        return any(code.startswith(p) for p in self.prefixes)

    def is_citywide(self) -> bool:
        """Does this scope hold a whole city (or a province, or everything)?"""
        return any(len(p) <= 6 for p in self.prefixes)

    def holds(self, root: str) -> bool:
        """Does this scope hold the whole subtree of prefix ``root`` ('' : everything)?"""
        return any(root.startswith(p) for p in self.prefixes)

    def like_patterns(self) -> list[str]:
        """SQL ``LIKE ANY(:patterns)`` patterns (codes are digits: nothing to escape)."""
        return [p + "%" for p in self.prefixes]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user, an API key, or the system."""

    name: str  # 'user:alice', 'key:hotline', 'cli:root'
    role: str
    scope: Scope
    permissions: frozenset[Permission] = field(default=frozenset())
    #: The prefix of the deployment's province ('' for a single-city deployment, or unknown):
    #: in a province, ``locate:citywide`` lifts the limit only for the province's principals.
    province: str = ""

    @classmethod
    def make(cls, name: str, role: str, scope: Scope, *, province: str = "") -> Principal:
        return cls(name=name, role=role, scope=scope, permissions=ROLE_PERMISSIONS[role],
                   province=province)

    @classmethod
    def system(cls, name: str = "system") -> Principal:
        return cls.make(name, "admin", Scope.everything())

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"The {self.role} role may not do this ({permission}).",
                            detail={"permission": str(permission), "role": self.role})

    def sees_personal_data(self, region_code: str | None) -> bool:
        """Full phones and names for ``region_code``? Otherwise they are masked."""
        return self.role in FULL_PERSONAL_DATA and self.scope.covers(region_code)

    def locate_scope(self) -> Scope:
        """Where this principal may ask who is responsible (and, for dispatchers, handle).

        ``locate:citywide`` lifts the limit only for a principal whose jurisdiction is the city
        (a city-level dispatcher, the command centre): a dispatcher attached to a street sees
        that street, like everyone else there. In a province deployment (``province`` set) it
        lifts it only for the province's principals: a city's dispatcher sees their city.

        >>> Principal.make("u", "dispatcher", Scope.of("110105000000")).locate_scope().covers(None)
        True
        >>> street = Principal.make("u", "dispatcher", Scope.of("110105001000")).locate_scope()
        >>> street.covers(None), street.covers("110105002001001"), street.covers("110105001001")
        (False, False, True)
        >>> city = Principal.make("u", "dispatcher", Scope.of("110105000000"), province="11")
        >>> city.locate_scope().covers(None), city.locate_scope().covers("110106001001")
        (False, False)
        >>> Principal.make("u", "dispatcher", Scope.of("110000000000"),
        ...                province="11").locate_scope().covers(None)
        True
        """
        if self.can(Permission.LOCATE_CITYWIDE) and self.scope.is_citywide():
            if self.province and not self.scope.holds(self.province):
                return self.scope
            return Scope.everything()
        return self.scope


def mask_phone(phone: str | None) -> str | None:
    """Keep the first 3 and last 4 digits.

    >>> mask_phone("13812341234"), mask_phone("110"), mask_phone(None)
    ('138****1234', '***', None)
    """
    if phone is None:
        return None
    if len(phone) < 8:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """Keep the surname (first character): 张三丰 → 张**.

    >>> mask_name("张三丰"), mask_name("Li")
    ('张**', 'L*')
    """
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


@overload
def mask_person(person: dict, principal: Principal, region_code: str | None,
                *, name: bool = False) -> dict: ...
@overload
def mask_person(person: None, principal: Principal, region_code: str | None,
                *, name: bool = False) -> None: ...
@overload
def mask_person(person: dict | None, principal: Principal, region_code: str | None,
                *, name: bool = False) -> dict | None: ...
def mask_person(person: dict | None, principal: Principal, region_code: str | None,
                *, name: bool = False) -> dict | None:
    """A copy of a staff or reporter record with phone (and optionally name) masked if needed."""
    if person is None or principal.sees_personal_data(region_code):
        return person
    out = dict(person)
    if "phone" in out:
        out["phone"] = mask_phone(out["phone"])
    if name and "name" in out:
        out["name"] = mask_name(out["name"])
    return out
