"""Access-matrix rows for call-ups (app/routers/callup.py).

Calling up is for dispatchers and supervisors (and admins) inside their jurisdiction (a city-wide
dispatcher anywhere): a grid worker holds ``incidents:handle`` but may not call up (403). The
reads and answers of one call-up name one that does not exist (404 for whoever may ask): the
jurisdiction of real call-ups is tested in tests/app/test_callup.py.
"""

from __future__ import annotations

NONE = 2**62

SAMPLES = {
    ("POST", "/callups/who"): lambda p: ("POST", "/callups/who", {"json": {
        "region_code": p.grid, "limit": 2}}),
    ("POST", "/callups"): lambda p: ("POST", "/callups", {"json": {
        "region_code": p.grid, "limit": 2, "kind": "emergency", "title": "matrix"}}),
    ("GET", "/callups"): lambda p: ("GET", "/callups", {}),
    ("GET", "/callups/mine"): lambda p: ("GET", "/callups/mine", {}),
    ("GET", "/callups/{callup_id}"): lambda p: ("GET", f"/callups/{NONE}", {}),
    ("POST", "/callups/{callup_id}/answer"): lambda p: (
        "POST", f"/callups/{NONE}/answer", {"json": {"answer": "acknowledge"}}),
    ("POST", "/callups/{callup_id}/close"): lambda p: ("POST", f"/callups/{NONE}/close", {}),
}
PLACELESS = {("GET", "/callups"), ("GET", "/callups/mine")}
SUCCESS = {("POST", "/callups"): 201}
MISSING = {("GET", "/callups/{callup_id}"), ("POST", "/callups/{callup_id}/answer")}


def _caller(status_inside: int):
    def rule(role, place, scope) -> int:
        if role not in ("admin", "supervisor", "dispatcher"):
            return 403
        if role == "dispatcher" and scope.is_citywide():
            return status_inside
        return status_inside if scope.covers(place.grid) else 404
    return rule


OVERRIDES = {("POST", "/callups/who"): _caller(200), ("POST", "/callups"): _caller(201),
             ("GET", "/callups"): lambda role, place, scope: 403 if role == "grid_worker" else 200,
             ("POST", "/callups/{callup_id}/close"): lambda role, place, scope: (
                 403 if role == "grid_worker" else 404)}
