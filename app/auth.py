"""Authentication: passwords, tokens, portal sessions with CSRF, API keys, rate limits.

- Passwords are hashed with Argon2id (argon2-cffi's defaults).
- ``POST /auth/token`` gives a short-lived bearer token (JWT, HS256, ``CITYGRID_SECRET_KEY``).
- ``POST /auth/session`` sets an http-only session cookie for the portal and a CSRF cookie; writes
  made with the cookie must echo the CSRF value in ``X-CSRF-Token`` (double submit, and the value
  is bound into the signed session so a planted cookie does not help).
- API keys (``X-API-Key: cgk_<prefix>_<secret>``) for machine clients: high-entropy secrets stored
  as SHA-256, each key with its own role, jurisdiction and per-minute rate limit.
- Users and keys are held in memory (:class:`Directory`) and reloaded on ``NOTIFY`` like the
  locator, so checking a request costs no database round trip; disabling a user or resetting
  their password (which bumps ``token_version``) takes effect within a second.

Rate limits (login attempts, API keys) are counted in PostgreSQL (``rate_counter``, migration
0013), so every worker process shares them; see :mod:`app.rate_limits`. Logging out ends the
portal session on the server (``auth_session_revoked``); the client's address is the TCP peer
unless that peer is a configured proxy (``CITYGRID_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import Connection, Engine, text

from app.rate_limits import KeyRateLimit, LoginThrottle, SharedCounters
from app.settings import AuthSettings
from gis.errors import DomainError
from grids.access import Permission, Principal, Scope

SESSION_COOKIE = "citygrid_session"
CSRF_COOKIE = "citygrid_csrf"
CSRF_HEADER = "x-csrf-token"
API_KEY_HEADER = "x-api-key"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_hasher = PasswordHasher()


class AuthError(DomainError):
    """An authentication failure, with its HTTP status and response headers."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, detail: Any = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, detail=detail, code=code)
        self.headers = headers or {}


class Unauthorized(AuthError):
    status = 401
    code = "unauthorized"


class CsrfFailed(AuthError):
    status = 403
    code = "csrf_failed"


class TooManyRequests(AuthError):
    status = 429
    code = "too_many_requests"


# -- passwords -------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str) -> None:
    """At least 12 characters and not one repeated character; raised as a 422 by the caller."""
    from grids.errors import GridError

    if len(password) < 12 or len(set(password)) < 4:
        raise GridError("A password needs at least 12 characters and some variety.",
                        detail={"field": "password", "expected": "12+ characters"},
                        code="weak_password")


