"""The one ``Definitions`` of the edgeloop code location.

``workspace.yaml`` in the repository root (a copy ships in the wheel) and pyproject.toml's
``[tool.dagster]`` load ``defs``.

Resources are built from the loop settings (``EDGELOOP_DATA_DIR`` and friends) and open
nothing at import: DuckDB, MLflow, Qdrant and the embedder are opened per use.
"""

from __future__ import annotations

import dagster as dg

from assets.datasets import training_dataset
from assets.detections import detections
from assets.drift import drift_report
from assets.embeddings import crop_embeddings
from assets.evaluation import model_evaluation
from assets.labeling import labeling_queue
from assets.registry import model_promotion
from assets.resources import (
    AssetValuesIOManager,
    DatasetRepoResource,
    EmbedderResource,
    LoopSettingsResource,
    MlflowResource,
    StoreResource,
    VectorIndexResource,
)
from assets.suggested_tags import suggested_tags
from assets.training import detector_model
from edgeloop.settings import get_settings
from pipelines.checks import training_dataset_checks
from pipelines.executors import loop_executor
from pipelines.jobs import drift_job, labeling_job, retrain_job
from pipelines.schedules import drift_schedule, labeling_schedule
from pipelines.sensors import drift_sensor, label_count_sensor, retrain_failure_sensor

loop = LoopSettingsResource()

defs = dg.Definitions(
    assets=[
        detections,
        drift_report,
        labeling_queue,
        crop_embeddings,
        suggested_tags,
        training_dataset,
        detector_model,
        model_evaluation,
        model_promotion,
    ],
    asset_checks=training_dataset_checks,
    jobs=[retrain_job, drift_job, labeling_job],
    sensors=[label_count_sensor, drift_sensor, retrain_failure_sensor],
    schedules=[drift_schedule, labeling_schedule],
    # Celery workers on any host when a broker is configured (pipelines.executors).
    executor=loop_executor(get_settings()),
    resources={
        "store": StoreResource(loop=loop),
        "mlflow": MlflowResource(loop=loop),
        "dataset_repo": DatasetRepoResource(loop=loop),
        "vectors": VectorIndexResource(loop=loop),
        "embedder": EmbedderResource(loop=loop),
        # Asset values (DatasetVersion, CandidateModel, ...) pickled under the instance's
        # storage folder (also for runs executed in process by edgeloop.cli.headless), or in
        # object storage on a networked site, where runs share no folder.
        "io_manager": AssetValuesIOManager(loop=loop),
    },
)
