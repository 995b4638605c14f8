"""Fixtures for the jurisdiction tests."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from tests.tiny_city import write_tiny_city


@pytest.fixture
def tiny_city(empty_conn: Connection) -> Connection:
    """The tiny city (tests/tiny_city.py) in the empty database, rolled back after the test."""
    write_tiny_city(empty_conn)
    return empty_conn
