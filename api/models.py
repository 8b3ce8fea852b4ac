"""The API's request and response models (``XBase`` / ``XCreate`` / ``XPublic``).

The agent-facing wire models (``IngestBatch``, ``IngestAck``, ``ProductionModel``) live in
``edgeloop.wire`` and are not repeated here. Boxes are ``(x1, y1, x2, y2)`` pixels of the
original frame, origin top-left (xyxy); times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgeloop.annotations import ReviewedBox
from edgeloop.rules import (
    DRIFT_RETRAIN_COOLDOWN_H,
    DRIFT_RETRAIN_MIN_LABELS,
    RETRAIN_LABEL_COUNT,
    camera_drifted,
)
from edgeloop.settings import REPORTS_PREFIX, LoopSettings
from edgeloop.wire import BBoxXYXY

QueueStatus = Literal["pending", "skipped", "labeled"]


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- health -------------------------------------------------------------------------------


class HealthCounts(_Public):
    frames: int
    detections: int
    queue_pending: int
    reviewed_labels: int


class HealthPublic(_Public):
    """``/api/health``: liveness for anyone; with a token, whether the store answers and
    what the loop holds."""

    status: Literal["ok", "degraded"]
    scope: Literal["liveness", "full"] = Field(
        description=(
            "liveness: no token was sent, only the process was checked (no store, no "
            "MLflow; the other fields are null); full: a valid token was sent and the store "
            "(one attempt, no retry) and the registry were asked."
        )
    )
    version: str = Field(description="The API's package version.")
    store: bool | None = Field(
        None,
        description=(
            "True when the store (the DuckDB file, or PostgreSQL with EDGELOOP_DATABASE_URL) "
            "answered; null for liveness."
        ),
    )
    store_backend: Literal["duckdb", "postgres"] | None = Field(
        None, description="Which store this API uses; null for liveness."
    )
    duckdb: bool | None = Field(
        None,
        deprecated="use `store` (the same value on either backend); kept for older probes",
        description="The same value as `store` (its name from before the PostgreSQL backend).",
    )
    schema_version: int | None = None
    production_model_version: str | None = None
    counts: HealthCounts | None = None
    errors: list[str] = Field(default_factory=list)


# --- metrics ------------------------------------------------------------------------------


class CameraMetricsPublic(_Public):
    camera_id: str
    frames: int
    detections: int
    frames_per_s: float = Field(description="Frames received per second over the window.")
    mean_inference_ms: float | None
    confidence_histogram: list[int] = Field(
        description="Detections per confidence bin: 10 bins of width 0.1 over [0, 1]."
    )
    defect_rate: float = Field(description="Share of frames with at least one detection, [0, 1].")
    last_received_at: datetime | None


class MetricsPublic(_Public):
    """``/api/metrics``: per-camera ingest figures, queue size and labels since training."""

    generated_at: datetime
    window_s: float
    cameras: list[CameraMetricsPublic]
    queue_pending: int
    queue_skipped: int
    labels_since_training: int


# --- models -------------------------------------------------------------------------------


class ModelVersionPublic(_Public):
    version: str
    alias: str
    run_id: str | None
    description: str | None
    created_at: datetime | None
    metrics: dict[str, Any] = Field(
        description="Metrics of the latest model_deployments row for this version (mAP50, ...)."
    )


class DeploymentPublic(_Public):
    deployment_id: int
    created_at: datetime
    model_name: str
    version: str
    alias: str
    previous_version: str | None
    action: str
    actor: str
    reason: str
    metrics: dict[str, Any]


class ModelStatusPublic(_Public):
    """``/api/model-status``: the production and staging versions and recent alias moves."""

    model_name: str
    production: ModelVersionPublic | None
    staging: ModelVersionPublic | None
    recent_deployments: list[DeploymentPublic]


class ModelRunPublic(_Public):
    """A run of a camera's frames that one model version produced."""

    model_version: str
    first_frame_at: datetime = Field(description="Capture time of the run's first frame.")
    last_frame_at: datetime = Field(description="Capture time of the run's last frame.")
    frames: int


