"""Access-matrix rows for the supervisor's month (app/routers/analysis.py).

Every route needs assessment:read. A region outside the caller's jurisdiction is not found (404);
the grid summary addresses its grid. Building a pack is sampled with an impossible month, so the
matrix checks who may ask without printing fourteen PDFs: a 422 once the permission holds. A pack
file of an unknown id is a 404.
"""

from __future__ import annotations

MONTH = "2026-10"


def _get(path: str, **params: object):
    return lambda p: ("GET", path, {"params": {"month": MONTH, "region": p.grid, **params}})


SAMPLES = {
    ("GET", "/analysis/month"): _get("/analysis/month", level="grid"),
    ("GET", "/analysis/cases"): _get("/analysis/cases", figure="received", level="all"),
    ("GET", "/analysis/grids/{code}"): lambda p: ("GET", f"/analysis/grids/{p.grid}",
                                                  {"params": {"month": MONTH}}),
    ("GET", "/analysis/scores"): _get("/analysis/scores"),
    ("GET", "/analysis/scores.xlsx"): _get("/analysis/scores.xlsx"),
    ("GET", "/analysis/trend"): _get("/analysis/trend"),
    ("GET", "/analysis/hotspots"): _get("/analysis/hotspots"),
    ("GET", "/analysis/recurring"): _get("/analysis/recurring"),
    ("GET", "/analysis/spikes"): _get("/analysis/spikes"),
    ("GET", "/analysis/topics"): _get("/analysis/topics"),
    ("POST", "/analysis/pack"): lambda p: ("POST", "/analysis/pack", {"json": {
        "month": "2026-13", "region": p.grid}}),
    ("GET", "/analysis/packs/{pack_id}/{kind}"): lambda p: (
        "GET", "/analysis/packs/" + "0" * 32 + "/html", {}),
}
MISSING = {("GET", "/analysis/packs/{pack_id}/{kind}")}
OVERRIDES = {("POST", "/analysis/pack"): lambda role, place, scope: 422}
