"""The schema's shared names: every table, the id sequences, and the per-minute rollups'
binning (their ``CREATE`` statements and the runner are in ``edgeloop.store.migrations``).

Each table's reads and writes live in the module that owns it (see ``edgeloop.store``).
Boxes are xyxy pixels of the original frame; times are TIMESTAMPTZ (UTC).
"""

from __future__ import annotations

from typing import NamedTuple

TABLES = (
    "frames",
    "prediction_logs",
    "labeling_queue",
    "reviewed_labels",
    "retraining_events",
    "model_deployments",
    "training_runs",
    "drift_reports",
    "agent_heartbeats",
    "site_classes",
    "class_aliases",
    "class_changes",
    "drift_alerts",
    "tags",
    "prediction_batches",
    "prediction_batch_images",
    "prediction_batch_runs",
    "prediction_batch_detections",
    "review_verdicts",
    "dataset_versions",
    "dataset_frames",
)
"""Every loop table that holds a site's records (``edgeloop store copy`` copies them), in an
order that keeps references valid. Not here: ``schema_version``, the rollups and
``confidence_bins`` (rebuilt from the rows), ``stack_identity`` (a site's own), and
``thumbnails`` (a cache of objects made again on demand)."""
SEQUENCES = (
    ("labeling_queue_seq", "labeling_queue", "item_id"),
    ("reviewed_labels_seq", "reviewed_labels", "label_id"),
    ("retraining_events_seq", "retraining_events", "event_id"),
    ("model_deployments_seq", "model_deployments", "deployment_id"),
    ("site_classes_seq", "site_classes", "class_id"),
    ("class_changes_seq", "class_changes", "change_id"),
    ("drift_alerts_seq", "drift_alerts", "alert_id"),
    ("prediction_batches_seq", "prediction_batches", "batch_id"),
)
"""``(sequence, table, id column)``: the ids a sequence hands out."""


ROLLUP_BINS = 20
"""Confidence bins of the per-minute rollups over [0, 1] (width 0.05): the console's
histogram has 20 bins, ``/api/metrics``' 10, and any count of bins dividing 20 folds from
them exactly (``edgeloop.store.rollups``)."""


def bin_sql(bins: int) -> str:
    """A detection's confidence bin among ``bins`` equal bins over [0, 1] (0 .. bins - 1,
    confidence 1.0 in the last), as SQL."""
    return f"least(floor(confidence * {int(bins)}), {int(bins) - 1})::INTEGER"


def rollup_sql(frames: str, detections: str) -> list[str]:
    """PostgreSQL: the statements that add the rows of the tables ``frames`` and
    ``detections`` (the columns of ``frames`` / ``prediction_logs``) to the per-minute
    rollups (``edgeloop.store.rollups``). Rows are locked in key order, so two replicas
    ingesting the same minutes wait for each other, never deadlock."""
    return [
        f"""
        INSERT INTO frame_minutes (minute, camera_id, frames, frames_with_detection, detections)
        SELECT date_trunc('minute', captured_at) AS minute, camera_id, count(*),
               count(*) FILTER (WHERE detection_count > 0), sum(detection_count)
        FROM {frames} GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (minute, camera_id) DO UPDATE SET
            frames = frame_minutes.frames + excluded.frames,
            frames_with_detection =
                frame_minutes.frames_with_detection + excluded.frames_with_detection,
            detections = frame_minutes.detections + excluded.detections
        """,
        f"""
        INSERT INTO detection_minutes
            (minute, camera_id, class_name, bin, detections, uncertain, confidence_sum)
        SELECT date_trunc('minute', captured_at) AS minute, camera_id, class_name,
               {bin_sql(ROLLUP_BINS)} AS bin, count(*), count(*) FILTER (WHERE uncertain),
               sum(confidence)
        FROM {detections} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (minute, camera_id, class_name, bin) DO UPDATE SET
            detections = detection_minutes.detections + excluded.detections,
            uncertain = detection_minutes.uncertain + excluded.uncertain,
            confidence_sum = detection_minutes.confidence_sum + excluded.confidence_sum
        """,
    ]


class Only(NamedTuple):
    """A migration statement for one backend (``"duckdb"`` or ``"postgres"``)."""

    dialect: str
    sql: str
