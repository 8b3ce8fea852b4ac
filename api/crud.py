"""The API's data access: the store's reads (``edgeloop.store``) mapped to API models.

The SQL of every table lives in the ``edgeloop.store`` module that owns it; this module
only turns its rows into the ``*Public`` models of ``api.models``. Callers open the
connection with ``Store.connect()`` (short-lived, retrying on lock) and keep it only for
the queries. Boxes are ``(x1, y1, x2, y2)`` pixels of the original frame; times are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.models import (
    CameraMetricsPublic,
    DeploymentPublic,
    DriftReportPublic,
    HealthCounts,
    InspectionLogPublic,
    ProposedBoxPublic,
    QueueItemPublic,
    RetrainingEventPublic,
)
from edgeloop.rules import RetrainDecision
from edgeloop.settings import LoopSettings
from edgeloop.store import Connection, deployments, drift, frames, labels, queue, retraining
from edgeloop.store.migrations import schema_version

__all__ = ["schema_version"]


def frame_url(frame_key: str) -> str:
    """Path of a frame's JPEG on this API."""
    return f"/api/frames/{frame_key}.jpg"


# --- health and metrics -------------------------------------------------------------------


def health_counts(*, con: Connection) -> HealthCounts:
    """Frames, detections, pending queue items and reviewed labels stored."""
    n_frames, n_detections = frames.counts(con=con)
    return HealthCounts(
        frames=n_frames,
        detections=n_detections,
        queue_pending=queue.status_counts(con=con)["pending"],
        reviewed_labels=labels.count(con=con),
    )


def queue_counts(*, con: Connection) -> dict[str, int]:
    """Queue items per status (``pending``, ``skipped``, ``labeled``; zero when absent)."""
    return queue.status_counts(con=con)


def camera_metrics(
    *,
    con: Connection,
    window_s: float,
    now: datetime,
    histograms: frames.ConfidenceHistograms | None = None,
) -> list[CameraMetricsPublic]:
    """Per-camera ingest figures; frames/s counts frames received in ``(now - window_s, now]``.

    ``histograms`` (the app's incremental histograms) saves a scan of every detection.
    """
    histograms_now = (histograms or frames.ConfidenceHistograms()).read(con=con)
    empty = [0] * frames.CONFIDENCE_BINS
    return [
        CameraMetricsPublic(
            camera_id=row["camera_id"],
            frames=row["frames"],
            detections=int(row["detections"] or 0),
            frames_per_s=row["recent"] / window_s,
            mean_inference_ms=row["mean_inference_ms"],
            confidence_histogram=histograms_now.get(row["camera_id"], empty),
            defect_rate=float(row["defect_rate"]),
            last_received_at=row["last_received_at"],
        )
        for row in frames.camera_ingest(con=con, window_s=window_s, now=now)
    ]


# --- inspection logs ----------------------------------------------------------------------


def list_inspection_logs(
    *, con: Connection, where: frames.DetectionFilter, limit: int, offset: int
) -> tuple[list[InspectionLogPublic], int]:
    """Detections joined with their frames, newest capture first; and the total count."""
    rows, total = frames.list_detections(con=con, where=where, limit=limit, offset=offset)
    logs = [
        InspectionLogPublic(
            **{k: v for k, v in row.items() if k not in ("x1", "y1", "x2", "y2", "has_jpeg")},
            bbox_xyxy=(row["x1"], row["y1"], row["x2"], row["y2"]),
            frame_url=frame_url(row["frame_key"]) if row["has_jpeg"] else None,
        )
        for row in rows
    ]
    return logs, total


# --- frames -------------------------------------------------------------------------------


def get_frame(*, con: Connection, frame_key: str) -> dict[str, Any] | None:
    """The ``frames`` row of ``frame_key`` as a dict, or None."""
    return frames.get_frame(con=con, frame_key=frame_key)


def frame_detections(*, con: Connection, frame_key: str) -> list[ProposedBoxPublic]:
    """The frame's detections, in the order the detector produced them."""
    return [
        ProposedBoxPublic(
            detection_id=r["detection_id"],
            bbox_xyxy=(r["x1"], r["y1"], r["x2"], r["y2"]),
            class_id=r["class_id"],
            class_name=r["class_name"],
            confidence=r["confidence"],
            uncertain=r["uncertain"],
        )
        for r in frames.frame_detections(con=con, frame_key=frame_key)
    ]


def detection_class_names(*, con: Connection) -> list[str]:
    """Class names seen in the detections (the fallback when no production model exists)."""
    return frames.detection_class_names(con=con)


# --- labeling queue -----------------------------------------------------------------------


