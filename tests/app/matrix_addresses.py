"""Access-matrix rows for the address book (app/routers/addresses.py).

Search is placeless (results are cut to the caller's locate scope). One address is seen
city-wide by dispatchers and admins, elsewhere inside the jurisdiction only (404 outside). An
import is written only inside the importer's jurisdiction: a row outside it is listed and the
file refused (422).
"""

from __future__ import annotations

from tests.address_book import address_in


def _import(p):
    csv = f"code,address,lon,lat\nmatrix-import-{p.grid},矩阵导入路1号,{p.point[0]},{p.point[1]}\n"
    return ("POST", "/addresses/import", {"files": {"file": ("m.csv", csv.encode())},
                                          "data": {"mode": "merge"}})


SAMPLES = {
    ("GET", "/addresses/search"): lambda p: ("GET", "/addresses/search",
                                             {"params": {"q": address_in(p.grid)[1]}}),
    ("GET", "/addresses/{address_id}"): lambda p: (
        "GET", f"/addresses/{address_in(p.grid)[0]}", {}),
    ("POST", "/addresses/import"): _import,
}
PLACELESS = {("GET", "/addresses/search")}


def _import_status(role, place, scope) -> int:
    return 200 if scope.covers(place.grid) else 422


OVERRIDES = {("POST", "/addresses/import"): _import_status}
