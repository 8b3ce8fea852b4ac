"""Retraining triggers (the seed's rules): enough new labels, or drift on a camera.

Both sensors record their decision in ``retraining_events`` (what the API's
``/api/retraining/conditions`` and the UI show) and are idempotent: a trigger whose
run key is already recorded is not recorded or requested again, so a lost cursor (the
daemon's and the headless ``pipelines.launch`` keep separate ones) does not launch or
log twice. Dagster itself also never launches two runs with the same run key. The run
key names the trigger (``labels:<newest label id>``, ``drift:<camera>:<materialization
storage id>``) and is stored on every event row it caused, launched or not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.drift import parse_drift_metadata
from assets.labeling import boost_camera_queue
from assets.resources import StoreResource
from edgeloop.rules import camera_drifted
from edgeloop.store import Store, labels_since_last_training
from pipelines.jobs import RETRAIN_JOB
from pipelines.settings import get_pipeline_settings

DRIFT_REPORT = dg.AssetKey("drift_report")
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def record_event(
    store: Store,
    *,
    trigger: str,
    decision: str,
    reason: str,
    labels_since_training: int,
    camera_id: str | None = None,
    run_key: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Insert one ``retraining_events`` row (``dagster_run_id`` is filled in by the run)."""
    with store.connect() as con:
        con.execute(
            """
            INSERT INTO retraining_events (created_at, trigger, camera_id, decision, reason,
                                           labels_since_training, run_key, details)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                datetime.now(UTC),
                trigger,
                camera_id,
                decision,
                reason,
                labels_since_training,
                run_key,
                json.dumps(details or {}),
            ],
        )


def _retrain_in_progress(instance: dg.DagsterInstance) -> str | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=RETRAIN_JOB, statuses=IN_PROGRESS), limit=1
    )
    return runs[0].run_id if runs else None


@dg.sensor(
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=get_pipeline_settings().sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def label_count_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    """Retrain when EDGELOOP_PIPELINES_RETRAIN_LABEL_COUNT (50) reviewed labels arrived since the last training."""
    threshold = get_pipeline_settings().retrain_label_count
    db = store.store()
    with db.connect() as con:
        count = labels_since_last_training(con)
        row = con.execute("SELECT max(label_id) FROM reviewed_labels").fetchone()
    newest = int(row[0]) if row and row[0] is not None else 0
    if count < threshold:
        return dg.SkipReason(f"{count}/{threshold} reviewed labels since the last training run")
    run_key = f"labels:{newest}"
    if context.cursor == run_key or _event_exists(db, run_key):
        return dg.SkipReason(f"already requested {run_key} ({count} labels since training)")
    running = _retrain_in_progress(context.instance)
    if running is not None:
        return dg.SkipReason(f"{count} new labels, but retrain run {running} is in progress")
    record_event(
        db,
        trigger="label_count",
        decision="launched",
        reason=f"{count} reviewed labels since the last training run (>= {threshold})",
        labels_since_training=count,
        run_key=run_key,
        details={"newest_label_id": newest, "threshold": threshold},
    )
    context.log.info("launching %s: %s labels since the last training", run_key, count)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                tags={"edgeloop/trigger": "label_count", "edgeloop/labels": str(count)},
            )
        ],
        cursor=run_key,
    )


def _event_exists(store: Store, run_key: str) -> bool:
    with store.connect() as con:
        row = con.execute(
            "SELECT count(*) FROM retraining_events WHERE run_key = ?", [run_key]
        ).fetchone()
    return bool(row and row[0])


def _drift_reason(camera: str, result: dict[str, Any]) -> str:
    p = result.get("min_p_value")
    p_text = f"{p:.3g}" if p is not None else "n/a"
    return (
        f"camera {camera} drifted (drift share {result['drift_share']:.2f}, min p-value {p_text})"
    )


def _drifted_cameras(metadata: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    cameras = parse_drift_metadata(metadata)
    drifted = [
        (camera, result)
        for camera, result in cameras.items()
        if camera_drifted(result["drift_share"], result.get("min_p_value"))
    ]
    return sorted(drifted, key=lambda item: (-item[1]["drift_share"], item[0]))


def drift_run_key(cameras: Sequence[str], storage_id: int) -> str:
    """``drift:<camera>:<materialization storage id>`` (cameras joined by ``+`` when several)."""
    return f"drift:{'+'.join(cameras)}:{storage_id}"


@dg.sensor(
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=get_pipeline_settings().sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    """On each new drift_report: retrain for drifted cameras if new labels exist, else boost their queue."""
    settings = get_pipeline_settings()
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DRIFT_REPORT, after_storage_id=after),
        limit=100,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new drift_report materialization")
    db = store.store()
    run_requests: list[dg.RunRequest] = []
    notes: list[str] = []
    requested: str | None = None
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        drifted = _drifted_cameras(dict(materialization.metadata))
        if not drifted:
            notes.append(f"#{record.storage_id}: no camera drifted")
            continue
        cameras = [camera for camera, _ in drifted]
        run_key = drift_run_key(cameras, record.storage_id)
        if _event_exists(db, run_key):
            notes.append(f"#{record.storage_id}: already handled ({run_key})")
            continue
        with db.connect() as con:
            labels = labels_since_last_training(con)
        running = requested or (_retrain_in_progress(context.instance) if labels > 0 else None)
        details_base = {"materialization_storage_id": record.storage_id, "run_id": record.run_id}
        for camera, result in drifted:
            reason = _drift_reason(camera, result)
            details = {**details_base, **{k: result.get(k) for k in ("drift_share", "min_p_value")}}
            if labels > 0 and running is None:
                decision = "launched"
                reason = f"{reason}; {labels} new reviewed labels since the last training"
            elif labels > 0:
                decision = "skipped"
                reason = f"{reason}; retrain run {running} is already in progress"
            else:
                decision = "deferred"
                boosted = boost_camera_queue(db, camera, settings.drift_queue_boost)
                details["queue_items_boosted"] = boosted
                details["boost"] = settings.drift_queue_boost
                reason = (
                    f"{reason}, but no new reviewed labels since the last training; "
                    f"boosted {boosted} queued items of the camera x{settings.drift_queue_boost:g}"
                )
            record_event(
                db,
                trigger="drift",
                camera_id=camera,
                decision=decision,
                reason=reason,
                labels_since_training=labels,
                run_key=run_key,
                details=details,
            )
            notes.append(f"#{record.storage_id} {camera}: {decision}")
        if labels > 0 and running is None:
            # One retrain per drift report, whichever cameras drifted: they share one dataset.
            run_requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    tags={"edgeloop/trigger": "drift", "edgeloop/cameras": ",".join(cameras)},
                )
            )
            requested = run_key
    context.log.info("; ".join(notes))
    return dg.SensorResult(
        run_requests=run_requests,
        cursor=str(records[-1].storage_id),
        skip_reason=None if run_requests else "; ".join(notes),
    )
