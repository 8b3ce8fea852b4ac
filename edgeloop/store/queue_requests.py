"""Frames a person sends to the labeling queue by hand (the dataset browser's "send to
labeling queue"), with a priority.

The queue's rows are written by ``edgeloop.store.queue`` (``insert_items``: a frame
already queued keeps its item); this module adds the one step a hand-picked frame needs
on top: an item already pending or skipped is raised to at least the asked priority and
put back to pending, so the next labeler gets it first. A labeled frame stays labeled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from edgeloop.store import queue
from edgeloop.store.connection import Connection


def send(
    *, con: Connection, frame_keys: Sequence[str], priority: float, now: datetime
) -> dict[str, list[str]]:
    """Queue the stored frames ``frame_keys`` with ``priority`` (higher is sooner; the
    uncertainty scores the loop queues with are in [0, 1], so 1.0 or more puts a frame
    ahead of every automatic item).

    Returns:
        ``queued`` (new items), ``raised`` (items that were pending or skipped, now pending
        at ``max(priority, their own)``), ``labeled`` (left as they are) and ``unknown``
        (keys not stored), each sorted.

    Raises:
        ValueError: ``priority`` is negative or not finite.
    """
    if not 0.0 <= priority < float("inf"):
        raise ValueError(f"priority must be a finite number >= 0, got {priority}")
    keys = sorted(set(frame_keys))
    if not keys:
        return {"queued": [], "raised": [], "labeled": [], "unknown": []}
    marks = ", ".join("?" * len(keys))
    stored = dict(
        con.execute(
            f"SELECT frame_key, camera_id FROM frames WHERE frame_key IN ({marks})", keys
        ).fetchall()
    )
    status = dict(
        con.execute(
            f"SELECT frame_key, status FROM labeling_queue WHERE frame_key IN ({marks})", keys
        ).fetchall()
    )
    new = [k for k in keys if k in stored and k not in status]
    queued = []
    if new:
        queued = queue.insert_items(
            con=con,
            items=pa.table(
                {
                    "frame_key": pa.array(new, pa.string()),
                    "camera_id": pa.array([stored[k] for k in new], pa.string()),
                    "priority": pa.array([priority] * len(new), pa.float64()),
                    "uncertain_count": pa.array([0] * len(new), pa.int32()),
                    "created_at": pa.array([now] * len(new), pa.timestamp("us", tz="UTC")),
                    "updated_at": pa.array([now] * len(new), pa.timestamp("us", tz="UTC")),
                }
            ),
        )
    waiting = [k for k in keys if status.get(k) in ("pending", "skipped")]
    if waiting:
        con.execute(
            f"""
            UPDATE labeling_queue
            SET priority = greatest(priority, ?), status = 'pending', updated_at = ?
            WHERE frame_key IN ({", ".join("?" * len(waiting))}) AND status <> 'labeled'
            """,
            [priority, now, *waiting],
        )
    return {
        "queued": sorted(queued),
        "raised": waiting,
        "labeled": [k for k in keys if status.get(k) == "labeled"],
        "unknown": [k for k in keys if k not in stored],
    }
