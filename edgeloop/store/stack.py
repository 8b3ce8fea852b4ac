"""The ``stack_identity`` table (PostgreSQL only): the stack id of a networked site.

On one box the stack id lives in ``<data_dir>/stack-id`` (``edgeloop.orchestration``). A
networked site's processes share no folder (each API replica and each Dagster run has its
own), but they share the database, so its id is stored there: one row, written by the
first process that asks (``INSERT ... ON CONFLICT DO NOTHING``: two at once get the same).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from edgeloop.store.connection import Connection, fetch_scalar


def read_stack_id(*, con: Connection) -> str | None:
    """The database's stack id (32 hex), or None before the first ``stack_id``."""
    value = fetch_scalar(con.execute("SELECT min(stack_id) FROM stack_identity"))
    return None if value is None else str(value)


def stack_id(*, con: Connection) -> str:
    """The database's stack id, written first (a new UUID, hex) when it has none."""
    con.execute(
        "INSERT INTO stack_identity (singleton, stack_id, created_at) VALUES (1, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [uuid.uuid4().hex, datetime.now(UTC)],
    )
    found = read_stack_id(con=con)
    assert found is not None
    return found
