"""The code location's jobs; each gets its default run config from ``PipelineSettings``."""

from __future__ import annotations

import dagster as dg

from assets.datasets import TrainingDatasetConfig
from assets.drift import DriftReportConfig
from assets.labeling import LabelingQueueConfig
from assets.registry import PromotionConfig
from assets.training import EvaluationConfig, TrainingConfig
from pipelines.settings import PipelineSettings, get_pipeline_settings

RETRAIN_JOB = "retrain_job"
DRIFT_JOB = "drift_job"
LABELING_JOB = "labeling_job"


def retrain_run_config(settings: PipelineSettings) -> dg.RunConfig:
    """retrain_job's defaults: dataset minimums, training knobs, evaluation size, policy."""
    return dg.RunConfig(
        ops={
            "training_dataset": TrainingDatasetConfig(
                min_train_images=settings.min_train_images,
                min_val_images=settings.min_val_images,
            ),
            "detector_model": TrainingConfig(
                epochs=settings.train_epochs,
                imgsz=settings.train_imgsz,
                batch=settings.train_batch,
                patience=settings.train_patience,
                freeze=settings.train_freeze,
                mlflow_ui_url=settings.mlflow_ui_url,
            ),
            "model_evaluation": EvaluationConfig(imgsz=settings.eval_imgsz),
            "model_promotion": PromotionConfig(
                min_gain=settings.promotion_min_gain,
                auto_promote=settings.auto_promote,
                max_map50_drop=settings.promotion_max_map50_drop,
            ),
        }
    )


def drift_run_config(settings: PipelineSettings) -> dg.RunConfig:
    return dg.RunConfig(
        ops={
            "drift_report": DriftReportConfig(
                window_frames=settings.drift_window_frames,
                min_window_frames=settings.drift_min_window_frames,
            )
        }
    )


def labeling_run_config(settings: PipelineSettings) -> dg.RunConfig:
    return dg.RunConfig(
        ops={"labeling_queue": LabelingQueueConfig(drift_boost=settings.drift_queue_boost)}
    )


_settings = get_pipeline_settings()

retrain_job = dg.define_asset_job(
    RETRAIN_JOB,
    # detections and training_dataset first, so the run trains on what is stored now;
    # the blocking checks on training_dataset run in the same job.
    selection=dg.AssetSelection.assets("model_promotion").upstream(),
    config=retrain_run_config(_settings),
    description="Rebuild the dataset, fine-tune from production, evaluate, apply the promotion policy.",
    tags={"edgeloop/job": "retrain"},
)

drift_job = dg.define_asset_job(
    DRIFT_JOB,
    selection=dg.AssetSelection.assets("detections", "drift_report"),
    config=drift_run_config(_settings),
    description="Per-camera drift of frame-quality features (Evidently); the drift sensor reads it.",
)

labeling_job = dg.define_asset_job(
    LABELING_JOB,
    selection=dg.AssetSelection.assets("labeling_queue", "crop_embeddings"),
    config=labeling_run_config(_settings),
    description="Re-rank the labeling queue and index new crops for similarity search.",
)
