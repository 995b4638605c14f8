"""Access-matrix rows for the grid worker's phone (app/routers/field.py) and its pages.

The samples change nothing lasting (each cell is rolled back) and write no photo to disk: the
upload sample is not an image (422 for whoever may upload), the photo reads name a photo that
does not exist (404). Acting on the place's incident (received) is refused by the workflow
(409) for those who may act there; a flag that does not exist cannot be cleared (409).
"""

from __future__ import annotations

import uuid

CID = str(uuid.UUID(int=1))
NO_PHOTO = "0" * 64

SAMPLES = {
    ("GET", "/field/me"): lambda p: ("GET", "/field/me", {}),
    ("GET", "/field/grids"): lambda p: ("GET", "/field/grids", {}),
    ("GET", "/field/tasks"): lambda p: ("GET", "/field/tasks", {}),
    ("POST", "/field/tasks/{incident_id}/actions"): lambda p: (
        "POST", f"/field/tasks/{p.incident}/actions",
        {"json": {"client_id": CID, "action": "accept"}}),
    ("POST", "/field/reports"): lambda p: ("POST", "/field/reports", {"json": {
        "client_id": CID, "category": "E0101", "lon": p.point[0], "lat": p.point[1]}}),
    ("POST", "/field/photos"): lambda p: ("POST", "/field/photos", {
        "content": b"not an image", "headers": {"content-type": "image/jpeg"}}),
    ("GET", "/field/photos/{sha}"): lambda p: ("GET", f"/field/photos/{NO_PHOTO}", {}),
    ("GET", "/field/photos/{sha}/thumb"): lambda p: ("GET", f"/field/photos/{NO_PHOTO}/thumb", {}),
    ("GET", "/field/incidents/{incident_id}"): lambda p: (
        "GET", f"/field/incidents/{p.incident}", {}),
    ("POST", "/field/incidents/{incident_id}/evidence/{check_id}/clear"): lambda p: (
        "POST", f"/field/incidents/{p.incident}/evidence/1/clear", {"json": {"reason": "ok"}}),
    ("GET", "/field/duplicates"): lambda p: ("GET", "/field/duplicates", {"params": {
        "category": "E0101", "lon": p.point[0], "lat": p.point[1]}}),
    ("POST", "/field/incidents/{incident_id}/supplements"): lambda p: (
        "POST", f"/field/incidents/{p.incident}/supplements",
        {"json": {"client_id": CID, "note": "补充说明"}}),
}
# the nearby cases are those the caller can read: none outside, never a 404
PLACELESS = {("GET", "/field/me"), ("GET", "/field/grids"), ("GET", "/field/tasks"),
             ("POST", "/field/photos"), ("GET", "/field/duplicates")}
SUCCESS = {("POST", "/field/reports"): 201, ("POST", "/field/photos"): 422,
           ("POST", "/field/incidents/{incident_id}/supplements"): 201}
MISSING = {("GET", "/field/photos/{sha}"), ("GET", "/field/photos/{sha}/thumb")}


def _act(role, place, scope) -> int:
    if role == "dispatcher":  # not a field role, and the whole city is theirs
        return 403
    return 409 if scope.covers(place.grid) else 404


def _clear(role, place, scope) -> int:
    if role not in ("admin", "supervisor"):
        return 403
    return 409 if scope.covers(place.grid) else 404


OVERRIDES = {("POST", "/field/tasks/{incident_id}/actions"): _act,
             ("POST", "/field/incidents/{incident_id}/evidence/{check_id}/clear"): _clear}
PUBLIC = {("GET", "/worker"), ("GET", "/worker/"), ("GET", "/worker/sw.js")}
