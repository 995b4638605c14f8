"""Standard codes: 12-digit statistical division codes and 15-digit grid codes."""

from __future__ import annotations

import re

from grids.errors import InvalidCode

LEVELS = ("city", "street", "community", "grid")
PARENT_LEVEL = {"street": "city", "community": "street", "grid": "community"}
_DIGITS = re.compile(r"^[0-9]+$")


def normalise(code: str) -> str:
    """Accept the short forms people type and return the stored code.

    A county's 6 digits and a street's 9 digits are padded to the 12-digit statistical code;
    12-digit (community) and 15-digit (grid) codes are returned as they are.

    >>> normalise("510131"), normalise("510131101"), normalise("510131101001001")
    ('510131000000', '510131101000', '510131101001001')
    """
    code = code.strip()
    if not _DIGITS.match(code) or len(code) not in (6, 9, 12, 15):
        raise InvalidCode(
            "A region code is 6, 9, 12 or 15 digits.",
            detail={"field": "code", "value": code[:40], "expected": "6, 9, 12 or 15 digits"},
        )
    return code.ljust(12, "0") if len(code) < 12 else code


def level_of(code: str) -> str:
    """The level a normalised code denotes.

    >>> [level_of(c) for c in ("510131000000", "510131101000", "510131101001", "510131101001002")]
    ['city', 'street', 'community', 'grid']
    """
    if len(code) == 15:
        return "grid"
    if code.endswith("000000"):
        return "city"
    if code.endswith("000"):
        return "street"
    return "community"
