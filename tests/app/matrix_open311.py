"""Access-matrix rows for Open311's request reads (app/routers/open311.py).

They need ``incidents:read`` (the public feed is off by default): the list is cut to the
caller's jurisdiction (placeless), one request outside it is not found.
"""

from __future__ import annotations

SAMPLES = {
    ("GET", "/open311/v2/requests.{response_format}"): lambda p: (
        "GET", "/open311/v2/requests.json", {}),
    ("GET", "/open311/v2/requests/{service_request_id}.{response_format}"): lambda p: (
        "GET", f"/open311/v2/requests/{p.incident}.json", {}),
}
PLACELESS = {("GET", "/open311/v2/requests.{response_format}")}
