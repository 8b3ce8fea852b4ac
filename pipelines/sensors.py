"""Retraining triggers (the seed's rules): enough new labels, or drift on a camera with
enough new labels (``EDGELOOP_DRIFT_RETRAIN_MIN_LABELS``) outside the cooldown after the
last retrain (``EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H``).

Both sensors apply ``edgeloop.rules.retrain_decision`` (the rule the API's
``/api/retraining/conditions`` shows) and record their decision in ``retraining_events`` (what the API's
``/api/retraining/conditions`` and the UI show) and are idempotent: a trigger whose
run key is already recorded is not recorded or requested again, so a lost cursor (the
daemon's and the headless ``edgeloop.cli.headless`` keep separate ones) does not launch or
log twice. Dagster itself also never launches two runs with the same run key. The run
key names the trigger (``labels:<newest label id>``, ``drift:<camera>:<materialization
storage id>``) and is stored on every event row it caused, launched or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import dagster as dg

from assets.drift import parse_drift_metadata
from assets.resources import StoreResource
from edgeloop import alerts
from edgeloop.orchestration import CAMERAS_TAG, TRIGGER_TAG
from edgeloop.rules import camera_drifted
from edgeloop.store import label_count, labels, queue, retraining
from pipelines.jobs import RETRAIN_JOB, retrain_job
from pipelines.settings import get_pipeline_settings

DRIFT_REPORT = dg.AssetKey("drift_report")
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _retrain_in_progress(instance: dg.DagsterInstance) -> str | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=RETRAIN_JOB, statuses=IN_PROGRESS), limit=1
    )
    return runs[0].run_id if runs else None


retrain_sensor = partial(
    dg.sensor,
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=get_pipeline_settings().sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
"""Both sensors launch retrain_job, at most every EDGELOOP_PIPELINES_SENSOR_INTERVAL_S."""


@retrain_sensor()
def label_count_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    """Retrain when EDGELOOP_RETRAIN_LABEL_COUNT (50) reviewed labels arrived since the last training."""
    threshold = store.loop.settings().retrain_label_count
    db = store.store()
    with db.connect() as con:
        due = label_count.label_count_due(con=con, threshold=threshold)
    if due.run_key is None:
        return dg.SkipReason(due.reason)
    with db.exclusive(retraining.LAUNCH_LOCK):
        with db.connect() as con:
            handled = retraining.exists(con=con, run_key=due.run_key)
        if context.cursor == due.run_key or handled:
            return dg.SkipReason(
                f"already requested {due.run_key} ({due.count} labels since training)"
            )
        running = _retrain_in_progress(context.instance)
        if running is not None:
            return dg.SkipReason(
                f"{due.count} new labels, but retrain run {running} is in progress"
            )
        with db.connect() as con:
            label_count.record_label_count_launch(con=con, due=due)
    context.log.info("launching %s: %s labels since the last training", due.run_key, due.count)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=due.run_key, tags=label_count.label_count_tags(due))],
        cursor=due.run_key,
    )


def _drift_reason(camera: str, result: dict[str, Any]) -> str:
    p = result.get("min_p_value")
    p_text = f"{p:.3g}" if p is not None else "n/a"
    return (
        f"camera {camera} drifted (drift share {result['drift_share']:.2f}, min p-value {p_text})"
    )


def _drifted_cameras(cameras: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    drifted = [
        (camera, result)
        for camera, result in cameras.items()
        if camera_drifted(result["drift_share"], result.get("min_p_value"))
    ]
    return sorted(drifted, key=lambda item: (-item[1]["drift_share"], item[0]))


def drift_run_key(cameras: Sequence[str], storage_id: int) -> str:
    """``drift:<camera>:<materialization storage id>`` (cameras joined by ``+`` when several)."""
    return f"drift:{'+'.join(cameras)}:{storage_id}"


@retrain_sensor()
def drift_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    """On each new drift_report: raise drift alerts (once) and send them to the webhook; retrain for drifted cameras given enough new labels and no recent retrain, else boost their queue."""
    settings = get_pipeline_settings()
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DRIFT_REPORT, after_storage_id=after),
        limit=100,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new drift_report materialization")
    loop = store.loop.settings()
    boost = settings.labeling_queue.drift_boost
    db = store.store()
    run_requests: list[dg.RunRequest] = []
    notes: list[str] = []
    requested: str | None = None
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        cameras_drift = parse_drift_metadata(dict(materialization.metadata))
        with db.connect() as con:
            raised = alerts.evaluate(con=con, loop=loop, cameras=cameras_drift)
        if raised:
            notes.append(f"#{record.storage_id}: raised alerts {raised}")
        drifted = _drifted_cameras(cameras_drift)
        if not drifted:
            notes.append(f"#{record.storage_id}: no camera drifted")
            continue
        cameras = [camera for camera, _ in drifted]
        run_key = drift_run_key(cameras, record.storage_id)
        with db.connect() as con:
            handled = retraining.exists(con=con, run_key=run_key)
            since = labels.since_last_training(con=con)
            last_retrain = retraining.last_retrain_at(con=con)
        if handled:
            notes.append(f"#{record.storage_id}: already handled ({run_key})")
            continue
        decision = loop.retrain_decision(since, cameras, last_retrain_at=last_retrain)
        launch = decision.due
        running = requested or (_retrain_in_progress(context.instance) if launch else None)
        details_base = {"materialization_storage_id": record.storage_id, "run_id": record.run_id}
        for camera, result in drifted:
            reason = _drift_reason(camera, result)
            details = {**details_base, **{k: result.get(k) for k in ("drift_share", "min_p_value")}}
            with db.connect() as con:
                if camera in decision.reprioritise:
                    outcome = "deferred"
                    boosted = queue.boost_camera(
                        con=con,
                        camera_id=camera,
                        factor=boost,
                        low=loop.uncertainty_low,
                        high=loop.uncertainty_high,
                    )
                    details |= {
                        "queue_items_boosted": boosted,
                        "boost": boost,
                        "drift_min_labels": loop.drift_retrain_min_labels,
                        "cooldown_until": decision.cooldown_until.isoformat()
                        if decision.cooldown_until
                        else None,
                    }
                    reason = (
                        f"{reason}, but {decision.drift_held}; "
                        f"boosted {boosted} queued items of the camera x{boost:g}"
                    )
                elif running is None:
                    outcome = "launched"
                    reason = f"{reason}; {since} new reviewed labels since the last training"
                else:
                    outcome = "skipped"
                    reason = f"{reason}; retrain run {running} is already in progress"
                retraining.record(
                    con=con,
                    trigger="drift",
                    camera_id=camera,
                    decision=outcome,
                    reason=reason,
                    labels_since_training=since,
                    run_key=run_key,
                    details=details,
                )
            notes.append(f"#{record.storage_id} {camera}: {outcome}")
        if launch and running is None:
            # One retrain per drift report, whichever cameras drifted: they share one dataset.
            run_requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    tags={TRIGGER_TAG: "drift", CAMERAS_TAG: ",".join(cameras)},
                )
            )
            requested = run_key
    delivery = alerts.deliver_pending(store=db, loop=loop)  # never raises on a bad receiver
    if delivery is not None:
        notes.append(
            f"alert webhook: {'sent' if delivery.delivered else 'failed: ' + str(delivery.error)}"
        )
    context.log.info("; ".join(notes))
    return dg.SensorResult(
        run_requests=run_requests,
        cursor=str(records[-1].storage_id),
        skip_reason=None if run_requests else "; ".join(notes),
    )


@dg.run_failure_sensor(
    monitored_jobs=[retrain_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=get_pipeline_settings().sensor_interval_s,
)
def retrain_failure_sensor(context: dg.RunFailureSensorContext, store: StoreResource) -> None:
    """A failed retrain_job run: mark the retraining events that launched it failed, with
    Dagster's failure message, so the API and `edgeloop status` show it."""
    message = context.failure_event.message or "the run failed"
    run_key = context.dagster_run.tags.get("dagster/run_key")
    with store.store().connect() as con:
        if run_key:  # a run that failed before detector_model linked its event
            retraining.link_run(con=con, run_key=run_key, dagster_run_id=context.dagster_run.run_id)
        retraining.record_run(
            con=con,
            dagster_run_id=context.dagster_run.run_id,
            run_status="failed",
            outcome=message[:500],
        )
