"""Detector backends behind one small ABC, and the ONNX Runtime backend for YOLO exports:
the camera agent runs it on frames (``edge_agent.detectors.load_detector``), the loop host
on uploaded images (``api.uploads``), so both decode a model's output the same way.

``Detector.detect(image)`` takes ``(H, W, 3) uint8 BGR`` and returns ``edgeloop.wire``
``Detection`` objects with boxes as xyxy in pixels of the ORIGINAL frame, clipped to it,
and ``uncertain`` set by ``edgeloop.rules.is_uncertain``.

``OnnxDetector`` runs an ultralytics YOLOv8-family ONNX export in three timed stages, as
ultralytics' predictor does: preprocess (letterbox, see ``edgeloop.detection.preprocess``) →
inference (``session.run``) → postprocess (decode, confidence threshold, class-aware
NMS with OpenCV's ``cv2.dnn.NMSBoxesBatched``, map back to the frame).
"""

from __future__ import annotations

import ast
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeloop.detection.preprocess import Letterbox, preprocess
from edgeloop.detection.providers import CPU
from edgeloop.files import sha256_file
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW, is_uncertain
from edgeloop.wire import Detection

logger = logging.getLogger(__name__)

MAX_NMS_CANDIDATES = 30000
"""Boxes that enter NMS, highest confidence first (ultralytics' ``max_nms``)."""


class ModelError(RuntimeError):
    """A model file is missing, unreadable, or not a YOLO detection export."""


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Time spent in each stage of one ``detect`` call, milliseconds."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


class Detector(ABC):
    """A detection backend: one frame in, detections in original-frame pixels out."""

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Class names indexed by class_id."""

    @property
    @abstractmethod
    def version(self) -> str:
        """The model version recorded with every frame (registered version, or local-<sha>)."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect objects in ``image`` ((H, W, 3) uint8 BGR); boxes xyxy in its pixels."""

    def detect_timed(self, image: np.ndarray) -> tuple[list[Detection], StageTimes]:
        """``detect`` plus its stage times; backends that cannot split stages count it all as inference."""
        t0 = time.perf_counter()
        detections = self.detect(image)
        return detections, StageTimes(0.0, (time.perf_counter() - t0) * 1e3, 0.0)

    @property
    def execution_provider(self) -> str | None:
        """The accelerator inference runs on (an ONNX Runtime execution provider), or None
        when the backend has no such notion."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Release the backend's resources."""


def parse_ultralytics_names(text: str) -> list[str]:
    """Class names from ultralytics' ``names`` metadata (``"{0: 'person', 1: 'car'}"``).

    Raises:
        ValueError: the text is not a dict of consecutive int ids from 0 to names.
    """
    names = ast.literal_eval(text)
    if isinstance(names, list):
        return [str(n) for n in names]
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))):
        raise ValueError(f"names metadata is not a {{0: name, 1: name, ...}} dict: {text!r}")
    return [str(names[i]) for i in range(len(names))]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    *,
    max_candidates: int = MAX_NMS_CANDIDATES,
) -> np.ndarray:
    """Class-aware greedy non-maximum suppression with OpenCV's ``cv2.dnn.NMSBoxesBatched``.

    Same rule as ``torchvision.ops.batched_nms`` (what ultralytics runs): boxes are taken
    in descending score order, ties in index order (a stable sort), and a box is dropped
    when its IoU with an already kept box of the SAME class is above ``iou_threshold``
    (IoU equal to the threshold keeps it); boxes of different classes never suppress each
    other. OpenCV computes IoU in float64 on ``Rect2d`` boxes (``cv2.dnn``'s ``nms.cpp``).

    Args:
        boxes: (N, 4) float32 xyxy, any pixel frame (letterbox px in ``decode_yolo``).
        scores: (N,) float32 confidences; every box takes part (filter by score before).
        class_ids: (N,) integer class ids.
        iou_threshold: IoU in [0, 1] above which a same-class box is suppressed.
        max_candidates: only this many boxes, highest score first, enter NMS (OpenCV's
            ``top_k``; ultralytics' ``max_nms``).

    Returns:
        (K,) int64 indices into ``boxes`` of the kept boxes, highest score first.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.array(boxes, dtype=np.float64)  # a copy: OpenCV takes x, y, width, height
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(),
        np.asarray(scores, dtype=np.float32).tolist(),
        np.asarray(class_ids, dtype=np.int64).tolist(),
        score_threshold=-np.inf,
        nms_threshold=iou_threshold,
        top_k=max_candidates,
    )
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def yolo_candidates(
    output: np.ndarray, *, conf_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anchors of a YOLOv8/ultralytics detection head above ``conf_threshold``, before NMS.

    Args:
        output: (1, 4 + nc, N) float32: per anchor cx, cy, w, h in letterbox px, then the
            nc class scores in [0, 1] (no objectness; ultralytics' ``Detect`` head export).
        conf_threshold: keep an anchor when its best class score is above this.

    Returns:
        boxes (M, 4) float32 xyxy in letterbox px, confidences (M,) float32 (the best
        class score), class_ids (M,) int64; in anchor order.

    Raises:
        ModelError: ``output`` does not have the (1, 4 + nc, N) shape.
    """
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] < 5:
        raise ModelError(f"expected a (1, 4 + nc, N) YOLO output, got shape {output.shape}")
    pred = output[0]
    scores = pred[4:]
    class_ids = scores.argmax(axis=0)
    conf = scores[class_ids, np.arange(scores.shape[1])]
    candidates = np.flatnonzero(conf > conf_threshold)
    cx, cy, w, h = pred[:4, candidates]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return xyxy, conf[candidates], class_ids[candidates].astype(np.int64)


