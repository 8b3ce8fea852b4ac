"""Settings of the Dagster code location (env prefix ``EDGELOOP_PIPELINES_``).

Training knobs, the promotion policy, the drift window and the sensor/schedule cadence.
``pipelines/jobs.py`` turns the run-time knobs into each job's default run config (shown
and editable in the launchpad), so sensor- and schedule-launched runs use them too; a
one-off materialization from the asset graph uses the assets' ``dg.Config`` defaults,
which are the same numbers unless the environment overrides them here.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from assets.labeling import DRIFT_BOOST
from assets.registry import DEFAULT_MAX_MAP50_DROP, DEFAULT_MIN_GAIN
from assets.training import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_EVAL_IMGSZ,
    DEFAULT_FREEZE,
    DEFAULT_IMGSZ,
    DEFAULT_PATIENCE,
)
from edgeloop.rules import RETRAIN_LABEL_COUNT


class PipelineSettings(BaseSettings):
    """Knobs of the pipelines, read from ``EDGELOOP_PIPELINES_*`` (and ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix="EDGELOOP_PIPELINES_", env_file=".env", extra="ignore"
    )

    # Training (detector_model). Defaults sized for a demo retrain on ~50–100 images in a
    # few minutes on 2 CPU cores: ~49 s per epoch on 54 images at 640 px, batch 8, backbone
    # frozen (see assets/training.py).
    train_epochs: int = Field(DEFAULT_EPOCHS, ge=1, description="Fine-tuning epochs.")
    train_imgsz: int = Field(
        DEFAULT_IMGSZ, ge=32, description="Training image size, px (multiple of 32)."
    )
    train_batch: int = Field(DEFAULT_BATCH, ge=1, description="Images per training batch.")
    train_patience: int = Field(
        DEFAULT_PATIENCE, ge=1, description="Early stopping: epochs without fitness gain."
    )
    train_freeze: int = Field(
        DEFAULT_FREEZE,
        ge=0,
        description="Leading layers kept frozen (10 = the YOLOv8 backbone); 0 trains all.",
    )
    eval_imgsz: int = Field(
        DEFAULT_EVAL_IMGSZ,
        ge=32,
        description="Image size of the held-out evaluation, px (the agents' input size).",
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        description="Where the MLflow UI serves the tracking store (links in asset metadata).",
    )

    # Promotion policy (model_promotion; see assets/registry.py::promotion_decision).
    promotion_min_gain: float = Field(
        DEFAULT_MIN_GAIN,
        ge=0,
        description="staging when held-out mAP50-95 beats production's by more than this.",
    )
    auto_promote: bool = Field(
        True, description="Also move production to a candidate that passes the policy."
    )
    promotion_max_map50_drop: float = Field(
        DEFAULT_MAX_MAP50_DROP,
        ge=0,
        description="Auto-promotion refuses a candidate whose held-out mAP50 drops by more than this.",
    )

    # Dataset size (training_dataset's config and the minimum-size check).
    min_train_images: int = Field(8, ge=1, description="Fewest train images worth training on.")
    min_val_images: int = Field(2, ge=1, description="Fewest held-out images worth evaluating on.")

    # Retraining triggers (sensors).
    retrain_label_count: int = Field(
        RETRAIN_LABEL_COUNT,
        ge=1,
        description="Reviewed labels since the last training run that trigger a retrain.",
    )
    drift_queue_boost: float = Field(
        DRIFT_BOOST,
        gt=0,
        description="Queue priority factor for a drifted camera when no new labels exist.",
    )
    sensor_interval_s: int = Field(
        30, ge=5, description="Minimum seconds between two evaluations of each sensor."
    )

    # Drift window (drift_report) and schedules.
    drift_window_frames: int = Field(
        200, ge=10, description="The most frames in the drift reference and current windows."
    )
    drift_min_window_frames: int = Field(
        30, ge=5, description="A camera with fewer frames than this in a window is skipped."
    )
    drift_cron: str = Field("*/15 * * * *", description="When drift_job runs (cron, UTC).")
    labeling_cron: str = Field("0 * * * *", description="When labeling_job runs (cron, UTC).")


@lru_cache
def get_pipeline_settings() -> PipelineSettings:
    """The code location's settings, read once from the environment."""
    return PipelineSettings()
