"""The arrays every columnar batch (wire versions 2 and 3) is read as, and the rules
across them: one item per frame or per detection (``check_lengths``), class indexes inside
the batch's names and boxes ordered and inside their frame (``check_across_arrays``).

Version 2 (``edgeloop.wire.columnar``) and version 3 (``edgeloop.wire.binary``) both check
their batches with these functions and hand the API the same ``ColumnarArrays``.
Coordinates are pixels of the original frame, xyxy, origin top-left; times UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Origin of ``captured_at_us``: the Unix epoch, UTC."""
MICROSECOND = timedelta(microseconds=1)
"""The unit of ``captured_at_us``."""

MAX_VIOLATIONS_REPORTED = 20
"""Most violations of one cross-array rule named in a version-2 refusal (a corrupt batch
can break a rule at every one of its 600,000 detections)."""


@dataclass(frozen=True, eq=False)
class ColumnarArrays:
    """The numeric arrays of a checked columnar batch (version 2 or 3) as numpy arrays.

    Two are equal when every array has the same shape and items (``np.array_equal``).

    Attributes:
        detection_count: (n_frames,) int64, detections of each frame.
        width, height: (n_frames,) int64, original frame size, px.
        frame_index: (n_frames,) int64. captured_at_us: (n_frames,) int64, capture time in
            microseconds since ``EPOCH`` (UTC).
        brightness, contrast, sharpness, saturation, inference_ms: (n_frames,) float64
            (``FrameQuality``'s statistics; detector time, ms).
        boxes: (n_detections, 4) float64 xyxy px of the original frame, in frame order.
        confidence: (n_detections,) float64 in [0, 1].
        class_id: (n_detections,) int64.
        class_name_index: (n_detections,) int64, index into the batch's ``class_names``.
        uncertain: (n_detections,) bool.
    """

    detection_count: npt.NDArray[np.int64]
    width: npt.NDArray[np.int64]
    height: npt.NDArray[np.int64]
    frame_index: npt.NDArray[np.int64]
    captured_at_us: npt.NDArray[np.int64]
    brightness: npt.NDArray[np.float64]
    contrast: npt.NDArray[np.float64]
    sharpness: npt.NDArray[np.float64]
    saturation: npt.NDArray[np.float64]
    inference_ms: npt.NDArray[np.float64]
    boxes: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    class_id: npt.NDArray[np.int64]
    class_name_index: npt.NDArray[np.int64]
    uncertain: npt.NDArray[np.bool_]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColumnarArrays):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, field.name), getattr(other, field.name))
            for field in fields(self)
        )


FRAME_FIELDS = (
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
DETECTION_FIELDS = (
    "x1",
    "y1",
    "x2",
    "y2",
    "class_id",
    "class_name_index",
    "confidence",
    "uncertain",
)


def violation(kind: str, message: str, loc: tuple[str | int, ...], value: Any) -> InitErrorDetails:
    # The message is pre-formatted; braces in it must not be read as template fields.
    template = message.replace("{", "{{").replace("}", "}}")
    return InitErrorDetails(type=PydanticCustomError(kind, template), loc=loc, input=value)


class ColumnarBatch(Protocol):
    """What version 2 (``IngestBatchColumnar``) and version 3 (``IngestBatchBinary``) have
    in common, checked: the API's ingest reads a batch of either through this."""

    @property
    def agent_id(self) -> str: ...
    @property
    def sent_at(self) -> datetime: ...
    @property
    def frame_key(self) -> list[str]: ...
    @property
    def camera_id(self) -> list[str]: ...
    @property
    def model_version(self) -> list[str]: ...
    @property
    def jpeg(self) -> list[bytes | None] | None: ...
    @property
    def class_names(self) -> list[str]: ...
    @property
    def frame_count(self) -> int: ...
    def arrays(self) -> ColumnarArrays: ...


def check_lengths(
    model: str,
    frame_lengths: Mapping[str, int],
    detection_count: Sequence[int] | npt.NDArray[np.int64],
    detection_lengths: Mapping[str, int],
) -> None:
    """Every per-frame array has one item per frame (``frame_lengths["frame_key"]``), every
    per-detection array one per detection (``sum(detection_count)``).

    Raises:
        pydantic.ValidationError: titled ``model``; each array of a wrong length named.
    """
    n_frames = frame_lengths["frame_key"]
    _check_axis(model, "frame", frame_lengths, n_frames, f"frame_key has {n_frames}")
    n_dets = int(sum(detection_count))
    _check_axis(model, "detection", detection_lengths, n_dets, f"detection_count sums to {n_dets}")


def _check_axis(
    model: str, axis: str, lengths: Mapping[str, int], expected: int, because: str
) -> None:
    """Raise a ``ValidationError`` titled ``model`` naming each array of ``lengths`` that
    has not ``expected`` items (one per ``axis``: frame or detection); ``because`` says
    where ``expected`` comes from."""
    errors = [
        violation(
            f"{axis}_array_length",
            f"{name} has {length} items, {because}: every per-{axis} array has one item per {axis}",
            (name,),
            length,
        )
        for name, length in lengths.items()
        if length != expected
    ]
    if errors:
        raise ValidationError.from_exception_data(model, errors)


def check_across_arrays(
    model: str, frame_key: Sequence[str], class_names: Sequence[str], arrays: ColumnarArrays
) -> None:
    """The rules across arrays, once every array has its length (``check_lengths``): each
    ``class_name_index`` inside ``class_names``; each bbox ordered (x1 <= x2, y1 <= y2) and
    inside its frame with version 1's 1 px tolerance (``FrameRecord``).

    Raises:
        pydantic.ValidationError: titled ``model``; each violation located as
            ``(array, index)``, at most ``MAX_VIOLATIONS_REPORTED`` per rule.
    """
    n_frames = len(frame_key)
    frame_of_det = np.repeat(np.arange(n_frames), arrays.detection_count)
    first_of_frame = np.cumsum(arrays.detection_count) - arrays.detection_count
    boxes = arrays.boxes
    errors: list[InitErrorDetails] = []

    def where(i: int) -> str:
        frame = int(frame_of_det[i])
        return f"detection {i - int(first_of_frame[frame])} of frame {frame_key[frame]}"

    def box(i: int) -> tuple[float, ...]:
        return tuple(float(v) for v in boxes[i])

    for i in np.flatnonzero(arrays.class_name_index >= len(class_names))[
        :MAX_VIOLATIONS_REPORTED
    ].tolist():
        errors.append(
            violation(
                "class_name_index",
                f"{where(i)}: class_name_index {arrays.class_name_index[i]} is not an "
                f"index of class_names ({len(class_names)} names)",
                ("class_name_index", i),
                int(arrays.class_name_index[i]),
            )
        )
    unordered = (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
    for i in np.flatnonzero(unordered)[:MAX_VIOLATIONS_REPORTED].tolist():
        field = "x2" if boxes[i, 0] > boxes[i, 2] else "y2"
        errors.append(
            violation(
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
            violation(
                "bbox_outside_frame",
                f"{where(i)}: bbox {box(i)} lies outside the "
                f"{arrays.width[frame]}x{arrays.height[frame]} frame {frame_key[frame]}",
                (field, i),
                float(boxes[i, 2 if field == "x2" else 3]),
            )
        )
    if errors:
        raise ValidationError.from_exception_data(model, errors)
