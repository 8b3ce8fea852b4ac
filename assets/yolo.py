"""The ultralytics side of training and evaluation: load, fine-tune, validate, export.

Nothing here knows about Dagster or MLflow: per-epoch metrics leave ``fine_tune`` through
a callback (``assets.tracking.TrackedRun.log_metrics`` in ``detector_model``), and
everything runs on the device the caller names (``edgeloop.devices.torch_device``, CPU by
default) with ``workers=0`` (the demo's 2 shared cores).
ultralytics' own MLflow callback stays off (``edgeloop.offline.quiet_ultralytics``).
"""

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assets.class_head import current_names
from edgeloop.bootstrap import AGENT_IMGSZ, export_onnx
from edgeloop.datasets import DatasetVersion
from edgeloop.offline import configure_offline_environment, quiet_ultralytics
from edgeloop.registry import MODEL_ARTIFACT_DIR, write_model_dir
from edgeloop.settings import LoopSettings

OPTIMIZER = "AdamW"
"""Fine-tuning optimizer (see ``assets.training.DEFAULT_LR0`` for why not ultralytics' auto)."""

ULTRALYTICS_METRIC_NAMES = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
}
"""ultralytics' validation keys -> the names logged to MLflow and shown in Dagster."""

TRAINING_LOG_FILES = ("results.csv", "args.yaml")
"""What ultralytics writes into a training's save dir that is worth keeping beside the model."""

EpochSink = Callable[[Mapping[str, float], int], None]
"""Receives one epoch's values (losses, metrics, learning rates) and the 0-based epoch."""


