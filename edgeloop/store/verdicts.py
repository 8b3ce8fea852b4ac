"""The ``review_verdicts`` table: what a person said of each crop and audited frame of the
grid review, and the audit sample's frames with no detection.

A verdict is on a detection (``target_kind = 'detection'``, ``target_id`` its
``detection_id``: ``ok``, ``wrong`` or ``wrong_class`` with the ``corrected_class``) or on
a frame with no detection (``'frame'``, its ``frame_key``: ``ok``, nothing there, or
``missed``, an object the model never boxed). ``audit`` says whether the target was in the
audit sample when reviewed (``edgeloop.audit``: a confident detection, or a detection-less
frame, of a sampled frame); only those rows give the confident-mistake and miss rates, since
the rest of the grid is chosen by confidence and would bias them. One verdict per target:
a second one is ignored (the grid only shows frames no one has labeled or audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

from edgeloop.audit import audit_sample_sql
from edgeloop.store.connection import Connection, fetch_dicts

TargetKind = Literal["detection", "frame"]
Verdict = Literal["ok", "wrong", "wrong_class", "missed"]
MISTAKES = ("wrong", "wrong_class")
"""Detection verdicts that count as the model's mistake."""

COLUMNS = (
    "target_kind",
    "target_id",
    "frame_key",
    "camera_id",
    "class_name",
    "confidence",
    "verdict",
    "corrected_class",
    "audit",
    "reviewer",
    "reviewed_at",
    "label_id",
)


class VerdictRow(TypedDict):
    """One row of ``review_verdicts`` (``COLUMNS``).

    ``class_name`` / ``confidence``: the model's, for a detection (None for a frame);
    ``corrected_class``: a wrong_class verdict's class; ``reviewed_at``: UTC; ``label_id``:
    the reviewed label the verdict went into (None for a missed frame, sent to the queue).
    """

    target_kind: TargetKind
    target_id: str
    frame_key: str
    camera_id: str
    class_name: str | None
    confidence: float | None
    verdict: Verdict
    corrected_class: str | None
    audit: bool
    reviewer: str
    reviewed_at: datetime
    label_id: int | None


def record(*, con: Connection, rows: Sequence[VerdictRow]) -> int:
    """Store verdicts in one statement; a target with a verdict already keeps its first.

    Returns:
        Rows given (0 stores nothing).
    """
    if not rows:
        return 0
    values = ", ".join(f"({', '.join('?' * len(COLUMNS))})" for _ in rows)
    con.execute(
        f"INSERT INTO review_verdicts ({', '.join(COLUMNS)}) VALUES {values} ON CONFLICT DO NOTHING",
        [row[c] for row in rows for c in COLUMNS],  # type: ignore[literal-required]
    )
    return len(rows)


def for_frames(*, con: Connection, frame_keys: Sequence[str]) -> list[dict[str, Any]]:
    """The verdicts on these frames and their detections (``COLUMNS``), by target."""
    if not frame_keys:
        return []
    marks = ", ".join("?" * len(frame_keys))
    return fetch_dicts(
        con.execute(
            f"SELECT {', '.join(COLUMNS)} FROM review_verdicts WHERE frame_key IN ({marks}) "
            "ORDER BY target_kind, target_id",
            list(frame_keys),
        )
    )


def audit_frames(
    *,
    con: Connection,
    share: float,
    camera_id: str | None,
    labeler: str,
    now: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """Frames with no detection in the audit sample at ``share`` that a person may review:
    with a stored JPEG, never labeled nor audited, not under another labeler's live claim;
    oldest capture first.

    Returns:
        Dicts with ``frame_key``, ``camera_id``, ``width``, ``height`` (px), ``captured_at``.
    """
    sample, params = audit_sample_sql("f.frame_key", share)
    where = ["f.detection_count = 0", "f.jpeg_path IS NOT NULL", sample]
    if camera_id is not None:
        where.append("f.camera_id = ?")
        params.append(camera_id)
    return fetch_dicts(
        con.execute(
            f"""
            SELECT f.frame_key, f.camera_id, f.width, f.height, f.captured_at
            FROM frames f LEFT JOIN labeling_queue q ON q.frame_key = f.frame_key
            WHERE {" AND ".join(where)}
              AND coalesce(q.status, 'pending') <> 'labeled'
              AND (q.claimed_by IS NULL OR q.claimed_by = ? OR q.claimed_until <= ?)
              AND NOT EXISTS (SELECT 1 FROM reviewed_labels r WHERE r.frame_key = f.frame_key)
              AND NOT EXISTS (
                  SELECT 1 FROM review_verdicts v
                  WHERE v.target_kind = 'frame' AND v.target_id = f.frame_key
              )
            ORDER BY f.captured_at, f.frame_key
            LIMIT ?
            """,
            [*params, labeler, now, limit],
        )
    )


def audit_counts(*, con: Connection, since: datetime | None) -> dict[str, Any]:
    """The audited verdicts reviewed at or after ``since`` (UTC; None: all).

    Returns:
        ``{"classes": [{"class_name", "audited", "wrong", "wrong_class"}, ...] (by class
        name), "frames": {"audited", "missed"}}``: confident detections audited per model
        class, and frames with no detection audited.
    """
    when = "" if since is None else "AND reviewed_at >= ?"
    params = [] if since is None else [since]
    classes = fetch_dicts(
        con.execute(
            f"""
            SELECT class_name, count(*) AS audited,
                   count(*) FILTER (WHERE verdict = 'wrong') AS wrong,
                   count(*) FILTER (WHERE verdict = 'wrong_class') AS wrong_class
            FROM review_verdicts
            WHERE audit AND target_kind = 'detection' {when}
            GROUP BY class_name ORDER BY class_name
            """,
            params,
        )
    )
    frames = fetch_dicts(
        con.execute(
            f"""
            SELECT count(*) AS audited, count(*) FILTER (WHERE verdict = 'missed') AS missed
            FROM review_verdicts WHERE audit AND target_kind = 'frame' {when}
            """,
            params,
        )
    )[0]
    return {
        "classes": [
            {k: (v if k == "class_name" else int(v)) for k, v in c.items()} for c in classes
        ],
        "frames": {k: int(v or 0) for k, v in frames.items()},
    }
