"""Role × endpoint × inside/outside the jurisdiction, each cell asserting the exact status.

The matrix is generated from the permission table that the routes themselves declare
(:func:`app.auth.route_permissions`). Every route needs a row in :data:`SAMPLES` saying how to call
it for a place inside and outside the caller's jurisdiction, so a new endpoint cannot be added
without being covered here (``test_every_route_is_in_the_matrix`` fails).

Inside: the test grid worker's own grid, in 稠城街道 (330782001), where the scoped accounts work.
Outside: a grid in 江东街道 (330782002).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.auth import route_permissions
from app.main import create_app
from grids.access import ROLE_PERMISSIONS, Permission, Scope
from tests.conftest import ACCOUNTS

PUBLIC = {("GET", "/health"), ("POST", "/auth/token"), ("POST", "/auth/session"),
          ("POST", "/auth/logout"),
          # Open311's service list is open by the spec; its requests need incidents:read
          # (tests/app/matrix_open311.py) unless the public feed is switched on
          ("GET", "/open311/v2/services.{response_format}"),
          ("GET", "/open311/v2/services/{service_code}.{response_format}"),
          ("GET", "/open311/discovery.json"),
          # the portal page and its settings hold no city data; its data calls need the session
          ("GET", "/"), ("GET", "/portal"), ("GET", "/portal/config.json"), ("GET", "/planner")}


@dataclass
class Places:
    grid: str  # a grid code
    point: tuple[float, float]
    staff: str  # the grid's primary worker
    assignment: int  # an assignment on the grid
    user: str  # a user account in that jurisdiction
    incident: int = 0  # an incident in the grid, received


@dataclass
class Ctx:
    inside: Places
    outside: Places


Call = Callable[[Places], tuple[str, str, dict[str, Any]]]


def _places(conn: Connection, grid: str, user: str) -> Places:
    row = conn.execute(text(
        "SELECT ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y "
        "FROM region_current WHERE code = :g"), {"g": grid}).one()
    staff, assignment = conn.execute(text(
        "SELECT s.code, a.id FROM assignment a JOIN staff s ON s.id = a.staff_id "
        "JOIN region r ON r.id = a.region_id WHERE r.code = :g AND a.duty = 'primary' "
        "AND a.valid_to IS NULL ORDER BY a.id LIMIT 1"), {"g": grid}).one()
    incident = conn.execute(text(
        "INSERT INTO incident (source, external_id, category_id, region_code, grid_code, geom) "
        "SELECT 'hotline_12345', 'matrix-' || :g, c.id, :g, :g, "
        "ST_SetSRID(ST_MakePoint(:x, :y), 4490) FROM category c WHERE c.code = 'E0101' "
        "RETURNING id"), {"g": grid, "x": row.x, "y": row.y}).scalar_one()
    return Places(grid=grid, point=(row.x, row.y), staff=staff, assignment=assignment, user=user,
                  incident=incident)


@pytest.fixture
def ctx(conn: Connection, api) -> Ctx:
    app, _ = api
    worker = app.state.directory.by_name["t_worker"]
    inside_grid = worker.grid_codes[0]
    outside_grid = conn.execute(text(
        "SELECT code FROM region_current WHERE level = 'grid' AND code LIKE '330782002%' "
        "ORDER BY code LIMIT 1")).scalar_one()
    return Ctx(inside=_places(conn, inside_grid, "t_viewer"),
               outside=_places(conn, outside_grid, "t_supervisor2"))


# How to call each route for a place. (method, path) → (method, url, request kwargs).
SAMPLES: dict[tuple[str, str], Call] = {
    ("GET", "/regions"): lambda p: ("GET", "/regions", {"params": {"parent": p.grid[:12]}}),
    ("GET", "/regions/{code}"): lambda p: ("GET", f"/regions/{p.grid}", {}),
    ("GET", "/regions/{code}/children"): lambda p: ("GET", f"/regions/{p.grid[:12]}/children", {}),
    ("GET", "/regions/{code}/staff"): lambda p: ("GET", f"/regions/{p.grid}/staff", {}),
    ("GET", "/locate"): lambda p: ("GET", "/locate",
                                   {"params": {"lon": p.point[0], "lat": p.point[1]}}),
    ("GET", "/locate/history"): lambda p: ("GET", "/locate/history", {"params": {
        "lon": p.point[0], "lat": p.point[1], "at": "2025-06-01T00:00:00+08:00"}}),
    ("GET", "/locate/status"): lambda p: ("GET", "/locate/status", {}),
    ("POST", "/locate/batch"): lambda p: ("POST", "/locate/batch", {
        "content": f"lon,lat\n{p.point[0]},{p.point[1]}\n", "headers": {"content-type": "text/csv"}}),
    ("GET", "/staff/{code}"): lambda p: ("GET", f"/staff/{p.staff}", {}),
    ("PATCH", "/staff/{code}"): lambda p: ("PATCH", f"/staff/{p.staff}",
                                           {"json": {"status": "on_leave"}}),
    ("POST", "/assignments"): lambda p: ("POST", "/assignments", {"json": {
        "staff_code": p.staff, "region_code": p.grid, "duty": "backup"}}),
    ("DELETE", "/assignments/{assignment_id}"): lambda p: (
        "DELETE", f"/assignments/{p.assignment}", {}),
    ("GET", "/auth/me"): lambda p: ("GET", "/auth/me", {}),
    ("GET", "/users"): lambda p: ("GET", "/users", {}),
    ("GET", "/users/{username}"): lambda p: ("GET", f"/users/{p.user}", {}),
    ("PATCH", "/users/{username}"): lambda p: ("PATCH", f"/users/{p.user}",
                                               {"json": {"display_name": "renamed"}}),
    ("POST", "/users/{username}/password"): lambda p: (
        "POST", f"/users/{p.user}/password", {"json": {"password": "another-long-password-1"}}),
    ("POST", "/users"): lambda p: ("POST", "/users", {"json": {
        "username": "new_user", "password": "a-long-enough-password", "role": "viewer",
        "region_code": p.grid[:9]}}),
    ("GET", "/api-keys"): lambda p: ("GET", "/api-keys", {}),
    ("POST", "/api-keys"): lambda p: ("POST", "/api-keys", {"json": {
        "name": "hotline", "role": "dispatcher", "region_code": p.grid[:9]}}),
    ("DELETE", "/api-keys/{name}"): lambda p: ("DELETE", "/api-keys/none-such", {}),
    ("GET", "/audit"): lambda p: ("GET", "/audit", {}),
    ("GET", "/categories"): lambda p: ("GET", "/categories", {}),
    ("PUT", "/categories/{code}"): lambda p: ("PUT", "/categories/E0199", {"json": {
        "parent_code": "E01", "name": "其他市容", "family": "event", "department": "CGJ"}}),
    ("POST", "/incidents"): lambda p: ("POST", "/incidents", {"json": {
        "source": "hotline_12345", "external_id": f"m-{p.grid}", "category": "E0101",
        "lon": p.point[0], "lat": p.point[1]}}),
    ("POST", "/incidents/bulk"): lambda p: ("POST", "/incidents/bulk", {
        "content": f"source,external_id,category,lon,lat\nhotline_12345,b-{p.grid},E0101,"
                   f"{p.point[0]},{p.point[1]}\n", "headers": {"content-type": "text/csv"}}),
    ("GET", "/incidents"): lambda p: ("GET", "/incidents", {}),
    ("GET", "/incidents/export.{fmt}"): lambda p: ("GET", "/incidents/export.csv",
                                                   {"params": {"region": p.grid}}),
    ("GET", "/incidents/{incident_id}"): lambda p: ("GET", f"/incidents/{p.incident}", {}),
    ("POST", "/incidents/{incident_id}/actions"): lambda p: (
        "POST", f"/incidents/{p.incident}/actions", {"json": {"action": "card", "card": "yellow"}}),
    ("POST", "/patrols/fixes"): lambda p: ("POST", "/patrols/fixes", {"json": {"fixes": [{
        "staff_code": p.staff, "time": "2025-06-02T09:00:00+08:00", "lon": p.point[0],
        "lat": p.point[1], "accuracy_m": 5}]}}),
    ("GET", "/patrols/tracks"): lambda p: ("GET", "/patrols/tracks", {"params": {
        "staff": p.staff, "date": "2025-06-02"}}),
    ("GET", "/patrols/coverage"): lambda p: ("GET", "/patrols/coverage", {"params": {
        "region": p.grid, "since": "2025-06-02T00:00:00+08:00",
        "until": "2025-06-03T00:00:00+08:00"}}),
    ("GET", "/patrols/coverage/{grid}/unpatrolled"): lambda p: (
        "GET", f"/patrols/coverage/{p.grid}/unpatrolled", {"params": {
            "since": "2025-06-02T00:00:00+08:00", "until": "2025-06-03T00:00:00+08:00"}}),
    ("GET", "/patrols/alerts"): lambda p: ("GET", "/patrols/alerts", {"params": {
        "since": "2025-06-02T00:00:00+08:00", "until": "2025-06-03T00:00:00+08:00"}}),
    ("GET", "/maps/heat"): lambda p: ("GET", "/maps/heat",
                                      {"params": {"zoom": 14, "region": p.grid}}),
    ("GET", "/maps/counts"): lambda p: ("GET", "/maps/counts",
                                        {"params": {"level": "grid", "region": p.grid}}),
    ("GET", "/tiles/{layer}/{z}/{x}/{y}.mvt"): lambda p: (
        "GET", "/tiles/grids/14/13706/6935.mvt", {"params": {"region": p.grid}}),
    ("GET", "/assessment"): lambda p: ("GET", "/assessment", {"params": {
        "month": "2026-10", "level": "grid", "region": p.grid}}),
    ("GET", "/assessment.xlsx"): lambda p: ("GET", "/assessment.xlsx", {"params": {
        "month": "2026-10", "region": p.grid}}),
    ("POST", "/open311/v2/requests.{response_format}"): lambda p: (
        "POST", "/open311/v2/requests.json", {"data": {
            "service_code": "E0101", "lat": p.point[1], "long": p.point[0]}}),
}
# Routes that address no particular place: inside and outside answer alike (lists filtered to
# the jurisdiction, and the batch, which marks rows outside it 'forbidden': see test_access.py).
PLACELESS = {("GET", "/regions"), ("GET", "/locate/status"), ("GET", "/auth/me"),
             ("GET", "/users"), ("GET", "/api-keys"), ("GET", "/audit"), ("POST", "/locate/batch"),
             ("GET", "/categories"), ("PUT", "/categories/{code}"), ("GET", "/incidents"),
             ("GET", "/incidents/export.{fmt}"),
             # maps and figures: a region outside the jurisdiction yields nothing, not 404
             ("GET", "/maps/heat"), ("GET", "/maps/counts"), ("GET", "/tiles/{layer}/{z}/{x}/{y}.mvt"),
             ("GET", "/assessment"), ("GET", "/assessment.xlsx"), ("GET", "/patrols/alerts")}
# The region a sample addresses, when it is not the place's grid.
ADDRESSES: dict[tuple[str, str], Callable[[Places], str]] = {
    ("GET", "/regions/{code}/children"): lambda p: p.grid[:12],
    ("POST", "/users"): lambda p: p.grid[:9],
    ("POST", "/api-keys"): lambda p: p.grid[:9],
}
# Users are placed by their account's region, not by a grid.
USER_REGIONS = {name: region for name, (_, region) in ACCOUNTS.items()}
SUCCESS = {("POST", "/users"): 201, ("POST", "/api-keys"): 201, ("POST", "/assignments"): 201,
           ("POST", "/incidents"): 201}
# A route whose sample addresses nothing that exists: success is a clean 404.
MISSING = {("DELETE", "/api-keys/{name}")}
# Special cases: route → f(role, place, scope) giving the status, once the role holds the permission.
OVERRIDES: dict[tuple[str, str], Callable[[str, Places, Scope | None], int]] = {}

# Rows for newer routers live beside this file, one module per router (tests/app/matrix_*.py), each
# with any of SAMPLES, PLACELESS, SUCCESS, ADDRESSES, MISSING, OVERRIDES, PUBLIC.
for _name in ("matrix_plans", "matrix_ogc", "matrix_portal", "matrix_open311", "matrix_analysis",
              "matrix_desk", "matrix_field", "matrix_addresses", "matrix_calendar",
              "matrix_callup", "matrix_crosswalk"):
    _mod = importlib.import_module(f"tests.app.{_name}")
    SAMPLES.update(getattr(_mod, "SAMPLES", {}))
    PLACELESS |= getattr(_mod, "PLACELESS", set())
    SUCCESS.update(getattr(_mod, "SUCCESS", {}))
    ADDRESSES.update(getattr(_mod, "ADDRESSES", {}))
    MISSING |= getattr(_mod, "MISSING", set())
    OVERRIDES.update(getattr(_mod, "OVERRIDES", {}))
    PUBLIC |= getattr(_mod, "PUBLIC", set())


def expected(route: tuple[str, str], permission: Permission, account: str | None,
             place: Places, scope: Scope | None) -> int:
    """The status the permission table and the jurisdiction rules promise."""
    if account is None:
        return 403 if route[1].startswith("/open311/") else 401  # the spec: 403 for a missing key
    role, _ = ACCOUNTS[account]
    if permission not in ROLE_PERMISSIONS[role]:
        return 403
    if route in MISSING:
        return 404
    if route in OVERRIDES:
        return OVERRIDES[route](role, place, scope)
    if route in PLACELESS:
        return SUCCESS.get(route, 200)
    citywide = Permission.LOCATE_CITYWIDE in ROLE_PERMISSIONS[role]
    if permission == Permission.LOCATE and citywide:
        return 200
    if route[1].startswith("/incidents") and citywide:  # dispatchers handle the whole city
        if route == ("POST", "/incidents/{incident_id}/actions") and role == "dispatcher":
            return 403  # cards are for supervisors
        return SUCCESS.get(route, 200)
    if route == ("POST", "/incidents/bulk"):  # a file: rows outside are listed, nothing written
        return 200 if scope.covers(place.grid) else 422
    if route == ("POST", "/incidents/{incident_id}/actions") and role == "grid_worker":
        return 403 if scope.covers(place.grid) else 404
    addressed = ADDRESSES.get(route, lambda p: p.grid)(place)
    if "{username}" in route[1]:
        addressed = USER_REGIONS[place.user]
    return SUCCESS.get(route, 200) if scope.covers(addressed) else 404


TABLE = route_permissions(create_app())
CELLS = [(route, account, where)
         for route, permission in sorted(TABLE.items()) if permission is not None
         for account in [None, *ACCOUNTS]
         for where in ("inside", "outside")]


def test_every_route_is_in_the_matrix() -> None:
    undeclared = {r for r, p in TABLE.items() if p is None} - PUBLIC
    assert not undeclared, f"routes with no permission and not declared public: {undeclared}"
    missing = {r for r, p in TABLE.items() if p is not None} - set(SAMPLES)
    assert not missing, f"routes with no row in SAMPLES: {missing}"
    assert not set(SAMPLES) - set(TABLE), "SAMPLES names routes that no longer exist"


@pytest.mark.parametrize(("route", "account", "where"), CELLS,
                         ids=[f"{m} {p} {a or 'anonymous'} {w}" for (m, p), a, w in CELLS])
def test_cell(anonymous: TestClient, api, headers, ctx: Ctx, route: tuple[str, str],
              account: str | None, where: str) -> None:
    place = getattr(ctx, where)
    method, url, kwargs = SAMPLES[route](place)
    scope = None
    if account is not None:
        kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers(account)}}
        scope = api[0].state.directory.by_name[account].principal().scope
    res = anonymous.request(method, url, **kwargs)
    want = expected(route, TABLE[route], account, place, scope)
    assert res.status_code == want, res.text[:300]
    if want >= 400 and route[1].startswith("/open311/"):  # the spec's error form
        assert [e["code"] for e in res.json()] == [want] and res.json()[0]["description"]
    elif want >= 400:
        assert {"code", "message", "detail"} <= set(res.json())
