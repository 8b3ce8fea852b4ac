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
    "1", later: ``IngestAck`` gains ``conflicts``; ``AgentHeartbeat`` is added. The answers
        agents parse (``IngestAck``, ``ProductionModel``) now ignore unknown fields, so
        later additions do not break agents.
    "2": ``IngestBatchColumnar``, the same batch as parallel arrays (one per frame field,
        one per detection field, in frame order) instead of one object per frame and per
        detection: the API parses it about 10x faster. Every bound of version 1 holds,
        checked element-wise by pydantic and across arrays with numpy. Version 1
        (``IngestBatch``) stays accepted on the same route; the API dispatches on
        ``wire_version``. ``encode_columnar`` turns ``FrameRecord``s into version 2. An
        API from before version 2 refuses it (422): upgrade the API before the agents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

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


MAX_DETECTIONS_PER_BATCH = MAX_FRAMES_PER_BATCH * MAX_DETECTIONS_PER_FRAME
"""Most detections one batch can hold (600,000)."""
MAX_CLASS_NAMES_PER_BATCH = 4096
"""Most distinct class names in one version-2 batch (COCO has 80, Objects365 365)."""
MAX_VIOLATIONS_REPORTED = 20
"""Most violations of one cross-array rule named in a version-2 refusal (a corrupt batch
can break a rule at every one of its 600,000 detections)."""

_Px = Annotated[float, Field(ge=0)]
_Unit = Annotated[float, Field(ge=0, le=1)]
_Byte = Annotated[float, Field(ge=0, le=255)]
_Stat = Annotated[float, Field(ge=0, le=MAX_QUALITY_STAT)]
_Jpeg = Annotated[bytes, Field(max_length=MAX_JPEG_BYTES)]


def _per_frame(description: str) -> Any:
    return Field(min_length=1, max_length=MAX_FRAMES_PER_BATCH, description=description)


def _per_detection(description: str) -> Any:
    return Field(max_length=MAX_DETECTIONS_PER_BATCH, description=description)


@dataclass(frozen=True)
class ColumnarArrays:
    """The numeric arrays of a checked ``IngestBatchColumnar`` as numpy arrays.

    Attributes:
        detection_count: (n_frames,) int64, detections of each frame.
        width, height: (n_frames,) int64, original frame size, px.
        boxes: (n_detections, 4) float64 xyxy px of the original frame, in frame order.
        confidence: (n_detections,) float64 in [0, 1].
        class_id: (n_detections,) int64.
        class_name_index: (n_detections,) int64, index into the batch's ``class_names``.
        uncertain: (n_detections,) bool.
    """

    detection_count: npt.NDArray[np.int64]
    width: npt.NDArray[np.int64]
    height: npt.NDArray[np.int64]
    boxes: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    class_id: npt.NDArray[np.int64]
    class_name_index: npt.NDArray[np.int64]
    uncertain: npt.NDArray[np.bool_]


_FRAME_FIELDS = (
    "frame_key",
    "camera_id",
    "frame_index",
    "captured_at",
    "width",
    "height",
    "brightness",
    "contrast",
    "sharpness",
    "saturation",
    "inference_ms",
    "model_version",
    "detection_count",
)
_DETECTION_FIELDS = (
    "x1",
    "y1",
    "x2",
    "y2",
    "class_id",
    "class_name_index",
    "confidence",
    "uncertain",
)


def _violation(kind: str, message: str, loc: tuple[str | int, ...], value: Any) -> InitErrorDetails:
    # The message is pre-formatted; braces in it must not be read as template fields.
    template = message.replace("{", "{{").replace("}", "}}")
    return InitErrorDetails(type=PydanticCustomError(kind, template), loc=loc, input=value)


