"""Helpers of the prediction-batch tests: the real seed detector registered in a real MLflow
store, real frames of the sample video, and what the agents' detector finds on an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from loopdata import register_model
from support import SAMPLES_DIR, require

from edgeloop.detection.onnx import OnnxDetector
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import PRODUCTION, STAGING
from edgeloop.settings import LoopSettings
from edgeloop.uploads import decode_bgr

CLASS_NAMES = ["Normal", "Fall"]
Found = tuple[int, str, float, tuple[float, ...]]


def register_seed(settings: LoopSettings, work: Path, onnx: Path) -> None:
    """The seed detector's ONNX file ``onnx`` (the ``seed_onnx`` fixture) as version 1
    (production) and 2 (staging) in the MLflow store of ``settings``."""
    configure_offline_environment(work / "ultralytics")
    pt = work / "best.pt"
    pt.write_bytes(b"weights are not needed: the API runs the ONNX file")
    for alias in (PRODUCTION, STAGING):
        register_model(settings, pt_path=pt, onnx_path=onnx, class_names=CLASS_NAMES, alias=alias)


def vtest_frame(index: int) -> np.ndarray:
    """Frame ``index`` of the sample video vtest.avi (768x576, people walking), BGR."""
    cap = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    return np.asarray(image)


def expected_detections(jpeg: bytes, onnx: Path) -> list[Found]:
    """What the agents' detector, running ``onnx``, finds on the stored JPEG, with the API's
    defaults."""
    detector = OnnxDetector(onnx, class_names=CLASS_NAMES, version="1")
    image = decode_bgr(jpeg)
    assert image is not None
    return [
        (d.class_id, d.class_name, d.confidence, tuple(d.bbox_xyxy)) for d in detector.detect(image)
    ]


def stored(rows: list[dict[str, Any]]) -> list[Found]:
    """``edgeloop.store.prediction_batches.detections`` rows as ``expected_detections`` gives them."""
    return [
        (d["class_id"], d["class_name"], d["confidence"], (d["x1"], d["y1"], d["x2"], d["y2"]))
        for d in rows
    ]