class CameraModelsPublic(_Public):
    """``/api/cameras/{camera_id}/models``: which model a camera ran, and when."""

    camera_id: str
    history: list[ModelRunPublic] = Field(description="Runs of frames per version, oldest first.")
    at: datetime | None = Field(description="The moment asked about, if any.")
    version_at: str | None = Field(
        description="The version on the camera's newest frame at or before `at`."
    )
    last_frame_before_at: datetime | None
    production_at: str | None = Field(description="The version `production` pointed at, at `at`.")


class RollbackCreate(BaseModel):
    """``POST /api/models/production/rollback`` body."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why; recorded with the move.")
    to_version: str | None = Field(
        None, max_length=32, description="Version to restore; default the previous production."
    )


class RollbackPublic(_Public):
    model_name: str
    production_version: str
    rolled_back_from: str | None


# --- inspection logs ----------------------------------------------------------------------


class InspectionLogPublic(_Public):
    """One detection joined with its frame."""

    detection_id: str
    frame_key: str
    camera_id: str
    frame_index: int
    captured_at: datetime
    received_at: datetime
    class_id: int
    class_name: str
    confidence: float
    bbox_xyxy: tuple[float, float, float, float]
    uncertain: bool
    model_version: str
    width: int
    height: int
    frame_url: str | None


class InspectionLogsPublic(_Public):
    data: list[InspectionLogPublic]
    count: int = Field(description="Detections matching the filters (all pages).")


# --- labeling queue -----------------------------------------------------------------------


class QueueItemBase(_Public):
    item_id: int
    frame_key: str
    camera_id: str
    priority: float = Field(description="Max uncertainty score of the frame's detections, [0, 1].")
    uncertain_count: int
    status: QueueStatus
    skip_count: int
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None = Field(
        None, description="Who holds the item (GET /next claims it), while the lease lasts."
    )
    claimed_until: datetime | None = Field(None, description="When that claim expires, UTC.")


class QueueItemPublic(QueueItemBase):
    pass


class QueueItemsPublic(_Public):
    data: list[QueueItemPublic]
    count: int = Field(description="Items matching the filters (all pages).")


class ProposedBoxPublic(_Public):
    """One detection of the frame, proposed to the labeler."""

    detection_id: str
    bbox_xyxy: tuple[float, float, float, float]
    class_id: int
    class_name: str
    confidence: float
    uncertain: bool


class LabelBox(BaseModel):
    """One reviewed box: xyxy px of the original frame and its class name."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    bbox_xyxy: BBoxXYXY = Field(description="(x1, y1, x2, y2) px of the original frame.")
    class_name: str = Field(min_length=1, max_length=64)


