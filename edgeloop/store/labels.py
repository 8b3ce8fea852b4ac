"""The ``reviewed_labels`` table: what people said each frame holds.

One label per item; a deliberate edit adds a row that names the one it replaces
(``replaces_label_id``), and the newest row of a frame is its label (``LATEST_LABELS_SQL``).
"Labels since the last training run" counts frames whose newest label is newer than the
last training run's label cutoff, so 20 labels on one frame count once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from edgeloop.annotations import REVIEWED_BOXES, ReviewedBox
from edgeloop.store import queue, training_runs
from edgeloop.store.connection import (
    Connection,
    fetch_dicts,
    fetch_scalar,
    parse_json,
    transaction,
)

LATEST_LABELS_SQL = """
SELECT * FROM reviewed_labels
QUALIFY row_number() OVER (PARTITION BY frame_key ORDER BY labeled_at DESC, label_id DESC) = 1
"""
"""The newest reviewed label of each frame, as SQL for a CTE (a relation registered as a
view would keep the connection alive after close)."""


def create(
    *,
    con: Connection,
    item_id: int,
    frame_key: str,
    camera_id: str,
    boxes: Sequence[ReviewedBox],
    labeler: str,
    labeled_at: datetime,
    edit: bool = False,
) -> int:
    """Store a reviewed label and mark its queue item ``labeled``, in one transaction.

    One item, one label: a second label on a labeled item is refused unless ``edit`` says
    it is a deliberate correction, which is stored as a new row with
    ``replaces_label_id`` set to the label it supersedes (the newest label of a frame is
    the one used). An item under another labeler's live claim is refused
    (``edgeloop.store.queue`` claims). The item is read under a row lock in the same
    transaction, so two labels posted at once on one item (on two API replicas) store one.

    Args:
        boxes: validated boxes (``edgeloop.annotations.review_boxes``); empty for a frame
            with no object.
        labeler: who labels (the token's name).
        labeled_at: timezone-aware UTC.
        edit: True to replace the item's existing label.

    Returns:
        The new ``label_id``.

    Raises:
        LookupError: no such item.
        edgeloop.store.queue.ClaimConflictError: claimed by someone else, or labeled
            already and ``edit`` is False.
        duckdb.Error, psycopg.Error: rolled back; nothing is stored.
    """
    with queue.CLAIMS, transaction(con):
        item = queue.get_item(con=con, item_id=item_id, lock=True)
        if item is None:
            raise LookupError(f"no labeling-queue item {item_id}")
        queue.check_claim(item=item, labeler=labeler, now=labeled_at)
        replaces = None
        if item["status"] == "labeled":
            previous = latest_for_frame(con=con, frame_key=frame_key)
            if not edit:
                by = f" by {previous['labeler']}" if previous else ""
                raise queue.ClaimConflictError(
                    f"item {item_id} is already labeled{by}; send edit: true to replace its label",
                    item_id=item_id,
                    claimed_by=None,
                    claimed_until=None,
                )
            replaces = previous["label_id"] if previous else None
        label_id = fetch_scalar(
            con.execute(
                """
                INSERT INTO reviewed_labels
                    (item_id, frame_key, camera_id, boxes, box_count, labeler, labeled_at,
                     replaces_label_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                RETURNING label_id
                """,
                [
                    item_id,
                    frame_key,
                    camera_id,
                    REVIEWED_BOXES.dump_json(list(boxes)).decode(),
                    len(boxes),
                    labeler,
                    labeled_at,
                    replaces,
                ],
            )
        )
        queue.mark_labeled(con=con, item_id=item_id, now=labeled_at)
    return int(label_id)


def _with_boxes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["boxes"] = REVIEWED_BOXES.validate_python(parse_json(row["boxes"]) or [])
    return rows


def get(*, con: Connection, label_id: int) -> dict[str, Any] | None:
    """One label row, ``boxes`` as ``list[ReviewedBox]``; None when absent."""
    rows = fetch_dicts(con.execute("SELECT * FROM reviewed_labels WHERE label_id = ?", [label_id]))
    return _with_boxes(rows)[0] if rows else None


def latest_for_frame(*, con: Connection, frame_key: str) -> dict[str, Any] | None:
    """The newest label of a frame, ``boxes`` as ``list[ReviewedBox]``; None when unlabeled."""
    rows = fetch_dicts(
        con.execute(
            """
            SELECT * FROM reviewed_labels WHERE frame_key = ?
            ORDER BY labeled_at DESC, label_id DESC LIMIT 1
            """,
            [frame_key],
        )
    )
    return _with_boxes(rows)[0] if rows else None


def count(*, con: Connection) -> int:
    """Every reviewed label row (re-labels included)."""
    return int(fetch_scalar(con.execute("SELECT count(*) FROM reviewed_labels")) or 0)


def since_last_training(*, con: Connection) -> int:
    """Frames whose newest label is newer than the last training run's label cutoff (all
    labeled frames when no run has trained yet)."""
    value = fetch_scalar(
        con.execute(
            f"""
            WITH latest AS ({LATEST_LABELS_SQL})
            SELECT count(*) FROM latest WHERE labeled_at > {training_runs.LATEST_CUTOFF_SQL}
            """
        )
    )
    return int(value or 0)


def newest_label_id(*, con: Connection) -> int:
    """The highest ``label_id`` stored (0 when none): names the label-count trigger."""
    return int(fetch_scalar(con.execute("SELECT max(label_id) FROM reviewed_labels")) or 0)


def latest_with_frames(*, con: Connection) -> list[dict[str, Any]]:
    """The newest label of every frame, with the frame's JPEG path and size, by frame_key.

    Keys: ``label_id``, ``frame_key``, ``camera_id``, ``boxes`` (``list[ReviewedBox]``),
    ``labeled_at`` (ISO 8601 UTC text, microseconds), ``jpeg_path``, ``width``, ``height``
    (None when the frame row is missing).
    """
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH latest_reviewed_labels AS ({LATEST_LABELS_SQL})
            SELECT l.label_id, l.frame_key, l.camera_id, CAST(l.boxes AS VARCHAR) AS boxes,
                   strftime(l.labeled_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS labeled_at,
                   f.jpeg_path, f.width, f.height
            FROM latest_reviewed_labels l LEFT JOIN frames f USING (frame_key)
            ORDER BY l.frame_key
            """
        )
    )
    return _with_boxes(rows)
