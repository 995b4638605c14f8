"""A lost connection during an import is the database's failure, not the file's: it propagates
as ``OperationalError`` (the app answers 503 ``database_unavailable``), never as a 422
``import_rejected`` listing the driver's message as a problem of the file."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from grids.errors import ImportRejected
from grids.io import check_sibling_overlaps


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as killer:
        # the second argument waits (ms) until the backend has gone
        assert killer.execute(text("SELECT pg_terminate_backend(:p, 5000)"),
                              {"p": pid}).scalar_one()


def test_a_lost_connection_in_the_sibling_guard_propagates(empty_engine: Engine) -> None:
    with empty_engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _terminate(empty_engine, pid)
        with pytest.raises(OperationalError) as err:
            check_sibling_overlaps(conn)
        assert not isinstance(err.value, ImportRejected)
        assert err.value.connection_invalidated


def test_the_guard_still_answers_on_a_live_connection(empty_engine: Engine) -> None:
    with empty_engine.connect() as conn:
        assert check_sibling_overlaps(conn) == []
        conn.rollback()
