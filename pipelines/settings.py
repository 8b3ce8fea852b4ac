"""Settings of the Dagster code location (env prefix ``EDGELOOP_PIPELINES_``).

Each asset's run-time knobs are defined once, in its ``dg.Config`` class (field, default,
description, bounds): ``TrainingConfig`` for ``detector_model``, ``PromotionConfig`` for
``model_promotion``, ``DriftReportConfig`` for ``drift_report``, and so on. This class
holds one of each, named after the asset, so the environment can change a default for
the runs the sensors and schedules launch: ``EDGELOOP_PIPELINES_<ASSET>__<FIELD>``, e.g.
``EDGELOOP_PIPELINES_DETECTOR_MODEL__EPOCHS=5`` or
``EDGELOOP_PIPELINES_MODEL_PROMOTION__MIN_GAIN=0.01``. ``pipelines/jobs.py`` turns them
into each job's default run config (shown and editable in the launchpad). What the API,
the CLI and the code location must agree on (the uncertainty band, the retrain threshold)
is in ``edgeloop.settings.LoopSettings`` instead.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from assets.datasets import TrainingDatasetConfig
from assets.drift import DriftReportConfig
from assets.evaluation import EvaluationConfig
from assets.labeling import LabelingQueueConfig
from assets.registry import PromotionConfig
from assets.training import TrainingConfig
from edgeloop.orchestration import PIPELINES_ENV_PREFIX


class PipelineSettings(BaseSettings):
    """The code location's knobs, read from ``EDGELOOP_PIPELINES_*`` (and ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix=PIPELINES_ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    # One run config per asset (field name = asset name), defaults from its dg.Config.
    training_dataset: TrainingDatasetConfig = Field(default_factory=TrainingDatasetConfig)
    detector_model: TrainingConfig = Field(default_factory=TrainingConfig)
    model_evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    model_promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    drift_report: DriftReportConfig = Field(default_factory=DriftReportConfig)
    labeling_queue: LabelingQueueConfig = Field(default_factory=LabelingQueueConfig)

    # Cadence of the sensors and schedules.
    sensor_interval_s: int = Field(
        30, ge=5, description="Minimum seconds between two evaluations of each sensor."
    )
    drift_cron: str = Field("*/15 * * * *", description="When drift_job runs (cron, UTC).")
    labeling_cron: str = Field("0 * * * *", description="When labeling_job runs (cron, UTC).")

    def with_overrides(self, **assets: dict[str, Any]) -> PipelineSettings:
        """A copy with some fields of some assets' configs replaced, validated again, e.g.
        ``with_overrides(detector_model={"epochs": 1})`` (the demo's ``--epochs``)."""
        data = self.model_dump()
        for asset, fields in assets.items():
            if asset not in data or not isinstance(data[asset], dict):
                raise ValueError(f"{asset!r} is not an asset config of PipelineSettings")
            data[asset] |= fields
        return type(self).model_validate(data)


@lru_cache
def get_pipeline_settings() -> PipelineSettings:
    """The code location's settings, read once from the environment."""
    return PipelineSettings()
