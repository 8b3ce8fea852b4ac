"""Response models of the console's JSON data routes (``/console/api/...``).

Times are UTC; chart series carry Unix seconds (``t``), what uPlot plots. Shares and
rates are in [0, 1]; inference in ms; boxes xyxy px of the original frame.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.models import (
    DeploymentPublic,
    DriftReportPublic,
    InspectionLogPublic,
    RetrainingConditionsBase,
    RetrainingEventPublic,
)

AgentState = Literal["online", "stale", "no heartbeat"]


class MePublic(BaseModel):
    name: str
    role: str


class FleetCameraPublic(BaseModel):
    """One camera (and the agent that last reported for it)."""

    camera_id: str
    agent_id: str | None
    host: str | None
    agent_version: str | None
    state: AgentState = Field(
        description="online: heartbeat younger than stale_after_s; stale: older; or none."
    )
    heartbeat_age_s: float | None = Field(description="Seconds since the API got its heartbeat.")
    source_connected: bool | None
    frames_per_s: float | None = Field(
        description="The rate in the agent's newest heartbeat: current when state is online, "
        "else the last value, heartbeat_age_s old."
    )
    inference_ms_p50: float | None
    inference_ms_p95: float | None
    inference_source: Literal["heartbeat", "frames", "none"] = Field(
        description="Where p50/p95 come from: the heartbeat, else the window's frames."
    )
    frames_in_window: int
    detections_per_min: float = Field(description="Detections per minute over the window.")
    uncertain_share: float | None = Field(description="Uncertain / detections in the window.")
    spool_batches: int | None
    spool_bytes: int | None
    spool_dropped_batches: int | None
    model_version: str | None = Field(description="Heartbeat's version, else the newest frame's.")
    execution_provider: str | None = Field(
        description="The ONNX Runtime execution provider from the heartbeat (CUDA, CPU, ...)."
    )
    model_precision: str | None = Field(
        None, description="Precision of the model it runs, from the heartbeat (fp32, int8)."
    )
    is_production: bool
    last_frame_at: datetime | None


class FleetPublic(BaseModel):
    generated_at: datetime
    window_s: int
    stale_after_s: float
    production_version: str | None = Field(description="From the alias history.")
    cameras: list[FleetCameraPublic]


class CameraWindowPublic(BaseModel):
    camera_id: str
    frames: int
    frames_with_detection: int
    detections: int
    uncertain: int
    detections_per_min: float
    defect_rate: float = Field(description="Share of frames with a detection.")
    uncertain_share: float | None
    inference_ms_p50: float | None
    inference_ms_p95: float | None


class SeriesPublic(BaseModel):
    """One camera's time series, one value per bucket (null: no detections)."""

    camera_id: str
    t: list[int] = Field(description="Bucket starts, Unix s.")
    detections_per_min: list[float]
    defect_rate: list[float]
    uncertain_share: list[float | None]


class ClassMixPublic(BaseModel):
    class_name: str
    detections: int
    uncertain: int
    mean_confidence: float
    share: float


class AnalyticsPublic(BaseModel):
    since: datetime
    until: datetime
    range: str
    bucket_s: int
    camera_id: str | None
    cameras: list[str] = Field(description="Every known camera (for the picker).")
    summary: list[CameraWindowPublic]
    series: list[SeriesPublic]
    confidence_edges: list[float] = Field(description="Bin edges over [0, 1].")
    confidence_histogram: list[int]
    class_mix: list[ClassMixPublic]


class DriftPointPublic(BaseModel):
    t: int = Field(description="computed_at, Unix s.")
    computed_at: datetime
    drift_share: float
    min_p_value: float | None
    p_values: dict[str, float]
    drifted: bool
    model_version: str | None = Field(
        None, description="The model version behind most frames of the current window."
    )
    reference_model_version: str | None = Field(
        None, description="The same for the reference window: differs after a promotion."
    )


class PromotionPublic(BaseModel):
    """A move of the production alias (a promotion or a rollback) in the drift range."""

    t: int = Field(description="created_at, Unix s.")
    created_at: datetime
    version: str
    previous_version: str | None
    action: str


class DriftCameraPublic(BaseModel):
    camera_id: str
    points: list[DriftPointPublic]
    latest: DriftReportPublic | None


class DriftPublic(BaseModel):
    since: datetime
    range: str
    drift_share_threshold: float
    p_value_threshold: float
    features: list[str]
    cameras: list[DriftCameraPublic]
    promotions: list[PromotionPublic] = Field(
        default_factory=list,
        description="Production alias moves in the range, oldest first (drawn on the charts).",
    )


