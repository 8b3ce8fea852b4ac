"""Wire version 2: the batch as parallel arrays (``IngestBatchColumnar``), its encoder
(``encode_columnar``) and the item bounds it declares (``element_bounds``, which version 3
reads too). The rules across arrays that every columnar batch obeys are in
``edgeloop.wire.arrays``.

Coordinates are pixels of the original frame, xyxy, origin top-left; times are
timezone-aware UTC. The version history is in ``edgeloop.wire``.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import annotated_types
import numpy as np
from pydantic import AwareDatetime, Field, PrivateAttr, model_validator

from edgeloop.wire.arrays import (
    DETECTION_FIELDS,
    EPOCH,
    FRAME_FIELDS,
    MICROSECOND,
    ColumnarArrays,
    check_across_arrays,
    check_lengths,
)
from edgeloop.wire.records import (
    MAX_CLASS_ID,
    MAX_DETECTIONS_PER_FRAME,
    MAX_FRAME_SIDE,
    MAX_FRAMES_PER_BATCH,
    MAX_INFERENCE_MS,
    MAX_INT64,
    MAX_JPEG_BYTES,
    MAX_QUALITY_STAT,
    CameraId,
    Detection,
    FrameKey,
    FrameQuality,
    FrameRecord,
    _Strict,
)

COLUMNAR_WIRE_VERSION: Literal["2"] = "2"
"""Version of ``IngestBatchColumnar``."""
MAX_DETECTIONS_PER_BATCH = MAX_FRAMES_PER_BATCH * MAX_DETECTIONS_PER_FRAME
"""Most detections one batch can hold (600,000)."""
MAX_CLASS_NAMES_PER_BATCH = 4096
"""Most distinct class names in one version-2 batch (COCO has 80, Objects365 365)."""

_Px = Annotated[float, Field(ge=0)]
_Unit = Annotated[float, Field(ge=0, le=1)]
_Byte = Annotated[float, Field(ge=0, le=255)]
_Stat = Annotated[float, Field(ge=0, le=MAX_QUALITY_STAT)]
_Jpeg = Annotated[bytes, Field(max_length=MAX_JPEG_BYTES)]


def _per_frame(description: str) -> Any:
    return Field(min_length=1, max_length=MAX_FRAMES_PER_BATCH, description=description)


def _per_detection(description: str) -> Any:
    return Field(max_length=MAX_DETECTIONS_PER_BATCH, description=description)


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

    def __eq__(self, other: object) -> bool:
        """Equal when every field is. The arrays ``arrays()`` caches are derived from the
        fields and left out: pydantic's own comparison includes private attributes, so a
        checked batch (arrays built) never equalled the same batch unchecked."""
        if not isinstance(other, IngestBatchColumnar):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def arrays(self) -> ColumnarArrays:
        """The numeric arrays as numpy arrays (built once; see ``ColumnarArrays``)."""
        if self._arrays is None:
            self._arrays = ColumnarArrays(
                detection_count=np.array(self.detection_count, dtype=np.int64),
                width=np.array(self.width, dtype=np.int64),
                height=np.array(self.height, dtype=np.int64),
                frame_index=np.array(self.frame_index, dtype=np.int64),
                captured_at_us=np.array(
                    [(t - EPOCH) // MICROSECOND for t in self.captured_at], dtype=np.int64
                ),
                brightness=np.array(self.brightness, dtype=np.float64),
                contrast=np.array(self.contrast, dtype=np.float64),
                sharpness=np.array(self.sharpness, dtype=np.float64),
                saturation=np.array(self.saturation, dtype=np.float64),
                inference_ms=np.array(self.inference_ms, dtype=np.float64),
                boxes=np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float64).T,
                confidence=np.array(self.confidence, dtype=np.float64),
                class_id=np.array(self.class_id, dtype=np.int64),
                class_name_index=np.array(self.class_name_index, dtype=np.int64),
                uncertain=np.array(self.uncertain, dtype=np.bool_),
            )
        return self._arrays

    @model_validator(mode="after")
    def _rules_across_arrays(self) -> IngestBatchColumnar:
        model = type(self).__name__
        check_lengths(
            model,
            {
                name: len(getattr(self, name))
                for name in (*FRAME_FIELDS, "jpeg")
                if getattr(self, name) is not None
            },
            self.detection_count,
            {name: len(getattr(self, name)) for name in DETECTION_FIELDS},
        )
        check_across_arrays(model, self.frame_key, self.class_names, self.arrays())
        return self


@dataclass(frozen=True)
class ElementBounds:
    """The bounds of one numeric array's items, as version 2 declares them (None: none)."""

    ge: int | float | None = None
    gt: int | float | None = None
    le: int | float | None = None
    lt: int | float | None = None


def element_bounds(name: str) -> ElementBounds:
    """The item bounds of ``IngestBatchColumnar``'s numeric array ``name``, read from its
    annotation (``list[Annotated[int | float, Field(ge=..., le=...)]]``): version 3
    checks its typed arrays against the same declaration, not a copy.

    Raises:
        KeyError: ``name`` is not a field of ``IngestBatchColumnar``.
    """
    (item,) = typing.get_args(IngestBatchColumnar.model_fields[name].annotation)
    found: dict[str, int | float] = {}
    for meta in typing.get_args(item)[1:]:
        for constraint in getattr(meta, "metadata", [meta]):
            for kind in (
                annotated_types.Ge,
                annotated_types.Gt,
                annotated_types.Le,
                annotated_types.Lt,
            ):
                if isinstance(constraint, kind):
                    key = kind.__name__.lower()
                    found[key] = getattr(constraint, key)
    return ElementBounds(**found)


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
