"""Standard codes: 12-digit statistical division codes and 15-digit grid codes."""

from __future__ import annotations

import re

from grids.errors import InvalidCode

LEVELS = ("province", "city", "street", "community", "grid")
# A city's parent is a province or nothing (a single-city deployment): see OPTIONAL_PARENT.
PARENT_LEVEL = {"city": "province", "street": "city", "community": "street", "grid": "community"}
OPTIONAL_PARENT = frozenset({"province", "city"})
"""Levels that may hang under nothing: the root of a deployment (a province, or one city)."""
_DIGITS = re.compile(r"^[0-9]+$")
_PROVINCE = re.compile(r"^[0-9]{2}0{10}$")


def normalise(code: str) -> str:
    """Accept the short forms people type and return the stored code.

    A province's or county's 6 digits and a street's 9 digits are padded to the 12-digit
    statistical code; 12-digit (community) and 15-digit (grid) codes are returned as they are.

    >>> normalise("510131"), normalise("510131101"), normalise("510131101001001")
    ('510131000000', '510131101000', '510131101001001')
    >>> normalise("510000")
    '510000000000'
    """
    code = code.strip()
    if not _DIGITS.match(code) or len(code) not in (6, 9, 12, 15):
        raise InvalidCode(
            "A region code is 6, 9, 12 or 15 digits.",
            detail={"field": "code", "value": code[:40], "expected": "6, 9, 12 or 15 digits"},
        )
    return code.ljust(12, "0") if len(code) < 12 else code


def level_of(code: str) -> str:
    """The level a normalised code denotes. In GB/T 2260 a 6-digit ``NN0000`` is always a
    province, so ``NN0000000000`` is a province code, never a city's.

    >>> [level_of(c) for c in ("510131000000", "510131101000", "510131101001", "510131101001002")]
    ['city', 'street', 'community', 'grid']
    >>> level_of("510000000000")
    'province'
    """
    if len(code) == 15:
        return "grid"
    if _PROVINCE.match(code):
        return "province"
    if code.endswith("000000"):
        return "city"
    if code.endswith("000"):
        return "street"
    return "community"
