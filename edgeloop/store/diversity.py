"""The labeling queue's near-duplicate marks: the rows the rule reads, the marks it writes.

The rule itself is ``edgeloop.diversity`` (pure). The ``labeling_queue`` asset clears the
pending items' marks and re-ranks them (``clear_marks``, then
``edgeloop.store.queue.rerank``), reads the frames here (``queue_detections``), compares
their crop vectors, and marks the near-duplicates (``mark_near_duplicates``). A mark is two
columns of ``labeling_queue`` (migration 14): ``near_duplicate_of``, the item it is too
like, and ``diversity_weight``, the factor every re-rank (``queue.rerank``, and the drift
sensor's ``queue.boost_camera``) multiplies its priority by, so a mark lasts until the
next pass. The table's owner is ``edgeloop.store.queue``, whose ``next_item`` reads pending
items by priority and hands out skipped items only when nothing is pending, so a marked
item is never lost: with weight 0 it comes after every item with an uncertain detection.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from edgeloop.store.connection import Connection
from edgeloop.store.queue import QUEUE_ORDER

NEAR_DUPLICATE_FACTOR = 0.0
"""Default multiplier of a near-duplicate's priority. 0 puts near-duplicates after every
item that has an uncertain detection (whose uncertainty score, and so priority, is > 0:
``edgeloop.rules.uncertainty_scores`` is 0 only at and outside the band's edges); an
edgeloop default, not from the seed."""


QueueDetection = tuple[int, str, str, str, str, tuple[float, float, float, float]]
"""``(item_id, camera_id, status, detection_id, jpeg_path, bbox xyxy px)`` of one detection."""


def queue_detections(*, con: Connection) -> list[QueueDetection]:
    """The detections of every pending and labeled item whose frame JPEG is stored, one row
    per detection (``QueueDetection``; status ``pending`` or ``labeled``).

    Labeled items first, then pending items in ``QUEUE_ORDER`` (the order the rule visits
    them); an item's detections are adjacent. Items whose frame has no detection or no
    stored JPEG are left out (they have no crop to compare, so the rule keeps them).
    """
    order = ", ".join(f"q.{part.strip()}" for part in QUEUE_ORDER.split(","))
    rows = con.execute(
        f"""
        SELECT q.item_id, q.camera_id, q.status, p.detection_id, f.jpeg_path,
               p.x1, p.y1, p.x2, p.y2
        FROM labeling_queue q
        JOIN frames f ON f.frame_key = q.frame_key
        JOIN prediction_logs p ON p.frame_key = q.frame_key
        WHERE q.status IN ('pending', 'labeled') AND f.jpeg_path IS NOT NULL
        ORDER BY CASE WHEN q.status = 'labeled' THEN 0 ELSE 1 END, {order}, p.detection_id
        """
    ).fetchall()
    return [
        (int(i), str(c), str(s), str(d), str(j), (float(x1), float(y1), float(x2), float(y2)))
        for i, c, s, d, j, x1, y1, x2, y2 in rows
    ]


def clear_marks(*, con: Connection) -> int:
    """Unmark every pending item (weight 1, no ``near_duplicate_of``); returns how many
    were marked. Priorities are left as they are: ``queue.rerank`` recomputes them."""
    rows = con.execute(
        """
        UPDATE labeling_queue SET near_duplicate_of = NULL, diversity_weight = 1.0
        WHERE status = 'pending' AND (near_duplicate_of IS NOT NULL OR diversity_weight <> 1.0)
        RETURNING item_id
        """
    ).fetchall()
    return len(rows)


def mark_near_duplicates(
    *, con: Connection, marks: Sequence[tuple[int, int]], factor: float
) -> int:
    """Mark pending items as near-duplicates: ``near_duplicate_of`` = the other item,
    ``diversity_weight`` = ``factor``, and priority × ``factor`` now (so the queue is in
    order before the next re-rank); returns how many were marked. Items no longer pending
    (labeled or skipped meanwhile) are left alone. Call it after ``clear_marks`` and
    ``queue.rerank`` (which multiplies by the weight again), never twice in a row.

    Args:
        marks: ``(item_id, item_id of the labeled or kept item it is like)`` pairs.
        factor: in [0, 1): 0 puts them after every item with an uncertain detection.

    Raises:
        ValueError: ``factor`` outside [0, 1) (1 would rank nothing down).
    """
    if not 0.0 <= factor < 1.0:
        raise ValueError(f"the near-duplicate factor must be in [0, 1), got {factor}")
    if not marks:
        return 0
    table = pa.table(
        {
            "item_id": pa.array([m[0] for m in marks], pa.int64()),
            "of_item_id": pa.array([m[1] for m in marks], pa.int64()),
        }
    )
    con.register("near_duplicate_marks", table)
    try:
        rows = con.execute(
            """
            UPDATE labeling_queue AS q
            SET near_duplicate_of = m.of_item_id, diversity_weight = ?,
                priority = q.priority * ?
            FROM near_duplicate_marks AS m
            WHERE q.item_id = m.item_id AND q.status = 'pending'
            RETURNING q.item_id
            """,
            [factor, factor],
        ).fetchall()
    finally:
        con.unregister("near_duplicate_marks")
    return len(rows)
