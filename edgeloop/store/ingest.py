"""Ingest into the ``frames``, ``prediction_logs`` and ``labeling_queue`` tables: a batch
in one transaction, idempotent on ``frame_key`` (``insert_batch``), or several new batches
in one transaction (``insert_new_batches``, the API's group commit).

A frame and its detections are written together, once, and never changed after (the
reads are in ``edgeloop.store.frames``). A frame is queued for labeling unless its JPEG is
byte-identical to one already queued or labeled (``edgeloop.store.queue.insert_items_sql``):
the frame and its detections are stored either way, and ``BatchCounts.queued`` counts the
items actually queued.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeloop.store import frames as frames_store
from edgeloop.store import queue, rollups
from edgeloop.store.connection import Connection, constraint_errors, is_postgres, store_errors

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class BatchCounts:
    """What ``insert_batch`` stored: frames, detections and queue items; the keys it skipped
    because they were stored already (``skipped``), and among those the ones stored under
    another camera than the sender's (``conflicts``)."""

    accepted: int
    detections: int
    queued: int
    skipped: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()


_SKIPPING_VIEWS = ("ingest_frames", "ingest_detections", "ingest_skipped", "ingest_new_frames")
"""The views ``_insert_skipping_stored`` registers."""
_ALL_NEW_VIEWS = ("ingest_frames", "ingest_detections", "ingest_queue")
"""The tables the all-new insert reads (registered on PostgreSQL only, see below)."""


def _insert_sql(table: str, source: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) SELECT {names} FROM {source}"


@functools.lru_cache(maxsize=64)
def _insert_all_new_sql(
    *,
    queued: bool,
    frame_columns: tuple[str, ...],
    detection_columns: tuple[str, ...],
    summarised: bool = False,
) -> str:
    """The statements of a batch whose frames are all new (read from the Arrow tables
    ``ingest_frames``, ``ingest_detections`` and ``ingest_queue``), in one transaction and
    one call: DuckDB takes the GIL back each time a call returns to Python, and while another
    thread runs Python each return waits for it. (Measured against five calls in
    bench/ingest.py: no faster end to end on the 2-core machine, within its noise; one
    call is also the simpler code.)

    ``queued=True`` ends with the queue's ``INSERT ... RETURNING frame_key`` (the frames it
    queued: byte-identical JPEGs are left out) and leaves the transaction open for the
    caller's ``COMMIT``, a second call made only for batches that queue something.
    ``queued=False``, for a batch that queues nothing (no frame with an uncertain
    detection and a JPEG: every batch of bench/ingest.py), leaves the queue's statement
    out: its ``INSERT ... ON CONFLICT`` of no rows still cost 2.3-2.5 ms of a
    10,000-detection batch's 32-35 ms (three alternating in-process runs of 46 batches
    each, 2-core machine).

    ``summarised`` (PostgreSQL) adds the batch to the summaries kept at ingest in the same
    transaction (``_summaries_sql``).
    """
    return "; ".join(
        (
            "BEGIN TRANSACTION",
            _insert_sql("frames", "ingest_frames", frame_columns),
            _insert_sql("prediction_logs", "ingest_detections", detection_columns),
            *(_summaries_sql("ingest_frames", "ingest_detections") if summarised else []),
            *([queue.insert_items_sql("ingest_queue")] if queued else ["COMMIT"]),
        )
    )


def _summaries_sql(frames: str, detections: str) -> list[str]:
    """PostgreSQL: the statements that add the new rows in the tables ``frames`` and
    ``detections`` to what ingest keeps summed, in the batch's transaction: each camera's
    confidence histogram (``frames.add_to_bins_sql``) and the per-minute rollups the
    console reads (``edgeloop.store.rollups``). (DuckDB scans its columns fast enough.)"""
    return [frames_store.add_to_bins_sql(detections), *rollups.add_sql(frames, detections)]


def rebuild_summaries(*, con: Connection) -> None:
    """PostgreSQL: recount what ingest keeps summed (``_summaries_sql``) from every stored
    frame and detection, after rows were written other than by ingest (``edgeloop store
    copy``, a bulk load)."""
    for table in ("confidence_bins", *rollups.ROLLUP_TABLES):
        con.execute(f"DELETE FROM {table}")
    for statement in _summaries_sql("frames", "prediction_logs"):
        con.execute(statement)


