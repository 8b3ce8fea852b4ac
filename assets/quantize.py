"""An int8 edge model from a candidate's fp32 ONNX, judged against the model it came from.

Quantisation is ONNX Runtime's static post-training quantisation
(``onnxruntime.quantization.quantize_static``,
https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html): QDQ
format, int8 weights per output channel, uint8 activations whose ranges come from
calibration frames (MinMax over the frames; ORT's default method), after ORT's
``quant_pre_process`` (shape inference and graph clean-up, as its docs recommend).

Calibration frames come from the dataset's ``images/train`` split, never the held-out
one, and are preprocessed as the agents preprocess a frame: ultralytics' ``LetterBox``
(square, aspect kept, grey 114 padding split evenly; ``edgeloop.detection.preprocess`` follows it
exactly), BGR to RGB, NCHW float32 in [0, 1].

The Detect head's decode (the nodes from the last convolutions of each scale to the
output: reshape, concat of the box and class branches, DFL softmax, anchor arithmetic,
class sigmoid) stays fp32 (``decode_nodes``). Measured on the seed model: with the decode
quantised too, box coordinates (0..640 px) and class scores ([0, 1]) share one
quantisation scale in the output ``Concat``, every score collapses to 0 and nothing is
detected; with the decode in fp32 the scores of the fp32 model's detections move by ~0.03.

``judge_int8`` then scores the int8 and the fp32 ONNX on the same frozen held-out images
with ultralytics' validation (both through ONNX Runtime, at the export's static 640 px)
and ``assets.heldout.paired_bootstrap`` gives the int8-minus-fp32 interval that
``assets.registry.int8_decision`` gates on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from assets.heldout import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, paired_bootstrap
from assets.tracking import log_metrics
from assets.yolo import HeldoutMetrics, label_caches_removed, validate_per_image
from edgeloop.datasets import DatasetVersion
from edgeloop.files import sha256_file
from edgeloop.registry import (
    INT8_ARTIFACT_DIR,
    PRECISION_TAG,
    QUANTIZED_FROM_TAG,
    ModelFiles,
    register_model_version,
    write_model_dir,
)
from edgeloop.wire.records import MODEL_PRECISION_KEY

if TYPE_CHECKING:
    import onnx
    from mlflow import MlflowClient

    from assets.heldout import GainInterval

DEFAULT_CALIBRATION_FRAMES = 32
"""Training frames the activation ranges are calibrated on (ORT's examples use a few
dozen to a few hundred; on the seed model 24 frames already keep detection scores
within ~0.03 of fp32, and each frame costs one fp32 inference of the augmented model)."""
INT8 = "int8"
"""The precision an int8 model carries in its ONNX metadata (``MODEL_PRECISION_KEY``)."""


def letterboxed_tensor(image: np.ndarray, imgsz: int) -> np.ndarray:
    """One frame as the agents feed it to the model.

    Args:
        image: (H, W, 3) uint8 BGR.
        imgsz: the model's square input size, px.

    Returns:
        (1, 3, imgsz, imgsz) float32 RGB in [0, 1], NCHW, contiguous.
    """
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox(new_shape=(imgsz, imgsz), auto=False, scaleup=True, center=True)
    boxed = np.asarray(letterbox(image=image))
    return np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255


def calibration_images(train_images: Sequence[Path], count: int) -> list[Path]:
    """``count`` of ``train_images`` evenly spaced in name order (all of them when fewer),
    so the frames span the dataset's cameras and times rather than its first minutes.

    Raises:
        ValueError: ``train_images`` is empty (nothing to calibrate on).
    """
    ordered = sorted(train_images)
    if not ordered:
        raise ValueError("no training images to calibrate the int8 model on")
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in sorted(set(picks.tolist()))]


class CalibrationFrames:
    """An ``onnxruntime.quantization.CalibrationDataReader``: one ``{input: tensor}`` per
    image, read and letterboxed lazily (``letterboxed_tensor``) so frames do not pile up.

    Raises (from ``get_next``):
        ValueError: an image cannot be read.
    """

    def __init__(self, images: Sequence[Path], *, input_name: str, imgsz: int) -> None:
        self.images, self.input_name, self.imgsz = list(images), input_name, imgsz
        self._iter: Iterator[Path] = iter(self.images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._iter, None)
        if path is None:
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read calibration frame {path}")
        return {self.input_name: letterboxed_tensor(image, self.imgsz)}

    def rewind(self) -> None:
        self._iter = iter(self.images)


def decode_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that turn the head's convolution outputs into boxes and scores:
    every node from which a graph output is reached without passing through a ``Conv``
    (ultralytics' DFL is a ``Conv`` with fixed weights 0..15 fed by a softmax; it is part
    of the decode too). These stay fp32 (module docstring)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    decode: dict[str, Any] = {}
    stack = [producer[o.name] for o in model.graph.output if o.name in producer]
    while stack:
        node = stack.pop()
        if node.name in decode:
            continue
        decode[node.name] = node
        for name in node.input:
            parent = producer.get(name)
            if parent is None or parent.name in decode:
                continue
            if parent.op_type != "Conv" or _is_dfl(parent, producer):
                stack.append(parent)
    return sorted(decode)


def _is_dfl(conv: Any, producer: dict[str, Any]) -> bool:
    """A ``Conv`` fed (through reshapes/transposes) by a ``Softmax``: ultralytics' DFL."""
    node = producer.get(conv.input[0])
    while node is not None and node.op_type in ("Reshape", "Transpose"):
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"


