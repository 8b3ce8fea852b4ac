"""Short-lived, retrying connections to the edgeloop DuckDB file.

DuckDB locks its file for one process: while one process holds it open, no other can
open it, not even read-only. So every caller opens, works, and closes — never holds a
connection across slow work (copy rows out as Arrow, release, then compute) — and
retries on the lock error with backoff, as ``dagster-duckdb`` does.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from edgeloop.store.schema import migrate

logger = logging.getLogger(__name__)

Connection = duckdb.DuckDBPyConnection
"""An open DuckDB connection, as ``Store.connect()`` yields it."""


class StoreLockedError(RuntimeError):
    """The DuckDB file stayed locked by another process past the retry deadline."""


def _is_lock_error(exc: BaseException) -> bool:
    # DuckDB raises IOException "Could not set lock on file ... Conflicting lock is held".
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class Store:
    """Short-lived, retrying access to the edgeloop DuckDB file.

    Args:
        path: the DuckDB file; its folder is created on first use.
        lock_timeout_s: how long ``connect`` retries while another process holds the file.

    One ``Store`` may be shared by threads: connections from one process are serialised
    by a process-wide lock, since DuckDB allows one writing process at a time anyway.
    """

    _process_lock = threading.RLock()

    def __init__(self, path: Path | str, *, lock_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._migrated = False

    def _open(self) -> duckdb.DuckDBPyConnection:
        @retry(
            retry=retry_if_exception(_is_lock_error),
            stop=stop_after_delay(self.lock_timeout_s),
            wait=wait_exponential_jitter(initial=0.02, max=1.0),
            reraise=True,
        )
        def _connect() -> duckdb.DuckDBPyConnection:
            return duckdb.connect(str(self.path))

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _connect()
        except duckdb.IOException as exc:
            if _is_lock_error(exc):
                raise StoreLockedError(
                    f"{self.path} stayed locked by another process for {self.lock_timeout_s:.0f} s; "
                    "stop the process holding it (a long-running query?) and retry"
                ) from exc
            raise

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while locked), migrate once, yield, and always close.

        Raises:
            StoreLockedError: another process held the file past ``lock_timeout_s``.
        """
        with self._process_lock:
            con = self._open()
            try:
                if not self._migrated:
                    migrate(con)
                    self._migrated = True
                yield con
            finally:
                con.close()


def fetch_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every row of ``cursor``'s last result as a dict keyed by column name."""
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def fetch_scalar(cursor: duckdb.DuckDBPyConnection) -> Any:
    """The first column of the first row of ``cursor``'s last result (None when empty).

    Uses ``fetchall``: DuckDB 2 keeps a partly fetched result open, and the next
    ``con.sql()`` on the connection then fails with "unfinished result from execute()".
    """
    rows = cursor.fetchall()
    return rows[0][0] if rows else None


def parse_json(value: Any) -> Any:
    """A JSON column's value as Python (DuckDB hands JSON back as ``str``)."""
    return json.loads(value) if isinstance(value, str) else value
