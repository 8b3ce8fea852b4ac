"""The ultralytics side (``assets.yolo``) without training: the epoch callbacks, the
arguments ``fine_tune`` hands to ``model.train``, and the dataset left clean.

ultralytics is replaced here by small stand-ins that record what they are given; the
real fine-tune runs in ``test_training.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assets.training import TrainingConfig
from assets.yolo import (
    EpochMetricsLogger,
    HeldoutMetrics,
    Hyperparameters,
    fine_tune,
    heldout_metrics,
    label_caches_removed,
)
from edgeloop.datasets import DatasetVersion


def _trainer(epoch: int, map50_95: float) -> SimpleNamespace:
    """What an ultralytics ``DetectionTrainer`` exposes to ``on_*_epoch_end`` callbacks."""
    return SimpleNamespace(
        epoch=epoch,
        tloss=[1.5, 0.7, 1.1],
        label_loss_items=lambda tloss, prefix: {
            f"{prefix}/box_loss": tloss[0],
            f"{prefix}/cls_loss": tloss[1],
            f"{prefix}/dfl_loss": tloss[2],
        },
        metrics={
            "metrics/precision(B)": 0.7,
            "metrics/recall(B)": 0.6,
            "metrics/mAP50(B)": 0.8,
            "metrics/mAP50-95(B)": map50_95,
            "val/box_loss": 1.2,
        },
        lr={"lr/pg0": 1e-4},
        epoch_time=12.5,
    )


def _box(map50: float, map50_95: float, precision: float, recall: float) -> SimpleNamespace:
    """ultralytics' ``DetMetrics`` as ``train``/``val`` return it (only ``.box`` is read)."""
    return SimpleNamespace(box=SimpleNamespace(map50=map50, map=map50_95, mp=precision, mr=recall))


def _run_epochs(logger: EpochMetricsLogger, epochs: int) -> None:
    """Fire the callbacks as ultralytics' trainer does, with the final validation of
    best.pt last (at ``epoch + 1``: ``BaseTrainer.final_eval``)."""
    for epoch in range(epochs):
        logger.on_train_epoch_end(_trainer(epoch, 0.5 + epoch / 10))
        logger.on_fit_epoch_end(_trainer(epoch, 0.5 + epoch / 10))
    logger.on_fit_epoch_end(_trainer(epochs, 0.99))


def test_epoch_logger_reports_each_epoch_once_with_the_logged_names():
    sent: list[tuple[int, dict[str, float]]] = []
    logger = EpochMetricsLogger(lambda values, epoch: sent.append((epoch, dict(values))))

    _run_epochs(logger, 2)

    assert [epoch for epoch, _ in sent] == [0, 1]  # the final validation is not an epoch
    values = sent[1][1]
    assert values["mAP50-95"] == pytest.approx(0.6)
    assert {"mAP50", "precision", "recall", "train/box_loss", "lr/pg0", "val/box_loss"} <= set(
        values
    )
    assert values["epoch_time_s"] == 12.5
    assert "metrics/mAP50-95(B)" not in values
    assert [h["epoch"] for h in logger.history] == [0.0, 1.0]
    assert logger.history[0]["mAP50-95"] == pytest.approx(0.5)


def test_heldout_metrics_reads_ultralytics_box_metrics():
    metrics = heldout_metrics(_box(0.9, 0.6, 0.8, 0.7))
    assert metrics == HeldoutMetrics(map50=0.9, map50_95=0.6, precision=0.8, recall=0.7)
    assert metrics.as_dict() == {"mAP50": 0.9, "mAP50-95": 0.6, "precision": 0.8, "recall": 0.7}