@dataclass(frozen=True)
class HeldoutMetrics:
    """Box metrics of one model on the held-out (val) split, each in [0, 1] (ultralytics' val)."""

    map50: float
    map50_95: float
    precision: float
    recall: float

    def as_dict(self) -> dict[str, float]:
        """``{"mAP50", "mAP50-95", "precision", "recall"}``: the names logged and shown."""
        return {
            "mAP50": self.map50,
            "mAP50-95": self.map50_95,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass(frozen=True)
class Hyperparameters:
    """The fine-tuning knobs passed to ``model.train`` (``assets.training.TrainingConfig``'s).

    Attributes:
        imgsz: training image size, px (square).
        freeze: leading layers kept frozen (10 = the YOLOv8 backbone; 0 = none).
        lr0: initial learning rate of ``OPTIMIZER``.
        warmup_epochs: ultralytics' warm-up epochs (its default is 3).
        mosaic: mosaic augmentation probability, [0, 1].
    """

    epochs: int
    imgsz: int
    batch: int
    patience: int
    freeze: int
    lr0: float
    warmup_epochs: float
    mosaic: float

    def as_params(self) -> dict[str, object]:
        """The knobs with the optimizer, as logged to MLflow."""
        return {**asdict(self), "optimizer": OPTIMIZER}


@dataclass(frozen=True)
class FineTuneResult:
    """What one ``fine_tune`` left behind.

    Attributes:
        best_pt: ultralytics' ``best.pt`` (inside the save dir).
        final: ``best.pt`` on the val split, as ``model.train`` returns it.
        history: one dict per epoch run: ``epoch`` plus ``EpochMetricsLogger``'s values.
        train_s: wall time of ``model.train``, s.
        log_files: the ``TRAINING_LOG_FILES`` ultralytics wrote.
    """

    best_pt: Path
    final: HeldoutMetrics
    history: list[dict[str, float]]
    train_s: float
    log_files: list[Path]


def load_yolo(settings: LoopSettings) -> Any:
    """The ``ultralytics.YOLO`` class, imported after the offline environment is set."""
    configure_offline_environment(settings.yolo_config_dir)
    quiet_ultralytics()
    from ultralytics import YOLO

    return YOLO


class EpochMetricsLogger:
    """ultralytics callbacks that collect each epoch's losses and val metrics.

    Each epoch's values go to ``on_epoch(values, epoch)`` (epoch 0-based, as ultralytics
    counts) and into ``history``. ultralytics also fires ``on_fit_epoch_end`` once more
    after training, for the final validation of ``best.pt``; that call is not an epoch and
    is skipped here (its metrics are what ``model.train`` returns).
    """

    def __init__(self, on_epoch: EpochSink | None = None) -> None:
        self.on_epoch = on_epoch
        self.epochs_seen: list[int] = []
        self.history: list[dict[str, float]] = []

    def attach(self, model: Any) -> None:
        """Register both callbacks on an ``ultralytics.YOLO`` model."""
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_train_epoch_end(self, trainer: Any) -> None:
        self.epochs_seen.append(int(trainer.epoch))

    def on_fit_epoch_end(self, trainer: Any) -> None:
        epoch = int(trainer.epoch)
        if not self.epochs_seen or epoch != self.epochs_seen[-1]:
            return  # the final validation of best.pt, not an epoch
        values: dict[str, float] = {
            **{
                k: float(v)
                for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()
            },
            **{ULTRALYTICS_METRIC_NAMES.get(k, k): float(v) for k, v in trainer.metrics.items()},
            **{k: float(v) for k, v in trainer.lr.items()},
            "epoch_time_s": float(getattr(trainer, "epoch_time", 0.0) or 0.0),
        }
        self.history.append({"epoch": float(epoch), **values})
        if self.on_epoch is not None:
            self.on_epoch(values, epoch)


def fine_tune(
    yolo: Any,
    base_pt: Path,
    data_yaml: Path,
    hyperparameters: Hyperparameters,
    *,
    save_dir: Path,
    on_epoch: EpochSink | None = None,
    device: str = "cpu",
    class_map: Mapping[str, str | None] | None = None,
) -> FineTuneResult:
    """Fine-tune ``base_pt`` on ``data_yaml``'s train split on ``device`` (a torch device,
    ``edgeloop.devices.torch_device``); ultralytics writes into ``save_dir`` (weights,
    ``results.csv``, ``args.yaml``).

    Mixed precision and plots are off (ultralytics' AMP check downloads a model, which an
    offline site cannot do); ``freeze=0`` trains every layer. When ``data_yaml``'s classes
    differ from the base model's, ultralytics builds the new head and copies the base's
    class rows by name (``assets.class_head``); ``class_map`` (old name -> current,
    ``edgeloop.store.classes.name_map``) renames the base's classes first, so a renamed or
    merged class keeps what it learnt.

    Raises:
        FileNotFoundError: training finished without writing ``best.pt``.
    """
    hp = hyperparameters
    model = yolo(str(base_pt))
    if class_map:
        model.model.names = current_names(model.model.names, class_map)
    epochs = EpochMetricsLogger(on_epoch)
    epochs.attach(model)
    t0 = time.perf_counter()
    results = model.train(
        data=str(data_yaml),
        epochs=hp.epochs,
        imgsz=hp.imgsz,
        batch=hp.batch,
        patience=hp.patience,
        freeze=hp.freeze or None,
        optimizer=OPTIMIZER,
        lr0=hp.lr0,
        warmup_epochs=hp.warmup_epochs,
        mosaic=hp.mosaic,
        device=device,
        workers=0,
        amp=False,
        plots=False,
        project=str(save_dir.parent),
        name=save_dir.name,
        exist_ok=True,
        verbose=False,
    )
    train_s = time.perf_counter() - t0
    best = Path(model.trainer.best)
    if not best.exists():
        raise FileNotFoundError(f"training wrote no best.pt under {save_dir}")
    return FineTuneResult(
        best_pt=best,
        final=heldout_metrics(results),
        history=epochs.history,
        train_s=train_s,
        log_files=[save_dir / n for n in TRAINING_LOG_FILES if (save_dir / n).exists()],
    )


def heldout_metrics(results: Any) -> HeldoutMetrics:
    """``HeldoutMetrics`` from ultralytics' ``DetMetrics`` (what ``train``/``val`` return)."""
    box = results.box
    return HeldoutMetrics(
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
    )


IOU_THRESHOLD_COUNT = 10
"""IoU thresholds 0.50:0.05:0.95 (COCO's, ``DetectionValidator.iouv``)."""
VAL_CONF = 0.001
"""Confidence floor of ultralytics' validation (its default for detection)."""
VAL_IOU = 0.7
"""NMS IoU of ultralytics' validation (its default)."""


@dataclass(frozen=True, eq=False)
class ImageMatches:
    """One held-out image as ultralytics' validation scored a model on it.

    Attributes:
        name: the image file name (``<image_stem(frame_key)>.jpg``).
        tp: (N, 10) bool: prediction i is a true positive at IoU threshold j of
            0.50:0.05:0.95, as ``DetectionValidator.match_predictions`` decided.
        conf: (N,) float confidences in [0, 1] (val keeps those >= 0.001).
        pred_cls: (N,) int class ids of the predictions.
        target_cls: (M,) int class ids of the image's ground-truth boxes.
    """

    name: str
    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    target_cls: np.ndarray


class PerImageRecorder:
    """An ultralytics ``on_val_batch_end`` callback that keeps val's per-image statistics:
    ``DetMetrics.update_stats`` appends one entry per image to ``metrics.stats`` and keys
    ``metrics.box.image_metrics`` by image name in the same order; ``get_stats`` clears the
    lists at the end, so they are copied after every batch."""

    KEYS = ("tp", "conf", "pred_cls", "target_cls")

    def __init__(self) -> None:
        self._stats: dict[str, list[np.ndarray]] = {}
        self._names: list[str] = []

    def attach(self, model: Any) -> None:
        """Register the callback on an ``ultralytics.YOLO`` model."""
        model.add_callback("on_val_batch_end", self.on_val_batch_end)

    def on_val_batch_end(self, validator: Any) -> None:
        try:
            stats, names = validator.metrics.stats, list(validator.metrics.box.image_metrics)
            self._stats = {key: list(stats[key]) for key in self.KEYS}
        except (AttributeError, KeyError) as exc:
            raise RuntimeError(
                "this ultralytics version keeps no per-image validation stats "
                "(metrics.stats / metrics.box.image_metrics); install the version in uv.lock"
            ) from exc
        self._names = names

    def images(self) -> list[ImageMatches]:
        """The recorded images, in validation order.

        Raises:
            RuntimeError: the names and the statistics do not line up (two val images with
                the same file name, or a changed ultralytics).
        """
        if any(len(self._stats.get(key, ())) != len(self._names) for key in self.KEYS):
            raise RuntimeError(
                f"ultralytics recorded {len(self._names)} image names but "
                f"{len(self._stats.get('tp', ()))} per-image statistics"
            )
        return [
            ImageMatches(
                name=name,
                tp=np.asarray(tp, dtype=bool).reshape(-1, IOU_THRESHOLD_COUNT),
                conf=np.asarray(conf, dtype=float).reshape(-1),
                pred_cls=np.asarray(pred_cls).astype(int).reshape(-1),
                target_cls=np.asarray(target_cls).astype(int).reshape(-1),
            )
            for name, tp, conf, pred_cls, target_cls in zip(
                self._names, *(self._stats[key] for key in self.KEYS), strict=True
            )
        ]


def validate_per_image(
    yolo: Any,
    pt_path: Path,
    data_yaml: Path,
    *,
    imgsz: int,
    batch: int,
    save_dir: Path,
    device: str = "cpu",
) -> tuple[HeldoutMetrics, list[ImageMatches]]:
    """Validate ``pt_path`` on the ``val`` split of ``data_yaml`` on ``device`` (no plots, no JSON),
    at conf ``VAL_CONF`` and NMS IoU ``VAL_IOU``, keeping each image's matches.

    Returns:
        ultralytics' val metrics, and one ``ImageMatches`` per val image (concatenated and
        fed to ``ap_per_class`` they give back the same mAP: ``assets.heldout``).
    """
    model = yolo(str(pt_path))
    recorder = PerImageRecorder()
    recorder.attach(model)
    results = model.val(
        data=str(data_yaml),
        split="val",
        imgsz=imgsz,
        batch=batch,
        conf=VAL_CONF,
        iou=VAL_IOU,
        device=device,
        workers=0,
        plots=False,
        save_json=False,
        verbose=False,
        project=str(save_dir.parent),
        name=save_dir.name,
        exist_ok=True,
    )
    return heldout_metrics(results), recorder.images()


@dataclass(frozen=True, eq=False)
class FrameDetections:
    """One image's detections as a deployed model outputs them.

    Attributes:
        name: the image file name.
        width / height: the original image's size, px.
        xyxy: (N, 4) float boxes (x1, y1, x2, y2), px of the original image, origin top-left.
        confidence: (N,) in [0, 1], at or above the confidence threshold used.
        class_names: N class names.
    """

    name: str
    width: int
    height: int
    xyxy: np.ndarray
    confidence: np.ndarray
    class_names: list[str]


def predict_deployed(
    yolo: Any,
    pt_path: Path,
    images: Sequence[Path],
    *,
    imgsz: int,
    conf: float,
    iou: float,
    device: str = "cpu",
) -> list[FrameDetections]:
    """Detect on each image as an agent does: a square ``imgsz`` letterbox (the agents' ONNX
    input is a static 1x3x640x640), confidence at least ``conf``, NMS at ``iou``, on ``device``.

    Images are streamed one at a time (ultralytics' ``stream=True``), so results do not
    pile up in memory.
    """
    model = yolo(str(pt_path))
    detections: list[FrameDetections] = []
    square = {"imgsz": imgsz, "rect": False, "conf": conf, "iou": iou, "device": device}
    for result in model.predict([str(p) for p in images], stream=True, verbose=False, **square):
        height, width = (int(v) for v in result.orig_shape)
        boxes = result.boxes
        detections.append(
            FrameDetections(
                name=Path(result.path).name,
                width=width,
                height=height,
                xyxy=boxes.xyxy.cpu().numpy().astype(float).reshape(-1, 4),
                confidence=boxes.conf.cpu().numpy().astype(float),
                class_names=[result.names[int(c)] for c in boxes.cls.tolist()],
            )
        )
    return detections


def export_model_dir(best_pt: Path, save_dir: Path) -> Path:
    """Export ``best_pt`` to ONNX for the agents (static 1x3x640x640 fp32) and lay out
    ``save_dir/model/`` (``best.pt``, ``best.onnx``, ``model.json``) ready to log."""
    onnx_path, class_names = export_onnx(best_pt, save_dir / "export", imgsz=AGENT_IMGSZ)
    return write_model_dir(
        save_dir / MODEL_ARTIFACT_DIR,
        pt_path=best_pt,
        onnx_path=onnx_path,
        class_names=class_names,
        imgsz=AGENT_IMGSZ,
    )


def remove_label_caches(dataset: DatasetVersion) -> None:
    """Delete the ``labels/*.cache`` files ultralytics writes into the dataset folder, so the
    DVC-tracked folder stays as ``training_dataset`` built it."""
    for cache in (dataset.root / "labels").glob("*.cache"):
        cache.unlink(missing_ok=True)


@contextmanager
def label_caches_removed(dataset: DatasetVersion) -> Iterator[DatasetVersion]:
    """Run a block that trains or validates on ``dataset``, then ``remove_label_caches``
    (whether the block succeeded or raised)."""
    try:
        yield dataset
    finally:
        remove_label_caches(dataset)