def list_queue_items(
    *, con: Connection, status: str, camera_id: str | None, limit: int, offset: int
) -> tuple[list[QueueItemPublic], int]:
    """Queue items with ``status``, highest priority first; and the total count."""
    rows, total = queue.list_items(
        con=con, status=status, camera_id=camera_id, limit=limit, offset=offset
    )
    return [QueueItemPublic(**r) for r in rows], total


def get_queue_item(*, con: Connection, item_id: int) -> QueueItemPublic | None:
    row = queue.get_item(con=con, item_id=item_id)
    return QueueItemPublic(**row) if row else None


def claim_next_queue_item(
    *,
    con: Connection,
    camera_id: str | None,
    labeler: str,
    lease_s: float,
    exclude: Sequence[int],
) -> QueueItemPublic | None:
    """The item to label next, claimed for ``labeler`` (``edgeloop.store.queue.claim_next``)."""
    row = queue.claim_next(
        con=con,
        camera_id=camera_id,
        labeler=labeler,
        now=datetime.now(UTC),
        lease=timedelta(seconds=lease_s),
        exclude=exclude,
    )
    return QueueItemPublic(**row) if row else None


# --- drift and retraining -----------------------------------------------------------------


def latest_drift_reports(*, con: Connection) -> list[dict[str, Any]]:
    """The newest ``drift_reports`` row of each camera (p_values parsed from JSON)."""
    return drift.latest_per_camera(con=con)


def recent_retraining_events(*, con: Connection, limit: int = 20) -> list[RetrainingEventPublic]:
    return [RetrainingEventPublic(**r) for r in retraining.recent(con=con, limit=limit)]


# --- model deployments --------------------------------------------------------------------


def recent_deployments(
    *, con: Connection, model_name: str, limit: int = 20
) -> list[DeploymentPublic]:
    return [
        DeploymentPublic(**r)
        for r in deployments.recent(con=con, model_name=model_name, limit=limit)
    ]


def version_metrics(*, con: Connection, model_name: str, version: str) -> dict[str, Any]:
    """A version's own evidence: the held-out evaluation recorded with the newest alias move
    that carried one (``deployments.evaluation_records``), so a rollback or a hand promotion
    (which record ``promoted_from`` only) never hides it; else the metrics of the version's
    newest move ({} when it has none)."""
    evaluated = deployments.evaluation_records(con=con, model_name=model_name).get(version)
    if evaluated is not None:
        return evaluated
    return deployments.latest_metrics(con=con, model_name=model_name, version=version)


_PUBLIC_CONDITION_FIELDS = (
    "labels_since_training",
    "label_threshold",
    "drift_min_labels",
    "drift_cooldown_h",
    "last_retrain_at",
    "drift",
)
"""The fields ``RetrainConditions`` shares, by name, with ``RetrainingConditionsBase``."""


@dataclass(frozen=True)
class RetrainConditions:
    """What the sensors decide on: labeled frames since the last training run against the
    threshold, each camera's latest drift report, the drift-retrain settings, when the
    last retrain started, and ``edgeloop.rules.retrain_decision``."""

    labels_since_training: int
    label_threshold: int
    drift_min_labels: int
    drift_cooldown_h: float
    last_retrain_at: datetime | None
    drift: list[DriftReportPublic]
    decision: RetrainDecision

    def public_fields(self) -> dict[str, Any]:
        """The fields of ``RetrainingConditionsBase`` (the API's and the console's view):
        this object's own fields under their names, the decision's under the public ones."""
        own = {name: getattr(self, name) for name in _PUBLIC_CONDITION_FIELDS}
        return {
            **own,
            "drift_cooldown_until": self.decision.cooldown_until,
            "drifted_cameras": self.decision.drifted_cameras,
            "retrain_due": self.decision.due,
            "reasons": self.decision.reasons,
        }


def retrain_conditions(*, con: Connection, loop: LoopSettings) -> RetrainConditions:
    """The retrain conditions as the sensors see them (``/api/retraining/conditions`` and
    the console's retraining panel read them here), with the loop's settings
    (``EDGELOOP_RETRAIN_LABEL_COUNT``, ``EDGELOOP_DRIFT_RETRAIN_MIN_LABELS``,
    ``EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H``)."""
    since = labels.since_last_training(con=con)
    last_retrain = retraining.last_retrain_at(con=con)
    reports = [DriftReportPublic.from_row(row, loop=loop) for row in latest_drift_reports(con=con)]
    drifted = [report.camera_id for report in reports if report.drifted]
    return RetrainConditions(
        labels_since_training=since,
        label_threshold=loop.retrain_label_count,
        drift_min_labels=loop.drift_retrain_min_labels,
        drift_cooldown_h=loop.drift_retrain_cooldown_h,
        last_retrain_at=last_retrain,
        drift=reports,
        decision=loop.retrain_decision(since, drifted, last_retrain_at=last_retrain),
    )
