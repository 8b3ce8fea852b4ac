"""The ``model_evaluation`` asset: candidate and production on the same held-out split.

Both models are validated by ultralytics (``assets.yolo.evaluate_weights``) on the val
split of the dataset the candidate was trained on, at the same image size: the agents'
640 px unless ``EvaluationConfig.imgsz`` says otherwise. The candidate's numbers go on
its MLflow run (``heldout_<metric>``, production's as ``production_heldout_<metric>``)
and on its registered version (``heldout_<metric>``, ``heldout_production_version``,
``heldout_imgsz``); ``model_promotion`` (``assets.registry``) decides on them.
"""

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from assets._markdown import md_table
from assets.resources import MlflowResource
from assets.tracking import log_metrics, production_files
from assets.training import CandidateModel
from assets.yolo import HeldoutMetrics, evaluate_weights, label_caches_removed, load_yolo
from edgeloop.bootstrap import AGENT_IMGSZ
from edgeloop.datasets import DatasetVersion

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_EVAL_IMGSZ = AGENT_IMGSZ
"""Held-out evaluation at the size agents run the ONNX model (640 px)."""


@dataclass(frozen=True)
class ModelEvaluation:
    """Candidate and production, evaluated on the same held-out images at the same size.

    Attributes:
        val_images: held-out images both were evaluated on.
        imgsz: evaluation image size, px.
        candidate_metrics / production_metrics: box metrics in [0, 1].
    """

    candidate: CandidateModel
    production_version: str
    dataset_version: str
    val_images: int
    imgsz: int
    candidate_metrics: HeldoutMetrics
    production_metrics: HeldoutMetrics

    def comparison_rows(self) -> list[tuple[str, float, float, float]]:
        """``(metric, candidate, production, candidate - production)``, one per metric."""
        cand, prod = self.candidate_metrics.as_dict(), self.production_metrics.as_dict()
        return [(name, cand[name], prod[name], cand[name] - prod[name]) for name in cand]

    def comparison_md(self) -> str:
        """``comparison_rows`` as a markdown table headed with both versions."""
        return md_table(
            [
                "metric",
                f"candidate v{self.candidate.version}",
                f"production v{self.production_version}",
                "Δ",
            ],
            self.comparison_rows(),
        )


class EvaluationConfig(dg.Config):
    """Held-out evaluation knobs."""

    imgsz: int = Field(
        DEFAULT_EVAL_IMGSZ, ge=32, description="Evaluation image size, px (agents run 640)."
    )
    batch: int = Field(8, ge=1, description="Images per validation batch.")


@dg.asset(group_name="training", kinds={"pytorch", "mlflow"})
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    detector_model: CandidateModel,
    training_dataset: DatasetVersion,
    mlflow: MlflowResource,
) -> dg.Output[ModelEvaluation]:
    """Candidate and production on the same held-out split: mAP50, mAP50-95, precision, recall."""
    candidate, dataset = detector_model, training_dataset
    settings = mlflow.loop.settings()
    val_images = held_out_image_count(dataset)
    yolo = load_yolo(settings)
    client = mlflow.client()
    production = production_files(client, settings)
    scores = evaluate_on_heldout(
        yolo,
        {"candidate": candidate.pt_path, "production": production.pt_path},
        dataset,
        imgsz=config.imgsz,
        batch=config.batch,
        work=settings.runs_dir.resolve() / f"eval-{context.run_id}",
    )
    evaluation = ModelEvaluation(
        candidate=candidate,
        production_version=production.version,
        dataset_version=dataset.version,
        val_images=val_images,
        imgsz=config.imgsz,
        candidate_metrics=scores["candidate"],
        production_metrics=scores["production"],
    )
    log_evaluation(client, settings.model_name, evaluation)
    context.log.info(
        "held-out mAP50-95: candidate v%s %.4f vs production v%s %.4f (%s images)",
        candidate.version,
        evaluation.candidate_metrics.map50_95,
        evaluation.production_version,
        evaluation.production_metrics.map50_95,
        val_images,
    )
    return dg.Output(evaluation, metadata=evaluation_metadata(evaluation))


def held_out_image_count(dataset: DatasetVersion) -> int:
    """Files in the dataset's ``images/val`` folder.

    Raises:
        dg.Failure: the folder is missing or empty (nothing to compare the models on).
    """
    val_dir = dataset.root / "images" / "val"
    count = sum(1 for p in val_dir.glob("*") if p.is_file()) if val_dir.is_dir() else 0
    if count == 0:
        raise dg.Failure(
            description=f"dataset {dataset.version} has no held-out images in {val_dir}"
        )
    return count


def evaluate_on_heldout(
    yolo: Any,
    weights: Mapping[str, Path],
    dataset: DatasetVersion,
    *,
    imgsz: int,
    batch: int,
    work: Path,
) -> dict[str, HeldoutMetrics]:
    """Validate each of ``weights`` (role -> ``.pt``) on the dataset's val split at
    ``imgsz`` px; ultralytics' scratch under ``work`` and its label caches are removed
    afterwards, also when validation raises."""
    try:
        with label_caches_removed(dataset):
            return {
                role: evaluate_weights(
                    yolo,
                    pt_path,
                    dataset.data_yaml,
                    imgsz=imgsz,
                    batch=batch,
                    save_dir=work / role,
                )
                for role, pt_path in weights.items()
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def log_evaluation(client: "MlflowClient", model_name: str, evaluation: ModelEvaluation) -> None:
    """Put the comparison on the candidate's MLflow run and on its registered version."""
    candidate = evaluation.candidate
    heldout = {f"heldout_{k}": v for k, v in evaluation.candidate_metrics.as_dict().items()}
    production = {
        f"production_heldout_{k}": v for k, v in evaluation.production_metrics.as_dict().items()
    }
    log_metrics(client, candidate.run_id, {**heldout, **production})
    client.set_tag(candidate.run_id, "heldout_compared_with", f"v{evaluation.production_version}")
    version_tags = {
        **{key: f"{value:.6f}" for key, value in heldout.items()},
        "heldout_production_version": evaluation.production_version,
        "heldout_imgsz": str(evaluation.imgsz),
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, candidate.version, key, value)


def evaluation_metadata(evaluation: ModelEvaluation) -> dict[str, Any]:
    """``model_evaluation``'s Dagster metadata: the comparison table, both versions, and
    ``candidate/<metric>``, ``production/<metric>``, ``delta/<metric>``."""
    metadata: dict[str, Any] = {
        "comparison": dg.MetadataValue.md(evaluation.comparison_md()),
        "candidate_version": evaluation.candidate.version,
        "production_version": evaluation.production_version,
        "dataset_version": evaluation.dataset_version,
        "val_images": evaluation.val_images,
        "imgsz": evaluation.imgsz,
    }
    for name, cand, prod, delta in evaluation.comparison_rows():
        metadata[f"candidate/{name}"] = cand
        metadata[f"production/{name}"] = prod
        metadata[f"delta/{name}"] = delta
    return metadata