class LabelBase(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    boxes: list[LabelBox] = Field(default_factory=list, max_length=1000)
    no_object: bool = Field(False, description="True: the frame holds no object of any class.")

    @model_validator(mode="after")
    def _boxes_or_no_object(self) -> LabelBase:
        if self.no_object and self.boxes:
            raise ValueError("no_object is true but boxes were sent; send one or the other")
        if not self.no_object and not self.boxes:
            raise ValueError(
                'no boxes were sent; send at least one box, or "no_object": true for an empty frame'
            )
        return self


class LabelCreate(LabelBase):
    """``POST /api/labeling-queue/{item_id}/label`` body."""

    edit: bool = Field(
        False,
        description=(
            "True to replace the label of an item that is labeled already (recorded as a new "
            "label naming the one it replaces); without it such a label is a 409."
        ),
    )


class LabelPublic(_Public):
    label_id: int
    item_id: int
    frame_key: str
    camera_id: str
    boxes: list[ReviewedBox]
    box_count: int
    labeler: str
    labeled_at: datetime
    replaces_label_id: int | None = Field(
        None, description="The label this one replaced (an explicit edit), or null."
    )
    labels_since_training: int


class QueueItemDetailPublic(QueueItemBase):
    """A queue item with what the labeling page needs to draw and label it."""

    frame_index: int
    captured_at: datetime
    width: int
    height: int
    frame_url: str | None = Field(description="Path of the frame JPEG on this API, or null.")
    proposed_boxes: list[ProposedBoxPublic]
    class_names: list[str] = Field(description="Class names of the production model, by class_id.")
    latest_label: LabelPublic | None = Field(description="The current label, when labeled.")
    labels_since_training: int


# --- drift and retraining -----------------------------------------------------------------


class DriftReportPublic(_Public):
    camera_id: str
    computed_at: datetime
    reference_frames: int
    current_frames: int
    drift_share: float = Field(description="Share of monitored features that drifted, [0, 1].")
    min_p_value: float | None
    p_values: dict[str, float] = Field(description="Per-feature KS p-values, feature -> p.")
    drifted: bool = Field(
        description="The seed's rule (edgeloop.rules.camera_drifted) on this row."
    )
    report_path: str | None
    report_url: str | None = Field(description="Path of the HTML report on this API, or null.")

    @classmethod
    def from_row(cls, row: dict[str, Any], *, loop: LoopSettings) -> DriftReportPublic:
        """From a ``drift_reports`` row; ``drifted`` re-evaluated with the seed's rule.

        ``report_url`` is ``/<report_path>`` for a stored object key under ``reports/``
        (``api.routes.reports``), or ``/reports/<path>`` for an older absolute path under
        ``loop.reports_dir``.
        """
        report_url = None
        stored = row.get("report_path")
        if stored and stored.startswith(REPORTS_PREFIX):  # an object key: /reports/...
            report_url = f"/{stored}"
        elif stored:  # an absolute path of a row written before paths were relative
            report = loop.data_path(stored).resolve()
            if report.is_relative_to(loop.reports_dir.resolve()):
                relative = report.relative_to(loop.reports_dir.resolve())
                report_url = f"/reports/{relative.as_posix()}"
        return cls(
            **row
            | {
                "drifted": camera_drifted(row["drift_share"], row["min_p_value"]),
                "report_url": report_url,
            }
        )


class DriftReportsPublic(_Public):
    data: list[DriftReportPublic]


class RetrainingEventPublic(_Public):
    event_id: int
    created_at: datetime
    trigger: str
    camera_id: str | None
    decision: str
    reason: str
    labels_since_training: int
    run_key: str | None
    dagster_run_id: str | None
    run_status: str | None = Field(
        None, description="What became of the run: started, succeeded or failed."
    )
    candidate_version: str | None = Field(None, description="The version the run registered.")
    outcome: str | None = Field(None, description="The promotion outcome, or why the run failed.")


class RetrainingConditionsBase(_Public):
    """The seed's retrain rules evaluated now (``api.crud.retrain_conditions``)."""

    labels_since_training: int
    label_threshold: int = Field(
        description=(
            f"Labels that make a retrain due (EDGELOOP_RETRAIN_LABEL_COUNT, default "
            f"{RETRAIN_LABEL_COUNT})."
        )
    )
    drift_min_labels: int = Field(
        description=(
            "Fewest new labels for which drift launches a retrain "
            f"(EDGELOOP_DRIFT_RETRAIN_MIN_LABELS, default {DRIFT_RETRAIN_MIN_LABELS})."
        )
    )
    drift_cooldown_h: float = Field(
        description=(
            "No drift retrain within this many hours of the last retrain "
            f"(EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H, default {DRIFT_RETRAIN_COOLDOWN_H:g}; 0: off)."
        )
    )
    last_retrain_at: datetime | None = Field(
        description="When the last retrain started (any trigger); null when none did."
    )
    drift_cooldown_until: datetime | None = Field(
        description="While the cooldown holds drift retrains back, when it ends; else null."
    )
    drift: list[DriftReportPublic]
    drifted_cameras: list[str]
    retrain_due: bool
    reasons: list[str]


class RetrainingConditionsPublic(RetrainingConditionsBase):
    """``/api/retraining/conditions``: the conditions and the recent events."""

    recent_events: list[RetrainingEventPublic]


class RetrainingTriggerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("manual trigger", max_length=500)


class RetrainingTriggerPublic(_Public):
    dagster_run_id: str
    event_id: int
    job_name: str
    dagster_url: str
