"""The ingest writer: group commit, and a short linger that keeps the DuckDB file open
between batches that arrive back to back.

Why: opening the DuckDB file and closing it (the close checkpoints the WAL into the
file) cost 50-100 ms together, more than inserting the 10,000 detections of a batch
(~45 ms incl. the commit's fsync) — measured with ``bench/ingest.py`` and
``/metrics``' ``edgeloop_ingest_stage_duration_seconds``. So:

* batches that arrive while another is being written share the next connection, each in
  its own transaction (group commit);
* after a write the writer keeps one idle connection to the database for ``linger_s``
  (200 ms by default): every ``Store.connect()`` of this process then reuses the open
  database (DuckDB caches it per path) and its close does not checkpoint. When no
  batch came for ``linger_s``, or ``max_hold_s`` after it was opened, the idle
  connection is closed: the WAL is checkpointed and the file is free for other
  processes (Dagster) again.

Each batch is still committed before its request is answered (durable: DuckDB fsyncs
the WAL on commit), and every write still goes through ``Store.connect()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import duckdb

from api.ingest import IngestTables
from edgeloop.store import Store, frames
from edgeloop.store.frames import BatchCounts

logger = logging.getLogger(__name__)


class _WriteJob:
    __slots__ = ("done", "error", "result", "tables")

    def __init__(self, tables: IngestTables) -> None:
        self.tables = tables
        self.done = False
        self.result: BatchCounts | None = None
        self.error: BaseException | None = None


class IngestWriter:
    """Writes ingest batches into DuckDB with group commit and a bounded linger.

    Args:
        store: the DuckDB store; every write goes through ``store.connect()``.
        linger_s: keep the database open this long after the last write, s (0: never).
        max_hold_s: close it at the latest this long after it was opened, s, so the
            file is checkpointed and released regularly even under sustained ingest.
        max_group: most batches written through one ``store.connect()``.
        observe_group: called with the number of batches of each group written.
    """

    def __init__(
        self,
        store: Store,
        *,
        linger_s: float = 0.2,
        max_hold_s: float = 2.0,
        max_group: int = 8,
        observe_group: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.linger_s = linger_s
        self.max_hold_s = max_hold_s
        self.max_group = max_group
        self.observe_group = observe_group
        self._pending: deque[_WriteJob] = deque()
        self._pending_lock = threading.Lock()
        # Guards writes, the idle connection and its timestamps; the closer waits on it.
        self._cond = threading.Condition(threading.Lock())
        self._idle_con: duckdb.DuckDBPyConnection | None = None
        self._opened_at = 0.0
        self._last_write = 0.0
        self._closer: threading.Thread | None = None
        self._stopped = False

    def write(self, tables: IngestTables) -> BatchCounts:
        """Insert one batch (see ``edgeloop.store.frames.insert_batch``); returns once it is committed.

        Raises:
            duckdb.Error, edgeloop.store.StoreLockedError: this batch was not stored.
        """
        job = _WriteJob(tables)
        with self._pending_lock:
            self._pending.append(job)
        while not job.done:
            with self._cond:
                if job.done:
                    break
                with self._pending_lock:
                    group = [
                        self._pending.popleft()
                        for _ in range(min(self.max_group, len(self._pending)))
                    ]
                self._write_group(group)
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        """Close the idle connection (checkpoint, release the file) and stop the closer."""
        with self._cond:
            self._stopped = True
            self._release()
            self._cond.notify_all()
        if self._closer is not None:
            self._closer.join(timeout=5)

    def _write_group(self, group: list[_WriteJob]) -> None:
        if self.observe_group is not None:
            self.observe_group(len(group))
        try:
            with self.store.connect() as con:
                self._hold_open()
                for job in group:
                    try:
                        job.result = frames.insert_batch(
                            con=con,
                            frames=job.tables.frames,
                            detections=job.tables.detections,
                            queue_items=job.tables.queue,
                        )
                    except Exception as exc:
                        job.error = exc
        except BaseException as exc:  # open/close failed: every unwritten batch fails
            for job in group:
                if job.result is None and job.error is None:
                    job.error = exc
        finally:
            for job in group:
                if job.result is None and job.error is None:
                    job.error = RuntimeError("ingest batch was not written")
                job.done = True
        self._last_write = time.monotonic()
        if self._idle_con is not None and self._last_write - self._opened_at > self.max_hold_s:
            self._release()
        self._cond.notify_all()

    def _hold_open(self) -> None:
        """Open the idle connection while a store connection is open (a cache hit, no I/O)."""
        if self._idle_con is not None or self.linger_s <= 0 or self._stopped:
            return
        try:
            self._idle_con = duckdb.connect(str(self.store.path))
        except duckdb.Error:
            logger.warning("could not keep %s open between batches", self.store.path, exc_info=True)
            return
        self._opened_at = time.monotonic()
        if self._closer is None:
            self._closer = threading.Thread(
                target=self._close_when_idle, name="ingest-linger", daemon=True
            )
            self._closer.start()

    def _release(self) -> None:
        if self._idle_con is None:
            return
        try:
            self._idle_con.close()
        except duckdb.Error:
            logger.exception("closing the idle DuckDB connection to %s failed", self.store.path)
        self._idle_con = None

    def _close_when_idle(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._idle_con is None:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                deadline = min(self._last_write + self.linger_s, self._opened_at + self.max_hold_s)
                if now >= deadline:
                    self._release()
                else:
                    self._cond.wait(deadline - now)
