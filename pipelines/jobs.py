"""The code location's jobs; each gets its default run config from ``PipelineSettings``
and, as metadata, the stack it serves (``edgeloop.orchestration``: the API reads it over
GraphQL before it launches a run, and refuses another stack's Dagster)."""

from __future__ import annotations

import logging

import dagster as dg

from edgeloop.orchestration import (
    DATA_DIR_KEY,
    DRIFT_JOB,
    JOB_TAG,
    LABELING_JOB,
    RETRAIN_JOB,
    STACK_TAG,
)
from edgeloop.settings import LoopSettings, get_settings
from edgeloop.store import StoreUnavailableError
from pipelines.settings import PipelineSettings, get_pipeline_settings

logger = logging.getLogger(__name__)


RETRAIN_ASSETS = (
    "training_dataset",
    "detector_model",
    "model_evaluation",
    "model_promotion",
)
"""The assets of retrain_job that take run config (``detections`` takes none)."""


def run_config(settings: PipelineSettings, assets: tuple[str, ...]) -> dg.RunConfig:
    """The run config of ``assets`` (asset name = op name) from ``settings``' asset configs."""
    return dg.RunConfig(ops={name: getattr(settings, name) for name in assets})


def retrain_run_config(settings: PipelineSettings) -> dg.RunConfig:
    """retrain_job's run config: dataset minimums, training knobs, evaluation size, policy."""
    return run_config(settings, RETRAIN_ASSETS)


def drift_run_config(settings: PipelineSettings) -> dg.RunConfig:
    """drift_job's run config: the drift windows."""
    return run_config(settings, ("drift_report",))


def labeling_run_config(settings: PipelineSettings) -> dg.RunConfig:
    """labeling_job's run config: the queue's drift boost."""
    return run_config(settings, ("labeling_queue",))


def stack_metadata(settings: LoopSettings) -> dict[str, str]:
    """Job metadata naming the stack this code location serves: its data folder (absolute)
    and the stack id, when it has one (``edgeloop init`` and ``edgeloop up`` write it;
    importing the code location writes nothing). A networked site's database that cannot
    be reached now leaves the id out (the API refuses to launch until Dagster reloads)."""
    try:
        found = settings.read_stack_id()
    except StoreUnavailableError as exc:
        logger.warning("stack id unknown, the database is unreachable: %s", exc)
        found = None
    data_dir = str(settings.data_dir.resolve())
    return {DATA_DIR_KEY: data_dir} | ({STACK_TAG: found} if found else {})


_settings = get_pipeline_settings()
_stack = stack_metadata(get_settings())


def _job(
    name: str,
    selection: dg.AssetSelection,
    config: dg.RunConfig,
    description: str,
    tags: dict[str, str] | None = None,
) -> dg.UnresolvedAssetJobDefinition:
    """An asset job that names, as metadata, the stack it serves (``stack_metadata``): the
    API reads it before a launch and refuses another stack's Dagster."""
    return dg.define_asset_job(
        name,
        selection=selection,
        config=config,
        description=description,
        tags=tags,
        metadata=_stack,
    )


retrain_job = _job(
    RETRAIN_JOB,
    # detections and training_dataset first, so the run trains on what is stored now;
    # the blocking checks on training_dataset run in the same job.
    dg.AssetSelection.assets("model_promotion").upstream(),
    retrain_run_config(_settings),
    "Rebuild the dataset, fine-tune from production, evaluate, apply the promotion policy.",
    tags={JOB_TAG: "retrain"},
)

drift_job = _job(
    DRIFT_JOB,
    dg.AssetSelection.assets("detections", "drift_report"),
    drift_run_config(_settings),
    "Per-camera drift of frame-quality features (Evidently); the drift sensor reads it.",
)

labeling_job = _job(
    LABELING_JOB,
    dg.AssetSelection.assets("labeling_queue", "crop_embeddings", "suggested_tags"),
    labeling_run_config(_settings),
    "Re-rank the labeling queue, index new crops for similarity search, suggest their tags.",
)