# -- API keys --------------------------------------------------------------------------------------
def new_api_key() -> tuple[str, str, str]:
    """A new key: (full key to hand out once, prefix, hash to store)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    prefix = "".join(secrets.choice(alphabet) for _ in range(8))
    secret = secrets.token_urlsafe(32)
    return f"cgk_{prefix}_{secret}", prefix, hash_key_secret(secret)


def hash_key_secret(secret: str) -> str:
    # Keys are 256-bit random: a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode()).hexdigest()


# -- the in-memory directory ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UserEntry:
    id: int
    username: str
    role: str
    region_code: str
    disabled: bool
    token_version: int
    grid_codes: tuple[str, ...]

    def principal(self, province: str = "") -> Principal:
        scope = Scope.of(*self.grid_codes) if self.role == "grid_worker" else \
            Scope.of(self.region_code)
        if self.role == "grid_worker" and not self.grid_codes:
            scope = Scope(prefixes=())
        return Principal.make(f"user:{self.username}", self.role, scope, province=province)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    prefix: str
    name: str
    key_hash: str
    role: str
    region_code: str
    rate_limit_per_minute: int
    disabled: bool

    def principal(self, province: str = "") -> Principal:
        return Principal.make(f"key:{self.name}", self.role, Scope.of(self.region_code),
                              province=province)


class Directory:
    """Users and API keys, loaded from the database and swapped in whole on reload."""

    def __init__(self) -> None:
        self.users: dict[int, UserEntry] = {}
        self.by_name: dict[str, UserEntry] = {}
        self.keys: dict[str, KeyEntry] = {}
        # Built once per reload, so a request pays a dictionary lookup, not a Principal.
        self.user_principals: dict[int, Principal] = {}
        self.key_principals: dict[str, Principal] = {}
        # Full key strings already checked against their hash (cleared with every reload).
        self.verified_keys: dict[str, KeyEntry] = {}
        # Portal sessions ended by logout and not yet expired (their ``sid`` claims).
        self.revoked_sessions: frozenset[str] = frozenset()
        # The deployment's province prefix ('' for one city): grids.access.Principal.province.
        self.province = ""

    def reload(self, conn: Connection) -> None:
        users = conn.execute(text(
            "SELECT u.id, u.username, u.role, r.code AS region_code, u.disabled, u.token_version, "
            "coalesce((SELECT array_agg(g.code ORDER BY g.code) FROM assignment a "
            "  JOIN region g ON g.id = a.region_id WHERE a.staff_id = u.staff_id "
            "  AND g.level = 'grid' AND a.duty IN ('primary', 'backup') AND a.valid_from <= now() "
            "  AND (a.valid_to IS NULL OR a.valid_to > now())), '{}') AS grid_codes "
            "FROM app_user u JOIN region r ON r.id = u.region_id")).mappings().all()
        keys = conn.execute(text(
            "SELECT k.prefix, k.name, k.key_hash, k.role, r.code AS region_code, "
            "k.rate_limit_per_minute, k.disabled FROM api_key k JOIN region r ON r.id = k.region_id"
        )).mappings().all()
        entries = {u["id"]: UserEntry(**{**u, "grid_codes": tuple(u["grid_codes"])})
                   for u in users}
        key_entries = {k["prefix"]: KeyEntry(**k) for k in keys}
        revoked = conn.execute(text(
            "SELECT sid FROM auth_session_revoked WHERE expires_at > now()")).scalars().all()
        province = conn.execute(text(
            "SELECT left(code, 2) FROM region_current WHERE level = 'province' "
            "ORDER BY code LIMIT 1")).scalar() or ""
        self.user_principals = {i: e.principal(province) for i, e in entries.items()}
        self.key_principals = {p: e.principal(province) for p, e in key_entries.items()}
        self.province = province
        self.users = entries
        self.by_name = {e.username: e for e in entries.values()}
        self.keys = key_entries
        self.verified_keys = {}
        self.revoked_sessions = frozenset(revoked)


# -- the client's address ---------------------------------------------------------------------------
def parse_networks(cidrs: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str:
    """Who is asking: the TCP peer, unless the peer is a trusted proxy.

    Then ``X-Forwarded-For`` is read from the right (each proxy appends the address it saw),
    skipping trusted proxies; the first other address is the client. Anything a client wrote
    itself is further left and is never reached.

    >>> nets = parse_networks(["10.0.0.0/8"])
    >>> client_address("203.0.113.9", "1.2.3.4", nets)  # not a proxy: the header is ignored
    '203.0.113.9'
    >>> client_address("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.3", nets)
    '198.51.100.7'
    >>> client_address("10.0.0.2", None, nets), client_address(None, "1.2.3.4", nets)
    ('10.0.0.2', '?')
    """
    if not peer:
        return "?"
    if not trusted or not forwarded_for or not _in(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: believe only what we saw
        if not _in(hop, trusted):
            return hop
    return peer


def _in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
        ) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


# -- secrets in logged URLs -------------------------------------------------------------------------
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:api_key|apikey|key|token|access_token|password)=)"
                           r"[^&;\s\"']*")


def redact_url(value: str) -> str:
    """A URL or request line with secret query parameters blanked.

    >>> redact_url("GET /open311/v2/requests.json?api_key=cgk_ab_secret&x=1 HTTP/1.1")
    'GET /open311/v2/requests.json?api_key=[redacted]&x=1 HTTP/1.1'
    """
    return _SECRET_PARAM.sub(r"\1[redacted]", value)


class RedactSecrets(logging.Filter):
    """Blank API keys and tokens sent in query strings from log records (uvicorn's access log
    has the full path and query as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact_url(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) and "=" in a else a
                                for a in record.args)
        return True


REDACT_SECRETS = RedactSecrets()


