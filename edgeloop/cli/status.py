"""``edgeloop status``: the loop's state in one read of DuckDB and the MLflow registry, and
its rendering as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from edgeloop.registry import (
    COMPARED_WITH_TAG,
    EVIDENCE_TAGS,
    HELDOUT_KEYS,
    PRODUCTION,
    STAGING,
    alias_version,
    heldout_evidence,
    mlflow_client,
)
from edgeloop.rules import camera_drifted
from edgeloop.settings import LoopSettings
from edgeloop.store import (
    deployments,
    drift,
    frames,
    labels,
    queue,
    retraining,
    training_runs,
)


def collect_status(settings: LoopSettings) -> dict[str, Any]:
    """Counts, queue, labels since last training, drift per camera, models, retraining events.

    Returns a JSON-ready dict (times as ISO 8601 strings). Opens DuckDB once, briefly.
    ``retrain_label_count`` is the threshold the label-count sensor applies
    (``EDGELOOP_RETRAIN_LABEL_COUNT``); ``retrain`` is ``edgeloop.rules.retrain_decision``
    evaluated now, as the API's ``/api/retraining/conditions`` shows it, with the drift
    retrain's minimum of new labels (``EDGELOOP_DRIFT_RETRAIN_MIN_LABELS``) and cooldown
    in hours (``EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H``).
    """
    with settings.store().connect() as con:
        cameras = frames.camera_summary(con=con)
        queue_counts = queue.status_counts(con=con)
        labels_total = labels.count(con=con)
        since = labels.since_last_training(con=con)
        latest_drift = drift.latest_per_camera(con=con)
        events = retraining.recent(con=con, limit=20)
        last_retrain = retraining.last_retrain_at(con=con)
        moves = deployments.recent(con=con, limit=20)
        trainings = training_runs.recent(con=con, limit=10)

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
    drift_rows = [
        {k: row[k] for k in DRIFT_KEYS}
        | {
            "drifted": camera_drifted(row["drift_share"], row["min_p_value"]),
            # stored relative to the data folder: shown where the file is
            "report_path": str(settings.data_path(row["report_path"]))
            if row["report_path"]
            else None,
        }
        for row in latest_drift
    ]
    decision = settings.retrain_decision(
        since,
        [row["camera_id"] for row in drift_rows if row["drifted"]],
        last_retrain_at=last_retrain,
    )
    return _jsonable(
        {
            "cameras": cameras,
            "labeling_queue": queue_counts,
            "labels_total": labels_total,
            "labels_since_last_training": since,
            "retrain_label_count": settings.retrain_label_count,
            "retrain": {
                "due": decision.due,
                "trigger": decision.trigger,
                "reasons": decision.reasons,
                "drift_min_labels": settings.drift_retrain_min_labels,
                "drift_cooldown_h": settings.drift_retrain_cooldown_h,
                "last_retrain_at": last_retrain,
                "drift_cooldown_until": decision.cooldown_until,
            },
            "drift": drift_rows,
            "models": models,
            "model_versions": versions,
            "deployments": [{k: row[k] for k in DEPLOYMENT_KEYS} for row in moves],
            "training_runs": trainings,
            "retraining_events": [
                {k: v for k, v in row.items() if k != "run_key"} for row in events
            ],
        }
    )


DRIFT_KEYS = (
    "camera_id",
    "computed_at",
    "drift_share",
    "min_p_value",
    "reference_frames",
    "current_frames",
    "report_path",
)
DEPLOYMENT_KEYS = (
    "created_at",
    "version",
    "alias",
    "previous_version",
    "action",
    "actor",
    "reason",
    "metrics",
)


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
        metrics, evidence = heldout_evidence(tags)
        rows.append(
            {
                "version": str(mv.version),
                "aliases": [],
                "run_id": mv.run_id,
                "created_at": mv.creation_timestamp,
                "metrics": metrics,
                "compared_with": tags.get(COMPARED_WITH_TAG),
                "promotion": tags.get("promotion", tags.get("kind", "")),
                "evidence": evidence,
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


def render_status(state: dict[str, Any], console: Console) -> None:
    """Print ``collect_status``'s dict as rich tables."""
    cams = Table(title="cameras")
    for column in ("camera", "frames", "detections", "JPEGs", "inference ms", "last frame"):
        cams.add_column(column)
    for row in state["cameras"]:
        cams.add_row(
            row["camera_id"],
            str(row["frames"]),
            str(row["detections"]),
            str(row["frames_with_jpeg"]),
            str(row["mean_inference_ms"]),
            str(row["last_frame_at"])[:19],
        )
    console.print(cams)
    queue = state["labeling_queue"]
    console.print(
        f"labeling queue: {queue.get('pending', 0)} pending, {queue.get('labeled', 0)} labeled, "
        f"{queue.get('skipped', 0)} skipped · labels since last training: "
        f"{state['labels_since_last_training']} (retrain at {state['retrain_label_count']})"
    )
    retrain = state["retrain"]
    held = retrain["drift_cooldown_until"]
    console.print(
        f"retrain due: {'yes (' + retrain['trigger'] + ')' if retrain['due'] else 'no'} · a "
        f"drift retrain needs {retrain['drift_min_labels']} new labels and "
        f"{retrain['drift_cooldown_h']:g} h since the last retrain"
        + (f" (none before {held[:19]})" if held else "")
    )
    for reason in retrain["reasons"]:
        console.print(f"  · {reason}")
    drift = Table(title="drift (latest report per camera)")
    for column in ("camera", "drift share", "min p-value", "drifted", "ref/cur frames", "at"):
        drift.add_column(column)
    for row in state["drift"]:
        p = row["min_p_value"]
        drift.add_row(
            row["camera_id"],
            f"{row['drift_share']:.2f}",
            "—" if p is None else f"{p:.2g}",
            "[red]yes[/]" if row["drifted"] else "no",
            f"{row['reference_frames']}/{row['current_frames']}",
            str(row["computed_at"])[:19],
        )
    console.print(drift)
    models = Table(title="model versions (edgeloop-detector), held-out metrics")
    for column in ("version", "aliases", "mAP50", "mAP50-95", "precision", "recall", "promotion"):
        models.add_column(column)
    for entry in state["model_versions"]:
        m = entry["metrics"]
        models.add_row(
            entry["version"],
            ", ".join(entry["aliases"]),
            *(_fmt(m.get(k)) for k in ("mAP50", "mAP50-95", "precision", "recall")),
            entry["promotion"],
        )
    console.print(models)
    evidence = Table(title="promotion evidence (frozen held-out set; candidate − production)")
    for column in (
        "version",
        "n images",
        "Δ mAP50-95 [95%]",
        "Δ mAP50 [95%]",
        "corrections learned",
        "regressions",
    ):
        evidence.add_column(column)
    for entry in state["model_versions"]:
        e = entry.get("evidence") or {}
        if e:
            evidence.add_row(entry["version"], *(str(e.get(k, "")) for k in EVIDENCE_TAGS))
    if evidence.row_count:
        console.print(evidence)
    events = Table(title="retraining events")
    for column in ("at", "trigger", "camera", "decision", "reason", "run", "outcome"):
        events.add_column(column)
    for row in state["retraining_events"]:
        events.add_row(
            str(row["created_at"])[:19],
            row["trigger"],
            row["camera_id"] or "",
            row["decision"],
            row["reason"],
            (row["dagster_run_id"] or "")[:8],
            " · ".join(
                str(v)
                for v in (row.get("run_status"), row.get("candidate_version"), row.get("outcome"))
                if v
            ),
        )
    console.print(events)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.3f}"


def render_camera_models(camera_id: str, history: list[dict[str, Any]], console: Console) -> None:
    """Print a camera's model history (``edgeloop.store.frames.model_history``) as a table."""
    table = Table(title=f"models on camera {camera_id} (from the version on every frame, UTC)")
    for column in ("version", "first frame", "last frame", "frames"):
        table.add_column(column)
    for run in history:
        table.add_row(
            run["model_version"],
            f"{run['first_frame_at']:%Y-%m-%d %H:%M:%S}",
            f"{run['last_frame_at']:%Y-%m-%d %H:%M:%S}",
            str(run["frames"]),
        )
    console.print(table)
