"""Access-matrix rows for the portal's data routes (app/routers/portal_data.py).

Both are lists cut to the caller's jurisdiction: a place outside it yields fewer (or no) items,
never 404, so they are placeless. The event stream is asked to close at once (``max_s=0``): it
then sends its ``hello`` and ends, which is enough to check who may open it.
"""

from __future__ import annotations

SAMPLES = {
    ("GET", "/portal/outlines"): lambda p: ("GET", "/portal/outlines", {"params": {
        "zoom": 15, "parent": p.grid[:12],
        "bbox": f"{p.point[0] - 0.01},{p.point[1] - 0.01},{p.point[0] + 0.01},{p.point[1] + 0.01}"}}),
    ("GET", "/portal/events"): lambda p: ("GET", "/portal/events", {"params": {"max_s": 0}}),
}
PLACELESS = {("GET", "/portal/outlines"), ("GET", "/portal/events")}
