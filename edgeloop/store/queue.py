"""The ``labeling_queue`` table: frames with uncertain detections, waiting for a person.

An item is ``pending`` until labeled; ``skipped`` items come back from ``next_item`` only
when nothing is pending (least-skipped first, then the one skipped longest ago);
``labeled`` items never come back. Priority = the largest uncertainty score of the
frame's detections (``edgeloop.rules.uncertainty_scores``) × a boost for drifted cameras ×
``diversity_weight`` (``edgeloop.store.diversity``); read in ``QUEUE_ORDER``. A JPEG is queued
once: a frame whose JPEG is byte-identical (same sha256) to one already queued or labeled
is not queued again (``insert_items_sql``).

Claims: ``claim_next`` hands an item to one labeler for a lease (``claimed_by``,
``claimed_until``); until it expires no one else gets that item from ``claim_next`` or
may label or skip it (``ClaimConflictError``). Labeling or skipping releases the claim;
an expired lease returns the item to the queue as it was. Each claim, skip and label is
one transaction that reads the item under a row lock: on PostgreSQL ``FOR UPDATE`` (and
``SKIP LOCKED`` for the next item, so labelers on several API replicas claiming at once
each get another item); on the DuckDB file, open in one process at a time, one lock per
process (``CLAIMS``) does it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from edgeloop.rules import uncertainty_score_sql
from edgeloop.store import drift
from edgeloop.store.connection import (
    Connection,
    fetch_dicts,
    fetch_scalar,
    is_postgres,
    row_lock,
    transaction,
)

STATUSES = ("pending", "skipped", "labeled")
QUEUE_ORDER = "priority DESC, created_at DESC, item_id DESC"
"""How pending items are read: highest priority first, then the most recently queued."""

COLUMNS = (
    "item_id, frame_key, camera_id, priority, uncertain_count, status, skip_count, "
    "created_at, updated_at, claimed_by, claimed_until"
)

CLAIMS = threading.Lock()
"""Serialises taking and checking claims in this process (see the module docstring)."""


class ClaimConflictError(Exception):
    """Another labeler holds a live claim on the item, or it is labeled already.

    Attributes:
        item_id: the item.
        claimed_by: who holds the claim (None when the conflict is an earlier label).
        claimed_until: when that claim expires (UTC), or None.
    """

    def __init__(
        self, message: str, *, item_id: int, claimed_by: str | None, claimed_until: datetime | None
    ) -> None:
        super().__init__(message)
        self.item_id = item_id
        self.claimed_by = claimed_by
        self.claimed_until = claimed_until


def check_claim(*, item: dict[str, Any], labeler: str, now: datetime) -> None:
    """Raise ``ClaimConflictError`` when someone other than ``labeler`` holds a live claim
    on ``item`` (a row of this table)."""
    holder, until = item.get("claimed_by"), item.get("claimed_until")
    if holder is not None and holder != labeler and until is not None and until > now:
        raise ClaimConflictError(
            f"item {item['item_id']} is claimed by {holder} until {until.isoformat()}",
            item_id=int(item["item_id"]),
            claimed_by=holder,
            claimed_until=until,
        )


CONTENT_HASH = "jpeg_sha256"
"""The queue column holding the sha256 digest (32 bytes) of the frame's JPEG, computed once
at ingest (``api/ingest.py``); NULL for items queued before schema version 4."""


INSERT_COLUMNS = (
    "frame_key",
    "camera_id",
    "priority",
    "uncertain_count",
    "created_at",
    "updated_at",
    CONTENT_HASH,
)
"""The columns ``insert_items`` writes (``with_content_hash`` adds the last when absent)."""


def insert_items_sql(source: str) -> str:
    """The statement that queues the rows of the registered table or view ``source``
    (columns ``INSERT_COLUMNS``) and returns the ``frame_key`` of each row it queued.

    The content check is part of the one ``INSERT``: a row whose ``jpeg_sha256`` is
    already held by any item (pending, skipped or labeled) is left out, and of rows of
    ``source`` that share a digest only the one of highest priority (then lowest
    frame_key) is queued. The existing digests are looked up for ``source``'s digests only
    (the index ``labeling_queue_jpeg_sha256``): measured on the 2-core machine, a 50-row
    insert into a 118,000-item queue took 15 ms instead of 7 ms without the check, and
    27 ms instead of 16 ms at 1,000,000 items (61 ms with the same check and no index).
    On PostgreSQL the digest index is unique, so two replicas queueing the same JPEG at
    the same moment queue it once (``ON CONFLICT DO NOTHING`` covers every unique index).
    """
    h = CONTENT_HASH
    columns = ", ".join(INSERT_COLUMNS)
    return f"""
        INSERT INTO labeling_queue ({columns})
        SELECT {columns} FROM (
            SELECT s.*, row_number() OVER (
                PARTITION BY s.{h} ORDER BY s.priority DESC, s.frame_key
            ) AS content_rank
            FROM {source} AS s
            WHERE s.{h} IS NULL OR s.{h} NOT IN (
                SELECT q.{h} FROM labeling_queue AS q
                WHERE q.{h} IN (SELECT {h} FROM {source})
            )
        ) AS ranked
        WHERE {h} IS NULL OR content_rank = 1
        ON CONFLICT DO NOTHING
        RETURNING frame_key
        """


def with_content_hash(items: pa.Table) -> pa.Table:
    """``items`` with a ``jpeg_sha256`` column: all NULL (never deduplicated) when it has
    none. Costs nothing when the column is there (the ingest path)."""
    if CONTENT_HASH in items.column_names:
        return items
    return items.append_column(CONTENT_HASH, pa.nulls(items.num_rows, pa.binary()))


def insert_items(*, con: Connection, items: pa.Table) -> list[str]:
    """Queue frames; returns the frame_keys queued.

    Args:
        items: columns ``frame_key, camera_id, priority, uncertain_count, created_at,
            updated_at`` and optionally ``jpeg_sha256`` (binary, the sha256 digest of the
            frame's JPEG). A frame already queued keeps its item; a frame whose JPEG is
            byte-identical to one already queued or labeled, or to another row of
            ``items``, is not queued again (see ``insert_items_sql``). Rows without a
            digest are never deduplicated.
    """
    con.register("new_queue_items", with_content_hash(items))
    try:
        rows = con.execute(insert_items_sql("new_queue_items")).fetchall()
    finally:
        con.unregister("new_queue_items")
    return [str(row[0]) for row in rows]


def status_counts(*, con: Connection) -> dict[str, int]:
    """Items per status; every status in ``STATUSES`` is present (0 when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in con.execute(
        "SELECT status, count(*) FROM labeling_queue GROUP BY status"
    ).fetchall():
        counts[str(status)] = int(n)
    return counts


def list_items(
    *, con: Connection, status: str, camera_id: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Items with ``status`` in ``QUEUE_ORDER``, one page; and the count over all pages."""
    where = "status = ?" + (" AND camera_id = ?" if camera_id is not None else "")
    params: list[Any] = [status] + ([camera_id] if camera_id is not None else [])
    total = fetch_scalar(con.execute(f"SELECT count(*) FROM labeling_queue WHERE {where}", params))
    rows = fetch_dicts(
        con.execute(
            f"""
            SELECT {COLUMNS} FROM labeling_queue WHERE {where}
            ORDER BY {QUEUE_ORDER} LIMIT ? OFFSET ?
            """,
            [*params, limit, offset],
        )
    )
    return rows, int(total or 0)


def get_item(*, con: Connection, item_id: int, lock: bool = False) -> dict[str, Any] | None:
    """One item, or None; ``lock`` (inside a transaction) locks its row (``row_lock``)."""
    rows = fetch_dicts(
        con.execute(
            f"SELECT {COLUMNS} FROM labeling_queue WHERE item_id = ?{row_lock(con) if lock else ''}",
            [item_id],
        )
    )
    return rows[0] if rows else None


def item_for_frame(*, con: Connection, frame_key: str) -> dict[str, Any] | None:
    """The item of a frame, or None when it was never queued."""
    rows = fetch_dicts(
        con.execute(f"SELECT {COLUMNS} FROM labeling_queue WHERE frame_key = ?", [frame_key])
    )
    return rows[0] if rows else None


def next_item(
    *,
    con: Connection,
    camera_id: str | None,
    labeler: str | None = None,
    now: datetime | None = None,
    exclude: Sequence[int] = (),
    lock: bool = False,
) -> dict[str, Any] | None:
    """The item to label next: the first pending item in ``QUEUE_ORDER``; when none is
    pending, the least-skipped, longest-skipped item. None when nothing is left.

    With ``labeler`` and ``now``, items under another labeler's live claim are passed
    over; ``exclude`` passes over the given item ids (the page's current item when it
    prefetches the next). ``lock`` (inside a transaction) locks the row it returns and
    passes over rows another transaction holds (``row_lock(skip_locked=True)``).
    """
    where: list[str] = []
    params: list[Any] = []
    if camera_id is not None:
        where.append("camera_id = ?")
        params.append(camera_id)
    if labeler is not None and now is not None:
        where.append("(claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?)")
        params += [labeler, now]
    if exclude:
        where.append(f"item_id NOT IN ({', '.join('?' * len(exclude))})")
        params += list(exclude)
    eligible = " AND ".join(["status = 'pending'", *where])
    locked = row_lock(con, skip_locked=True) if lock else ""
    if is_postgres(con):  # the index labeling_queue_order reads QUEUE_ORDER's first row
        rows = fetch_dicts(
            con.execute(
                f"SELECT {COLUMNS} FROM labeling_queue WHERE {eligible} "
                f"ORDER BY {QUEUE_ORDER} LIMIT 1{locked}",
                params,
            )
        )
    else:
        # QUEUE_ORDER in two cheap passes instead of a sort of every pending item
        # (~118,000 at fleet scale): the top priority, then the newest item holding it.
        rows = fetch_dicts(
            con.execute(
                f"""
                SELECT {COLUMNS} FROM labeling_queue
                WHERE {eligible}
                  AND priority = (SELECT max(priority) FROM labeling_queue WHERE {eligible})
                ORDER BY created_at DESC, item_id DESC
                LIMIT 1
                """,
                params + params,
            )
        )
    if rows:
        return rows[0]
    rows = fetch_dicts(
        con.execute(
            f"""
            SELECT {COLUMNS} FROM labeling_queue
            WHERE {" AND ".join(["status = 'skipped'", *where])}
            ORDER BY skip_count, updated_at, priority DESC, item_id DESC
            LIMIT 1{locked}
            """,
            params,
        )
    )
    return rows[0] if rows else None


def claim_next(
    *,
    con: Connection,
    camera_id: str | None,
    labeler: str,
    now: datetime,
    lease: timedelta,
    exclude: Sequence[int] = (),
) -> dict[str, Any] | None:
    """Claim the next item (``next_item``) for ``labeler`` until ``now + lease``; the
    claimed row, or None when nothing is left for them. The caller's own live claim may
    be handed back again (a reload), unless excluded."""
    with CLAIMS, transaction(con):
        item = next_item(
            con=con, camera_id=camera_id, labeler=labeler, now=now, exclude=exclude, lock=True
        )
        if item is None:
            return None
        until = now + lease
        con.execute(
            "UPDATE labeling_queue SET claimed_by = ?, claimed_until = ? WHERE item_id = ?",
            [labeler, until, item["item_id"]],
        )
    return {**item, "claimed_by": labeler, "claimed_until": until}


def skip_item(*, con: Connection, item_id: int, labeler: str, now: datetime) -> None:
    """Mark an item skipped (skip_count + 1) and release its claim: it goes behind every
    pending item.

    Raises:
        LookupError: no such item.
        ClaimConflictError: another labeler holds a live claim on it, or it is labeled.
    """
    with CLAIMS, transaction(con):
        item = get_item(con=con, item_id=item_id, lock=True)
        if item is None:
            raise LookupError(f"no labeling-queue item {item_id}")
        if item["status"] == "labeled":
            raise ClaimConflictError(
                f"item {item_id} is already labeled; label it again with edit to change it",
                item_id=item_id,
                claimed_by=None,
                claimed_until=None,
            )
        check_claim(item=item, labeler=labeler, now=now)
        con.execute(
            """
            UPDATE labeling_queue
            SET status = 'skipped', skip_count = skip_count + 1, updated_at = ?,
                claimed_by = NULL, claimed_until = NULL
            WHERE item_id = ?
            """,
            [now, item_id],
        )


def mark_labeled(*, con: Connection, item_id: int, now: datetime) -> None:
    """Mark an item labeled and release its claim (``edgeloop.store.labels.create`` calls
    it in its transaction)."""
    con.execute(
        """
        UPDATE labeling_queue
        SET status = 'labeled', updated_at = ?, claimed_by = NULL, claimed_until = NULL
        WHERE item_id = ?
        """,
        [now, item_id],
    )


def _rescore(
    con: Connection,
    *,
    low: float,
    high: float,
    boost: float,
    boost_sql: str,
    drift_join: str,
    camera_filter: str,
    params: dict[str, object],
) -> int:
    if boost <= 0:
        raise ValueError(f"the priority boost must be > 0, got {boost}")
    score = uncertainty_score_sql("p.confidence", low, high)
    updated = con.execute(
        f"""
        UPDATE labeling_queue AS q SET priority = s.priority
        FROM (
            SELECT q.item_id,
                   coalesce(max({score}), 0.0) * {boost_sql} * max(q.diversity_weight) AS priority
            FROM labeling_queue q
            LEFT JOIN prediction_logs p ON p.frame_key = q.frame_key
            {drift_join}
            WHERE q.status = 'pending' {camera_filter}
            GROUP BY q.item_id
        ) AS s
        WHERE q.item_id = s.item_id
        RETURNING q.item_id
        """,
        {"boost": boost, **params},
    ).fetchall()
    return len(updated)


def rerank(*, con: Connection, low: float, high: float, drift_boost: float) -> int:
    """Recompute every pending item's priority: max uncertainty score × ``drift_boost`` for
    cameras whose latest drift report drifted (× 1 otherwise); idempotent.

    Args:
        low / high: the uncertainty band (exclusive), confidence in [0, 1].
        drift_boost: multiplier (> 0).

    Returns:
        Pending items re-ranked.

    Raises:
        ValueError: an empty band or a boost <= 0.
    """
    drifted = f"LEFT JOIN ({drift.LATEST_PER_CAMERA_SQL}) d ON d.camera_id = q.camera_id"
    return _rescore(
        con,
        low=low,
        high=high,
        boost=drift_boost,
        boost_sql="CASE WHEN bool_or(d.drifted) THEN $boost ELSE 1.0 END",
        drift_join=drifted,
        camera_filter="",
        params={},
    )


def boost_camera(*, con: Connection, camera_id: str, factor: float, low: float, high: float) -> int:
    """One camera's pending items: priority = max uncertainty score × ``factor``.

    Recomputed from the detections, not multiplied in place, so calling it again does not
    compound the boost. The drift sensor calls it for a drifted camera with no new labels.

    Returns:
        Pending items of the camera re-ranked (0 when it has none).

    Raises:
        ValueError: an empty band or a factor <= 0.
    """
    return _rescore(
        con,
        low=low,
        high=high,
        boost=factor,
        boost_sql="$boost",
        drift_join="",
        camera_filter="AND q.camera_id = $camera",
        params={"camera": camera_id},
    )


def ensure_item(*, con: Connection, frame_key: str, camera_id: str, now: datetime) -> int:
    """The item id of ``frame_key``, queued now (priority 0, no uncertain detection) when
    the frame was never queued: a label needs an item (``edgeloop.store.labels.create``),
    and the grid review labels frames the uncertainty band never queued. Idempotent."""
    con.execute(
        """
        INSERT INTO labeling_queue
            (frame_key, camera_id, priority, uncertain_count, created_at, updated_at)
        VALUES (?, ?, 0.0, 0, ?, ?)
        ON CONFLICT DO NOTHING
        """,
        [frame_key, camera_id, now, now],
    )
    item_id = fetch_scalar(
        con.execute("SELECT item_id FROM labeling_queue WHERE frame_key = ?", [frame_key])
    )
    return int(item_id)
