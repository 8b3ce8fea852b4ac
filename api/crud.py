"""Data access of the API: keyword-only functions over an open DuckDB connection.

Callers open the connection with ``edgeloop.store.Store.connect()`` (short-lived, retrying
on lock) and keep it only for the queries: heavy work (parsing, Arrow building, file
writes) happens before. Boxes are stored as ``x1, y1, x2, y2`` pixels of the original
frame; times are TIMESTAMPTZ (UTC).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from api.ingest import IngestTables
from api.models import (
    CameraMetricsPublic,
    DeploymentPublic,
    HealthCounts,
    InspectionLogPublic,
    ProposedBoxPublic,
    QueueItemPublic,
    RetrainingEventPublic,
)

HISTOGRAM_BINS = 10


def frame_url(frame_key: str) -> str:
    """Path of a frame's JPEG on this API."""
    return f"/api/frames/{frame_key}.jpg"


def _dicts(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The last result of ``con`` as dicts keyed by column name."""
    names = [d[0] for d in con.description or []]
    return [dict(zip(names, row, strict=True)) for row in con.fetchall()]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- ingest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    detections: int
    queued: int


def insert_ingest_tables(*, con: duckdb.DuckDBPyConnection, tables: IngestTables) -> IngestResult:
    """Insert a batch in one transaction, one Arrow insert per table; skip stored frames.

    Frames whose ``frame_key`` is already stored are skipped (``ON CONFLICT DO NOTHING``
    on the primary key) together with their detections and queue rows; the insert of the
    frames returns the keys it stored, which then select the other rows.

    Raises:
        duckdb.Error: the transaction was rolled back; nothing of the batch is stored.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("ingest_frames", tables.frames)
        stored = con.execute(
            "INSERT INTO frames BY NAME SELECT * FROM ingest_frames "
            "ON CONFLICT DO NOTHING RETURNING frame_key"
        ).fetchall()
        detections, queue = tables.detections, tables.queue
        if len(stored) < tables.frames.num_rows:
            keys = pa.array([row[0] for row in stored], pa.string())
            detections = detections.filter(pc.is_in(detections["frame_key"], value_set=keys))
            queue = queue.filter(pc.is_in(queue["frame_key"], value_set=keys))
        if detections.num_rows:
            con.register("ingest_detections", detections)
            con.execute("INSERT INTO prediction_logs BY NAME SELECT * FROM ingest_detections")
        if queue.num_rows:
            con.register("ingest_queue", queue)
            con.execute(
                "INSERT INTO labeling_queue BY NAME SELECT * FROM ingest_queue "
                "ON CONFLICT (frame_key) DO NOTHING"
            )
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # keep the original error
            con.execute("ROLLBACK")
        raise
    finally:
        for name in ("ingest_frames", "ingest_detections", "ingest_queue"):
            con.unregister(name)
    return IngestResult(accepted=len(stored), detections=detections.num_rows, queued=queue.num_rows)


# --- health and metrics -------------------------------------------------------------------


def schema_version(*, con: duckdb.DuckDBPyConnection) -> int | None:
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def health_counts(*, con: duckdb.DuckDBPyConnection) -> HealthCounts:
    row = con.execute(
        """
        SELECT (SELECT count(*) FROM frames),
               (SELECT count(*) FROM prediction_logs),
               (SELECT count(*) FROM labeling_queue WHERE status = 'pending'),
               (SELECT count(*) FROM reviewed_labels)
        """
    ).fetchone()
    assert row is not None
    return HealthCounts(
        frames=row[0], detections=row[1], queue_pending=row[2], reviewed_labels=row[3]
    )


def queue_counts(*, con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Queue items per status (``pending``, ``skipped``, ``labeled``; zero when absent)."""
    counts = {"pending": 0, "skipped": 0, "labeled": 0}
    for status, n in con.execute(
        "SELECT status, count(*) FROM labeling_queue GROUP BY status"
    ).fetchall():
        counts[status] = int(n)
    return counts


def camera_metrics(
    *, con: duckdb.DuckDBPyConnection, window_s: float, now: datetime
) -> list[CameraMetricsPublic]:
    """Per-camera ingest figures; frames/s counts frames received in ``(now - window_s, now]``."""
    frames = _dicts(
        con.execute(
            """
            SELECT camera_id,
                   count(*) AS frames,
                   sum(detection_count) AS detections,
                   count(*) FILTER (WHERE received_at > ?::TIMESTAMPTZ - to_seconds(?)) AS recent,
                   avg(inference_ms) AS mean_inference_ms,
                   avg(CASE WHEN detection_count > 0 THEN 1.0 ELSE 0.0 END) AS defect_rate,
                   max(received_at) AS last_received_at
            FROM frames GROUP BY camera_id ORDER BY camera_id
            """,
            [now, window_s],
        )
    )
    histograms: dict[str, list[int]] = {}
    for camera_id, bin_index, n in con.execute(
        f"""
        SELECT camera_id, least(floor(confidence * {HISTOGRAM_BINS}), {HISTOGRAM_BINS - 1})::INTEGER,
               count(*)
        FROM prediction_logs GROUP BY ALL
        """
    ).fetchall():
        histograms.setdefault(camera_id, [0] * HISTOGRAM_BINS)[bin_index] = int(n)
    return [
        CameraMetricsPublic(
            camera_id=row["camera_id"],
            frames=row["frames"],
            detections=int(row["detections"] or 0),
            frames_per_s=row["recent"] / window_s,
            mean_inference_ms=row["mean_inference_ms"],
            confidence_histogram=histograms.get(row["camera_id"], [0] * HISTOGRAM_BINS),
            defect_rate=float(row["defect_rate"]),
            last_received_at=row["last_received_at"],
        )
        for row in frames
    ]


# --- inspection logs ----------------------------------------------------------------------


def list_inspection_logs(
    *,
    con: duckdb.DuckDBPyConnection,
    camera_id: str | None,
    since: datetime | None,
    until: datetime | None,
    uncertain: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[InspectionLogPublic], int]:
    """Detections joined with their frames, newest capture first; and the total count."""
    where = ["TRUE"]
    params: list[Any] = []
    if camera_id is not None:
        where.append("p.camera_id = ?")
        params.append(camera_id)
    if since is not None:
        where.append("p.captured_at >= ?")
        params.append(since)
    if until is not None:
        where.append("p.captured_at < ?")
        params.append(until)
    if uncertain is not None:
        where.append("p.uncertain = ?")
        params.append(uncertain)
    condition = " AND ".join(where)
    count_row = con.execute(
        f"SELECT count(*) FROM prediction_logs p WHERE {condition}", params
    ).fetchone()
    rows = _dicts(
        con.execute(
            f"""
            SELECT p.detection_id, p.frame_key, p.camera_id, f.frame_index, p.captured_at,
                   f.received_at, p.class_id, p.class_name, p.confidence,
                   p.x1, p.y1, p.x2, p.y2, p.uncertain, p.model_version, f.width, f.height,
                   f.jpeg_path IS NOT NULL AS has_jpeg
            FROM prediction_logs p JOIN frames f USING (frame_key)
            WHERE {condition}
            ORDER BY p.captured_at DESC, p.detection_id
            LIMIT ? OFFSET ?
            """,
            [*params, limit, offset],
        )
    )
    logs = [
        InspectionLogPublic(
            **{k: v for k, v in row.items() if k not in ("x1", "y1", "x2", "y2", "has_jpeg")},
            bbox_xyxy=(row["x1"], row["y1"], row["x2"], row["y2"]),
            frame_url=frame_url(row["frame_key"]) if row["has_jpeg"] else None,
        )
        for row in rows
    ]
    return logs, int(count_row[0]) if count_row else 0


# --- frames -------------------------------------------------------------------------------


def get_frame(*, con: duckdb.DuckDBPyConnection, frame_key: str) -> dict[str, Any] | None:
    """The ``frames`` row of ``frame_key`` as a dict, or None."""
    rows = _dicts(con.execute("SELECT * FROM frames WHERE frame_key = ?", [frame_key]))
    return rows[0] if rows else None


def frame_detections(*, con: duckdb.DuckDBPyConnection, frame_key: str) -> list[ProposedBoxPublic]:
    """The frame's detections, in the order the detector produced them."""
    rows = _dicts(
        con.execute(
            """
            SELECT detection_id, class_id, class_name, confidence, uncertain, x1, y1, x2, y2
            FROM prediction_logs WHERE frame_key = ?
            ORDER BY CAST(split_part(detection_id, ':', -1) AS INTEGER)
            """,
            [frame_key],
        )
    )
    return [
        ProposedBoxPublic(
            detection_id=r["detection_id"],
            bbox_xyxy=(r["x1"], r["y1"], r["x2"], r["y2"]),
            class_id=r["class_id"],
            class_name=r["class_name"],
            confidence=r["confidence"],
            uncertain=r["uncertain"],
        )
        for r in rows
    ]


def detection_class_names(*, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Class names seen in ``prediction_logs``, indexed by class_id (gaps as ``class_<id>``).

    The fallback when no production model is registered.
    """
    pairs = con.execute(
        "SELECT class_id, any_value(class_name) FROM prediction_logs GROUP BY class_id"
    ).fetchall()
    if not pairs:
        return []
    names = {int(class_id): str(name) for class_id, name in pairs}
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)]


# --- labeling queue -----------------------------------------------------------------------

_QUEUE_COLUMNS = (
    "item_id, frame_key, camera_id, priority, uncertain_count, status, skip_count, "
    "created_at, updated_at"
)


def list_queue_items(
    *,
    con: duckdb.DuckDBPyConnection,
    status: str,
    camera_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[QueueItemPublic], int]:
    """Queue items with ``status``, highest priority first; and the total count."""
    where = "status = ?" + (" AND camera_id = ?" if camera_id is not None else "")
    params: list[Any] = [status] + ([camera_id] if camera_id is not None else [])
    count_row = con.execute(f"SELECT count(*) FROM labeling_queue WHERE {where}", params).fetchone()
    rows = _dicts(
        con.execute(
            f"""
            SELECT {_QUEUE_COLUMNS} FROM labeling_queue WHERE {where}
            ORDER BY priority DESC, item_id LIMIT ? OFFSET ?
            """,
            [*params, limit, offset],
        )
    )
    return [QueueItemPublic(**r) for r in rows], int(count_row[0]) if count_row else 0


def get_queue_item(*, con: duckdb.DuckDBPyConnection, item_id: int) -> QueueItemPublic | None:
    rows = _dicts(
        con.execute(f"SELECT {_QUEUE_COLUMNS} FROM labeling_queue WHERE item_id = ?", [item_id])
    )
    return QueueItemPublic(**rows[0]) if rows else None


def next_queue_item(
    *, con: duckdb.DuckDBPyConnection, camera_id: str | None
) -> QueueItemPublic | None:
    """The item to label next: the highest-priority pending item.

    Skipped items come back only when nothing is pending: least-skipped first, then the
    one skipped longest ago. Labeled items never come back here.
    """
    camera = " AND camera_id = ?" if camera_id is not None else ""
    rows = _dicts(
        con.execute(
            f"""
            SELECT {_QUEUE_COLUMNS} FROM labeling_queue
            WHERE status IN ('pending', 'skipped'){camera}
            ORDER BY (status = 'pending') DESC,
                     CASE WHEN status = 'pending' THEN priority ELSE 0 END DESC,
                     skip_count, updated_at, priority DESC, item_id
            LIMIT 1
            """,
            [camera_id] if camera_id is not None else [],
        )
    )
    return QueueItemPublic(**rows[0]) if rows else None


def skip_queue_item(*, con: duckdb.DuckDBPyConnection, item_id: int, now: datetime) -> None:
    """Mark an item skipped (skip_count + 1); it goes behind every pending item."""
    con.execute(
        """
        UPDATE labeling_queue
        SET status = 'skipped', skip_count = skip_count + 1, updated_at = ?
        WHERE item_id = ?
        """,
        [now, item_id],
    )


def create_label(
    *,
    con: duckdb.DuckDBPyConnection,
    item: QueueItemPublic,
    boxes: list[dict[str, Any]],
    labeler: str,
    labeled_at: datetime,
) -> int:
    """Store a reviewed label and mark the item ``labeled``, in one transaction.

    Args:
        boxes: ``[{"bbox_xyxy": [x1, y1, x2, y2], "class_id": int, "class_name": str}]``,
            px of the original frame; empty for a frame with no object.

    Returns:
        The new ``label_id``. A re-label adds a row; ``edgeloop.store.latest_labels`` keeps
        the newest per frame.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        row = con.execute(
            """
            INSERT INTO reviewed_labels
                (item_id, frame_key, camera_id, boxes, box_count, labeler, labeled_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            RETURNING label_id
            """,
            [
                item.item_id,
                item.frame_key,
                item.camera_id,
                json.dumps(boxes),
                len(boxes),
                labeler,
                labeled_at,
            ],
        ).fetchone()
        con.execute(
            "UPDATE labeling_queue SET status = 'labeled', updated_at = ? WHERE item_id = ?",
            [labeled_at, item.item_id],
        )
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # keep the original error
            con.execute("ROLLBACK")
        raise
    assert row is not None
    return int(row[0])


def latest_label(*, con: duckdb.DuckDBPyConnection, frame_key: str) -> dict[str, Any] | None:
    """The newest reviewed label of a frame (boxes parsed from JSON), or None."""
    rows = _dicts(
        con.execute(
            """
            SELECT * FROM reviewed_labels WHERE frame_key = ?
            ORDER BY labeled_at DESC, label_id DESC LIMIT 1
            """,
            [frame_key],
        )
    )
    if not rows:
        return None
    row = rows[0]
    row["boxes"] = _json(row["boxes"])
    return row


def get_label(*, con: duckdb.DuckDBPyConnection, label_id: int) -> dict[str, Any] | None:
    rows = _dicts(con.execute("SELECT * FROM reviewed_labels WHERE label_id = ?", [label_id]))
    if not rows:
        return None
    row = rows[0]
    row["boxes"] = _json(row["boxes"])
    return row


# --- drift and retraining -----------------------------------------------------------------


def latest_drift_reports(*, con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The newest ``drift_reports`` row of each camera (p_values parsed from JSON)."""
    rows = _dicts(
        con.execute(
            """
            SELECT * FROM drift_reports
            QUALIFY row_number() OVER (PARTITION BY camera_id ORDER BY computed_at DESC) = 1
            ORDER BY camera_id
            """
        )
    )
    for row in rows:
        row["p_values"] = _json(row["p_values"]) or {}
    return rows


def recent_retraining_events(
    *, con: duckdb.DuckDBPyConnection, limit: int = 20
) -> list[RetrainingEventPublic]:
    rows = _dicts(
        con.execute(
            """
            SELECT event_id, created_at, trigger, camera_id, decision, reason,
                   labels_since_training, run_key, dagster_run_id
            FROM retraining_events ORDER BY created_at DESC, event_id DESC LIMIT ?
            """,
            [limit],
        )
    )
    return [RetrainingEventPublic(**r) for r in rows]


def create_retraining_event(
    *,
    con: duckdb.DuckDBPyConnection,
    created_at: datetime,
    trigger: str,
    decision: str,
    reason: str,
    labels_since_training: int,
    dagster_run_id: str | None,
    camera_id: str | None = None,
    run_key: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Record a retraining decision; returns its ``event_id``."""
    row = con.execute(
        """
        INSERT INTO retraining_events
            (created_at, trigger, camera_id, decision, reason, labels_since_training,
             run_key, dagster_run_id, details)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        RETURNING event_id
        """,
        [
            created_at,
            trigger,
            camera_id,
            decision,
            reason,
            labels_since_training,
            run_key,
            dagster_run_id,
            json.dumps(details or {}),
        ],
    ).fetchone()
    assert row is not None
    return int(row[0])


# --- model deployments --------------------------------------------------------------------


def recent_deployments(
    *, con: duckdb.DuckDBPyConnection, model_name: str, limit: int = 20
) -> list[DeploymentPublic]:
    rows = _dicts(
        con.execute(
            """
            SELECT * FROM model_deployments WHERE model_name = ?
            ORDER BY created_at DESC, deployment_id DESC LIMIT ?
            """,
            [model_name, limit],
        )
    )
    for row in rows:
        row["metrics"] = _json(row["metrics"]) or {}
    return [DeploymentPublic(**r) for r in rows]


def latest_deployment_metrics(
    *, con: duckdb.DuckDBPyConnection, model_name: str, version: str
) -> dict[str, Any]:
    """Metrics JSON of the newest ``model_deployments`` row of a version ({} when none)."""
    row = con.execute(
        """
        SELECT metrics FROM model_deployments WHERE model_name = ? AND version = ?
        ORDER BY created_at DESC, deployment_id DESC LIMIT 1
        """,
        [model_name, version],
    ).fetchone()
    return (_json(row[0]) or {}) if row else {}
