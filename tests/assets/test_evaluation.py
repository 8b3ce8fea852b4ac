"""``assets.evaluation`` without training: the comparison and its Dagster metadata, what goes
to MLflow (real sqlite store), the held-out frames paired with production's stored
proposals (real DuckDB store), and the scratch space left clean.

The real held-out validation of two models runs in ``test_training.py`` and
``test_heldout_real.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import numpy as np
import pytest
import torch
from loopdata import make_loop, register_model, unversioned_dataset

from assets.corrections import Box, CorrectionScore
from assets.evaluation import (
    EvaluationConfig,
    HeldoutRun,
    deployed_boxes,
    evaluate_on_heldout,
    frame_cameras,
    held_out_images,
    reviewed_frames,
)
from assets.evaluation_report import evaluation_metadata, log_evaluation
from assets.evaluation_result import ModelEvaluation
from assets.heldout import GainInterval, GroupAP
from assets.training import CandidateModel
from assets.yolo import FrameDetections, HeldoutMetrics, PerImageRecorder
from edgeloop.datasets import MANIFEST, DatasetVersion, image_stem
from edgeloop.registry import mlflow_client
from edgeloop.store import frames as frames_store

KINDS = ("added box", "removed false positive", "class corrected", "moved box")


def _score(learned: int, broken: int) -> CorrectionScore:
    return CorrectionScore(
        corrections=dict(zip(KINDS, (4, 3, 2, 1), strict=True)),
        learned=dict(zip(KINDS, (learned, 0, 0, 0), strict=True)),
        accepted=20,
        broken=broken,
        frames=30,
    )


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
        val_images=42,
        imgsz=640,
        candidate_metrics=HeldoutMetrics(map50=0.9, map50_95=0.78, precision=0.85, recall=0.8),
        production_metrics=HeldoutMetrics(map50=0.82, map50_95=0.8, precision=0.8, recall=0.75),
        gains={
            "mAP50-95": GainInterval("mAP50-95", -0.02, -0.051, 0.012, 0.95, 1000, 42),
            "mAP50": GainInterval("mAP50", 0.08, 0.041, 0.118, 0.95, 1000, 42),
        },
        class_ap=[GroupAP("Normal", 130, 0.78, 0.8)],
        camera_ap=[GroupAP("cam-a", 30, 0.7, 0.75), GroupAP("cam-b", 12, 0.9, 0.88)],
        candidate_corrections=_score(learned=4, broken=1),
        production_corrections=_score(learned=0, broken=0),
    )


def _dataset(root: Path) -> DatasetVersion:
    return unversioned_dataset(root, ["Normal", "Fall"], version="v3")


def test_metadata_shows_every_comparison_with_its_n_and_interval():
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
    assert (metadata["val_images"], metadata["imgsz"]) == (42, 640)
    assert metadata["gain/mAP50-95"] == "Δ mAP50-95 -0.020 [-0.051, +0.012] (95%, n=42 images)"
    assert (metadata["gain/mAP50/low"], metadata["gain/mAP50/high"]) == (0.041, 0.118)
    table = metadata["comparison"].value
    assert table.splitlines()[0] == (
        "| metric | candidate v2 | production v1 | Δ [95% interval] | n |"
    )
    assert "| mAP50-95 | 0.78 | 0.8 | -0.020 [-0.051, +0.012] | 42 images |" in table
    assert "| precision | 0.85 | 0.8 | +0.050 | 42 images |" in table
    assert "| cam-b | 0.9 | 0.88 | +0.020 | 12 images |" in metadata["per_camera"].value
    assert "| Normal | 0.78 | 0.8 | -0.020 | 130 boxes |" in metadata["per_class"].value
    corrections = metadata["corrections"].value
    assert "| corrections learned | 0.40 (4/10) | 0.00 (0/10) |" in corrections
    assert "| · added box | 1.00 (4/4) | 0.00 (0/4) |" in corrections
    assert "| regressions (accepted frames broken) | 0.05 (1/20) | 0.00 (0/20) |" in corrections
    assert (metadata["corrections_learned"], metadata["corrections_n"]) == ("0.40 (4/10)", 10)
    assert (metadata["regressions"], metadata["regressions_n"]) == ("0.05 (1/20)", 20)


def test_held_out_images_needs_images_in_val(tmp_path: Path):
    dataset = _dataset(tmp_path / "yolo")
    with pytest.raises(dg.Failure, match="no held-out images"):
        held_out_images(dataset)
    (dataset.root / "images" / "val").mkdir(parents=True)
    with pytest.raises(dg.Failure, match="no held-out images"):
        held_out_images(dataset)
    for name in ("b.jpg", "a.jpg"):
        (dataset.root / "images" / "val" / name).write_bytes(b"jpeg")
    assert [p.name for p in held_out_images(dataset)] == ["a.jpg", "b.jpg"]


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
    metrics = run.data.metrics
    assert metrics["heldout_mAP50-95"] == pytest.approx(0.78)
    assert metrics["production_heldout_mAP50-95"] == pytest.approx(0.8)
    assert metrics["heldout_gain_mAP50-95_low"] == pytest.approx(-0.051)
    assert (metrics["heldout_images"], metrics["corrections_n"]) == (42, 10)
    assert metrics["corrections_learned"] == pytest.approx(0.4)
    assert metrics["regressions"] == pytest.approx(0.05)
    assert run.data.tags["heldout_compared_with"] == "v1"
    tags = client.get_model_version(settings.model_name, version).tags
    assert tags["heldout_mAP50"] == "0.900000"
    assert (tags["heldout_production_version"], tags["heldout_imgsz"]) == ("1", "640")
    assert tags["heldout_images"] == "42"
    assert tags["heldout_gain_mAP50-95"] == "-0.0200 [-0.0510, +0.0120]"
    assert (tags["corrections_learned"], tags["regressions"]) == ("0.40 (4/10)", "0.05 (1/20)")
    record = json.loads(
        Path(
            client.download_artifacts(run_id, "evaluation/heldout.json", str(tmp_path))
        ).read_text()
    )
    assert record["gains"]["mAP50-95"]["n"] == 42
    assert record["per_camera"][1] == {
        "group": "cam-b",
        "n": 12,
        "candidate": 0.9,
        "production": 0.88,
    }
    assert record["candidate_corrections"]["by_change"]["added box"] == {"learned": 4, "n": 4}


# --- the held-out frames and production's proposals ---------------------------------------


def _detections(name: str, boxes: list[tuple[float, float, float, float]]) -> FrameDetections:
    return FrameDetections(
        name=name,
        width=768,
        height=576,
        xyxy=np.asarray(boxes, dtype=float).reshape(-1, 4),
        confidence=np.full(len(boxes), 0.8),
        class_names=["Normal"] * len(boxes),
    )


def test_held_out_frames_are_paired_with_the_proposals_the_store_holds(tmp_path: Path):
    loop = make_loop(tmp_path)
    with_boxes = loop.add_frames("cam-a", count=1, boxes_per_frame=2)[0]
    empty = loop.add_frames(
        "cam-b", count=1, boxes_per_frame=0, start=loop.frames[0]["captured_at"].replace(hour=13)
    )[0]
    with loop.store.connect() as con:
        found = frames_store.proposals(con=con, frame_keys=[with_boxes, empty, "cam-x:0:00000"])

    assert set(found) == {with_boxes, empty}
    assert found[empty] == []
    assert [d["bbox_xyxy"] for d in found[with_boxes]] == [
        (60.0, 120.0, 150.0, 340.0),
        (280.0, 120.0, 370.0, 340.0),
    ]
    assert {d["class_name"] for d in found[with_boxes]} == {"Normal"}
    assert all(0 <= d["confidence"] <= 1 and d["model_version"] == "1" for d in found[with_boxes])

    dataset = _dataset(tmp_path / "yolo")
    (dataset.root / "labels" / "val").mkdir(parents=True)
    (dataset.root / "labels" / "val" / f"{image_stem(with_boxes)}.txt").write_text(
        "0 0.5 0.5 0.25 0.5\n"
    )
    detections = [
        _detections(f"{image_stem(with_boxes)}.jpg", [(288, 144, 480, 432)]),
        _detections(f"{image_stem(empty)}.jpg", []),
        _detections("not-in-store.jpg", [(1, 1, 5, 5)]),
    ]
    frames = reviewed_frames(dataset, detections, found)

    assert [f.frame_key for f in frames] == [with_boxes, empty]
    assert frames[0].truth == (Box((288.0, 144.0, 480.0, 432.0), "Normal"),)
    assert len(frames[0].proposal) == 2 and frames[1] == frames[1].__class__(empty, (), ())
    boxes = deployed_boxes(detections)
    assert boxes[with_boxes] == [Box((288.0, 144.0, 480.0, 432.0), "Normal")]
    assert boxes[empty] == []


def test_cameras_come_from_the_dataset_manifest(tmp_path: Path):
    dataset = _dataset(tmp_path / "yolo")
    dataset.root.mkdir(parents=True)
    assert frame_cameras(dataset) == {}
    (dataset.root / MANIFEST).write_text(
        json.dumps({"frames": [{"frame_key": "cam-a:1:00000", "camera_id": "cam-a"}]})
    )
    assert frame_cameras(dataset) == {"cam-a:1:00000": "cam-a"}


# --- the scratch space ----------------------------------------------------------------------


class _FakeYolo:
    """Stands in for ``ultralytics.YOLO``: ``val`` writes a label cache and a save dir, as
    ultralytics does, feeds its per-image stats to the ``on_val_batch_end`` callbacks, and
    fails for the weights named in ``broken``; ``predict`` yields one box per image."""

    def __init__(self, weights: str, root: Path, broken: str, calls: list[dict[str, Any]]):
        self.weights, self.root, self.broken, self.calls = weights, root, broken, calls
        self.callbacks: list[Any] = []

    def add_callback(self, event: str, callback: Any) -> None:
        assert event == "on_val_batch_end"
        self.callbacks.append(callback)

    def val(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append({"weights": self.weights, "call": "val", **kwargs})
        (self.root / "labels" / "val.cache").write_bytes(b"cache")
        (Path(kwargs["project"]) / kwargs["name"]).mkdir(parents=True, exist_ok=True)
        if self.weights == self.broken:
            raise RuntimeError("corrupt checkpoint")
        names = sorted(p.name for p in (self.root / "images" / "val").iterdir())
        stats = {
            "tp": [np.ones((1, 10), dtype=bool) for _ in names],
            "conf": [np.array([0.9]) for _ in names],
            "pred_cls": [np.array([0.0]) for _ in names],
            "target_cls": [np.array([0.0]) for _ in names],
        }
        validator = SimpleNamespace(
            metrics=SimpleNamespace(
                stats=stats, box=SimpleNamespace(image_metrics=dict.fromkeys(names))
            )
        )
        for callback in self.callbacks:
            callback(validator)
        score = 0.7 if self.weights == "candidate.pt" else 0.6
        return SimpleNamespace(box=SimpleNamespace(map50=0.9, map=score, mp=0.8, mr=0.7))

    def predict(self, sources: list[str], **kwargs: Any):
        self.calls.append({"weights": self.weights, "call": "predict", **kwargs})
        for source in sources:
            yield SimpleNamespace(
                path=source,
                orig_shape=(576, 768),
                names={0: "Normal", 1: "Fall"},
                boxes=SimpleNamespace(
                    xyxy=torch.tensor([[100.0, 100.0, 190.0, 320.0]]),
                    conf=torch.tensor([0.8]),
                    cls=torch.tensor([0.0]),
                ),
            )


def _run(tmp_path: Path, broken: str = "") -> tuple[dict[str, HeldoutRun], list[dict]]:
    dataset = _dataset(tmp_path / "yolo")
    (dataset.root / "labels").mkdir(parents=True)
    (dataset.root / "images" / "val").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (dataset.root / "images" / "val" / name).write_bytes(b"jpeg")
    calls: list[dict[str, Any]] = []
    runs = evaluate_on_heldout(
        lambda weights: _FakeYolo(weights, dataset.root, broken, calls),
        {"candidate": Path("candidate.pt"), "production": Path("production.pt")},
        dataset,
        held_out_images(dataset),
        config=EvaluationConfig(batch=4),
        work=tmp_path / "runs" / "eval-1",
    )
    return runs, calls


def test_evaluate_on_heldout_scores_both_per_image_and_leaves_no_scratch(tmp_path: Path):
    runs, calls = _run(tmp_path)

    assert runs["candidate"].metrics.map50_95 == 0.7 and runs["production"].metrics.map50_95 == 0.6
    assert [m.name for m in runs["candidate"].matches] == ["a.jpg", "b.jpg"]
    assert runs["production"].matches[0].tp.shape == (1, 10)
    assert [(d.name, d.width, d.height) for d in runs["candidate"].deployed] == [
        ("a.jpg", 768, 576),
        ("b.jpg", 768, 576),
    ]
    vals = [c for c in calls if c["call"] == "val"]
    assert [
        (c["weights"], c["split"], c["imgsz"], c["batch"], c["conf"], c["iou"]) for c in vals
    ] == [
        ("candidate.pt", "val", 640, 4, 0.001, 0.7),
        ("production.pt", "val", 640, 4, 0.001, 0.7),
    ]
    predicts = [c for c in calls if c["call"] == "predict"]
    assert [(c["weights"], c["conf"], c["iou"], c["rect"], c["imgsz"]) for c in predicts] == [
        ("candidate.pt", 0.25, 0.45, False, 640),
        ("production.pt", 0.25, 0.45, False, 640),
    ]
    assert not (tmp_path / "runs" / "eval-1").exists()
    assert not list((tmp_path / "yolo" / "labels").glob("*.cache"))


def test_evaluate_on_heldout_cleans_up_when_validation_fails(tmp_path: Path):
    with pytest.raises(RuntimeError, match="corrupt checkpoint"):
        _run(tmp_path, broken="production.pt")
    assert not (tmp_path / "runs" / "eval-1").exists()
    assert not list((tmp_path / "yolo" / "labels").glob("*.cache"))


def test_a_validator_without_per_image_stats_fails_loudly():
    recorder = PerImageRecorder()
    with pytest.raises(RuntimeError, match="keeps no per-image validation stats"):
        recorder.on_val_batch_end(SimpleNamespace(metrics=SimpleNamespace()))
    recorder._names = ["a.jpg"]
    with pytest.raises(RuntimeError, match="1 image names but 0 per-image statistics"):
        recorder.images()
