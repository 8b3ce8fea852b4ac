"""The ingest writer: group commit — batches that arrive while another is being written
share the next ``Store.connect()``, each in its own transaction.

Each batch is still committed before its request is answered (durable: DuckDB fsyncs
the WAL on commit). Keeping the file open between back-to-back batches (opening and
closing it cost 50-100 ms, more than inserting 10,000 detections) is the store's
linger (``edgeloop.store.Store(linger_s=...)``, which the API turns on), not the
writer's.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

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
    """Writes ingest batches into DuckDB with group commit.

    Args:
        store: the DuckDB store; every write goes through ``store.connect()``.
        max_group: most batches written through one ``store.connect()``.
        observe_group: called with the number of batches of each group written.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_group: int = 8,
        observe_group: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.max_group = max_group
        self.observe_group = observe_group
        self._pending: deque[_WriteJob] = deque()
        self._pending_lock = threading.Lock()
        # Guards writes; writers waiting for their group wait on it.
        self._cond = threading.Condition(threading.Lock())

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

    def _write_group(self, group: list[_WriteJob]) -> None:
        if self.observe_group is not None:
            self.observe_group(len(group))
        try:
            with self.store.connect() as con:
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
        self._cond.notify_all()
