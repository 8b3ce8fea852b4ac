"""The wire contract between the edge agent and the API: one versioned set of models.

Both sides import these; neither defines its own. Coordinates are pixels of the
original frame, bbox as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
(xyxy, origin top-left). Times are timezone-aware UTC.

Version history:
    "1": first version.
    "1", later: ``ProductionModel`` gains ``uncertainty_low`` and ``uncertainty_high``, the
        loop host's uncertainty band (``EDGELOOP_UNCERTAINTY_LOW/HIGH``) that agents apply.
        Both default to ``edgeloop.rules``' band, so an agent still parses an older API's
        answer. An agent from before this change rejects the new fields (``extra="forbid"``):
        upgrade the agents before the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW, check_uncertainty_band

WIRE_VERSION = "1"

MAX_FRAMES_PER_BATCH = 2000
"""Largest batch the API accepts; the agent flushes well below it."""
MAX_DETECTIONS_PER_FRAME = 300
"""ultralytics' default ``max_det``; a frame with more is malformed."""
MAX_JPEG_BYTES = 8 * 1024 * 1024
"""Largest frame JPEG accepted (8 MiB; a 4K JPEG at quality 95 is about 3 MiB)."""

CameraId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
FrameKey = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]


def _ordered_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    if not (x1 <= x2 and y1 <= y2):
        raise ValueError(f"bbox must be xyxy with x1 <= x2 and y1 <= y2, got {box}")
    if min(box) < 0:
        raise ValueError(f"bbox coordinates must be >= 0 px, got {box}")
    return box


BBoxXYXY = Annotated[tuple[float, float, float, float], AfterValidator(_ordered_box)]
"""(x1, y1, x2, y2) in pixels of the original frame, origin top-left."""


class _Strict(BaseModel):
    # bytes travel as base64 in JSON and are raw bytes in Python.
    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )


class Detection(_Strict):
    """One detection on a frame, as the agent's detector produced it."""

    bbox_xyxy: BBoxXYXY = Field(description="(x1, y1, x2, y2) px of the original frame.")
    class_id: int = Field(ge=0, description="Index into the model's class names.")
    class_name: str = Field(min_length=1, max_length=64)
    confidence: float = Field(ge=0, le=1, description="Detector confidence in [0, 1].")
    uncertain: bool = Field(description="True when the confidence lies in the uncertainty band.")


class FrameQuality(_Strict):
    """Per-frame image statistics used as drift features (computed on the original frame).

    brightness: mean of the grey image, [0, 255]. contrast: std of the grey image, [0, ~128].
    sharpness: variance of the Laplacian of the grey image (Pech-Pacheco et al., 2000).
    saturation: mean of the HSV S channel, [0, 255].
    """

    brightness: float = Field(ge=0, le=255)
    contrast: float = Field(ge=0)
    sharpness: float = Field(ge=0)
    saturation: float = Field(ge=0, le=255)


class FrameRecord(_Strict):
    """One processed frame: where it came from, how it looked, what was detected."""

    frame_key: FrameKey = Field(
        description="Idempotency key, unique per frame across the fleet: a replayed frame is not stored twice."
    )
    camera_id: CameraId
    frame_index: int = Field(ge=0, description="Index of the frame in its source stream.")
    captured_at: datetime = Field(description="Capture time, timezone-aware UTC.")
    width: int = Field(gt=0, le=16384, description="Original frame width, px.")
    height: int = Field(gt=0, le=16384, description="Original frame height, px.")
    quality: FrameQuality
    inference_ms: float = Field(ge=0, description="Detector time for this frame, ms.")
    model_version: str = Field(min_length=1, max_length=64, description="Registered model version.")
    detections: list[Detection] = Field(default_factory=list, max_length=MAX_DETECTIONS_PER_FRAME)
    jpeg: bytes | None = Field(
        None,
        description="The frame as JPEG (base64 on the wire); sent when a detection is uncertain.",
    )

    @model_validator(mode="after")
    def _boxes_inside_frame(self) -> FrameRecord:
        for det in self.detections:
            _, _, x2, y2 = det.bbox_xyxy
            if x2 > self.width + 1 or y2 > self.height + 1:
                raise ValueError(
                    f"detection bbox {det.bbox_xyxy} lies outside the "
                    f"{self.width}x{self.height} frame {self.frame_key}"
                )
        if self.jpeg is not None and len(self.jpeg) > MAX_JPEG_BYTES:
            raise ValueError(f"frame {self.frame_key}: JPEG larger than {MAX_JPEG_BYTES} bytes")
        if self.captured_at.tzinfo is None:
            raise ValueError(f"frame {self.frame_key}: captured_at must be timezone-aware (UTC)")
        return self


class IngestBatch(_Strict):
    """What the agent POSTs to ``/api/ingest``: a batch of frames from one agent."""

    wire_version: Literal["1"] = "1"
    agent_id: str = Field(min_length=1, max_length=128)
    sent_at: datetime
    frames: list[FrameRecord] = Field(min_length=1, max_length=MAX_FRAMES_PER_BATCH)


class IngestAck(_Strict):
    """The API's answer to a batch: once returned, the accepted frames are durable in DuckDB."""

    accepted: int = Field(description="Frames stored by this request.")
    duplicates: int = Field(description="Frames already stored (same frame_key) and skipped.")
    detections: int = Field(description="Detections stored by this request.")
    queued: int = Field(description="Frames added to the labeling queue.")


class ProductionModel(_Strict):
    """What the API tells agents about the model they should run, and how to flag its output.

    Raises (on validation):
        pydantic.ValidationError: the uncertainty band is empty (``uncertainty_low`` is
            not below ``uncertainty_high``) or a bound lies outside [0, 1].
    """

    name: str
    version: str
    alias: str = "production"
    sha256: str = Field(description="sha256 of the ONNX file, hex.")
    onnx_url: str = Field(description="Path on the API to download the ONNX file.")
    class_names: list[str]
    imgsz: int = Field(description="Square letterbox size the model expects, px.")
    uncertainty_low: float = Field(
        UNCERTAINTY_LOW,
        ge=0,
        le=1,
        description=(
            "Lower bound (exclusive) of the loop host's uncertainty band on detection "
            "confidence, [0, 1]; default edgeloop.rules' (an API that does not send it)."
        ),
    )
    uncertainty_high: float = Field(
        UNCERTAINTY_HIGH,
        ge=0,
        le=1,
        description="Upper bound (exclusive) of the loop host's uncertainty band, [0, 1].",
    )

    @model_validator(mode="after")
    def _band_is_ordered(self) -> ProductionModel:
        check_uncertainty_band(
            self.uncertainty_low,
            self.uncertainty_high,
            names=("uncertainty_low", "uncertainty_high"),
        )
        return self
