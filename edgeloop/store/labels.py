"""The ``reviewed_labels`` table: what people said each frame holds.

One label per item; a deliberate edit adds a row that names the one it replaces
(``replaces_label_id``), and the newest row of a frame is its label (``LATEST_LABELS_SQL``).
"Labels since the last training run" counts frames whose newest label is newer than the
last training run's label cutoff, so 20 labels on one frame count once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from edgeloop.annotations import REVIEWED_BOXES, ReviewedBox
from edgeloop.audit import audit_sample_sql
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
    with_label: Callable[[int], None] | None = None,
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
        with_label: called with the new ``label_id`` inside the same transaction, for rows
            that must be stored with the label or not at all (the grid review's verdicts).

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
        if with_label is not None:
            with_label(int(label_id))
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


def previous_of_labeler(
    *, con: Connection, labeler: str, before_label_id: int | None = None
) -> dict[str, Any] | None:
    """The frame ``labeler`` labeled most recently (by their newest label on each frame),
    or the one before the frame whose newest label by them is ``before_label_id``.

    Returns:
        ``{"item_id", "frame_key", "label_id"}`` (``label_id``: their newest label on that
        frame, the cursor for the one before), or None when there is none.
    """
    cursor = "" if before_label_id is None else "WHERE last_id < ?"
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH mine AS (
                SELECT frame_key, max(label_id) AS last_id FROM reviewed_labels
                WHERE labeler = ? GROUP BY frame_key
            )
            SELECT r.item_id, r.frame_key, r.label_id
            FROM mine JOIN reviewed_labels r ON r.label_id = mine.last_id
            {cursor}
            ORDER BY mine.last_id DESC LIMIT 1
            """,
            [labeler] + ([] if before_label_id is None else [before_label_id]),
        )
    )
    return rows[0] if rows else None


def previous_on_camera(
    *, con: Connection, camera_id: str, captured_before: datetime
) -> dict[str, Any] | None:
    """The label of the camera's latest labeled frame captured before ``captured_before``
    (UTC): what a fixed camera's next frame most likely holds. ``boxes`` as
    ``list[ReviewedBox]``; None when no earlier frame of the camera is labeled."""
    rows = fetch_dicts(
        con.execute(
            f"""
            WITH latest AS ({LATEST_LABELS_SQL})
            SELECT l.* FROM latest l JOIN frames f USING (frame_key)
            WHERE l.camera_id = ? AND f.camera_id = ? AND f.captured_at < ?
            ORDER BY f.captured_at DESC, l.label_id DESC LIMIT 1
            """,
            [camera_id, camera_id, captured_before],
        )
    )
    return _with_boxes(rows)[0] if rows else None


def review_candidates(
    *,
    con: Connection,
    class_name: str | None,
    camera_id: str | None,
    min_confidence: float,
    labeler: str,
    now: datetime,
    limit: int,
    audit_share: float | None = None,
) -> list[dict[str, Any]]:
    """Detections for the grid review: of frames no one has labeled, with a stored JPEG
    and not under another labeler's live claim (``edgeloop.store.queue``), least
    confident first.

    Args:
        class_name / camera_id: only this class / camera (None: any).
        min_confidence: in [0, 1]; only detections at least this confident.
        audit_share: only detections of frames in the audit sample at this share
            (``edgeloop.audit``; None: any frame).
        labeler: who reviews (their own claims do not hide a frame).
        now: UTC, for the claims.
        limit: at most this many detections.

    Returns:
        Dicts with ``detection_id``, ``frame_key``, ``camera_id``, ``class_name``,
        ``confidence``, ``x1``..``y2`` (px of the original frame), ``width``, ``height``.
    """
    where = ["f.jpeg_path IS NOT NULL", "p.confidence >= ?"]
    params: list[Any] = [min_confidence]
    if class_name is not None:
        where.append("p.class_name = ?")
        params.append(class_name)
    if camera_id is not None:
        where.append("p.camera_id = ?")
        params.append(camera_id)
    if audit_share is not None:
        sample, sample_params = audit_sample_sql("f.frame_key", audit_share)
        where.append(sample)
        params += sample_params
    return fetch_dicts(
        con.execute(
            f"""
            SELECT p.detection_id, p.frame_key, p.camera_id, p.class_name, p.confidence,
                   p.x1, p.y1, p.x2, p.y2, f.width, f.height
            FROM prediction_logs p JOIN frames f ON f.frame_key = p.frame_key
            LEFT JOIN labeling_queue q ON q.frame_key = p.frame_key
            WHERE {" AND ".join(where)}
              AND coalesce(q.status, 'pending') <> 'labeled'
              AND (q.claimed_by IS NULL OR q.claimed_by = ? OR q.claimed_until <= ?)
              AND NOT EXISTS (SELECT 1 FROM reviewed_labels r WHERE r.frame_key = p.frame_key)
            ORDER BY p.confidence, p.detection_id
            LIMIT ?
            """,
            [*params, labeler, now, limit],
        )
    )
