"""Wire version 1 and the answers: one object per frame and per detection (``IngestBatch``),
the API's answers to agents (``IngestAck``, ``ProductionModel``) and ``AgentHeartbeat``.

Coordinates are pixels of the original frame, bbox as ``(x1, y1, x2, y2)`` with
``x1 <= x2`` and ``y1 <= y2`` (xyxy, origin top-left). Times are timezone-aware UTC.
The version history is in ``edgeloop.wire``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW, check_uncertainty_band

WIRE_VERSION = "1"
"""Version of ``IngestBatch``; ``IngestBatchColumnar`` is version ``COLUMNAR_WIRE_VERSION``."""
COLUMNAR_WIRE_VERSION: Literal["2"] = "2"

MAX_FRAMES_PER_BATCH = 2000
"""Largest batch the API accepts; the agent flushes well below it."""
MAX_DETECTIONS_PER_FRAME = 300
"""ultralytics' default ``max_det``; a frame with more is malformed."""
MAX_JPEG_BYTES = 8 * 1024 * 1024
"""Largest frame JPEG accepted (8 MiB; a 4K JPEG at quality 95 is about 3 MiB)."""
MAX_JPEG_SIDE = 16384
"""Longest side of a JPEG the API accepts, px. The agent downscales a larger frame's JPEG
to fit (boxes stay in original-frame px); libjpeg itself stops at 65,500."""
MAX_FRAME_SIDE = 1 << 20
"""Longest side of an original frame, px (1,048,576): any frame OpenCV decodes fits
(``CV_IO_MAX_IMAGE_WIDTH`` is 2^20)."""
MAX_INT64 = (1 << 63) - 1
"""Largest integer DuckDB's BIGINT holds; every integer on the wire is bounded by it or less."""
MAX_CLASS_ID = (1 << 31) - 1
"""Largest class index (DuckDB INTEGER)."""
MAX_INFERENCE_MS = 3_600_000.0
"""One hour: an inference time above it is a clock error, not a measurement."""
MAX_QUALITY_STAT = 1e12
"""Upper bound of the unbounded quality statistics (contrast, Laplacian variance): the
Laplacian variance of an 8-bit image is below (8 * 255)^2 ≈ 4.2e6, so 1e12 only refuses
garbage."""

MODEL_PRECISION_KEY = "edgeloop_precision"
"""ONNX metadata key (``metadata_props``) naming a quantised model's numeric precision:
``assets.quantize`` writes ``"int8"``; an ultralytics export has no such key."""
ModelPrecision = Literal["fp32", "fp16", "int8"]
"""The numeric precision of the model an agent runs (``AgentHeartbeat.model_precision``)."""
_PRECISIONS: dict[str, ModelPrecision] = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
_INPUT_PRECISION: dict[str, ModelPrecision] = {"tensor(float)": "fp32", "tensor(float16)": "fp16"}


def model_precision(metadata: dict[str, str], input_type: str) -> ModelPrecision | None:
    """The precision of an ONNX model from its metadata and its input's type.

    Args:
        metadata: the model's ``metadata_props`` (ONNX Runtime:
            ``session.get_modelmeta().custom_metadata_map``).
        input_type: its image input's type as ONNX Runtime names it (``tensor(float)``).

    Returns:
        ``MODEL_PRECISION_KEY``'s value when it names a known precision, else ``fp32`` /
        ``fp16`` from the input type (an int8 QDQ model takes float input, so only its
        metadata tells), else None.
    """
    named = _PRECISIONS.get(metadata.get(MODEL_PRECISION_KEY, ""))
    return named or _INPUT_PRECISION.get(input_type)


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
        extra="forbid",
        frozen=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
        allow_inf_nan=False,
    )


class Detection(_Strict):
    """One detection on a frame, as the agent's detector produced it."""

    bbox_xyxy: BBoxXYXY = Field(description="(x1, y1, x2, y2) px of the original frame.")
    class_id: int = Field(ge=0, le=MAX_CLASS_ID, description="Index into the model's class names.")
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
    contrast: float = Field(ge=0, le=MAX_QUALITY_STAT)
    sharpness: float = Field(ge=0, le=MAX_QUALITY_STAT)
    saturation: float = Field(ge=0, le=255)


