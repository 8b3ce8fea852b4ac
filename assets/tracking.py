"""The MLflow side of training: one run per fine-tune, its params, metrics and artifacts,
and the model version registered from it.

``mlflow_run`` opens the run and closes it ``FINISHED`` when its block succeeds or
``FAILED`` when the block raises (any exception, ``KeyboardInterrupt`` included), then
re-raises. Metrics go in with one ``log_batch`` per call, all at the same timestamp.
"""

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from edgeloop.files import sha256_file
from edgeloop.registry import (
    MODEL_ARTIFACT_DIR,
    PRODUCTION,
    ModelFiles,
    ModelNotFoundError,
    alias_model_files,
    register_model_version,
)
from edgeloop.settings import LoopSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def mlflow_run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI at ``ui_url`` (e.g. ``http://127.0.0.1:5000``)."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def log_metrics(
    client: "MlflowClient", run_id: str, values: Mapping[str, float], step: int = 0
) -> None:
    """Log ``values`` to ``run_id`` in one batch, at one timestamp (ms) and ``step``."""
    from mlflow.entities import Metric

    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(key, float(value), now_ms, step) for key, value in values.items()]
    )


@dataclass(frozen=True)
class TrackedRun:
    """An open MLflow run (see ``mlflow_run``)."""

    client: "MlflowClient"
    experiment_id: str
    run_id: str

    def url(self, ui_url: str) -> str:
        """The run's page in the MLflow UI at ``ui_url``."""
        return mlflow_run_url(ui_url, self.experiment_id, self.run_id)

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log every param (as ``str(value)``) in one batch."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        """Log ``values`` in one batch at ``step`` (an ``assets.yolo.EpochSink``)."""
        log_metrics(self.client, self.run_id, values, step)

    def log_files(self, paths: Iterable[Path], artifact_path: str) -> None:
        """Log each file under ``artifact_path`` of the run's artifacts."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def register_model(
        self, model_dir: Path, *, model_name: str, description: str, tags: Mapping[str, str]
    ) -> str:
        """Log ``model_dir`` (``best.pt``, ``best.onnx``, ``model.json``) as the run's
        ``model/`` artifacts and register it as a new version of ``model_name``.

        The version gets ``tags`` plus ``pt_sha256``/``onnx_sha256`` of the files; the run
        gets the tag ``model_version``. Returns the new version (e.g. ``"3"``).
        """
        self.client.log_artifacts(self.run_id, str(model_dir), MODEL_ARTIFACT_DIR)
        version = register_model_version(
            self.client,
            model_name=model_name,
            run_id=self.run_id,
            description=description,
            tags={
                **tags,
                "pt_sha256": sha256_file(model_dir / "best.pt"),
                "onnx_sha256": sha256_file(model_dir / "best.onnx"),
            },
        )
        self.client.set_tag(self.run_id, "model_version", str(version.version))
        return str(version.version)


@contextmanager
def mlflow_run(
    client: "MlflowClient", experiment_id: str, *, run_name: str, tags: Mapping[str, str]
) -> Iterator[TrackedRun]:
    """Create a run in ``experiment_id``; terminate it ``FINISHED`` when the block
    succeeds, ``FAILED`` (and re-raise) when it raises."""
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    tracked = TrackedRun(client, experiment_id, run.info.run_id)
    try:
        yield tracked
    except BaseException:
        client.set_terminated(tracked.run_id, "FAILED")
        raise
    client.set_terminated(tracked.run_id, "FINISHED")


def production_files(client: "MlflowClient", settings: LoopSettings) -> ModelFiles:
    """Local files of the ``production`` version, which training starts from and which
    the candidate is compared with.

    Raises:
        dg.Failure: no version is production yet (run ``edgeloop init``).
    """
    try:
        return alias_model_files(client, settings, PRODUCTION)
    except ModelNotFoundError as exc:
        raise dg.Failure(description=f"{exc}. Training fine-tunes the production model.") from exc
