"""Access-matrix rows for the workday calendar (app/routers/calendar.py).

Reading a year needs incidents:read (everyone who sees a case's deadline); replacing one needs
catalogue:write (admins). The calendar is the city's: inside and outside answer alike. The write
sample replaces a far year, so no deadline the other rows read moves.
"""

from __future__ import annotations

SAMPLES = {
    ("GET", "/calendar/{year}"): lambda p: ("GET", "/calendar/2025", {}),
    ("PUT", "/calendar/{year}"): lambda p: ("PUT", "/calendar/2040", {"json": {
        "days": [{"date": "2040-10-01", "kind": "holiday", "name": "国庆节"}]}}),
}
PLACELESS = {("GET", "/calendar/{year}"), ("PUT", "/calendar/{year}")}
