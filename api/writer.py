"""The ingest writer: group commit — batches that arrive while another is being written
are written together, in one transaction when all their frames are new
(``edgeloop.store.ingest.insert_new_batches``), else each in its own.

Each batch is committed before its request is answered (durable: DuckDB fsyncs the WAL
on commit). Keeping the file open between back-to-back batches (opening and
closing it cost 50-100 ms, more than inserting 10,000 detections) is the store's
linger (``edgeloop.store.Store(linger_s=...)``, which the API turns on), not the
writer's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager

from edgeloop.store import AnyStore
from edgeloop.store.batches import IngestTables
from edgeloop.store.ingest import BatchCounts, insert_batch, insert_new_batches

logger = logging.getLogger(__name__)

GIL_GATE = threading.Semaphore(1)
"""One stage at a time, per process, among those that need the GIL in long or frequent
stretches: the DuckDB write (``IngestWriter(gate=GIL_GATE)``, the API's writer) and the
preparation of a JSON batch (``api.routes.ingest``). The JPEG writes (I/O), the HTTP
transfer and version 3's preparation stay outside it.

A JSON preparation holds the GIL throughout, in calls of several ms (pydantic's parse is
one call), and the DuckDB write needs it back each time DuckDB returns to Python, which it
also does inside one call while it scans an Arrow table (about ten times per scan: with a
thread running pure Python beside it, inserting 10,000 Arrow rows took 65 ms instead of
8.5); run side by side, each return waits for the parse in progress. Measured in one
process on the 2-core machine with 10,000-detection batches: ``insert_batch`` took 22-52
ms alone and 67-118 ms while another thread parsed; two threads each preparing and
writing version-2 batches took 32-37 ms per batch with this gate, 35-55 ms with a gate on
the preparation only and 32-38 ms with a single thread. (With version 1, several parses
at once only added switching: bench/ingest.py, 4 clients, ~54k -> ~77k detections/s with
the preparation gate.)

Version 3 (MessagePack) is prepared outside the gate: its preparation is about 2 ms of
short numpy and Arrow calls, so it barely delays a write's returns to Python, and
preparing the next batch while one is written is what lets it keep up. bench/ingest.py,
2 clients: 0.84x the raw insert with the gate, 0.90x without (one run each).

The writer takes the gate for a whole group, after the batches were queued: those that
arrive during a write wait in the writer's queue, not on the gate, and the next group
takes them all. (When the route held the gate around ``IngestWriter.write``, every group
was one batch.) Measured with 4 clients posting version-3 batches to the real API on the
2-core machine, 3 alternating runs each: 213,000 detections/s (groups one transaction per
batch) -> 252,000/s (a group of new frames in one transaction; groups average 1.9
batches).
"""


class _WriteJob:
    __slots__ = ("done", "error", "result", "tables")

    def __init__(self, tables: IngestTables) -> None:
        self.tables = tables
        self.done = False
        self.result: BatchCounts | None = None
        self.error: BaseException | None = None


class IngestWriter:
    """Writes ingest batches into DuckDB with group commit.

    One thread writes at a time; batches that arrive meanwhile wait in a queue, and the
    next thread to write takes all of them (up to ``max_group``). A group whose frames are
    all new is one transaction (``edgeloop.store.ingest.insert_new_batches``); otherwise
    each batch is its own transaction (``insert_batch``), so a stored frame is skipped and
    a failing batch fails alone. With one or two agents a group rarely holds more than one
    batch; with more, the WAL is written and fsync'ed once for several.

    Args:
        store: the DuckDB store; every write goes through ``store.connect()``.
        max_group: most batches written through one ``store.connect()``.
        observe_group: called with the number of batches of each group written.
        gate: held while a group is written (the API's ``GIL_GATE``); batches that
            arrive meanwhile queue up for the next group instead of waiting on the gate
            one by one. None: no gate.
    """

    def __init__(
        self,
        store: AnyStore,
        *,
        max_group: int = 8,
        observe_group: Callable[[int], None] | None = None,
        gate: AbstractContextManager[object] | None = None,
    ) -> None:
        self.store = store
        self.max_group = max_group
        self.observe_group = observe_group
        self._gate = gate if gate is not None else contextlib.nullcontext()
        self._pending: deque[_WriteJob] = deque()
        self._pending_lock = threading.Lock()
        # Guards writes; writers waiting for their group wait on it.
        self._cond = threading.Condition(threading.Lock())

    @property
    def pending(self) -> int:
        """Batches waiting for their group to be written."""
        with self._pending_lock:
            return len(self._pending)

    def write(self, tables: IngestTables) -> BatchCounts:
        """Insert one batch (see ``edgeloop.store.ingest.insert_batch``); returns once it is committed.

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
                with self._gate:
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
                together = len(group) > 1 and insert_new_batches(
                    con=con,
                    batches=[
                        (job.tables.frames, job.tables.detections, job.tables.queue)
                        for job in group
                    ],
                )
                if together:
                    for job, counts in zip(group, together, strict=True):
                        job.result = counts
                else:  # one batch, or a stored or repeated frame_key among them
                    for job in group:
                        try:
                            job.result = insert_batch(
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
