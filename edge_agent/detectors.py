"""The agent's detector: the ONNX Runtime backend (``edgeloop.detection.onnx``, shared with
the loop host's uploads) built from the agent's settings and the fleet's uncertainty band.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop.detection.onnx import (
    Detector,
    ModelError,
    OnnxDetector,
    StageTimes,
    batched_nms,
    decode_end2end,
    decode_yolo,
    parse_ultralytics_names,
    yolo_candidates,
)
from edgeloop.detection.providers import choose_providers

if TYPE_CHECKING:
    from edge_agent.model_sync import ModelFile
    from edge_agent.settings import AgentSettings
    from edge_agent.uncertainty import UncertaintyBand

__all__ = [
    "Detector",
    "ModelError",
    "OnnxDetector",
    "StageTimes",
    "batched_nms",
    "decode_end2end",
    "decode_yolo",
    "load_detector",
    "parse_ultralytics_names",
    "yolo_candidates",
]


def load_detector(model: ModelFile, settings: AgentSettings, band: UncertaintyBand) -> OnnxDetector:
    """An ``OnnxDetector`` for ``model`` with the thresholds from ``settings`` and ``band``.

    Raises:
        edge_agent.detectors.ModelError: the file is not a usable YOLO ONNX export, or
            ``settings.execution_providers`` names a provider this onnxruntime build lacks.
    """
    import onnxruntime as ort

    try:
        providers = choose_providers(settings.execution_providers, ort.get_available_providers())
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    return OnnxDetector(
        model.path,
        class_names=model.class_names,
        version=model.version,
        imgsz=model.imgsz or settings.imgsz,
        conf_threshold=settings.conf_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
        uncertainty_low=band.low,
        uncertainty_high=band.high,
        intra_op_threads=settings.intra_op_threads,
        providers=providers,
    )
