"""Access-matrix rows for the OGC API - Features routes (app/routers/ogc.py).

All need ``regions:read``. The documents and lists address no place: a caller outside gets the
same 200 with fewer (or no) features. One feature by id is placed: outside the jurisdiction it
is not found (404), exactly like a code that does not exist.
"""

from __future__ import annotations

SAMPLES = {
    ("GET", "/ogc"): lambda p: ("GET", "/ogc", {}),
    ("GET", "/ogc/conformance"): lambda p: ("GET", "/ogc/conformance", {}),
    ("GET", "/ogc/collections"): lambda p: ("GET", "/ogc/collections", {}),
    ("GET", "/ogc/collections/{collectionId}"): lambda p: ("GET", "/ogc/collections/grids", {}),
    ("GET", "/ogc/collections/{collectionId}/items"): lambda p: (
        "GET", "/ogc/collections/grids/items", {"params": {
            "bbox": f"{p.point[0] - 0.001},{p.point[1] - 0.001},{p.point[0] + 0.001},"
                    f"{p.point[1] + 0.001}"}}),
    ("GET", "/ogc/collections/{collectionId}/items/{featureId}"): lambda p: (
        "GET", f"/ogc/collections/grids/items/{p.grid}", {}),
}
PLACELESS = {("GET", "/ogc"), ("GET", "/ogc/conformance"), ("GET", "/ogc/collections"),
             ("GET", "/ogc/collections/{collectionId}"),
             ("GET", "/ogc/collections/{collectionId}/items")}
