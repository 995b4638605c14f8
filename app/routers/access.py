"""Log in, sessions, users, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from app import users
from app.auth import CSRF_COOKIE, SESSION_COOKIE, require
from app.deps import Conn, PageParams
from app.schemas import ErrorPublic, IsoDateTime
from grids.access import ROLES, Permission, Principal

router = APIRouter(tags=["access"], responses={401: {"model": ErrorPublic},
                                               403: {"model": ErrorPublic},
                                               404: {"model": ErrorPublic},
                                               422: {"model": ErrorPublic}})
Username = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
RoleName = Annotated[str, Field(pattern="^(" + "|".join(ROLES) + ")$")]


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=40)
    password: str = Field(min_length=1, max_length=200)


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class SessionPublic(BaseModel):
    csrf_token: str
    expires_in: int
    username: str
    role: str


class MePublic(BaseModel):
    name: str
    role: str
    scope: list[str]
    permissions: list[str]


class UserCreate(BaseModel):
    username: str = Field(pattern=r"^[a-z0-9_.-]{3,40}$")
    password: str = Field(min_length=12, max_length=200)
    role: RoleName
    region_code: str = Field(max_length=15)
    display_name: str = Field("", max_length=100)
    staff_code: str | None = Field(None, max_length=32)


class UserUpdate(BaseModel):
    role: RoleName | None = None
    region_code: str | None = Field(None, max_length=15)
    disabled: bool | None = Field(None, strict=True)  # true or false, not 0 or 1
    display_name: str | None = Field(None, max_length=100)


class PasswordReset(BaseModel):
    password: str = Field(min_length=12, max_length=200)


class UserPublic(BaseModel):
    username: str
    display_name: str
    role: str
    region_code: str
    staff_code: str | None
    disabled: bool
    created_at: datetime
    updated_at: datetime


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: RoleName
    region_code: str = Field(max_length=15)
    rate_limit_per_minute: int = Field(600, ge=1, le=1_000_000)


class ApiKeyCreated(BaseModel):
    name: str
    key: str = Field(description="The key: shown once, never stored in clear")
    prefix: str
    role: str
    region_code: str
    rate_limit_per_minute: int


class ApiKeyPublic(BaseModel):
    name: str
    prefix: str
    role: str
    region_code: str
    rate_limit_per_minute: int
    disabled: bool
    created_at: datetime


class ApiKeyDisabled(BaseModel):
    name: str
    prefix: str
    disabled: bool


class AuditPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    ip: str | None
    action: str
    entity: str
    entity_key: str | None
    region_code: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _ip(request: Request) -> str:
    return request.app.state.auth.client_ip(request)


@router.post("/auth/token", response_model=TokenPublic, summary="A short-lived bearer token")
def token(body: Credentials, request: Request, conn: Conn) -> TokenPublic:
    auth = request.app.state.auth
    user = auth.login(conn, body.username, body.password, _ip(request))
    value, lifetime, _ = auth.issue(user, kind="access")
    return TokenPublic(access_token=value, expires_in=lifetime)


@router.post("/auth/session", response_model=SessionPublic,
             summary="Portal login: an http-only session cookie plus a CSRF token")
def session(body: Credentials, request: Request, response: Response, conn: Conn) -> SessionPublic:
    auth = request.app.state.auth
    user = auth.login(conn, body.username, body.password, _ip(request))
    value, lifetime, csrf = auth.issue(user, kind="session")
    response.set_cookie(SESSION_COOKIE, value, max_age=lifetime, httponly=True,
                        secure=auth.cookie_secure, samesite="strict", path="/")
    response.set_cookie(CSRF_COOKIE, csrf or "", max_age=lifetime, httponly=False,
                        secure=auth.cookie_secure, samesite="strict", path="/")
    return SessionPublic(csrf_token=csrf or "", expires_in=lifetime, username=user.username,
                         role=user.role)


@router.post("/auth/logout", status_code=204, summary="End the portal session")
def logout(request: Request, response: Response) -> Response:
    # Ended on the server: a replayed cookie is refused from now on (auth_session_revoked).
    # Its own short transaction, not the request's: logout needs no caller and no CSRF token.
    request.app.state.auth.end_session(request.app.state.engine,
                                       request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/auth/me", response_model=MePublic)
def me(principal: Annotated[Principal, Depends(require(Permission.REGIONS_READ))]) -> MePublic:
    return MePublic(name=principal.name, role=principal.role,
                    scope=list(principal.scope.prefixes),
                    permissions=sorted(str(p) for p in principal.permissions))


@router.get("/users", response_model=list[UserPublic])
def list_users(conn: Conn,
               principal: Annotated[Principal, Depends(require(Permission.USERS_READ))]
               ) -> list[UserPublic]:
    return [UserPublic.model_validate(u) for u in users.list_users(conn, principal=principal)]


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, conn: Conn,
                principal: Annotated[Principal, Depends(require(Permission.USERS_WRITE))]
                ) -> UserPublic:
    return UserPublic.model_validate(users.create_user(conn, **body.model_dump(),
                                                       principal=principal))


@router.get("/users/{username}", response_model=UserPublic)
def get_user(username: Username, conn: Conn,
             principal: Annotated[Principal, Depends(require(Permission.USERS_READ))]
             ) -> UserPublic:
    return UserPublic.model_validate(users.get_user(conn, username, principal=principal))


@router.patch("/users/{username}", response_model=UserPublic)
def update_user(username: Username, body: UserUpdate, conn: Conn,
                principal: Annotated[Principal, Depends(require(Permission.USERS_WRITE))]
                ) -> UserPublic:
    return UserPublic.model_validate(users.update_user(
        conn, username, principal=principal, **body.model_dump(exclude_unset=True)))


@router.post("/users/{username}/password", response_model=UserPublic,
             summary="Set a new password (ends the user's current tokens)")
def reset_password(username: Username, body: PasswordReset, conn: Conn,
                   principal: Annotated[Principal, Depends(require(Permission.USERS_WRITE))]
                   ) -> UserPublic:
    return UserPublic.model_validate(users.update_user(conn, username, principal=principal,
                                                       password=body.password))


@router.get("/api-keys", response_model=list[ApiKeyPublic])
def list_keys(conn: Conn,
              principal: Annotated[Principal, Depends(require(Permission.APIKEYS_WRITE))]
              ) -> list[users.ApiKeyRow]:
    return users.list_api_keys(conn, principal=principal)


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated,
             summary="Create a key for a machine client; the key is shown once")
def create_key(body: ApiKeyCreate, conn: Conn,
               principal: Annotated[Principal, Depends(require(Permission.APIKEYS_WRITE))]
               ) -> users.NewApiKey:
    return users.create_api_key(conn, **body.model_dump(), principal=principal)


@router.delete("/api-keys/{name}", response_model=ApiKeyDisabled)
def disable_key(name: Annotated[str, Path(max_length=100)], conn: Conn,
                principal: Annotated[Principal, Depends(require(Permission.APIKEYS_WRITE))]
                ) -> users.DisabledApiKey:
    return users.disable_api_key(conn, name, principal=principal)


@router.get("/audit", response_model=list[AuditPublic])
def audit(conn: Conn, page: PageParams,
          principal: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
          entity: Annotated[str | None, Query(max_length=40)] = None,
          key: Annotated[str | None, Query(max_length=100)] = None,
          since: IsoDateTime | None = None, until: IsoDateTime | None = None) -> list[AuditPublic]:
    rows = users.audit_log(conn, principal=principal, entity=entity, key=key, since=since,
                           until=until, limit=page.limit, offset=page.offset)
    return [AuditPublic.model_validate(r) for r in rows]
