"""``edgeloop status``: the loop's state in one read of DuckDB and the MLflow registry."""

from __future__ import annotations

import json
from typing import Any

from edgeloop.registry import PRODUCTION, STAGING, alias_version, mlflow_client
from edgeloop.rules import RETRAIN_LABEL_COUNT
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, labels_since_last_training


def _rows(con: Any, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def collect_status(settings: LoopSettings) -> dict[str, Any]:
    """Counts, queue, labels since last training, drift per camera, models, retraining events.

    Returns a JSON-ready dict (times as ISO 8601 strings). Opens DuckDB once, briefly.
    """
    store = Store(settings.duckdb_path)
    with store.connect() as con:
        cameras = _rows(
            con,
            """
            SELECT f.camera_id,
                   count(*) AS frames,
                   sum(f.detection_count) AS detections,
                   count(*) FILTER (WHERE f.jpeg_path IS NOT NULL) AS frames_with_jpeg,
                   round(avg(f.inference_ms), 1) AS mean_inference_ms,
                   min(f.captured_at) AS first_frame_at,
                   max(f.captured_at) AS last_frame_at
            FROM frames f GROUP BY f.camera_id ORDER BY f.camera_id
            """,
        )
        queue = _rows(
            con,
            "SELECT status, count(*) AS items FROM labeling_queue GROUP BY status ORDER BY status",
        )
        labels_total = con.execute("SELECT count(*) FROM reviewed_labels").fetchone()
        since = labels_since_last_training(con)
        drift = _rows(
            con,
            """
            SELECT camera_id, computed_at, drift_share, min_p_value, drifted,
                   reference_frames, current_frames, report_path
            FROM drift_reports
            QUALIFY row_number() OVER (PARTITION BY camera_id ORDER BY computed_at DESC) = 1
            ORDER BY camera_id
            """,
        )
        events = _rows(
            con,
            """
            SELECT event_id, created_at, trigger, camera_id, decision, reason,
                   labels_since_training, dagster_run_id
            FROM retraining_events ORDER BY created_at DESC LIMIT 20
            """,
        )
        deployments = _rows(
            con,
            """
            SELECT created_at, version, alias, previous_version, action, actor, reason, metrics
            FROM model_deployments ORDER BY created_at DESC LIMIT 20
            """,
        )
        trainings = _rows(
            con,
            """
            SELECT mlflow_run_id, started_at, label_count, dataset_version, model_version
            FROM training_runs ORDER BY started_at DESC LIMIT 10
            """,
        )

    models: dict[str, Any] = {}
    client = mlflow_client(settings)
    for alias in (PRODUCTION, STAGING):
        mv = alias_version(client, settings.model_name, alias)
        if mv is None:
            models[alias] = None
            continue
        metrics = {}
        for row in deployments:
            if row["alias"] == alias and row["version"] == str(mv.version):
                metrics = json.loads(row["metrics"] or "{}")
                break
        models[alias] = {
            "version": str(mv.version),
            "run_id": mv.run_id,
            "metrics": metrics,
            "tags": dict(mv.tags),
        }

    for row in deployments:
        row["metrics"] = json.loads(row["metrics"] or "{}")
    return _jsonable(
        {
            "cameras": cameras,
            "labeling_queue": {row["status"]: row["items"] for row in queue},
            "labels_total": int(labels_total[0]) if labels_total else 0,
            "labels_since_last_training": since,
            "retrain_label_threshold": RETRAIN_LABEL_COUNT,
            "drift": drift,
            "models": models,
            "deployments": deployments,
            "training_runs": trainings,
            "retraining_events": events,
        }
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