def decode_yolo(
    output: np.ndarray,
    box: Letterbox,
    *,
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode a YOLOv8/ultralytics detection head's raw output.

    Args:
        output: (1, 4 + nc, N) float32 (see ``yolo_candidates``).
        box: how the frame was letterboxed.
        conf_threshold: keep an anchor when its best class score is above this.
        iou_threshold: class-aware NMS IoU threshold (see ``batched_nms``; boxes of
            different classes never suppress each other, as ultralytics' ``agnostic=False``).
        max_detections: keep at most this many, highest confidence first.

    Returns:
        boxes (K, 4) float32 xyxy in original-frame px clipped to the frame,
        confidences (K,) float32 in [0, 1], class_ids (K,) int64; sorted by confidence.

    Raises:
        ModelError: ``output`` does not have the (1, 4 + nc, N) shape.
    """
    xyxy, conf, class_ids = yolo_candidates(output, conf_threshold=conf_threshold)
    keep = batched_nms(xyxy, conf, class_ids, iou_threshold)[:max_detections]
    boxes = box.boxes_to_original(xyxy[keep])
    return boxes, np.clip(conf[keep], 0.0, 1.0).astype(np.float32), class_ids[keep]


def decode_end2end(
    output: np.ndarray, box: Letterbox, *, conf_threshold: float, max_detections: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode an NMS-included export (``end2end``): (1, N, 6) rows of x1, y1, x2, y2 (letterbox px), conf, class_id."""
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[2] < 6:
        raise ModelError(f"expected a (1, N, 6) end-to-end output, got shape {output.shape}")
    rows = output[0]
    rows = rows[rows[:, 4] > conf_threshold]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_detections]
    boxes = box.boxes_to_original(rows[:, :4])
    return boxes, np.clip(rows[:, 4], 0.0, 1.0).astype(np.float32), rows[:, 5].astype(np.int64)


class OnnxDetector(Detector):
    """An ultralytics YOLO detection model exported to ONNX, run with onnxruntime on CPU.

    Args:
        path: the ``.onnx`` file.
        class_names: class names by class_id; default the ``names`` ultralytics writes
            into the model's metadata.
        version: model version to record with each frame; default ``local-<sha256[:12]>``.
        imgsz: letterbox size for models with a dynamic input; a static input size wins.
        conf_threshold: drop detections at or below this confidence.
        iou_threshold: class-aware NMS IoU threshold.
        max_detections: keep at most this many detections per frame.
        uncertainty_low, uncertainty_high: the uncertainty band (exclusive bounds).
        intra_op_threads: onnxruntime intra-op threads; 0 = one per physical core.
        providers: ONNX Runtime execution providers, best first
            (``edgeloop.detection.providers.choose_providers``); the CPU alone by default.

    Raises:
        ModelError: the file is missing or not a loadable ONNX model, it is not a
            detection export, or its class names are unknown / do not match its output.
    """

    def __init__(
        self,
        path: Path,
        *,
        class_names: list[str] | None = None,
        version: str | None = None,
        imgsz: int = 640,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
        uncertainty_low: float = UNCERTAINTY_LOW,
        uncertainty_high: float = UNCERTAINTY_HIGH,
        intra_op_threads: int = 0,
        providers: Sequence[str] = (CPU,),
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(
                f"model file {path} does not exist; pass --model PATH (an ultralytics ONNX "
                "export) or let the agent download the production model from the API"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers)
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(
                f"cannot load ONNX model {path}: {exc}. Is it a complete ONNX file? "
                "Re-export it (yolo export format=onnx) or delete it to re-download."
            ) from exc
        self.path = path
        self._provider = str(self.session.get_providers()[0])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{path}: expected one (1, 3, H, W) image input, got {inputs}")
        self.input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise ModelError(f"{path}: only square inputs are supported, got {h}x{w}")
            imgsz = h
        self.imgsz = imgsz
        meta: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        self.end2end = meta.get("end2end", "False") == "True"
        if meta.get("task", "detect") != "detect":
            raise ModelError(f"{path}: a {meta['task']!r} model; the agent runs detection models")
        if class_names is None:
            if "names" not in meta:
                raise ModelError(
                    f"{path} carries no class names in its metadata (ultralytics writes "
                    "'names'); give class_names explicitly"
                )
            try:
                class_names = parse_ultralytics_names(meta["names"])
            except (ValueError, SyntaxError) as exc:
                raise ModelError(f"{path}: unreadable class names metadata: {exc}") from exc
        self._class_names = list(class_names)
        output_shape = self.session.get_outputs()[0].shape
        nc = output_shape[1] - 4 if isinstance(output_shape[1], int) else None
        if not self.end2end and nc is not None and nc != len(self._class_names):
            raise ModelError(
                f"{path}: the model outputs {nc} classes but {len(self._class_names)} class "
                f"names were given ({self._class_names})"
            )
        self._version = version or f"local-{sha256_file(path)[:12]}"
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.uncertainty_low = uncertainty_low
        self.uncertainty_high = uncertainty_high

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def version(self) -> str:
        return self._version

    @property
    def execution_provider(self) -> str:
        """The provider the session took first of those asked for (e.g.
        ``CUDAExecutionProvider``, ``CPUExecutionProvider``)."""
        return self._provider

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """(H, W, 3) uint8 BGR → (1, 3, imgsz, imgsz) float32 RGB [0, 1] and its ``Letterbox``."""
        return preprocess(image, self.imgsz)

    def inference(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model: (1, 3, imgsz, imgsz) float32 → its raw first output."""
        out: Any = self.session.run(None, {self.input_name: tensor})[0]
        return np.asarray(out)

    def postprocess(self, output: np.ndarray, box: Letterbox) -> list[Detection]:
        """Raw output → detections in original-frame px (see ``decode_yolo``)."""
        if self.end2end:
            boxes, conf, class_ids = decode_end2end(
                output, box, conf_threshold=self.conf_threshold, max_detections=self.max_detections
            )
        else:
            boxes, conf, class_ids = decode_yolo(
                output,
                box,
                conf_threshold=self.conf_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
            )
        detections = []
        names = self._class_names
        for (x1, y1, x2, y2), c, k in zip(
            boxes.tolist(), conf.tolist(), class_ids.tolist(), strict=True
        ):
            if not 0 <= k < len(names):
                raise ModelError(f"{self.path}: class_id {k} outside the {len(names)} class names")
            detections.append(
                Detection(
                    bbox_xyxy=(x1, y1, x2, y2),
                    class_id=k,
                    class_name=names[k],
                    confidence=c,
                    uncertain=is_uncertain(c, self.uncertainty_low, self.uncertainty_high),
                )
            )
        return detections

    def detect_timed(self, image: np.ndarray) -> tuple[list[Detection], StageTimes]:
        t0 = time.perf_counter()
        tensor, box = self.preprocess(image)
        t1 = time.perf_counter()
        output = self.inference(tensor)
        t2 = time.perf_counter()
        detections = self.postprocess(output, box)
        t3 = time.perf_counter()
        return detections, StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_timed(image)[0]