class IngestBatchColumnar(_Strict):
    """Version 2 of what the agent POSTs to ``/api/ingest``: the batch as parallel arrays.

    The same content as an ``IngestBatch`` without one JSON object per frame and per
    detection. Per-frame arrays all have one item per frame (``n_frames`` in
    [1, ``MAX_FRAMES_PER_BATCH``]); per-detection arrays have one item per detection,
    the detections of frame 0 first, then frame 1's, and so on: frame ``i`` owns the
    ``detection_count[i]`` detections after the first ``sum(detection_count[:i])``. The
    ``k``-th detection of a frame is stored as ``<frame_key>:<k>``, as in version 1.

    Every bound of version 1 holds: element bounds are checked by pydantic (an error
    names the array and the index, e.g. ``("confidence", 17)``), the rules across
    arrays by numpy after them (equal lengths, ``detection_count`` summing to the
    detection arrays' length, bbox ordered and inside its frame with version 1's 1 px
    tolerance, ``class_name_index`` inside ``class_names``), each violation named the
    same way (at most ``MAX_VIOLATIONS_REPORTED`` per rule).

    Build it on the agent with ``encode_columnar``; parse a body with ``parse_ingest_batch``.

    Raises (on validation):
        pydantic.ValidationError: a bound or a rule above is broken.
    """

    wire_version: Literal["2"] = Field(description='Wire version of this model: always "2".')
    agent_id: str = Field(min_length=1, max_length=128)
    sent_at: datetime
    # Per frame.
    frame_key: list[FrameKey] = Field(
        min_length=1,
        max_length=MAX_FRAMES_PER_BATCH,
        description="Idempotency key of each frame (see FrameRecord.frame_key).",
    )
    camera_id: list[CameraId] = _per_frame("Camera of each frame.")
    frame_index: list[Annotated[int, Field(ge=0, le=MAX_INT64)]] = _per_frame(
        "Index of each frame in its source stream."
    )
    captured_at: list[AwareDatetime] = _per_frame("Capture times, timezone-aware.")
    width: list[Annotated[int, Field(gt=0, le=MAX_FRAME_SIDE)]] = _per_frame(
        "Original frame widths, px."
    )
    height: list[Annotated[int, Field(gt=0, le=MAX_FRAME_SIDE)]] = _per_frame(
        "Original frame heights, px."
    )
    brightness: list[_Byte] = _per_frame("FrameQuality.brightness.")
    contrast: list[_Stat] = _per_frame("FrameQuality.contrast.")
    sharpness: list[_Stat] = _per_frame("FrameQuality.sharpness.")
    saturation: list[_Byte] = _per_frame("FrameQuality.saturation.")
    inference_ms: list[Annotated[float, Field(ge=0, le=MAX_INFERENCE_MS)]] = _per_frame(
        "Detector time per frame, ms."
    )
    model_version: list[Annotated[str, Field(min_length=1, max_length=64)]] = _per_frame(
        "Registered model version that produced each frame's detections."
    )
    detection_count: list[Annotated[int, Field(ge=0, le=MAX_DETECTIONS_PER_FRAME)]] = Field(
        min_length=1,
        max_length=MAX_FRAMES_PER_BATCH,
        description="Detections of each frame; they sum to the detection arrays' length.",
    )
    jpeg: list[_Jpeg | None] | None = Field(
        None,
        max_length=MAX_FRAMES_PER_BATCH,
        description="Each frame's JPEG (base64) or null; the whole array null when no frame has one.",
    )
    # Per detection, in frame order.
    x1: list[_Px] = _per_detection("bbox left, px.")
    y1: list[_Px] = _per_detection("bbox top, px.")
    x2: list[_Px] = _per_detection("bbox right, px.")
    y2: list[_Px] = _per_detection("bbox bottom, px.")
    class_id: list[Annotated[int, Field(ge=0, le=MAX_CLASS_ID)]] = _per_detection(
        "Index into the model's class names."
    )
    class_names: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        max_length=MAX_CLASS_NAMES_PER_BATCH,
        description="The batch's distinct class names; detections refer to them by index.",
    )
    class_name_index: list[Annotated[int, Field(ge=0, lt=MAX_CLASS_NAMES_PER_BATCH)]] = Field(
        max_length=MAX_DETECTIONS_PER_BATCH,
        description="Each detection's class name, as an index into class_names.",
    )
    confidence: list[_Unit] = _per_detection("Detector confidence in [0, 1].")
    uncertain: list[bool] = Field(
        max_length=MAX_DETECTIONS_PER_BATCH,
        description="True when the confidence lies in the uncertainty band.",
    )

    _arrays: ColumnarArrays | None = PrivateAttr(None)

    @property
    def frames(self) -> list[FrameRecord]:
        """The batch as version 1's ``FrameRecord`` list, in order (the inverse of
        ``encode_columnar``). One object per frame and detection: for tools, tests and
        the spool, not the API's ingest path, which reads the arrays."""
        records: list[FrameRecord] = []
        start = 0
        for i, count in enumerate(self.detection_count):
            span = range(start, start + count)
            start += count
            records.append(
                FrameRecord(
                    frame_key=self.frame_key[i],
                    camera_id=self.camera_id[i],
                    frame_index=self.frame_index[i],
                    captured_at=self.captured_at[i],
                    width=self.width[i],
                    height=self.height[i],
                    quality=FrameQuality(
                        brightness=self.brightness[i],
                        contrast=self.contrast[i],
                        sharpness=self.sharpness[i],
                        saturation=self.saturation[i],
                    ),
                    inference_ms=self.inference_ms[i],
                    model_version=self.model_version[i],
                    detections=[
                        Detection(
                            bbox_xyxy=(self.x1[k], self.y1[k], self.x2[k], self.y2[k]),
                            class_id=self.class_id[k],
                            class_name=self.class_names[self.class_name_index[k]],
                            confidence=self.confidence[k],
                            uncertain=self.uncertain[k],
                        )
                        for k in span
                    ],
                    jpeg=self.jpeg[i] if self.jpeg is not None else None,
                )
            )
        return records

    @property
    def frame_count(self) -> int:
        """Frames in the batch (repeated frame_keys counted each time)."""
        return len(self.frame_key)

    def arrays(self) -> ColumnarArrays:
        """The numeric arrays as numpy arrays (built once; see ``ColumnarArrays``)."""
        if self._arrays is None:
            self._arrays = ColumnarArrays(
                detection_count=np.array(self.detection_count, dtype=np.int64),
                width=np.array(self.width, dtype=np.int64),
                height=np.array(self.height, dtype=np.int64),
                boxes=np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float64).T,
                confidence=np.array(self.confidence, dtype=np.float64),
                class_id=np.array(self.class_id, dtype=np.int64),
                class_name_index=np.array(self.class_name_index, dtype=np.int64),
                uncertain=np.array(self.uncertain, dtype=np.bool_),
            )
        return self._arrays

    @model_validator(mode="after")
    def _rules_across_arrays(self) -> IngestBatchColumnar:
        n_frames = len(self.frame_key)
        lengths = [
            _violation(
                "frame_array_length",
                f"{name} has {len(getattr(self, name))} items, frame_key has {n_frames}: "
                "every per-frame array has one item per frame",
                (name,),
                len(getattr(self, name)),
            )
            for name in (*_FRAME_FIELDS, "jpeg")
            if getattr(self, name) is not None and len(getattr(self, name)) != n_frames
        ]
        if lengths:
            raise ValidationError.from_exception_data(type(self).__name__, lengths)
        n_dets = sum(self.detection_count)
        lengths = [
            _violation(
                "detection_array_length",
                f"{name} has {len(getattr(self, name))} items, detection_count sums to "
                f"{n_dets}: every per-detection array has one item per detection",
                (name,),
                len(getattr(self, name)),
            )
            for name in _DETECTION_FIELDS
            if len(getattr(self, name)) != n_dets
        ]
        if lengths:
            raise ValidationError.from_exception_data(type(self).__name__, lengths)

        arrays = self.arrays()
        frame_of_det = np.repeat(np.arange(n_frames), arrays.detection_count)
        first_of_frame = np.cumsum(arrays.detection_count) - arrays.detection_count
        boxes = arrays.boxes
        errors: list[InitErrorDetails] = []

        def where(i: int) -> str:
            frame = int(frame_of_det[i])
            return f"detection {i - int(first_of_frame[frame])} of frame {self.frame_key[frame]}"

        def box(i: int) -> tuple[float, ...]:
            return tuple(float(v) for v in boxes[i])

        for i in np.flatnonzero(arrays.class_name_index >= len(self.class_names))[
            :MAX_VIOLATIONS_REPORTED
        ].tolist():
            errors.append(
                _violation(
                    "class_name_index",
                    f"{where(i)}: class_name_index {arrays.class_name_index[i]} is not an "
                    f"index of class_names ({len(self.class_names)} names)",
                    ("class_name_index", i),
                    int(arrays.class_name_index[i]),
                )
            )
        unordered = (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
        for i in np.flatnonzero(unordered)[:MAX_VIOLATIONS_REPORTED].tolist():
            field = "x2" if boxes[i, 0] > boxes[i, 2] else "y2"
            errors.append(
                _violation(
                    "bbox_order",
                    f"{where(i)}: bbox must be xyxy with x1 <= x2 and y1 <= y2, got {box(i)}",
                    (field, i),
                    float(boxes[i, 2 if field == "x2" else 3]),
                )
            )
        # Version 1's rule: inside the frame with a 1 px tolerance (FrameRecord).
        x_out = boxes[:, 2] > arrays.width[frame_of_det] + 1
        y_out = boxes[:, 3] > arrays.height[frame_of_det] + 1
        for i in np.flatnonzero(x_out | y_out)[:MAX_VIOLATIONS_REPORTED].tolist():
            frame = int(frame_of_det[i])
            field = "x2" if x_out[i] else "y2"
            errors.append(
                _violation(
                    "bbox_outside_frame",
                    f"{where(i)}: bbox {box(i)} lies outside the "
                    f"{self.width[frame]}x{self.height[frame]} frame {self.frame_key[frame]}",
                    (field, i),
                    float(boxes[i, 2 if field == "x2" else 3]),
                )
            )
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


AnyIngestBatch = IngestBatch | IngestBatchColumnar
"""A batch of either wire version."""


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    wire_version: Literal["1", "2"] = "1"


_VERSION_PREFIX = re.compile(rb'\s*\{\s*"wire_version"\s*:\s*"([12])"')


def parse_ingest_batch(body: bytes) -> AnyIngestBatch:
    """Parse an ingest body of either wire version, dispatching on its ``wire_version``.

    A body whose first member is ``wire_version`` (as pydantic writes both models) is
    dispatched on it directly; any other is read once for ``wire_version`` first (a
    version 1 body without it is version 1, as ``IngestBatch``'s default says).

    Args:
        body: the JSON body, UTF-8.

    Raises:
        pydantic.ValidationError: invalid JSON, an unknown ``wire_version``, or a batch
            that breaks its version's bounds (pydantic's errors, locations in the body).
    """
    match = _VERSION_PREFIX.match(body, 0, 64)
    version = match.group(1).decode() if match else _Envelope.model_validate_json(body).wire_version
    if version == COLUMNAR_WIRE_VERSION:
        return IngestBatchColumnar.model_validate_json(body)
    return IngestBatch.model_validate_json(body)


def encode_columnar(
    frames: Sequence[FrameRecord], *, agent_id: str, sent_at: datetime
) -> IngestBatchColumnar:
    """Turn an agent's frames into one version-2 batch (the encoder agents ship with).

    Plain Python over the frames' fields, no numpy: about 1 µs per detection. The frames
    are already checked ``FrameRecord``s, so the batch is built without checking it again
    (``model_construct``); the API checks it on arrival.

    Args:
        frames: 1 to ``MAX_FRAMES_PER_BATCH`` frames, sent in this order.
        agent_id: the sending agent. sent_at: send time, timezone-aware UTC.

    Returns:
        The batch; ``batch.model_dump_json()`` is the body to POST.

    Raises:
        ValueError: no frame, or more than ``MAX_FRAMES_PER_BATCH``.
    """
    if not 1 <= len(frames) <= MAX_FRAMES_PER_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_FRAMES_PER_BATCH} frames, got {len(frames)}")
    names: dict[str, int] = {}
    dets = [d for f in frames for d in f.detections]
    boxes = [d.bbox_xyxy for d in dets]
    qualities = [f.quality for f in frames]
    jpegs = [f.jpeg for f in frames]
    return IngestBatchColumnar.model_construct(
        wire_version=COLUMNAR_WIRE_VERSION,
        agent_id=agent_id,
        sent_at=sent_at,
        frame_key=[f.frame_key for f in frames],
        camera_id=[f.camera_id for f in frames],
        frame_index=[f.frame_index for f in frames],
        captured_at=[f.captured_at for f in frames],
        width=[f.width for f in frames],
        height=[f.height for f in frames],
        brightness=[q.brightness for q in qualities],
        contrast=[q.contrast for q in qualities],
        sharpness=[q.sharpness for q in qualities],
        saturation=[q.saturation for q in qualities],
        inference_ms=[f.inference_ms for f in frames],
        model_version=[f.model_version for f in frames],
        detection_count=[len(f.detections) for f in frames],
        jpeg=jpegs if any(j is not None for j in jpegs) else None,
        x1=[b[0] for b in boxes],
        y1=[b[1] for b in boxes],
        x2=[b[2] for b in boxes],
        y2=[b[3] for b in boxes],
        class_id=[d.class_id for d in dets],
        class_name_index=[names.setdefault(d.class_name, len(names)) for d in dets],
        class_names=list(names),
        confidence=[d.confidence for d in dets],
        uncertain=[d.uncertain for d in dets],
    )


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
