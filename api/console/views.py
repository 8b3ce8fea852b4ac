"""What each console panel shows, built from the store's reads (``edgeloop.store``) and
the registry: one function per panel, used by both the JSON data route and the HTML
fragment, so the page and the API show the same numbers.

Each opens the DuckDB file once, runs its bounded queries, and closes it before any slow
work (the MLflow registry call of the models panel runs after the connection closed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from api import crud
from api.console import schemas
from api.models import DeploymentPublic, DriftReportPublic
from api.settings import ApiSettings
from edgeloop.registry import PRODUCTION, STAGING
from edgeloop.rules import DRIFT_P_VALUE, DRIFT_SHARE
from edgeloop.store import (
    Store,
    agents,
    analytics,
    deployments,
    training_runs,
)

logger = logging.getLogger(__name__)

FLEET_WINDOW_S = 300
"""The fleet panel's rates (detections/min, uncertain share) cover the last 5 minutes."""
STALE_AFTER_S = 30.0
"""An agent is stale when its newest heartbeat is older than this, s (3 missed ~10 s beats)."""
RANGES: dict[str, int] = {"15m": 900, "1h": 3600, "6h": 21_600, "24h": 86_400, "7d": 604_800}
"""Time ranges of the analytics panel, name -> seconds."""
DRIFT_RANGES: dict[str, int] = {"1d": 86_400, "7d": 604_800, "30d": 2_592_000, "90d": 7_776_000}
"""Time ranges of the drift panel, name -> seconds."""
MAX_POINTS = 120
"""Buckets per chart at most: a range is cut into ``max(60 s, range / MAX_POINTS)`` buckets."""
CONFIDENCE_BINS = 20
THROUGHPUT_WINDOW_S = 86_400
"""Labeler throughput covers the last 24 hours."""
DEPLOYMENTS_SHOWN = 50


class RegistryLike(Protocol):
    """What the models panel needs of ``api.model_registry.ModelRegistry``."""

    @property
    def model_name(self) -> str: ...

    def client(self) -> Any: ...