def install_log_redaction() -> None:
    """Add :data:`REDACT_SECRETS` to the loggers that write request lines (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", "citygrid"):
        logger = logging.getLogger(name)
        if REDACT_SECRETS not in logger.filters:
            logger.addFilter(REDACT_SECRETS)


# -- tokens ---------------------------------------------------------------------------------------
class Authenticator:
    """Issues and checks tokens, sessions and keys for one app."""

    def __init__(self, settings: AuthSettings, directory: Directory, *, production: bool) -> None:
        self.settings = settings
        self.directory = directory
        self.cookie_secure = production if settings.cookie_secure is None else settings.cookie_secure
        self.counters = SharedCounters()
        self.key_limits = KeyRateLimit(self.counters)
        self.throttle = LoginThrottle(self.counters, settings.login_attempts,
                                      settings.login_window_s,
                                      settings.login_attempts_per_address)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.audit_key = _audit_key(settings.secret_key)
        self._decoded: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, user: UserEntry, *, kind: str = "access") -> tuple[str, int, str | None]:
        """A signed token for ``user``: (token, lifetime in seconds, csrf value for sessions)."""
        lifetime = (self.settings.token_minutes * 60 if kind == "access"
                    else self.settings.session_hours * 3600)
        now = datetime.now(UTC)
        claims: dict[str, Any] = {"sub": str(user.id), "tv": user.token_version, "typ": kind,
                                  "iat": now, "exp": now + timedelta(seconds=lifetime)}
        csrf = None
        if kind == "session":
            csrf = secrets.token_urlsafe(24)
            claims["csrf"] = hashlib.sha256(csrf.encode()).hexdigest()
            claims["sid"] = secrets.token_urlsafe(18)  # what logout revokes
        return jwt.encode(claims, self.settings.secret_key, algorithm="HS256"), lifetime, csrf

    def _claims(self, token: str) -> dict[str, Any]:
        cached = self._decoded.get(token)
        if cached is not None and cached["exp"] > time.time():
            return cached
        try:
            claims = jwt.decode(token, self.settings.secret_key, algorithms=["HS256"],
                                options={"require": ["exp", "sub", "tv", "typ"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The token has expired; log in again.",
                               code="token_expired", detail={"field": "authorization"}) from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The token is not valid.", code="invalid_token",
                               detail={"field": "authorization"}) from exc
        with self._lock:
            self._decoded[token] = claims
            if len(self._decoded) > 20_000:
                self._decoded.popitem(last=False)
        return claims

    def _user(self, claims: dict[str, Any], kind: str) -> UserEntry:
        try:
            user = self.directory.users.get(int(claims["sub"]))
        except (TypeError, ValueError):
            user = None
        if user is None or user.disabled or user.token_version != claims["tv"] \
                or claims["typ"] != kind:
            raise Unauthorized("The token is no longer valid.", code="invalid_token",
                               detail={"field": "authorization"})
        return user

    def principal(self, request: Request) -> Principal | None:
        """Who sent this request, or None if it carries no credentials at all."""
        auth = key = None
        for name, value in request.scope["headers"]:  # one pass; ASGI names are lower case
            if name == b"authorization" and auth is None:  # the first, as Headers.get
                auth = value.decode("latin-1")
            elif name == b"x-api-key" and key is None:
                key = value.decode("latin-1")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("Use 'Authorization: Bearer <token>'.", code="invalid_token",
                                   detail={"field": "authorization"})
            return self._principal_of(self._user(self._claims(token.strip()), "access"))
        if key:
            return self._key(key, request.app.state.engine)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            claims = self._claims(cookie)
            user = self._user(claims, "session")
            # Sessions ended by logout: an in-memory set, reloaded on NOTIFY with the directory
            # (no database round trip per request; bearer tokens and keys skip this).
            sid = claims.get("sid")
            if not sid or sid in self.directory.revoked_sessions:
                raise Unauthorized("The session has ended; log in again.",
                                   code="session_ended", detail={"field": "session"})
            if request.method in UNSAFE:
                sent = request.headers.get(CSRF_HEADER, "")
                if not sent or not hmac.compare_digest(
                        hashlib.sha256(sent.encode()).hexdigest(), claims.get("csrf", "")):
                    raise CsrfFailed("Missing or wrong CSRF token.",
                                     detail={"field": CSRF_HEADER})
            return self._principal_of(user)
        return None

    def _principal_of(self, user: UserEntry) -> Principal:
        cached = self.directory.user_principals.get(user.id)
        return cached if cached is not None else user.principal(self.directory.province)

    def _key(self, key: str, engine: Engine) -> Principal:
        directory = self.directory
        entry = directory.verified_keys.get(key)
        if entry is None:
            parts = key.split("_", 2)  # the secret itself may contain "_"
            entry = directory.keys.get(parts[1]) if len(parts) == 3 and parts[0] == "cgk" \
                else None
            if entry is None or entry.disabled or not hmac.compare_digest(
                    entry.key_hash, hash_key_secret(parts[2])):
                raise Unauthorized("The API key is not valid.", code="invalid_api_key",
                                   detail={"field": API_KEY_HEADER})
            if len(directory.verified_keys) < 10_000:
                directory.verified_keys[key] = entry
        wait = self.key_limits.take(engine, entry.prefix, entry.rate_limit_per_minute)
        if wait:
            raise TooManyRequests(
                f"Rate limit of {entry.rate_limit_per_minute} requests a minute reached.",
                detail={"retry_after_s": round(wait, 1)},
                headers={"Retry-After": str(int(wait) + 1)})
        cached = directory.key_principals.get(entry.prefix)
        return cached if cached is not None else entry.principal(directory.province)

    def login(self, conn: Connection, username: str, password: str, ip: str) -> UserEntry:
        """Check a password (throttled per username and address, and per address); return the
        directory entry."""
        username = username.strip().lower()[:40]
        engine = conn.engine
        wait = self.throttle.check(engine, username, ip)
        if wait:
            raise TooManyRequests("Too many failed logins; wait before trying again.",
                                  detail={"field": "username", "retry_after_s": wait},
                                  headers={"Retry-After": str(wait)})
        row = conn.execute(text("SELECT id, password_hash, disabled FROM app_user "
                                "WHERE username = :u"), {"u": username}).first()
        # Hash even when the user does not exist, so timing does not reveal usernames.
        ok = verify_password(row.password_hash if row else _DUMMY_HASH, password)
        if not row or not ok or row.disabled:
            self.throttle.failed(engine, username, ip)
            raise Unauthorized("Wrong username or password.", code="login_failed",
                               detail={"field": "password"})
        self.throttle.succeeded(engine, username, ip)
        user = self.directory.users.get(row.id)
        if user is None:  # created a moment ago, before the directory reloaded
            self.directory.reload(conn)
            user = self.directory.users[row.id]
        return user


    def client_ip(self, request: Request) -> str:
        """The caller's address: the peer, or from X-Forwarded-For if the peer is a trusted
        proxy (``CITYGRID_TRUSTED_PROXIES``)."""
        return client_address(request.client.host if request.client else None,
                              request.headers.get("x-forwarded-for"), self.trusted_proxies)

    def end_session(self, engine: Engine, cookie: str | None) -> bool:
        """Revoke the portal session ``cookie`` on the server (logout); False if it was not a
        valid session. This worker forgets it at once; the others on NOTIFY."""
        if not cookie:
            return False
        try:
            claims = jwt.decode(cookie, self.settings.secret_key, algorithms=["HS256"],
                                options={"require": ["exp", "sub", "typ"]})
        except jwt.PyJWTError:
            return False
        sid = claims.get("sid")
        if claims.get("typ") != "session" or not isinstance(sid, str) or not sid:
            return False
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO auth_session_revoked (sid, user_id, expires_at) "
                "VALUES (:s, :u, to_timestamp(:e)) ON CONFLICT (sid) DO NOTHING"),
                {"s": sid[:64], "u": int(claims["sub"]) if str(claims["sub"]).isdigit() else None,
                 "e": claims["exp"]})
            conn.execute(text("DELETE FROM auth_session_revoked WHERE expires_at < now()"))
        directory = self.directory
        directory.revoked_sessions = directory.revoked_sessions | {sid}
        with self._lock:
            self._decoded.pop(cookie, None)
        return True


def _audit_key(secret_key: str) -> bytes:
    from app.db import audit_key

    return audit_key(secret_key)


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# -- FastAPI dependencies -------------------------------------------------------------------------
def current_principal(request: Request) -> Principal | None:
    """Who sent this request (None: no credentials), computed once and kept on the request
    (``request.state.principal``). The state's dict is read directly: ``getattr`` on a
    Starlette ``State`` raises and catches an exception for a missing name, which on the hot
    path cost more than the key check itself."""
    state = request.scope.setdefault("state", {})
    known = state.get("principal", _UNKNOWN)
    if known is not _UNKNOWN:
        return cast("Principal | None", known)
    principal = request.app.state.auth.principal(request)
    state["principal"] = principal
    return principal


_UNKNOWN = object()


def authorize(request: Request, permission: Permission) -> Principal:
    """The caller, if they may use ``permission``: 401 without credentials, 403 without the
    permission."""
    principal = current_principal(request)
    if principal is None:
        raise Unauthorized("Log in first: send a bearer token, an API key or a session.",
                           detail={"field": "authorization"},
                           headers={"WWW-Authenticate": "Bearer"})
    principal.require(permission)
    return principal


async def optional_principal(request: Request) -> Principal | None:
    # async: pure CPU and memory, so it must not cost a threadpool hop on every request.
    return current_principal(request)


def require(permission: Permission) -> Callable[..., Any]:
    """A dependency that needs a caller with ``permission``; routes declare it once.

    The returned function carries ``.permission`` so the permission table can be read off the
    app's routes (see :func:`route_permissions`). It is one flat async dependency: the hot path
    (``/locate``) pays for no dependency chain and no threadpool hop.
    """

    async def dependency(request: Request) -> Principal:
        return authorize(request, permission)

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def route_permissions(app: Any) -> dict[tuple[str, str], Permission | None]:
    """(method, path) → the permission its route declares (None: declared public)."""
    from fastapi.routing import APIRoute

    table: dict[tuple[str, str], Permission | None] = {}
    for route in _routes(app.routes, APIRoute):
        perms = [d.call.permission for d in _walk(route.dependant)
                 if hasattr(d.call, "permission")]
        for method in route.methods:
            table[(method, route.path)] = perms[0] if perms else None
    return table


def _routes(routes: Any, kind: type) -> Any:
    """API routes, including those of included routers (mounted without an extra prefix)."""
    for route in routes:
        if isinstance(route, kind):
            yield route
        elif hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes, kind)


def _walk(dependant: Any):
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)