@dataclass(frozen=True)
class QuantizedModel:
    """What ``quantize_int8`` wrote.

    Attributes:
        path: the int8 ONNX (same input and output names and shapes as its fp32 source;
            metadata copied, plus ``MODEL_PRECISION_KEY: "int8"``).
        calibration_frames: frames the activation ranges came from.
        fp32_nodes: the decode nodes kept in fp32 (``decode_nodes``).
        quantize_s: wall time of calibration and quantisation, s.
    """

    path: Path
    calibration_frames: int
    fp32_nodes: int
    quantize_s: float


def quantize_int8(
    fp32_onnx: Path, out: Path, calibration: Sequence[Path], *, per_channel: bool = True
) -> QuantizedModel:
    """Statically quantise ``fp32_onnx`` to ``out`` (module docstring for the method).

    Args:
        fp32_onnx: an ultralytics detection export with one static (1, 3, S, S) input.
        out: where the int8 model goes (its folder is created).
        calibration: image files to calibrate activation ranges on (training frames).
        per_channel: int8 weights per output channel (ORT's advice for convolutions).

    Raises:
        ValueError: no calibration images, one cannot be read, or the model's input is
            not a static square image.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("no calibration images: the int8 model needs training frames")
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared = out.with_name(f".{out.stem}.pre.onnx")
    quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
    source = onnx.load(str(prepared))
    dims = [d.dim_value for d in source.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] != dims[3] or dims[2] <= 0:
        raise ValueError(f"{fp32_onnx}: expected a static (1, 3, S, S) input, got {dims}")
    keep = decode_nodes(source)
    reader = CalibrationFrames(calibration, input_name=source.graph.input[0].name, imgsz=dims[2])
    try:
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep,
        )
    finally:
        prepared.unlink(missing_ok=True)
    _copy_metadata(onnx.load(str(fp32_onnx)), out)
    return QuantizedModel(out, len(calibration), len(keep), time.perf_counter() - t0)


def _copy_metadata(fp32: onnx.ModelProto, out: Path) -> None:
    """Give ``out`` the fp32 export's metadata (class names, stride, imgsz: what ultralytics
    and the agents read) and ``MODEL_PRECISION_KEY: "int8"``."""
    import onnx

    model = onnx.load(str(out))
    meta = {p.key: p.value for p in fp32.metadata_props} | {MODEL_PRECISION_KEY: INT8}
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))


@dataclass(frozen=True)
class Int8Judgement:
    """The int8 model and the fp32 ONNX it came from on the same held-out images.

    Attributes:
        quantized: what ``quantize_int8`` wrote.
        val_images: held-out images both were scored on (the n of each interval).
        fp32_metrics / int8_metrics: ultralytics' val box metrics in [0, 1], both ONNX
            through ONNX Runtime at the export's static size.
        gains: ``"mAP50-95"``, ``"mAP50"`` -> int8-minus-fp32 with its paired-bootstrap
            interval (negative: what quantisation lost).
        eval_s: wall time of both validations and the bootstrap, s.
    """

    quantized: QuantizedModel
    val_images: int
    fp32_metrics: HeldoutMetrics
    int8_metrics: HeldoutMetrics
    gains: dict[str, GainInterval]
    eval_s: float

    def as_metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow: ``int8_heldout_<metric>``, ``fp32_onnx_heldout_<metric>``,
        ``int8_gain_<metric>`` (+ ``_low``/``_high``), the timings and the frames."""
        values = {f"int8_heldout_{k}": v for k, v in self.int8_metrics.as_dict().items()}
        values |= {f"fp32_onnx_heldout_{k}": v for k, v in self.fp32_metrics.as_dict().items()}
        for name, gain in self.gains.items():
            values |= {
                f"int8_gain_{name}": gain.point,
                f"int8_gain_{name}_low": gain.low,
                f"int8_gain_{name}_high": gain.high,
            }
        return values | {
            "int8_quantize_s": self.quantized.quantize_s,
            "int8_eval_s": self.eval_s,
            "int8_calibration_frames": float(self.quantized.calibration_frames),
        }