@contextlib.contextmanager
def _rolled_back_on_error(con: Connection, views: Sequence[str] = ()) -> Iterator[None]:
    """Roll the open transaction back when the block raises (the block's error is the one
    raised), and drop the ``views`` the block registered either way."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(*store_errors()):  # keep the original error
            con.execute("ROLLBACK")
        raise
    finally:
        for name in views:
            con.unregister(name)


def _insert_all_new(
    con: Connection, frames: pa.Table, detections: pa.Table, queue_items: pa.Table
) -> list[str] | None:
    """Insert the rows in one transaction when none of the frames is stored: the
    frame_keys queued once committed; None, with nothing stored, when a frame_key (or a
    detection_id) is stored already or repeats, which makes the primary key refuse the
    insert.

    Raises:
        duckdb.Error, psycopg.Error: any other failure; rolled back.
    """
    queued = queue_items.num_rows > 0
    on_postgres = is_postgres(con)
    sql = _insert_all_new_sql(
        queued=queued,
        frame_columns=tuple(frames.column_names),
        detection_columns=tuple(detections.column_names),
        summarised=on_postgres,
    )
    tables = (frames, detections, queue.with_content_hash(queue_items))
    try:
        with _rolled_back_on_error(con, _ALL_NEW_VIEWS if on_postgres else ()):
            if on_postgres:
                for name, table in zip(_ALL_NEW_VIEWS, tables, strict=True):
                    con.register(name, table)
            else:
                # DuckDB reads the statement's ingest_* tables from these locals (its
                # replacement scan of Arrow objects in the calling frame): 0.35-0.4 ms
                # less per table than registering a view and dropping it (which writes
                # the catalog), measured with 10,000-row tables on the 2-core machine.
                ingest_frames, ingest_detections, ingest_queue = tables  # noqa: RUF059
            result = con.execute(sql)
            keys = [str(row[0]) for row in result.fetchall()] if queued else []
            if queued:
                con.execute("COMMIT")
        return keys
    except constraint_errors():
        return None


def _insert_skipping_stored(
    con: Connection, frames: pa.Table, detections: pa.Table, queue_items: pa.Table
) -> BatchCounts:
    """``insert_batch`` once a key of the batch was found stored: the frames go in with
    ``ON CONFLICT DO NOTHING RETURNING``, whose keys select the other rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    con.execute("BEGIN TRANSACTION")
    with _rolled_back_on_error(con, _SKIPPING_VIEWS):
        con.register("ingest_frames", frames)
        rows = con.execute(
            _insert_sql("frames", "ingest_frames", frames.column_names)
            + " ON CONFLICT DO NOTHING RETURNING frame_key"
        ).fetchall()
        keys = pa.array([row[0] for row in rows], pa.string())
        detections = detections.filter(pc.is_in(detections["frame_key"], value_set=keys))
        queue_items = queue_items.filter(pc.is_in(queue_items["frame_key"], value_set=keys))
        inserted = pc.is_in(frames["frame_key"], value_set=keys)
        skipped = frames.filter(pc.invert(inserted))
        con.register("ingest_skipped", skipped.select(["frame_key", "camera_id"]))
        conflicts = tuple(
            row[0]
            for row in con.execute(
                "SELECT s.frame_key FROM ingest_skipped s JOIN frames f USING (frame_key) "
                "WHERE f.camera_id <> s.camera_id ORDER BY s.frame_key"
            ).fetchall()
        )
        if detections.num_rows:
            con.register("ingest_detections", detections)
            con.execute(
                _insert_sql("prediction_logs", "ingest_detections", detections.column_names)
            )
        if is_postgres(con) and len(keys):
            con.register("ingest_new_frames", frames.filter(inserted))
            if not detections.num_rows:
                con.register("ingest_detections", detections)
            for statement in _summaries_sql("ingest_new_frames", "ingest_detections"):
                con.execute(statement)
        queued = queue.insert_items(con=con, items=queue_items) if queue_items.num_rows else []
        con.execute("COMMIT")
    return BatchCounts(
        accepted=len(keys),
        detections=detections.num_rows,
        queued=len(queued),
        skipped=tuple(skipped["frame_key"].to_pylist()),
        conflicts=conflicts,
    )


def insert_batch(
    *, con: Connection, frames: pa.Table, detections: pa.Table, queue_items: pa.Table
) -> BatchCounts:
    """Insert a batch in one transaction, one Arrow insert per table; skip stored frames.

    Frames whose ``frame_key`` is already stored are skipped with their detections and
    queue rows; a stored frame is never changed. A new frame whose JPEG is byte-identical
    to one queued or labeled is stored but not queued (see the module docstring). A
    skipped key stored under another camera than the one sending it is returned in
    ``conflicts`` (a frame key is bound to the camera that first sent it). Replays are
    rare, so the batch is first inserted as all new, in one call (``_insert_all_new``);
    only when the primary key refuses it is it inserted again with ``ON CONFLICT DO
    NOTHING RETURNING`` (about 2 ms more per 10,000-detection batch, bench/ingest.py).

    Args:
        frames / detections: rows with the tables' column names.
        queue_items: see ``edgeloop.store.queue.insert_items``.

    Raises:
        duckdb.Error, psycopg.Error: the transaction was rolled back; nothing of the batch
            is stored.
    """
    queued = _insert_all_new(con, frames, detections, queue_items)
    if queued is not None:
        return BatchCounts(
            accepted=frames.num_rows, detections=detections.num_rows, queued=len(queued)
        )
    return _insert_skipping_stored(con, frames, detections, queue_items)


def insert_new_batches(
    *, con: Connection, batches: Sequence[tuple[pa.Table, pa.Table, pa.Table]]
) -> list[BatchCounts] | None:
    """Insert several batches, each ``(frames, detections, queue_items)`` as in
    ``insert_batch``, in one transaction, when every one of their frames is new.

    One transaction writes and fsyncs the WAL once for all of them (bench/ingest.py
    prints the raw insert with 4 batches per transaction beside 1 per transaction).

    Returns:
        Each batch's counts, in order; or None, with nothing stored (rolled back), when
        the insert failed: a frame_key already stored or repeated across the batches (a
        primary-key error), or any other error. The caller then writes the batches one
        by one with ``insert_batch``, which skips stored frames and keeps a failing
        batch from failing the others.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    batches = [(f, d, queue.with_content_hash(q)) for f, d, q in batches]
    try:
        tables = [pa.concat_tables(list(column)) for column in zip(*batches, strict=True)]
    except pa.ArrowInvalid:  # schemas that differ: written one by one
        return None
    try:
        queued = _insert_all_new(con, *tables)
    except store_errors():
        return None
    if queued is None:
        return None
    keys = pa.array(queued, pa.string())
    return [
        BatchCounts(
            accepted=f.num_rows,
            detections=d.num_rows,
            queued=int(pc.sum(pc.is_in(q["frame_key"], value_set=keys)).as_py() or 0),
        )
        for f, d, q in batches
    ]