class QueueCameraPublic(BaseModel):
    camera_id: str
    pending: int
    skipped: int
    labeled: int
    claimed: int
    high: int
    medium: int
    low: int
    top_priority: float | None
    oldest_pending_at: datetime | None


class OldestItemPublic(BaseModel):
    item_id: int
    camera_id: str
    frame_key: str
    priority: float
    created_at: datetime
    age_s: float


class LabelerPublic(BaseModel):
    labeler: str
    labels: int
    frames: int
    boxes: int
    first_at: datetime
    last_at: datetime
    span_s: float = Field(description="From the labeler's first to last label in the window, s.")
    labels_per_hour: float | None = Field(
        description="Labels per hour over span_s (the time the labels actually span, not the "
        "whole window); None for fewer than 2 labels or a zero span."
    )


class QueuePublic(BaseModel):
    generated_at: datetime
    priority_bands: dict[str, str]
    cameras: list[QueueCameraPublic]
    totals: dict[str, int]
    oldest_pending: OldestItemPublic | None
    throughput_window_s: int
    labelers: list[LabelerPublic]


class ConsoleEventPublic(RetrainingEventPublic):
    dagster_run_url: str | None = Field(description="The run in the Dagster UI.")


class TrainingRunPublic(BaseModel):
    mlflow_run_id: str
    started_at: datetime
    label_count: int
    dataset_version: str
    model_version: str | None


class RetrainingPublic(RetrainingConditionsBase):
    """The console's retraining panel: the conditions, events with Dagster links, runs."""

    events: list[ConsoleEventPublic]
    training_runs: list[TrainingRunPublic]
    dagster_ui_url: str


class VersionEvaluationPublic(BaseModel):
    """A version's own held-out evaluation as a candidate (it stays with the version)."""

    source: Literal["MLflow version tags", "alias move record"]
    compared_with: str | None = Field(description="The production version it was compared with.")
    metrics: dict[str, float] = Field(description="Its held-out mAP50, mAP50-95, ..., [0, 1].")
    production_metrics: dict[str, float] = Field(
        description="The compared production version's, on the same held-out frames."
    )
    heldout_images: int | None
    gains: dict[str, str] = Field(
        description="Metric -> candidate minus production with its 95% paired-bootstrap "
        "interval, e.g. '+0.0170 [-0.0040, +0.0380]'."
    )
    corrections_learned: str | None = Field(
        description="Share of the reviewers' changes it reproduces, e.g. '0.30 (3/10)'."
    )
    regressions: str | None = Field(description="Share of accepted frames it breaks.")
    box_regressions: str | None
    verdict: str | None = Field(description="The promotion policy's verdict, when recorded.")


class ModelVersionRowPublic(BaseModel):
    version: str
    aliases: list[str]
    created_at: datetime | None
    run_id: str | None
    description: str | None
    promotion: str | None = Field(description="The promotion outcome tagged on the version.")
    mlflow_url: str
    evaluation: VersionEvaluationPublic | None = Field(
        description="Its own held-out evaluation; None when never evaluated (the seed)."
    )
    cameras: list[str] = Field(description="Cameras running this version now.")


class CameraVersionPublic(BaseModel):
    camera_id: str
    model_version: str | None
    source: Literal["heartbeat", "frames"]
    last_frame_at: datetime | None


class ModelsPublic(BaseModel):
    model_name: str
    production_version: str | None
    staging_version: str | None
    registry_error: str | None = Field(description="Why the registry could not be listed.")
    versions: list[ModelVersionRowPublic]
    deployments: list[DeploymentPublic]
    cameras: list[CameraVersionPublic]
    mlflow_ui_url: str


class InspectionRowPublic(InspectionLogPublic):
    box_pct: tuple[float, float, float, float] = Field(
        description="The bbox as left, top, width, height in % of the frame (for overlays)."
    )


InspectionBand = Literal["uncertain", "confident", "low"]
"""Detections in the uncertainty band, at or above its upper bound, or at or below its lower."""


class InspectionsPublic(BaseModel):
    band: InspectionBand | None = Field(description="The confidence filter; None: every one.")
    uncertainty_band: tuple[float, float] = Field(description="(low, high) of the loop's band.")
    with_jpeg_only: bool = Field(description="Only detections whose frame has a stored JPEG.")
    count: int
    limit: int
    offset: int
    cameras: list[str]
    data: list[InspectionRowPublic]


class SettingPublic(BaseModel):
    group: Literal["loop", "api", "pipelines"]
    name: str
    env_var: str
    value: str
    source: str = Field(description='"env EDGELOOP_…", ".env", "argument" or "default".')
    description: str


class SettingsPublic(BaseModel):
    data: list[SettingPublic]
    notes: list[str]
