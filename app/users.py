"""Users, API keys and the audit log: the application's own records, used by the API and the CLI.

Every function takes the acting :class:`Principal`; reads are filtered to its jurisdiction and
writes are checked against it here, not in the routers.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import Connection, text

from app.auth import check_password_strength, hash_password, new_api_key
from grids.access import ROLES, Permission, Principal
from grids.codes import normalise
from grids.errors import Conflict, GridError, RegionNotFound
from grids.sql import in_scope


class UserNotFound(RegionNotFound):
    code = "user_not_found"


class KeyNotFound(RegionNotFound):
    code = "api_key_not_found"


_USER_COLUMNS = (
    "u.username, u.display_name, u.role, r.code AS region_code, s.code AS staff_code, "
    "u.disabled, u.created_at, u.updated_at"
)


def _region_id(conn: Connection, code: str, principal: Principal) -> int:
    code = normalise(code)
    rid = conn.execute(text("SELECT id FROM region WHERE code = :c"), {"c": code}).scalar()
    if rid is None or not principal.scope.covers(code):
        raise RegionNotFound(f"No region {code} in your jurisdiction.",
                             detail={"field": "region_code", "value": code})
    return rid


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise GridError(f"Unknown role {role[:30]!r}.",
                        detail={"field": "role", "expected": list(ROLES)}, code="invalid_role")


def create_user(conn: Connection, *, username: str, password: str, role: str, region_code: str,
                display_name: str = "", staff_code: str | None = None,
                principal: Principal) -> dict[str, Any]:
    principal.require(Permission.USERS_WRITE)
    _check_role(role)
    check_password_strength(password)
    region_id = _region_id(conn, region_code, principal)
    staff_id = None
    if staff_code:
        staff_id = conn.execute(text("SELECT id FROM staff WHERE code = :c"),
                                {"c": staff_code}).scalar()
        if staff_id is None:
            raise RegionNotFound(f"No staff member {staff_code[:40]}.",
                                 detail={"field": "staff_code", "value": staff_code[:40]},
                                 code="staff_not_found")
    elif role == "grid_worker":
        raise GridError("A grid worker account must be linked to a staff member.",
                        detail={"field": "staff_code", "expected": "a staff code"},
                        code="staff_required")
    username = username.strip().lower()
    if not re.fullmatch(r"[a-z0-9_.-]{3,40}", username):
        raise GridError("A username is 3–40 characters: letters, digits, '_', '.' or '-'.",
                        detail={"field": "username", "expected": "^[a-z0-9_.-]{3,40}$"},
                        code="invalid_username")
    if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": username}).first():
        raise Conflict(f"The username {username!r} is taken.", detail={"field": "username"})
    conn.execute(text(
        "INSERT INTO app_user (username, display_name, password_hash, role, region_id, staff_id) "
        "VALUES (:u, :d, :h, :r, :reg, :s)"),
        {"u": username, "d": display_name, "h": hash_password(password), "r": role,
         "reg": region_id, "s": staff_id})
    return get_user(conn, username, principal=principal)


def get_user(conn: Connection, username: str, *, principal: Principal) -> dict[str, Any]:
    principal.require(Permission.USERS_READ)
    row = conn.execute(text(
        f"SELECT {_USER_COLUMNS} FROM app_user u JOIN region r ON r.id = u.region_id "
        "LEFT JOIN staff s ON s.id = u.staff_id WHERE u.username = :u"),
        {"u": username.strip().lower()[:40]}).mappings().first()
    if row is None or not principal.scope.covers(row["region_code"]):
        raise UserNotFound(f"No user {username[:40]!r} in your jurisdiction.",
                           detail={"field": "username", "value": username[:40]})
    return dict(row)


def list_users(conn: Connection, *, principal: Principal) -> list[dict[str, Any]]:
    principal.require(Permission.USERS_READ)
    cond, scoped = in_scope(principal, "r.code")
    rows = conn.execute(text(
        f"SELECT {_USER_COLUMNS} FROM app_user u JOIN region r ON r.id = u.region_id "
        f"LEFT JOIN staff s ON s.id = u.staff_id WHERE {cond} "
        "ORDER BY u.username"), scoped).mappings()
    return [dict(r) for r in rows]


def update_user(conn: Connection, username: str, *, principal: Principal,
                role: str | None = None, region_code: str | None = None,
                disabled: bool | None = None, display_name: str | None = None,
                password: str | None = None) -> dict[str, Any]:
    """Change a user; a new password, role, region or disabling ends their current tokens."""
    principal.require(Permission.USERS_WRITE)
    get_user(conn, username, principal=principal)
    sets: dict[str, Any] = {}
    if role is not None:
        _check_role(role)
        sets["role"] = role
    if region_code is not None:
        sets["region_id"] = _region_id(conn, region_code, principal)
    if disabled is not None:
        sets["disabled"] = disabled
    if display_name is not None:
        sets["display_name"] = display_name
    if password is not None:
        check_password_strength(password)
        sets["password_hash"] = hash_password(password)
    if not sets:
        raise GridError("Nothing to change.", detail={"field": "body"}, code="nothing_to_change")
    revoke = any(k in sets for k in ("role", "region_id", "disabled", "password_hash"))
    assignments = ", ".join(f"{k} = :{k}" for k in sets)  # keys from the fixed list above
    conn.execute(text(
        f"UPDATE app_user SET {assignments}, updated_at = now()"
        + (", token_version = token_version + 1" if revoke else "") + " WHERE username = :u"),
        {**sets, "u": username.strip().lower()})
    return get_user(conn, username, principal=principal)


class NewApiKey(TypedDict):
    """A key just made: the only time ``key`` is shown."""

    name: str
    key: str
    prefix: str
    role: str
    region_code: str
    rate_limit_per_minute: int


class ApiKeyRow(TypedDict):
    name: str
    prefix: str
    role: str
    region_code: str
    rate_limit_per_minute: int
    disabled: bool
    created_at: datetime


class DisabledApiKey(TypedDict):
    name: str
    prefix: str
    disabled: bool


def create_api_key(conn: Connection, *, name: str, role: str, region_code: str,
                   rate_limit_per_minute: int = 600, principal: Principal) -> NewApiKey:
    """A new key for a machine client; the full key is returned once and never stored."""
    principal.require(Permission.APIKEYS_WRITE)
    _check_role(role)
    region_id = _region_id(conn, region_code, principal)
    if conn.execute(text("SELECT 1 FROM api_key WHERE name = :n"), {"n": name}).first():
        raise Conflict(f"An API key named {name[:40]!r} exists.", detail={"field": "name"})
    key, prefix, key_hash = new_api_key()
    conn.execute(text(
        "INSERT INTO api_key (name, prefix, key_hash, role, region_id, rate_limit_per_minute) "
        "VALUES (:n, :p, :h, :r, :reg, :rl)"),
        {"n": name, "p": prefix, "h": key_hash, "r": role, "reg": region_id,
         "rl": rate_limit_per_minute})
    return {"name": name, "key": key, "prefix": prefix, "role": role,
            "region_code": normalise(region_code), "rate_limit_per_minute": rate_limit_per_minute}


def list_api_keys(conn: Connection, *, principal: Principal) -> list[ApiKeyRow]:
    principal.require(Permission.APIKEYS_WRITE)
    cond, scoped = in_scope(principal, "r.code")
    rows = conn.execute(text(
        "SELECT k.name, k.prefix, k.role, r.code AS region_code, k.rate_limit_per_minute, "
        "k.disabled, k.created_at FROM api_key k JOIN region r ON r.id = k.region_id "
        f"WHERE {cond} ORDER BY k.name"), scoped).mappings()
    return [cast(ApiKeyRow, dict(r)) for r in rows]


def disable_api_key(conn: Connection, name: str, *, principal: Principal) -> DisabledApiKey:
    principal.require(Permission.APIKEYS_WRITE)
    cond, scoped = in_scope(principal, "r.code")
    row = conn.execute(text(
        "UPDATE api_key k SET disabled = true FROM region r WHERE r.id = k.region_id "
        f"AND k.name = :n AND {cond} RETURNING k.name, k.prefix"),
        {"n": name, **scoped}).mappings().first()
    if row is None:
        raise KeyNotFound(f"No API key {name[:40]!r} in your jurisdiction.",
                          detail={"field": "name", "value": name[:40]})
    return {"name": row["name"], "prefix": row["prefix"], "disabled": True}


def audit_log(conn: Connection, *, principal: Principal, entity: str | None = None,
              key: str | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int = 100, offset: int = 0
              ) -> list[dict[str, Any]]:
    """The audit log, newest first, within the caller's jurisdiction (admins see everything)."""
    principal.require(Permission.AUDIT_READ)
    cond, scoped = in_scope(principal, "region_code")
    rows = conn.execute(text(
        "SELECT id, at, actor, ip, action, entity, entity_key, region_code, before, after "
        f"FROM audit_log WHERE {cond} "
        "AND (CAST(:entity AS text) IS NULL OR entity = :entity) "
        "AND (CAST(:key AS text) IS NULL OR entity_key = :key) "
        "AND (CAST(:since AS timestamptz) IS NULL OR at >= :since) "
        "AND (CAST(:until AS timestamptz) IS NULL OR at < :until) "
        "ORDER BY id DESC LIMIT :limit OFFSET :offset"),
        {**scoped, "entity": entity, "key": key, "since": since, "until": until, "limit": limit,
         "offset": offset}).mappings()
    return [dict(r) for r in rows]
