"""Access-matrix rows for the dispatch desk (app/routers/desk.py).

The queue, the profile and saved views are the caller's own or cut to the jurisdiction
(placeless). Case routes address the place's incident (received, no reporter phone, no
department): seen city-wide by dispatchers, elsewhere inside the jurisdiction only (404 outside).
Merging a case into itself and undoing a merge that is none are refused (409) once the caller may
act there; a reveal on a case with no phone is a 422 for those who may reveal.
"""

from __future__ import annotations

CITYWIDE = {"admin", "dispatcher"}

SAMPLES = {
    ("GET", "/desk/me"): lambda p: ("GET", "/desk/me", {}),
    ("GET", "/desk/queue"): lambda p: ("GET", "/desk/queue", {"params": {"region": p.grid}}),
    ("GET", "/desk/views"): lambda p: ("GET", "/desk/views", {}),
    ("POST", "/desk/views"): lambda p: ("POST", "/desk/views", {"json": {
        "name": "matrix", "filters": {"region": p.grid[:9]}}}),
    ("DELETE", "/desk/views/{view_id}"): lambda p: ("DELETE", "/desk/views/999999999", {}),
    ("GET", "/desk/cases/{incident_id}"): lambda p: ("GET", f"/desk/cases/{p.incident}", {}),
    ("GET", "/desk/cases/{incident_id}/duplicates"): lambda p: (
        "GET", f"/desk/cases/{p.incident}/duplicates", {}),
    ("POST", "/desk/cases/{incident_id}/actions"): lambda p: (
        "POST", f"/desk/cases/{p.incident}/actions", {"json": {"action": "register"}}),
    ("POST", "/desk/cases/{incident_id}/merge"): lambda p: (
        "POST", f"/desk/cases/{p.incident}/merge", {"json": {"duplicates": [p.incident]}}),
    ("POST", "/desk/cases/{incident_id}/unmerge"): lambda p: (
        "POST", f"/desk/cases/{p.incident}/unmerge", {"json": {}}),
    ("POST", "/desk/cases/{incident_id}/reveal"): lambda p: (
        "POST", f"/desk/cases/{p.incident}/reveal", {"json": {"field": "reporter_phone",
                                                              "reason": "回访"}}),
}
PLACELESS = {("GET", "/desk/me"), ("GET", "/desk/queue"), ("GET", "/desk/views"),
             ("POST", "/desk/views")}
SUCCESS = {("POST", "/desk/views"): 201}
MISSING = {("DELETE", "/desk/views/{view_id}")}


def _sees(role, place, scope) -> bool:
    return role in CITYWIDE or scope.covers(place.grid)


def _read(role, place, scope) -> int:
    return 200 if _sees(role, place, scope) else 404


def _act(role, place, scope) -> int:
    if not _sees(role, place, scope):
        return 404
    return 403 if role == "grid_worker" else 200


def _desk_only(refused: int):
    def status(role, place, scope) -> int:
        if role == "grid_worker":
            return 403  # the desk's own steps: refused by role before the place is looked at
        return refused if _sees(role, place, scope) else 404
    return status


def _reveal(role, place, scope) -> int:
    if not _sees(role, place, scope):
        return 404
    return 422 if role in ("admin", "dispatcher", "supervisor") else 403


OVERRIDES = {
    ("GET", "/desk/cases/{incident_id}"): _read,
    ("GET", "/desk/cases/{incident_id}/duplicates"): _read,
    ("POST", "/desk/cases/{incident_id}/actions"): _act,
    ("POST", "/desk/cases/{incident_id}/merge"): _desk_only(409),
    ("POST", "/desk/cases/{incident_id}/unmerge"): _desk_only(409),
    ("POST", "/desk/cases/{incident_id}/reveal"): _reveal,
}
