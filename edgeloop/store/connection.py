"""Short-lived, retrying connections to the edgeloop DuckDB file.

DuckDB locks its file for one process: while one process holds it open, no other can
open it, not even read-only. So every caller opens, works, and closes — never holds a
connection across slow work (copy rows out as Arrow, release, then compute) — and
retries on the lock error with backoff, as ``dagster-duckdb`` does.

A busy server (the API) may ask its ``Store`` to linger (``linger_s``): after a
connection closes, one idle connection keeps the database open, so the next
``connect()`` is a cache hit of DuckDB's per-path instance and its close does not
checkpoint the WAL (opening and closing the file cost 34–47 % of a labeling request).
The idle connection is closed ``linger_s`` after the last use, ``max_hold_s`` after it
was opened at the latest, and within ``KEEPER_POLL_S`` when another process asks for the
file: a process that finds the file locked touches ``<file>.wanted`` before it retries,
and, while the marker is fresh (``WANTED_FRESH_S``), the lingering process does not
linger and opens each connection only after a short pause with the file closed
(``YIELD_WINDOW_S``), so the waiting process gets in even under a steady load.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import duckdb
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from edgeloop.store.errors import StoreLockedError
from edgeloop.store.migrations import migrate

if TYPE_CHECKING:
    from edgeloop.store.postgres import PostgresConnection

logger = logging.getLogger(__name__)

Connection: TypeAlias = "duckdb.DuckDBPyConnection | PostgresConnection"
"""An open connection, as ``Store.connect()`` yields it: DuckDB's own, or
``edgeloop.store.postgres.PostgresConnection`` (the same calls, DuckDB's SQL dialect)."""


NO_RETRY_THREAD_WAIT_S = 1.0
"""With ``Store.connect(retry=False)``: longest wait for another thread of this process
that holds the store (an ingest group commit of several batches), s."""


KEEPER_POLL_S = 0.1
"""How often a lingering store checks whether to close its idle connection, s."""
WANTED_FRESH_S = 0.5
"""A ``.wanted`` marker touched this recently means a process is waiting right now (it
touches it on every retry, at most ``RETRY_MAX_WAIT_S`` apart), s."""
YIELD_WINDOW_S = 0.05
"""While a process waits, each connection of a lingering store first pauses this long
with the file closed, so the waiting process finds it free, s."""
RETRY_MAX_WAIT_S = 0.25
"""Longest back-off between two attempts to open a locked file, s."""


def _is_lock_error(exc: BaseException) -> bool:
    # DuckDB raises IOException "Could not set lock on file ... Conflicting lock is held".
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class Store:
    """Short-lived, retrying access to the edgeloop DuckDB file.

    Args:
        path: the DuckDB file; its folder is created on first use.
        lock_timeout_s: how long ``connect`` retries while another process holds the file.
        linger_s: keep the database open this long after the last connection closed, s
            (0, the default: close it with every connection; see the module docstring).
        max_hold_s: with ``linger_s``, close the idle connection at the latest this long
            after it was opened, s, so the file is checkpointed and released regularly.

    One ``Store`` may be shared by threads: connections from one process are serialised
    by a process-wide lock, since DuckDB allows one writing process at a time anyway.
    """

    _process_lock = threading.RLock()
    dialect: Literal["duckdb"] = "duckdb"

    def __init__(
        self,
        path: Path | str,
        *,
        lock_timeout_s: float = 60.0,
        linger_s: float = 0.0,
        max_hold_s: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.linger_s = linger_s
        self.max_hold_s = max_hold_s
        self._migrated = False
        self._keeper: duckdb.DuckDBPyConnection | None = None
        self._keeper_opened = 0.0
        self._keeper_wall_opened = 0.0
        self._own_touch = 0.0
        self._last_used = 0.0
        self._closer: threading.Thread | None = None
        self._closed = False

    @property
    def location(self) -> str:
        """Where the tables live, for logs and messages: the file's path."""
        return str(self.path)

    @property
    def wanted_marker(self) -> Path:
        """``<file>.wanted``: touched by a process waiting for the file."""
        return self.path.with_name(self.path.name + ".wanted")

    def _ask_for_file(self) -> None:
        """Tell a lingering process that this one waits for the file (best effort)."""
        with contextlib.suppress(OSError):
            self.wanted_marker.touch()
            self._own_touch = self.wanted_marker.stat().st_mtime

    def _wanted_since(self) -> float:
        """Wall-clock time the marker was last touched by another process, or 0."""
        try:
            touched = self.wanted_marker.stat().st_mtime
        except OSError:
            return 0.0
        return 0.0 if touched == self._own_touch else touched

    def _waited_for(self) -> bool:
        """True while another process waits for the file (its marker is fresh)."""
        return time.time() - self._wanted_since() <= WANTED_FRESH_S

    def _yield_if_wanted(self) -> None:
        """Called with the process lock held, before opening: while another process waits
        for the file, close the idle connection and pause with the file closed (only a
        store that lingers does this)."""
        if self.linger_s <= 0 or not self._waited_for():
            return
        self._release_keeper()
        time.sleep(YIELD_WINDOW_S)

    def _should_release(self, now: float) -> bool:
        if self._keeper is None:
            return False
        if now - self._last_used >= self.linger_s or now - self._keeper_opened >= self.max_hold_s:
            return True
        return self._wanted_since() > self._keeper_wall_opened

    def _release_keeper(self) -> None:
        if self._keeper is None:
            return
        try:
            self._keeper.close()
        except duckdb.Error:
            logger.exception("closing the idle DuckDB connection to %s failed", self.path)
        self._keeper = None

    def _linger(self, con: duckdb.DuckDBPyConnection) -> None:
        """Called with the process lock held and ``con`` open: keep the database open."""
        now = time.monotonic()
        self._last_used = now
        if self.linger_s <= 0 or self._closed or self._keeper is not None:
            return
        if self._waited_for():
            return
        try:
            self._keeper = duckdb.connect(str(self.path))  # cache hit: ``con`` is open
        except duckdb.Error:
            logger.warning("could not keep %s open", self.path, exc_info=True)
            return
        self._keeper_opened = now
        self._keeper_wall_opened = time.time()
        if self._closer is None:
            self._closer = threading.Thread(
                target=self._close_when_idle, name="store-linger", daemon=True
            )
            self._closer.start()

    def _close_when_idle(self) -> None:
        while not self._closed:
            time.sleep(KEEPER_POLL_S)
            if self._keeper is None:
                continue
            if not self._process_lock.acquire(timeout=KEEPER_POLL_S):
                continue  # a connection is open: it refreshes the keeper's use anyway
            try:
                if self._should_release(time.monotonic()):
                    self._release_keeper()
            finally:
                self._process_lock.release()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` for the block, against every other holder of it: one
        process at a time opens the file, so a lock of this process (the PostgreSQL store
        takes an advisory lock every process shares). Holds no connection."""
        with _named_lock(name):
            yield

    def close(self) -> None:
        """Stop lingering: close the idle connection (checkpoint, release the file)."""
        with self._process_lock:
            self._closed = True
            self._release_keeper()

    def _open_once(self) -> duckdb.DuckDBPyConnection:
        """One attempt, no back-off: ``StoreLockedError`` at once while another process
        holds the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if _is_lock_error(exc):
                raise StoreLockedError(
                    f"{self.path} is locked by another process (a writer or a long query); "
                    "not retried"
                ) from exc
            raise

    def _open(self) -> duckdb.DuckDBPyConnection:
        @retry(
            retry=retry_if_exception(_is_lock_error),
            stop=stop_after_delay(self.lock_timeout_s),
            wait=wait_exponential_jitter(initial=0.02, max=RETRY_MAX_WAIT_S),
            reraise=True,
        )
        def _connect() -> duckdb.DuckDBPyConnection:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if _is_lock_error(exc):
                    self._ask_for_file()
                raise

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
    def connect(self, *, retry: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while locked), migrate once, yield, and always close.

        Args:
            retry: True (default) retries with back-off for up to ``lock_timeout_s`` while
                another process holds the file; False tries once and fails at once (for
                answers that must be fast, such as ``/api/health``), and waits at most
                ``NO_RETRY_THREAD_WAIT_S`` for another thread of this process.

        Raises:
            StoreLockedError: another process held the file past ``lock_timeout_s``, or,
                with ``retry=False``, held it now (or a thread of this process held the
                store past ``NO_RETRY_THREAD_WAIT_S``).
        """
        if retry:
            self._process_lock.acquire()
        elif not self._process_lock.acquire(timeout=NO_RETRY_THREAD_WAIT_S):
            raise StoreLockedError(
                f"{self.path} is busy in this process (another request holds it) for "
                f"over {NO_RETRY_THREAD_WAIT_S} s; not retried"
            )
        try:
            if self._should_release(time.monotonic()):
                self._release_keeper()
            self._yield_if_wanted()
            con = self._open() if retry else self._open_once()
            try:
                if not self._migrated:
                    migrate(con)
                    self._migrated = True
                yield con
            finally:
                self._linger(con)
                con.close()
        finally:
            self._process_lock.release()


_NAMED_LOCKS: dict[str, threading.Lock] = {}
_NAMED_LOCKS_GUARD = threading.Lock()


def _named_lock(name: str) -> threading.Lock:
    with _NAMED_LOCKS_GUARD:
        return _NAMED_LOCKS.setdefault(name, threading.Lock())


class Result(Protocol):
    """What ``con.execute`` returns on either backend."""

    @property
    def description(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def fetch_dicts(cursor: Result) -> list[dict[str, Any]]:
    """Every row of ``cursor``'s last result as a dict keyed by column name."""
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def fetch_scalar(cursor: Result) -> Any:
    """The first column of the first row of ``cursor``'s last result (None when empty).

    Uses ``fetchall``: DuckDB 2 keeps a partly fetched result open, and the next
    ``con.sql()`` on the connection then fails with "unfinished result from execute()".
    """
    rows = cursor.fetchall()
    return rows[0][0] if rows else None


def store_errors() -> tuple[type[Exception], ...]:
    """The exceptions a store statement raises on either backend (``duckdb.Error``, and
    ``psycopg.Error`` where psycopg is installed)."""
    return _errors()[0]


def unavailable_errors() -> tuple[type[Exception], ...]:
    """The exceptions of a database server that could not be reached or went away
    (``psycopg.OperationalError`` where psycopg is installed): answered like
    ``StoreUnavailableError`` (503, retry)."""
    return _errors()[2]


def constraint_errors() -> tuple[type[Exception], ...]:
    """The exceptions a refused primary key or unique constraint raises on either backend."""
    return _errors()[1]


_Errors = tuple[type[Exception], ...]


@functools.cache
def _errors() -> tuple[_Errors, _Errors, _Errors]:
    try:
        import psycopg
    except ImportError:
        return (duckdb.Error,), (duckdb.ConstraintException,), ()
    return (
        (duckdb.Error, psycopg.Error),
        (duckdb.ConstraintException, psycopg.IntegrityError),
        (psycopg.OperationalError,),
    )


_BESIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store-read-beside")
"""Threads of ``read_beside``'s reads (DuckDB runs a query without the GIL)."""


@contextmanager
def read_beside(con: Connection, sql: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Run the read ``sql`` (no parameters) while the caller goes on with other reads.

    On DuckDB the read runs on a cursor of ``con`` (its own connection to the same
    database, which sees what is committed) in a worker thread; on PostgreSQL, where one
    connection runs one statement at a time, on ``con`` when its rows are first asked
    for. Used where one slow read stands beside a few fast ones: the browser's batch
    fetch (``bench/batch_fetch.py``: 13 ms of a 100-id fetch's p95 on the DuckDB file at
    1M SIMULATED detections).

    Yields:
        A function that waits for the rows and returns them (``fetch_dicts``); it raises
        what the read raised (``duckdb.Error``). On exit the read is waited for and its
        cursor closed, also when the block raised.
    """
    if is_postgres(con):
        yield functools.cache(lambda: fetch_dicts(con.execute(sql)))
        return
    cursor = con.cursor()  # type: ignore[union-attr]
    future = _BESIDE.submit(lambda: fetch_dicts(cursor.execute(sql)))
    try:
        yield future.result
    finally:
        with contextlib.suppress(Exception):  # the block's own error is the one raised
            future.result()
        cursor.close()


def is_postgres(con: Connection) -> bool:
    """True for a connection to PostgreSQL: for the few statements the store writes per
    backend (row locks and advisory locks; the queue's two-pass read, which DuckDB needs
    and PostgreSQL's index makes moot). Callers of the store never ask."""
    return getattr(con, "dialect", "duckdb") == "postgres"


def row_lock(con: Connection, *, skip_locked: bool = False) -> str:
    """The clause that locks the rows a ``SELECT`` reads until the transaction ends:
    ``FOR UPDATE [SKIP LOCKED]`` on PostgreSQL; nothing on DuckDB, open in one process at a time
    (``edgeloop.store.queue.CLAIMS`` serialises in-process)."""
    if not is_postgres(con):
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


@contextlib.contextmanager
def transaction(con: Connection) -> Iterator[None]:
    """``BEGIN`` … ``COMMIT``, rolled back when the block raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def parse_json(value: Any) -> Any:
    """A JSON column's value as Python (DuckDB hands JSON back as ``str``)."""
    return json.loads(value) if isinstance(value, str) else value
