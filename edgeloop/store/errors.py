"""The store's errors, shared by both backends (``connection.Store`` on the DuckDB file,
``postgres.PostgresStore`` on PostgreSQL) without either importing the other."""

from __future__ import annotations


class StoreUnavailableError(RuntimeError):
    """The store could not be opened now: the DuckDB file stayed locked, or the PostgreSQL
    server did not answer (the API answers 503 and the caller may retry)."""


class StoreLockedError(StoreUnavailableError):
    """The DuckDB file stayed locked by another process past the retry deadline."""