def judge_int8(
    yolo: Any,
    fp32_onnx: Path,
    quantized: QuantizedModel,
    data_yaml: Path,
    *,
    work: Path,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Int8Judgement:
    """Score ``quantized`` and ``fp32_onnx`` on ``data_yaml``'s val split (ultralytics'
    validation per image, on the CPU: ONNX Runtime's CPU provider is what the int8 model is
    for), and the paired bootstrap of int8 minus fp32.

    Raises:
        RuntimeError: the two validations did not score the same images.
    """
    t0 = time.perf_counter()
    runs = {}
    for role, path in (("fp32", fp32_onnx), ("int8", quantized.path)):
        # A static ONNX export validates one image at a time (ultralytics sets batch=1).
        runs[role] = validate_per_image(
            yolo, path, data_yaml, imgsz=_imgsz(path), batch=1, save_dir=work / role
        )
    (fp32, fp32_matches), (int8, int8_matches) = runs["fp32"], runs["int8"]
    if sorted(m.name for m in fp32_matches) != sorted(m.name for m in int8_matches):
        raise RuntimeError("the fp32 and int8 validations scored different held-out images")
    gains = paired_bootstrap(
        int8_matches, fp32_matches, resamples=resamples, seed=seed, confidence=confidence
    )
    return Int8Judgement(
        quantized, len(fp32_matches), fp32, int8, dict(gains), time.perf_counter() - t0
    )


def _imgsz(onnx_path: Path) -> int:
    """The static square input size of an ONNX model, px."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return int(model.graph.input[0].type.tensor_type.shape.dim[2].dim_value)


@dataclass(frozen=True)
class Int8Candidate:
    """An int8 edge model registered as a version of its own, with its judgement.

    Attributes:
        version: its registered version (tags ``precision: int8``, ``quantized_from``).
        parent_version: the fp32 version it was quantised from (same ``best.pt``).
        judgement: int8 vs that fp32 ONNX on the held-out images.
    """

    version: str
    parent_version: str
    judgement: Int8Judgement

    def evidence_tags(self) -> dict[str, str]:
        """Version tags: n, the int8-minus-fp32 gains with their intervals, the timings."""
        j = self.judgement
        tags = {f"int8_gain_{name}": gain.label() for name, gain in j.gains.items()}
        return tags | {
            "heldout_images": str(j.val_images),
            "int8_calibration_frames": str(j.quantized.calibration_frames),
            **{f"heldout_{k}": f"{v:.6f}" for k, v in j.int8_metrics.as_dict().items()},
        }


def int8_candidate(
    yolo: Any,
    parent: ModelFiles,
    dataset: DatasetVersion,
    *,
    client: MlflowClient,
    run_id: str,
    calibration_frames: int,
    work: Path,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Int8Candidate:
    """Quantise ``parent``'s ONNX with ``calibration_frames`` of the dataset's training
    frames, judge it against that ONNX on the held-out split (``judge_int8``), log the
    int8 model and its numbers to ``run_id`` (the parent's training run: ``model-int8/``
    and ``int8_*`` metrics) and register it as a new version of ``parent.name``.
    ``work`` and ultralytics' label caches are removed afterwards, also when it raises.

    Raises:
        ValueError: the dataset has no training frames to calibrate on.
    """
    train = dataset.root / "images" / "train"
    images = [p for p in train.glob("*") if p.is_file()] if train.is_dir() else []
    try:
        quantized = quantize_int8(
            parent.onnx_path,
            work / "int8" / "best.onnx",
            calibration_images(images, calibration_frames),
        )
        with label_caches_removed(dataset):
            judgement = judge_int8(
                yolo,
                parent.onnx_path,
                quantized,
                dataset.data_yaml,
                work=work / "val",
                resamples=resamples,
                seed=seed,
                confidence=confidence,
            )
        model_dir = write_model_dir(
            work / INT8_ARTIFACT_DIR,
            pt_path=parent.pt_path,
            onnx_path=quantized.path,
            class_names=parent.class_names,
            imgsz=parent.imgsz,
            precision=INT8,
        )
        client.log_artifacts(run_id, str(model_dir), INT8_ARTIFACT_DIR)
        log_metrics(client, run_id, judgement.as_metrics())
        candidate = Int8Candidate("", parent.version, judgement)
        version = register_model_version(
            client,
            model_name=parent.name,
            run_id=run_id,
            description=(
                f"int8 edge model statically quantised from v{parent.version} "
                f"({quantized.calibration_frames} calibration frames of dataset {dataset.version})"
            ),
            tags={
                "kind": "int8",
                PRECISION_TAG: INT8,
                QUANTIZED_FROM_TAG: parent.version,
                "dataset_version": dataset.version,
                "onnx_sha256": sha256_file(model_dir / "best.onnx"),
                "pt_sha256": sha256_file(model_dir / "best.pt"),
                **candidate.evidence_tags(),
            },
            artifact_dir=INT8_ARTIFACT_DIR,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Int8Candidate(str(version.version), parent.version, judgement)
