"""The labeling queue's near-duplicate pass: the rows the rule reads, the ranks it writes.

The rule itself is ``edgeloop.diversity`` (pure); the ``labeling_queue`` asset reads the
frames here, their crop vectors from the crop index, and ranks the marked items down
here, right after ``edgeloop.store.queue.rerank`` has recomputed every pending priority
(so ranking down never compounds from one run to the next). This module writes only
``labeling_queue.priority`` of pending items; the table's owner is
``edgeloop.store.queue``, whose ``next_item`` reads pending items by priority and hands
out skipped items only when nothing is pending, so a ranked-down item is never lost.
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


def rank_down(*, con: Connection, item_ids: Sequence[int], factor: float) -> int:
    """Multiply the priority of the given pending items by ``factor``; returns how many
    changed. Items no longer pending (labeled or skipped meanwhile) are left alone.

    Call it once per ``edgeloop.store.queue.rerank`` (which recomputes priorities from the
    detections), or the factor compounds.

    Raises:
        ValueError: ``factor`` outside [0, 1) (1 would rank nothing down).
    """
    if not 0.0 <= factor < 1.0:
        raise ValueError(f"the near-duplicate factor must be in [0, 1), got {factor}")
    if not item_ids:
        return 0
    con.register("near_duplicate_items", pa.table({"item_id": pa.array(item_ids, pa.int64())}))
    try:
        rows = con.execute(
            """
            UPDATE labeling_queue SET priority = priority * ?
            WHERE status = 'pending'
              AND item_id IN (SELECT item_id FROM near_duplicate_items)
            RETURNING item_id
            """,
            [factor],
        ).fetchall()
    finally:
        con.unregister("near_duplicate_items")
    return len(rows)
