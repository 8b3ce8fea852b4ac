"""What each console panel shows, built from the store's reads (``edgeloop.store``) and
the registry: one function per panel, used by both the JSON data route and the HTML
fragment, so the page and the API show the same numbers (the models panel's is in
``api.console.models_view``).

Each opens the DuckDB file once, runs its bounded queries, and closes it before any slow
work (the MLflow registry call of the models panel runs after the connection closed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from api import crud
from api.console import schemas
from api.models import DriftReportPublic
from api.settings import ApiSettings
from edgeloop.registry import PRODUCTION
from edgeloop.rules import DRIFT_P_VALUE, DRIFT_SHARE
from edgeloop.store import (
    AnyStore,
    agents,
    analytics,
    deployments,
    training_runs,
)
from edgeloop.store.frames import DetectionFilter

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
"""Labeler throughput counts the labels of the last 24 hours; the rate divides them by the
time they span (first to last label), not by the window."""


def bucket_seconds(range_s: int) -> int:
    """Bucket width for a range: whole minutes, at most ``MAX_POINTS`` buckets, s."""
    return max(60, -(-range_s // MAX_POINTS // 60) * 60)


def _production_now(con: Any, model_name: str, now: datetime) -> str | None:
    return deployments.alias_at(con=con, model_name=model_name, alias=PRODUCTION, at=now)


# --- fleet ----------------------------------------------------------------------------------


def fleet(store: AnyStore, *, model_name: str, now: datetime | None = None) -> schemas.FleetPublic:
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
                execution_provider=beat["execution_provider"] if beat else None,
                model_precision=beat["model_precision"] if beat else None,
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
    store: AnyStore,
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
    store: AnyStore,
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
        moves = deployments.recent(con=con, limit=500)
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
                model_version=row.get("model_version"),
                reference_model_version=row.get("reference_model_version"),
            )
        )
    promotions = [
        schemas.PromotionPublic(
            t=int(m["created_at"].timestamp()),
            created_at=m["created_at"],
            version=str(m["version"]),
            previous_version=m["previous_version"],
            action=str(m["action"]),
        )
        for m in reversed(moves)
        if m["alias"] == PRODUCTION and m["created_at"] >= since
    ]
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
        promotions=promotions,
    )


# --- labeling queue -------------------------------------------------------------------------


def queue_panel(store: AnyStore, *, now: datetime | None = None) -> schemas.QueuePublic:
    """Queue size by camera and priority band, the oldest pending item, and each labeler's
    labels over the last ``THROUGHPUT_WINDOW_S`` with their rate over the time they span."""
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
        labelers=[_labeler(r) for r in labelers],
    )


def _labeler(row: dict[str, Any]) -> schemas.LabelerPublic:
    """A labeler's throughput: labels per hour over the time their labels span (110 labels
    in 5 minutes read 1,320/h, not 110 / 24 h); no rate for one label or a zero span."""
    span_s = (row["last_at"] - row["first_at"]).total_seconds()
    rate = row["labels"] * 3600 / span_s if row["labels"] >= 2 and span_s > 0 else None
    return schemas.LabelerPublic(**row, span_s=span_s, labels_per_hour=rate)


# --- retraining -----------------------------------------------------------------------------


def dagster_run_url(settings: ApiSettings, run_id: str | None) -> str | None:
    """The run's page in the Dagster UI (``EDGELOOP_DAGSTER_UI_URL``)."""
    return f"{settings.loop.dagster_ui_url.rstrip('/')}/runs/{run_id}" if run_id else None


def retraining_panel(store: AnyStore, settings: ApiSettings) -> schemas.RetrainingPublic:
    """The retrain conditions as the sensors see them (``edgeloop.rules.retrain_decision``
    on the same reads as ``/api/retraining/conditions``), the events with their Dagster
    runs, and the training runs."""
    with store.connect() as con:
        conditions = crud.retrain_conditions(con=con, loop=settings.loop)
        events = crud.recent_retraining_events(con=con, limit=30)
        runs = training_runs.recent(con=con, limit=10)
    return schemas.RetrainingPublic(
        **conditions.public_fields(),
        events=[
            schemas.ConsoleEventPublic(
                **e.model_dump(), dagster_run_url=dagster_run_url(settings, e.dagster_run_id)
            )
            for e in events
        ],
        training_runs=[schemas.TrainingRunPublic(**r) for r in runs],
        dagster_ui_url=settings.loop.dagster_ui_url,
    )


# --- inspections ----------------------------------------------------------------------------


def inspections_panel(
    store: AnyStore,
    *,
    camera_id: str | None,
    band: schemas.InspectionBand | None,
    uncertainty_band: tuple[float, float],
    with_jpeg_only: bool = True,
    limit: int,
    offset: int,
) -> schemas.InspectionsPublic:
    """One page of detections, newest first, with each box in % of its frame (overlays).

    Args:
        band: ``uncertain`` (the agent flagged it in the band), ``confident`` (confidence at
            or above the band's upper bound), ``low`` (at or below its lower bound), or None.
        uncertainty_band: the loop's ``(low, high)`` (``LoopSettings.uncertainty_low`` /
            ``uncertainty_high``, ``edgeloop.rules``).
        with_jpeg_only: only detections whose frame has a stored JPEG (agents send a frame's
            JPEG only when it has an uncertain detection).
    """
    low, high = uncertainty_band
    where = DetectionFilter(
        camera_id=camera_id,
        uncertain=True if band == "uncertain" else None,
        min_confidence=high if band == "confident" else None,
        max_confidence=low if band == "low" else None,
        with_jpeg=True if with_jpeg_only else None,
    )
    with store.connect() as con:
        cameras = analytics.camera_ids(con=con)
        rows, count = analytics.detection_page(con=con, where=where, limit=limit, offset=offset)
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
        band=band,
        uncertainty_band=uncertainty_band,
        with_jpeg_only=with_jpeg_only,
        count=count,
        limit=limit,
        offset=offset,
        cameras=cameras,
        data=data,
    )
