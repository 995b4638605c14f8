"""Access-matrix rows for the plans router (merged by tests/app/test_access_matrix.py).

Plans are created per test, so the routes that address one plan by id are called with an id
that does not exist: a role with the permission gets a clean 404 (inside or outside alike), the
others 403, anonymous callers 401. Opening a plan, importing one and the diff map address a
community, so they follow the jurisdiction like the rest of the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NO_PLAN = 2_000_000_000
ETAG = {"If-Match": '"1-1"'}


def _status_import(role: str, place: Any, scope: Any) -> int:
    # the file is not a GeoPackage: 422 once the community is found in the jurisdiction
    return 422 if scope.covers(place.grid[:12]) else 404


SAMPLES: dict[tuple[str, str], Callable[[Any], tuple[str, str, dict[str, Any]]]] = {
    ("POST", "/plans"): lambda p: ("POST", "/plans", {"json": {
        "name": "matrix", "region_code": p.grid[:12]}}),
    ("GET", "/plans"): lambda p: ("GET", "/plans", {}),
    ("POST", "/plans/import"): lambda p: ("POST", "/plans/import", {
        "files": {"file": ("x.gpkg", b"not a geopackage")},
        "data": {"region_code": p.grid[:12], "name": "matrix"}}),
    ("GET", "/plans/{plan_id}"): lambda p: ("GET", f"/plans/{NO_PLAN}", {}),
    ("DELETE", "/plans/{plan_id}"): lambda p: ("DELETE", f"/plans/{NO_PLAN}", {}),
    ("GET", "/plans/{plan_id}/features"): lambda p: ("GET", f"/plans/{NO_PLAN}/features", {}),
    ("POST", "/plans/{plan_id}/edits"): lambda p: ("POST", f"/plans/{NO_PLAN}/edits", {
        "json": {"op": "recode", "code": p.grid, "new_code": p.grid[:12] + "999"},
        "headers": ETAG}),
    ("POST", "/plans/{plan_id}/validate"): lambda p: ("POST", f"/plans/{NO_PLAN}/validate", {}),
    ("GET", "/plans/{plan_id}/impact"): lambda p: ("GET", f"/plans/{NO_PLAN}/impact", {}),
    ("POST", "/plans/{plan_id}/activate"): lambda p: ("POST", f"/plans/{NO_PLAN}/activate", {
        "json": {}, "headers": ETAG}),
    ("GET", "/plans/{plan_id}/export.gpkg"): lambda p: (
        "GET", f"/plans/{NO_PLAN}/export.gpkg", {}),
    ("POST", "/plans/{plan_id}/undo"): lambda p: ("POST", f"/plans/{NO_PLAN}/undo", {
        "headers": ETAG}),
    ("POST", "/plans/{plan_id}/redo"): lambda p: ("POST", f"/plans/{NO_PLAN}/redo", {
        "headers": ETAG}),
    ("POST", "/plans/{plan_id}/import"): lambda p: ("POST", f"/plans/{NO_PLAN}/import", {
        "files": {"file": ("x.gpkg", b"not a geopackage")}, "headers": ETAG}),
    ("POST", "/plans/{plan_id}/staffing"): lambda p: ("POST", f"/plans/{NO_PLAN}/staffing", {
        "json": {"op": "assign", "staff_code": "W1", "grid_code": p.grid}, "headers": ETAG}),
    ("DELETE", "/plans/{plan_id}/staffing/{change_id}"): lambda p: (
        "DELETE", f"/plans/{NO_PLAN}/staffing/1", {"headers": ETAG}),
    ("POST", "/plans/{plan_id}/submit"): lambda p: ("POST", f"/plans/{NO_PLAN}/submit", {
        "json": {}, "headers": ETAG}),
    ("POST", "/plans/{plan_id}/approve"): lambda p: ("POST", f"/plans/{NO_PLAN}/approve", {
        "json": {}, "headers": ETAG}),
    ("POST", "/plans/{plan_id}/return"): lambda p: ("POST", f"/plans/{NO_PLAN}/return", {
        "json": {"comment": "no"}, "headers": ETAG}),
    ("GET", "/boundaries/versions"): lambda p: ("GET", "/boundaries/versions", {}),
    ("GET", "/boundaries/diff"): lambda p: ("GET", "/boundaries/diff", {"params": {
        "region": p.grid[:12], "from": 1}}),
}
PLACELESS = {("GET", "/plans"), ("GET", "/boundaries/versions")}
SUCCESS = {("POST", "/plans"): 201}
ADDRESSES = {("POST", "/plans"): lambda p: p.grid[:12],
             ("GET", "/boundaries/diff"): lambda p: p.grid[:12]}
MISSING = {("GET", "/plans/{plan_id}"), ("DELETE", "/plans/{plan_id}"),
           ("GET", "/plans/{plan_id}/features"), ("POST", "/plans/{plan_id}/edits"),
           ("POST", "/plans/{plan_id}/validate"), ("GET", "/plans/{plan_id}/impact"),
           ("POST", "/plans/{plan_id}/activate"), ("GET", "/plans/{plan_id}/export.gpkg"),
           ("POST", "/plans/{plan_id}/undo"), ("POST", "/plans/{plan_id}/redo"),
           ("POST", "/plans/{plan_id}/import"),
           ("POST", "/plans/{plan_id}/staffing"),
           ("DELETE", "/plans/{plan_id}/staffing/{change_id}"),
           ("POST", "/plans/{plan_id}/submit")}
# Approving and returning are for the city's approver role (default admin), whatever the
# role's permissions: the others get 403, the approver a clean 404 for the missing plan.
OVERRIDES = {("POST", "/plans/import"): _status_import,
             ("POST", "/plans/{plan_id}/approve"): lambda role, place, scope: (
                 404 if role == "admin" else 403),
             ("POST", "/plans/{plan_id}/return"): lambda role, place, scope: (
                 404 if role == "admin" else 403)}