class _FakeYolo:
    """Stands in for ``ultralytics.YOLO``: records ``train``'s arguments, runs the
    callbacks for ``epochs`` epochs and writes what ultralytics would into the save dir."""

    def __init__(self, weights: str, *, write_best: bool = True) -> None:
        self.weights = weights
        self.write_best = write_best
        self.callbacks: dict[str, list[Any]] = {}
        self.train_kwargs: dict[str, Any] = {}
        self.trainer = SimpleNamespace(best="")

    def add_callback(self, event: str, fn: Any) -> None:
        self.callbacks.setdefault(event, []).append(fn)

    def train(self, **kwargs: Any) -> SimpleNamespace:
        self.train_kwargs = kwargs
        save_dir = Path(kwargs["project"]) / kwargs["name"]
        (save_dir / "weights").mkdir(parents=True)
        (save_dir / "results.csv").write_text("epoch\n1\n")
        for epoch in range(kwargs["epochs"]):
            for fn in self.callbacks["on_train_epoch_end"]:
                fn(_trainer(epoch, 0.5))
            for fn in self.callbacks["on_fit_epoch_end"]:
                fn(_trainer(epoch, 0.5))
        best = save_dir / "weights" / "best.pt"
        if self.write_best:
            best.write_bytes(b"weights")
        self.trainer.best = str(best)
        return _box(0.9, 0.6, 0.8, 0.7)


def test_fine_tune_passes_the_knobs_to_ultralytics_and_collects_the_epochs(tmp_path: Path):
    models: list[_FakeYolo] = []

    def yolo(weights: str) -> _FakeYolo:
        models.append(_FakeYolo(weights))
        return models[-1]

    hyperparameters = TrainingConfig(epochs=2, imgsz=160, batch=4, freeze=0).hyperparameters()
    epochs_logged: list[int] = []
    result = fine_tune(
        yolo,
        Path("production.pt"),
        Path("data.yaml"),
        hyperparameters,
        save_dir=tmp_path / "runs" / "run-1",
        on_epoch=lambda _values, epoch: epochs_logged.append(epoch),
    )

    (model,) = models
    assert model.weights == "production.pt"
    kwargs = model.train_kwargs
    assert (kwargs["epochs"], kwargs["imgsz"], kwargs["batch"]) == (2, 160, 4)
    assert kwargs["optimizer"] == "AdamW" and kwargs["lr0"] == 1e-4
    assert kwargs["freeze"] is None  # 0 means train every layer, which ultralytics spells None
    assert (kwargs["device"], kwargs["workers"], kwargs["amp"]) == ("cpu", 0, False)
    assert (kwargs["project"], kwargs["name"]) == (str(tmp_path / "runs"), "run-1")
    assert result.best_pt == tmp_path / "runs" / "run-1" / "weights" / "best.pt"
    assert result.final.map50_95 == 0.6
    assert epochs_logged == [0, 1] and len(result.history) == 2
    assert result.log_files == [tmp_path / "runs" / "run-1" / "results.csv"]  # no args.yaml


def test_fine_tune_fails_when_ultralytics_wrote_no_best_pt(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"no best\.pt"):
        fine_tune(
            lambda weights: _FakeYolo(weights, write_best=False),
            Path("production.pt"),
            Path("data.yaml"),
            Hyperparameters(
                epochs=1,
                imgsz=64,
                batch=1,
                patience=1,
                freeze=0,
                lr0=1e-4,
                warmup_epochs=0,
                mosaic=0,
            ),
            save_dir=tmp_path / "run",
        )


def test_hyperparameters_are_logged_with_the_optimizer():
    params = TrainingConfig().hyperparameters().as_params()
    assert params == {
        "epochs": 3,
        "imgsz": 640,
        "batch": 8,
        "patience": 5,
        "freeze": 10,
        "lr0": 1e-4,
        "warmup_epochs": 0.0,
        "mosaic": 0.0,
        "optimizer": "AdamW",
    }


def test_label_caches_are_removed_even_when_training_fails(tmp_path: Path):
    root = tmp_path / "yolo"
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    dataset = DatasetVersion(
        version="v1",
        data_yaml=root / "data.yaml",
        root=root,
        dvc_md5="0",
        git_commit="x",
        class_names=["Normal"],
    )
    with pytest.raises(RuntimeError, match="out of memory"), label_caches_removed(dataset):
        (root / "labels" / "train.cache").write_bytes(b"cache")
        raise RuntimeError("out of memory")
    assert sorted(p.name for p in (root / "labels").rglob("*")) == ["a.txt", "train"]