def bucket_seconds(range_s: int) -> int:
    """Bucket width for a range: whole minutes, at most ``MAX_POINTS`` buckets, s."""
    return max(60, -(-range_s // MAX_POINTS // 60) * 60)


def _production_now(con: Any, model_name: str, now: datetime) -> str | None:
    return deployments.alias_at(con=con, model_name=model_name, alias=PRODUCTION, at=now)


# --- fleet ----------------------------------------------------------------------------------


def fleet(store: Store, *, model_name: str, now: datetime | None = None) -> schemas.FleetPublic:
    """One row per camera: its newest agent heartbeat, the last ``FLEET_WINDOW_S`` of its
    frames, and the version it runs against ``production`` (from the alias history)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=FLEET_WINDOW_S)
    with store.connect() as con:
        beats = agents.latest(con=con)
        latest = {r["camera_id"]: r for r in analytics.camera_latest(con=con)}
        window = {
            r["camera_id"]: r
            for r in analytics.camera_window(con=con, since=since, until=now + timedelta(seconds=1))
        }
        production = _production_now(con, model_name, now)
    # The newest heartbeat per camera (several agents may have reported for one camera).
    beat_by_camera: dict[str, dict[str, Any]] = {}
    for row in beats:
        known = beat_by_camera.get(row["camera_id"])
        if known is None or row["received_at"] > known["received_at"]:
            beat_by_camera[row["camera_id"]] = row
    rows = []
    for camera_id in sorted(set(latest) | set(beat_by_camera)):
        beat: dict[str, Any] | None
        beat, last, win = (
            beat_by_camera.get(camera_id),
            latest.get(camera_id),
            window.get(camera_id),
        )
        age = (now - beat["received_at"]).total_seconds() if beat else None
        state: schemas.AgentState = (
            "no heartbeat" if age is None else "online" if age <= STALE_AFTER_S else "stale"
        )
        p50 = beat["inference_ms_p50"] if beat else None
        p95 = beat["inference_ms_p95"] if beat else None
        source: Any = "heartbeat" if p50 is not None else "none"
        if p50 is None and win is not None:
            p50, p95, source = win["inference_ms_p50"], win["inference_ms_p95"], "frames"
        version = (beat["model_version"] if beat else None) or (
            last["model_version"] if last else None
        )
        rows.append(
            schemas.FleetCameraPublic(
                camera_id=camera_id,
                agent_id=beat["agent_id"] if beat else (last["agent_id"] if last else None),
                host=beat["host"] if beat else None,
                agent_version=beat["agent_version"] if beat else None,
                state=state,
                heartbeat_age_s=age,
                source_connected=beat["source_connected"] if beat else None,
                frames_per_s=beat["frames_per_s"] if beat else None,
                inference_ms_p50=p50,
                inference_ms_p95=p95,
                inference_source=source,
                frames_in_window=win["frames"] if win else 0,
                detections_per_min=(win["detections"] if win else 0) / (FLEET_WINDOW_S / 60),
                uncertain_share=win["uncertain_share"] if win else None,
                spool_batches=beat["spool_batches"] if beat else None,
                spool_bytes=beat["spool_bytes"] if beat else None,
                spool_dropped_batches=beat["spool_dropped_batches"] if beat else None,
                model_version=version,
                is_production=version is not None and version == production,
                last_frame_at=last["captured_at"] if last else None,
            )
        )
    return schemas.FleetPublic(
        generated_at=now,
        window_s=FLEET_WINDOW_S,
        stale_after_s=STALE_AFTER_S,
        production_version=production,
        cameras=rows,
    )


# --- analytics ------------------------------------------------------------------------------


def analytics_panel(
    store: Store,
    *,
    range_name: str,
    camera_id: str | None = None,
    until: datetime | None = None,
    tables: bool = True,
    charts: bool = True,
) -> schemas.AnalyticsPublic:
    """Per camera over the range ending at ``until`` (default now): detections per minute,
    defect rate and uncertain share per bucket, the confidence histogram and the class mix.

    ``tables`` (the per-camera summary and class mix: what the HTML fragment shows) and
    ``charts`` (series and histogram: what the page's charts poll) can be left out, so one
    refresh scans each range once; a part left out comes back empty.

    Raises:
        KeyError: ``range_name`` is not one of ``RANGES``.
    """
    range_s = RANGES[range_name]
    until = until or datetime.now(UTC)
    since = until - timedelta(seconds=range_s)
    bucket_s = bucket_seconds(range_s)
    with store.connect() as con:
        cameras = analytics.camera_ids(con=con)
        summary, mix, series_rows = [], [], []
        histogram = [0] * CONFIDENCE_BINS
        if tables:
            summary = analytics.camera_window(
                con=con, since=since, until=until, camera_id=camera_id
            )
            mix = analytics.class_mix(con=con, since=since, until=until, camera_id=camera_id)
        if charts:
            series_rows = analytics.detection_series(
                con=con, since=since, until=until, bucket_s=bucket_s, camera_id=camera_id
            )
            histogram = analytics.confidence_histogram(
                con=con, since=since, until=until, bins=CONFIDENCE_BINS, camera_id=camera_id
            )
    per_min = 60.0 / range_s
    series: dict[str, schemas.SeriesPublic] = {}
    for row in series_rows:
        s = series.setdefault(
            row["camera_id"],
            schemas.SeriesPublic(
                camera_id=row["camera_id"],
                t=[],
                detections_per_min=[],
                defect_rate=[],
                uncertain_share=[],
            ),
        )
        s.t.append(int(row["t"]))
        s.detections_per_min.append(row["detections"] * 60.0 / bucket_s)
        s.defect_rate.append(row["frames_with_detection"] / row["frames"])
        s.uncertain_share.append(
            row["uncertain"] / row["detections"] if row["detections"] else None
        )
    total = sum(r["detections"] for r in mix) or 1
    return schemas.AnalyticsPublic(
        since=since,
        until=until,
        range=range_name,
        bucket_s=bucket_s,
        camera_id=camera_id,
        cameras=cameras,
        summary=[
            schemas.CameraWindowPublic(**r, detections_per_min=r["detections"] * per_min)
            for r in summary
        ],
        series=list(series.values()),
        confidence_edges=[i / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS + 1)],
        confidence_histogram=histogram,
        class_mix=[schemas.ClassMixPublic(**r, share=r["detections"] / total) for r in mix],
    )


# --- drift ----------------------------------------------------------------------------------


def drift_panel(
    store: Store,
    settings: ApiSettings,
    *,
    range_name: str,
    camera_id: str | None = None,
    now: datetime | None = None,
) -> schemas.DriftPublic:
    """Per camera, drift share and per-feature p-values over the range, the seed's thresholds
    (``edgeloop.rules``), and the newest report with its link on this API.

    Raises:
        KeyError: ``range_name`` is not one of ``DRIFT_RANGES``.
    """
    since = (now or datetime.now(UTC)) - timedelta(seconds=DRIFT_RANGES[range_name])
    with store.connect() as con:
        rows = analytics.drift_history(con=con, since=since, camera_id=camera_id)
        latest_rows = crud.latest_drift_reports(con=con)
    latest = {
        r["camera_id"]: DriftReportPublic.from_row(r, loop=settings.loop)
        for r in latest_rows
        if camera_id is None or r["camera_id"] == camera_id
    }
    points: dict[str, list[schemas.DriftPointPublic]] = {}
    features: set[str] = set()
    for row in rows:
        features.update(row["p_values"])
        points.setdefault(row["camera_id"], []).append(
            schemas.DriftPointPublic(
                t=int(row["computed_at"].timestamp()),
                computed_at=row["computed_at"],
                drift_share=row["drift_share"],
                min_p_value=row["min_p_value"],
                p_values=row["p_values"],
                drifted=row["drifted"],
            )
        )
    return schemas.DriftPublic(
        since=since,
        range=range_name,
        drift_share_threshold=DRIFT_SHARE,
        p_value_threshold=DRIFT_P_VALUE,
        features=sorted(features),
        cameras=[
            schemas.DriftCameraPublic(camera_id=c, points=points.get(c, []), latest=latest.get(c))
            for c in sorted(set(points) | set(latest))
        ],
    )


# --- labeling queue -------------------------------------------------------------------------


def queue_panel(store: Store, *, now: datetime | None = None) -> schemas.QueuePublic:
    """Queue size by camera and priority band, the oldest pending item, and each labeler's
    throughput over the last ``THROUGHPUT_WINDOW_S``."""
    now = now or datetime.now(UTC)
    with store.connect() as con:
        cameras = analytics.queue_by_camera(con=con)
        oldest = analytics.oldest_pending(con=con)
        labelers = analytics.labeler_throughput(
            con=con, since=now - timedelta(seconds=THROUGHPUT_WINDOW_S)
        )
    bands = analytics.PRIORITY_BANDS
    totals = {
        key: sum(int(c[key]) for c in cameras)
        for key in ("pending", "skipped", "labeled", "claimed", "high", "medium", "low")
    }
    hours = THROUGHPUT_WINDOW_S / 3600
    return schemas.QueuePublic(
        generated_at=now,
        priority_bands={
            bands[0][1]: f"priority >= {bands[0][0]:g} (boosted: drifted camera)",
            bands[1][1]: f"{bands[1][0]:g} <= priority < {bands[0][0]:g}",
            bands[2][1]: f"priority < {bands[1][0]:g}",
        },
        cameras=[schemas.QueueCameraPublic(**c) for c in cameras],
        totals=totals,
        oldest_pending=(
            schemas.OldestItemPublic(**oldest, age_s=(now - oldest["created_at"]).total_seconds())
            if oldest
            else None
        ),
        throughput_window_s=THROUGHPUT_WINDOW_S,
        labelers=[
            schemas.LabelerPublic(**r, labels_per_hour=r["labels"] / hours) for r in labelers
        ],
    )


# --- retraining -----------------------------------------------------------------------------


def dagster_run_url(settings: ApiSettings, run_id: str | None) -> str | None:
    """The run's page in the Dagster UI (``EDGELOOP_DAGSTER_UI_URL``)."""
    return f"{settings.loop.dagster_ui_url.rstrip('/')}/runs/{run_id}" if run_id else None


def retraining_panel(store: Store, settings: ApiSettings) -> schemas.RetrainingPublic:
    """The retrain conditions as the sensors see them (``edgeloop.rules.retrain_decision``
    on the same reads as ``/api/retraining/conditions``), the events with their Dagster
    runs, and the training runs."""
    with store.connect() as con:
        conditions = crud.retrain_conditions(
            con=con,
            label_threshold=settings.loop.retrain_label_count,
            loop=settings.loop,
        )
        events = crud.recent_retraining_events(con=con, limit=30)
        runs = training_runs.recent(con=con, limit=10)
    decision = conditions.decision
    return schemas.RetrainingPublic(
        labels_since_training=conditions.labels_since_training,
        label_threshold=conditions.label_threshold,
        drift=conditions.drift,
        drifted_cameras=decision.drifted_cameras,
        retrain_due=decision.due,
        reasons=decision.reasons,
        events=[
            schemas.ConsoleEventPublic(
                **e.model_dump(), dagster_run_url=dagster_run_url(settings, e.dagster_run_id)
            )
            for e in events
        ],
        training_runs=[schemas.TrainingRunPublic(**r) for r in runs],
        dagster_ui_url=settings.loop.dagster_ui_url,
    )


# --- models ---------------------------------------------------------------------------------


def _mlflow_version_url(settings: ApiSettings, model_name: str, version: str) -> str:
    return f"{settings.loop.mlflow_ui_url.rstrip('/')}/#/models/{model_name}/versions/{version}"


def _registry_versions(registry: RegistryLike) -> tuple[list[Any], dict[str, list[str]]]:
    """The registered versions of the model, and version -> its aliases.

    Aliases come from the registered model (``search_model_versions`` leaves a version's
    ``aliases`` empty on the sqlite store); no registered model yet is no version.
    """
    from mlflow.exceptions import MlflowException

    client = registry.client()
    try:
        model = client.get_registered_model(registry.model_name)
    except MlflowException:
        return [], {}
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    found = client.search_model_versions(f"name='{registry.model_name}'", max_results=200)
    return list(found), aliases


def models_panel(
    store: Store, settings: ApiSettings, registry: RegistryLike, *, now: datetime | None = None
) -> schemas.ModelsPublic:
    """Registered versions (MLflow) with the metrics and decision of their newest alias move,
    the alias history (who, when, why), and which cameras run which version.

    A registry that cannot be listed is reported in ``registry_error`` (the alias history
    from DuckDB is still shown)."""
    now = now or datetime.now(UTC)
    name = registry.model_name
    with store.connect() as con:
        moves = deployments.recent(con=con, model_name=name, limit=DEPLOYMENTS_SHOWN)
        beats = agents.latest(con=con)
        latest = analytics.camera_latest(con=con)
        production = _production_now(con, name, now)
        staging = deployments.alias_at(con=con, model_name=name, alias=STAGING, at=now)
        move_metrics = {
            str(v): deployments.latest_metrics(con=con, model_name=name, version=str(v))
            for v in {m["version"] for m in moves}
        }
    cameras: dict[str, schemas.CameraVersionPublic] = {
        r["camera_id"]: schemas.CameraVersionPublic(
            camera_id=r["camera_id"],
            model_version=r["model_version"],
            source="frames",
            last_frame_at=r["captured_at"],
        )
        for r in latest
    }
    for beat in sorted(beats, key=lambda b: b["received_at"]):
        if beat["model_version"] is not None:
            known = cameras.get(beat["camera_id"])
            cameras[beat["camera_id"]] = schemas.CameraVersionPublic(
                camera_id=beat["camera_id"],
                model_version=beat["model_version"],
                source="heartbeat",
                last_frame_at=known.last_frame_at if known else None,
            )
    error: str | None = None
    registered: list[Any] = []
    alias_map: dict[str, list[str]] = {}
    try:
        registered, alias_map = _registry_versions(registry)
    except Exception as exc:  # the panel says what failed; the DuckDB side still shows
        logger.warning("MLflow registry could not be listed: %s", exc)
        error = f"MLflow registry at {settings.loop.tracking_uri} could not be listed: {exc}"
    versions = []
    for mv in sorted(registered, key=lambda v: int(v.version), reverse=True):
        version = str(mv.version)
        aliases = alias_map.get(version, [])
        # The registry is the truth for aliases when it answers.
        production = version if PRODUCTION in aliases else production
        staging = version if STAGING in aliases else staging
        versions.append(
            schemas.ModelVersionRowPublic(
                version=version,
                aliases=sorted(aliases),
                created_at=(
                    datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
                    if mv.creation_timestamp
                    else None
                ),
                run_id=mv.run_id,
                description=mv.description or None,
                promotion=(mv.tags or {}).get("promotion"),
                mlflow_url=_mlflow_version_url(settings, name, version),
                metrics=move_metrics.get(version, {}),
                cameras=sorted(c for c, v in cameras.items() if v.model_version == version),
            )
        )
    return schemas.ModelsPublic(
        model_name=name,
        production_version=production,
        staging_version=staging,
        registry_error=error,
        versions=versions,
        deployments=[DeploymentPublic(**m) for m in moves],
        cameras=sorted(cameras.values(), key=lambda c: c.camera_id),
        mlflow_ui_url=settings.loop.mlflow_ui_url,
    )


# --- inspections ----------------------------------------------------------------------------


def inspections_panel(
    store: Store,
    *,
    camera_id: str | None,
    uncertain: bool | None,
    limit: int,
    offset: int,
) -> schemas.InspectionsPublic:
    """One page of detections, newest first, with each box in % of its frame (overlays)."""
    with store.connect() as con:
        cameras = analytics.camera_ids(con=con)
        rows, count = analytics.detection_page(
            con=con, camera_id=camera_id, uncertain=uncertain, limit=limit, offset=offset
        )
    data = []
    for row in rows:
        x1, y1, x2, y2 = row["x1"], row["y1"], row["x2"], row["y2"]
        w, h = max(row["width"], 1), max(row["height"], 1)
        data.append(
            schemas.InspectionRowPublic(
                **{k: v for k, v in row.items() if k not in ("x1", "y1", "x2", "y2", "has_jpeg")},
                bbox_xyxy=(x1, y1, x2, y2),
                frame_url=crud.frame_url(row["frame_key"]) if row["has_jpeg"] else None,
                box_pct=(100 * x1 / w, 100 * y1 / h, 100 * (x2 - x1) / w, 100 * (y2 - y1) / h),
            )
        )
    return schemas.InspectionsPublic(
        count=count, limit=limit, offset=offset, cameras=cameras, data=data
    )