class FrameRecord(_Strict):
    """One processed frame: where it came from, how it looked, what was detected."""

    frame_key: FrameKey = Field(
        description="Idempotency key, unique per frame across the fleet: a replayed frame is not stored twice."
    )
    camera_id: CameraId
    frame_index: int = Field(
        ge=0, le=MAX_INT64, description="Index of the frame in its source stream."
    )
    captured_at: datetime = Field(description="Capture time, timezone-aware UTC.")
    width: int = Field(gt=0, le=MAX_FRAME_SIDE, description="Original frame width, px.")
    height: int = Field(gt=0, le=MAX_FRAME_SIDE, description="Original frame height, px.")
    quality: FrameQuality
    inference_ms: float = Field(
        ge=0, le=MAX_INFERENCE_MS, description="Detector time for this frame, ms."
    )
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

    @property
    def frame_count(self) -> int:
        """Frames in the batch (as ``IngestBatchColumnar.frame_count``)."""
        return len(self.frames)


class _Answer(_Strict):
    # What the agent parses from the API ignores fields it does not know, so an API newer
    # than its agents can add fields without breaking them.
    model_config = ConfigDict(extra="ignore")


class IngestAck(_Answer):
    """The API's answer to a batch: once returned, the accepted frames are durable in DuckDB.

    Every frame of the batch is in exactly one of ``accepted``, ``duplicates`` and
    ``conflicts``; none of them needs to be sent again.
    """

    accepted: int = Field(ge=0, description="Frames stored by this request.")
    duplicates: int = Field(
        ge=0, description="Frames already stored (same frame_key, same camera) and skipped."
    )
    detections: int = Field(ge=0, description="Detections stored by this request.")
    queued: int = Field(ge=0, description="Frames added to the labeling queue.")
    conflicts: int = Field(
        0,
        ge=0,
        description=(
            "Frames refused and not stored: their frame_key is stored under another camera, "
            "or with a different JPEG. A stored frame is never changed."
        ),
    )


class AgentHeartbeat(_Strict):
    """What an agent POSTs to ``/api/agents/heartbeat`` every few seconds: is it alive, what
    it runs, how fast, and what it holds back. The API keeps the latest per ``agent_id``.

    Counters count since the agent started; rates and percentiles cover the agent's recent
    window (the last heartbeat interval or the last 100 frames).
    """

    wire_version: Literal["1"] = "1"
    agent_id: str = Field(min_length=1, max_length=128)
    camera_id: CameraId
    host: str = Field(min_length=1, max_length=255, description="Hostname of the camera host.")
    agent_version: str = Field(min_length=1, max_length=64, description="edgeloop version.")
    sent_at: datetime = Field(description="Send time, timezone-aware UTC.")
    started_at: datetime = Field(description="Agent start time, timezone-aware UTC.")
    model_version: str | None = Field(
        None, max_length=64, description="Registered model version it runs; null before one loads."
    )
    source_connected: bool = Field(description="False while a live source is reconnecting.")
    reconnects: int = Field(ge=0, le=MAX_INT64, description="Source reconnects since start.")
    frames_processed: int = Field(ge=0, le=MAX_INT64, description="Frames detected since start.")
    frames_skipped: int = Field(
        ge=0, le=MAX_INT64, description="Frames skipped since start (undecodable, unusable)."
    )
    frames_per_s: float = Field(ge=0, le=1e6, description="Recent processing rate, frames/s.")
    inference_ms_p50: float | None = Field(None, ge=0, le=MAX_INFERENCE_MS)
    inference_ms_p95: float | None = Field(None, ge=0, le=MAX_INFERENCE_MS)
    execution_provider: str | None = Field(
        None,
        max_length=64,
        description=(
            "The ONNX Runtime execution provider inference runs on (CUDAExecutionProvider, "
            "CPUExecutionProvider, ...); null from older agents and non-ONNX backends."
        ),
    )
    model_precision: ModelPrecision | None = Field(
        None,
        description=(
            "Numeric precision of the model it runs (fp32, fp16, int8: an int8 model is "
            "quantised for the CPU); null from older agents and non-ONNX backends."
        ),
    )
    spool_batches: int = Field(ge=0, le=MAX_INT64, description="Batches waiting in the spool.")
    spool_bytes: int = Field(ge=0, le=MAX_INT64, description="Bytes the spool holds on disk.")
    spool_dropped_batches: int = Field(
        ge=0, le=MAX_INT64, description="Batches dropped (oldest first) at the spool's disk cap."
    )

    @model_validator(mode="after")
    def _aware(self) -> AgentHeartbeat:
        if self.sent_at.tzinfo is None or self.started_at.tzinfo is None:
            raise ValueError("sent_at and started_at must be timezone-aware (UTC)")
        return self


class ProductionModel(_Answer):
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
