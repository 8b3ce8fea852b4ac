"""``assets.evaluation`` without training: the comparison, its Dagster metadata, what goes
to MLflow (real sqlite store), and the scratch space left clean.

The real held-out validation of two models runs in ``test_training.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
from loopdata import register_model, unversioned_dataset

from assets.evaluation import (
    ModelEvaluation,
    evaluate_on_heldout,
    evaluation_metadata,
    held_out_image_count,
    log_evaluation,
)
from assets.training import CandidateModel
from assets.yolo import HeldoutMetrics
from edgeloop.datasets import DatasetVersion
from edgeloop.registry import mlflow_client


def _evaluation(candidate_version: str = "2", run_id: str = "unused") -> ModelEvaluation:
    return ModelEvaluation(
        candidate=CandidateModel(
            version=candidate_version,
            run_id=run_id,
            pt_path=Path("best.pt"),
            onnx_path=Path("best.onnx"),
            dataset_version="v3",
            base_version="1",
        ),
        production_version="1",
        dataset_version="v3",
        val_images=13,
        imgsz=640,
        candidate_metrics=HeldoutMetrics(map50=0.9, map50_95=0.78, precision=0.85, recall=0.8),
        production_metrics=HeldoutMetrics(map50=0.82, map50_95=0.8, precision=0.8, recall=0.75),
    )


def _dataset(root: Path) -> DatasetVersion:
    return unversioned_dataset(root, ["Normal", "Fall"], version="v3")


def test_metadata_compares_every_metric_candidate_minus_production():
    metadata = evaluation_metadata(_evaluation())

    assert metadata["candidate/mAP50"] == 0.9 and metadata["production/mAP50"] == 0.82
    assert metadata["delta/mAP50"] == pytest.approx(0.08)
    assert metadata["delta/mAP50-95"] == pytest.approx(-0.02)
    assert {k.split("/")[1] for k in metadata if k.startswith("delta/")} == {
        "mAP50",
        "mAP50-95",
        "precision",
        "recall",
    }
    assert (metadata["candidate_version"], metadata["production_version"]) == ("2", "1")
    assert (metadata["val_images"], metadata["imgsz"]) == (13, 640)
    table = metadata["comparison"].value
    assert table.splitlines()[0] == "| metric | candidate v2 | production v1 | Δ |"
    assert "| mAP50-95 | 0.78 | 0.8 | -0.02 |" in table


def test_held_out_image_count_needs_images_in_val(tmp_path: Path):
    dataset = _dataset(tmp_path / "yolo")
    with pytest.raises(dg.Failure, match="no held-out images"):
        held_out_image_count(dataset)
    (dataset.root / "images" / "val").mkdir(parents=True)
    with pytest.raises(dg.Failure, match="no held-out images"):
        held_out_image_count(dataset)
    for name in ("a.jpg", "b.jpg"):
        (dataset.root / "images" / "val" / name).write_bytes(b"jpeg")
    assert held_out_image_count(dataset) == 2


@pytest.mark.integration
def test_log_evaluation_puts_the_comparison_on_the_run_and_the_version(loop, tmp_path: Path):
    settings, _ = loop
    pt, onnx = tmp_path / "best.pt", tmp_path / "best.onnx"
    pt.write_bytes(b"weights")
    onnx.write_bytes(b"onnx graph")
    client = mlflow_client(settings)
    version = register_model(settings, pt_path=pt, onnx_path=onnx, class_names=["Normal"])
    run_id = client.get_model_version(settings.model_name, version).run_id

    log_evaluation(client, settings.model_name, _evaluation(version, run_id))

    run = client.get_run(run_id)
    assert run.data.metrics["heldout_mAP50-95"] == pytest.approx(0.78)
    assert run.data.metrics["production_heldout_mAP50-95"] == pytest.approx(0.8)
    assert run.data.tags["heldout_compared_with"] == "v1"
    tags = client.get_model_version(settings.model_name, version).tags
    assert tags["heldout_mAP50"] == "0.900000"
    assert (tags["heldout_production_version"], tags["heldout_imgsz"]) == ("1", "640")


class _FakeYolo:
    """Stands in for ``ultralytics.YOLO``: ``val`` writes a label cache and a save dir, as
    ultralytics does, and fails for the weights named in ``broken``."""

    def __init__(self, weights: str, root: Path, broken: str, calls: list[dict[str, Any]]):
        self.weights, self.root, self.broken, self.calls = weights, root, broken, calls

    def val(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append({"weights": self.weights, **kwargs})
        (self.root / "labels" / "val.cache").write_bytes(b"cache")
        (Path(kwargs["project"]) / kwargs["name"]).mkdir(parents=True, exist_ok=True)
        if self.weights == self.broken:
            raise RuntimeError("corrupt checkpoint")
        score = 0.7 if self.weights == "candidate.pt" else 0.6
        return SimpleNamespace(box=SimpleNamespace(map50=0.9, map=score, mp=0.8, mr=0.7))


def _run(tmp_path: Path, broken: str = "") -> tuple[dict[str, HeldoutMetrics], list[dict]]:
    dataset = _dataset(tmp_path / "yolo")
    (dataset.root / "labels").mkdir(parents=True)
    calls: list[dict[str, Any]] = []
    scores = evaluate_on_heldout(
        lambda weights: _FakeYolo(weights, dataset.root, broken, calls),
        {"candidate": Path("candidate.pt"), "production": Path("production.pt")},
        dataset,
        imgsz=640,
        batch=4,
        work=tmp_path / "runs" / "eval-1",
    )
    return scores, calls


def test_evaluate_on_heldout_scores_both_on_val_and_leaves_no_scratch(tmp_path: Path):
    scores, calls = _run(tmp_path)

    assert scores["candidate"].map50_95 == 0.7 and scores["production"].map50_95 == 0.6
    assert [(c["weights"], c["split"], c["imgsz"], c["batch"]) for c in calls] == [
        ("candidate.pt", "val", 640, 4),
        ("production.pt", "val", 640, 4),
    ]
    assert not (tmp_path / "runs" / "eval-1").exists()
    assert not list((tmp_path / "yolo" / "labels").glob("*.cache"))


def test_evaluate_on_heldout_cleans_up_when_validation_fails(tmp_path: Path):
    with pytest.raises(RuntimeError, match="corrupt checkpoint"):
        _run(tmp_path, broken="production.pt")
    assert not (tmp_path / "runs" / "eval-1").exists()
    assert not list((tmp_path / "yolo" / "labels").glob("*.cache"))
