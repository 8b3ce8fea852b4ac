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

    client = mlflow_client(settings)
    versions = model_versions(client, settings.model_name)
    models: dict[str, Any] = {}
    for alias in (PRODUCTION, STAGING):
        mv = alias_version(client, settings.model_name, alias)
        models[alias] = (
            None
            if mv is None
            else next((v for v in versions if v["version"] == str(mv.version)), None)
        )

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
            "model_versions": versions,
            "deployments": deployments,
            "training_runs": trainings,
            "retraining_events": events,
        }
    )


HELDOUT_KEYS = ("mAP50", "mAP50-95", "precision", "recall")


def model_versions(client: Any, model_name: str) -> list[dict[str, Any]]:
    """Every registered version, newest first, with its aliases and held-out metrics.

    A candidate's held-out metrics are its ``heldout_*`` version tags (set by
    ``model_evaluation``); a version that was never a candidate (the seed) takes the
    metrics it scored as production in the newest evaluation against it
    (``production_heldout_*`` on that candidate's MLflow run). Keys: ``mAP50``,
    ``mAP50-95``, ``precision``, ``recall``, each in [0, 1].
    """
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return []
    rows: list[dict[str, Any]] = []
    for mv in sorted(found, key=lambda v: int(v.version), reverse=True):
        tags = dict(mv.tags)
        metrics = {k: float(tags[f"heldout_{k}"]) for k in HELDOUT_KEYS if f"heldout_{k}" in tags}
        rows.append(
            {
                "version": str(mv.version),
                "aliases": [],
                "run_id": mv.run_id,
                "created_at": mv.creation_timestamp,
                "metrics": metrics,
                "compared_with": tags.get("heldout_production_version"),
                "promotion": tags.get("promotion", tags.get("kind", "")),
            }
        )
    for alias in (PRODUCTION, STAGING):
        holder = alias_version(client, model_name, alias)
        for row in rows:
            if holder is not None and row["version"] == str(holder.version):
                row["aliases"].append(alias)
    for row in rows:
        if row["metrics"]:
            continue
        judge = next((r for r in rows if r["compared_with"] == row["version"]), None)
        if judge is None:
            continue
        run_metrics = client.get_run(judge["run_id"]).data.metrics
        row["metrics"] = {
            k: float(run_metrics[f"production_heldout_{k}"])
            for k in HELDOUT_KEYS
            if f"production_heldout_{k}" in run_metrics
        }
    return rows


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
