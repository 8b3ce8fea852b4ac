"""``/api/metrics`` (per-camera figures, JSON), ``/api/metrics/drift`` and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import crud, deps
from api.deps import (
    CurrentPrincipal,
    MetricsDep,
    SettingsDep,
    StoreDep,
    secured_router,
)
from api.models import DriftReportPublic, DriftReportsPublic, MetricsPublic
from edgeloop.store import labels

router = secured_router("/api/metrics", tag="metrics")
prometheus_router = secured_router("", tag="metrics", store=False)


@router.get("", response_model=MetricsPublic)
def read_metrics(
    _principal: CurrentPrincipal,
    settings: SettingsDep,
    store: StoreDep,
    histograms: deps.HistogramsDep,
) -> MetricsPublic:
    """Per camera: frames, frames/s over the window (by received_at), mean inference ms,
    confidence histogram (10 bins over [0, 1]), defect rate (share of frames with at least
    one detection); plus queue sizes and reviewed labels since the last training run."""
    now = datetime.now(UTC)
    with store.connect() as con:
        cameras = crud.camera_metrics(
            con=con, window_s=settings.metrics_window_s, now=now, histograms=histograms
        )
        queue = crud.queue_counts(con=con)
        since = labels.since_last_training(con=con)
    return MetricsPublic(
        generated_at=now,
        window_s=settings.metrics_window_s,
        cameras=cameras,
        queue_pending=queue["pending"],
        queue_skipped=queue["skipped"],
        labels_since_training=since,
    )


@router.get("/drift", response_model=DriftReportsPublic)
def read_drift(
    _principal: CurrentPrincipal, settings: SettingsDep, store: StoreDep
) -> DriftReportsPublic:
    """The latest drift report of each camera: drift share, per-feature p-values, the seed's
    verdict (``edgeloop.rules.camera_drifted``) and a link to the HTML report."""
    with store.connect() as con:
        rows = crud.latest_drift_reports(con=con)
    return DriftReportsPublic(
        data=[DriftReportPublic.from_row(r, loop=settings.loop) for r in rows]
    )


@prometheus_router.get("/metrics", response_class=Response)
def prometheus_metrics(_principal: CurrentPrincipal, metrics: MetricsDep) -> Response:
    """Prometheus exposition: ingest counters, ingest stage and request latency histograms
    (the latter recorded by prometheus-fastapi-instrumentator, ``api.telemetry``)."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
