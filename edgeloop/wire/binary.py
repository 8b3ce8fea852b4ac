"""Wire version 3: version 2's batch in MessagePack, with its numeric arrays as
little-endian typed bytes and its JPEGs as raw bytes (``IngestBatchBinary``).

Why: a version-2 body is JSON, and reading its numbers is most of the API's work on a
batch (about 5 ms for 10,000 detections on the 2-core reference machine, against ~25 ms
for the DuckDB insert itself); typed bytes are read with ``numpy.frombuffer``. JPEGs
travel as bytes, not base64 (a third smaller, no decode). The content and every rule are
version 2's: element bounds are read from ``IngestBatchColumnar``'s own field
declarations (``element_bounds``), the rules across arrays are the same functions.

The body (``Content-Type: application/msgpack``) is one MessagePack map (spec:
https://github.com/msgpack/msgpack/blob/master/spec.md) with exactly these keys:

* ``wire_version``: ``"3"``; ``agent_id``: str; ``sent_at``: str, ISO 8601 with an offset.
* per frame, ``n_frames`` items in [1, ``MAX_FRAMES_PER_BATCH``]: ``frame_key``,
  ``camera_id``, ``model_version``: arrays of str; ``jpeg``: array of bin or nil, or nil
  when no frame has one; and the typed arrays of ``FRAME_ARRAY_DTYPES``.
* ``class_names``: array of str, the batch's distinct class names.
* per detection, in frame order (as version 2): the typed arrays of
  ``DETECTION_ARRAY_DTYPES``.

A typed array is a bin whose bytes are the items in the numpy dtype given (``<`` is
little-endian): ``captured_at_us`` holds microseconds since the Unix epoch, UTC;
``uncertain`` holds 0 or 1. Build a body with ``encode_binary``; read one with
``decode_binary`` (or ``edgeloop.wire.parse_ingest_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgpack
import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, Field, ValidationError
from pydantic_core import InitErrorDetails

from edgeloop.wire.arrays import (
    EPOCH,
    MAX_VIOLATIONS_REPORTED,
    MICROSECOND,
    ColumnarArrays,
    ColumnarBatch,
    check_across_arrays,
    check_lengths,
    violation,
)
from edgeloop.wire.columnar import (
    MAX_CLASS_NAMES_PER_BATCH,
    MAX_DETECTIONS_PER_BATCH,
    IngestBatchColumnar,
    element_bounds,
)
from edgeloop.wire.records import (
    MAX_FRAMES_PER_BATCH,
    MAX_JPEG_BYTES,
    CameraId,
    FrameKey,
    FrameRecord,
    _Strict,
)

BINARY_WIRE_VERSION: Literal["3"] = "3"
"""Version of ``IngestBatchBinary``."""
MSGPACK_MEDIA_TYPE = "application/msgpack"
"""Content-Type of a version-3 body (``application/vnd.msgpack`` and
``application/x-msgpack`` are read as the same)."""
MSGPACK_MEDIA_TYPES = frozenset(
    {MSGPACK_MEDIA_TYPE, "application/vnd.msgpack", "application/x-msgpack"}
)

FRAME_ARRAY_DTYPES: dict[str, str] = {
    "frame_index": "<i8",
    "captured_at_us": "<i8",
    "width": "<i4",
    "height": "<i4",
    "brightness": "<f8",
    "contrast": "<f8",
    "sharpness": "<f8",
    "saturation": "<f8",
    "inference_ms": "<f8",
    "detection_count": "<i4",
}
"""Typed per-frame arrays: name -> numpy dtype of its items."""
DETECTION_ARRAY_DTYPES: dict[str, str] = {
    "x1": "<f8",
    "y1": "<f8",
    "x2": "<f8",
    "y2": "<f8",
    "confidence": "<f8",
    "class_id": "<i4",
    "class_name_index": "<i4",
    "uncertain": "|u1",
}
"""Typed per-detection arrays: name -> numpy dtype of its items (``uncertain``: 0 or 1)."""

MIN_CAPTURED_AT_US = (datetime.min.replace(tzinfo=EPOCH.tzinfo) - EPOCH) // MICROSECOND
"""0001-01-01 UTC in microseconds since the epoch: Python's (and version 2's) first time."""
MAX_CAPTURED_AT_US = (datetime.max.replace(tzinfo=EPOCH.tzinfo) - EPOCH) // MICROSECOND
"""9999-12-31 23:59:59.999999 UTC in microseconds since the epoch: Python's last time."""

_LIMITS = {
    "max_array_len": MAX_CLASS_NAMES_PER_BATCH,
    "max_map_len": 64,
    "max_str_len": 1024,
    "max_bin_len": max(MAX_JPEG_BYTES, MAX_DETECTIONS_PER_BATCH * 8),
    "max_ext_len": 0,
}
"""What the decoder builds at most, checked while it reads: no array in a version-3 body
is longer than ``class_names`` may be (4,096; per-frame arrays hold at most 2,000), no
string longer than a frame key's 200 characters allows for, no bin longer than a JPEG or
a typed per-detection array. A body of millions of one-byte items is refused before it
becomes millions of Python objects."""

_BOUNDS = {
    name: element_bounds(name)
    for name in (*FRAME_ARRAY_DTYPES, *DETECTION_ARRAY_DTYPES)
    if name not in ("captured_at_us", "uncertain")
}
"""Version 2's item bounds of each typed array, read once (``captured_at_us`` and
``uncertain`` have their own rules: version 2 holds datetimes and bools there)."""

_FrameArray = Annotated[bytes, Field(strict=True, max_length=MAX_FRAMES_PER_BATCH * 8)]
_DetectionArray = Annotated[bytes, Field(strict=True, max_length=MAX_DETECTIONS_PER_BATCH * 8)]
_Names = Annotated[str, Field(min_length=1, max_length=64)]


class _Body(_Strict):
    """The map of a version-3 body, before its typed arrays are read."""

    wire_version: Literal["3"]
    agent_id: str = Field(min_length=1, max_length=128)
    sent_at: AwareDatetime
    frame_key: list[FrameKey] = Field(min_length=1, max_length=MAX_FRAMES_PER_BATCH)
    camera_id: list[CameraId] = Field(max_length=MAX_FRAMES_PER_BATCH)
    model_version: list[_Names] = Field(max_length=MAX_FRAMES_PER_BATCH)
    jpeg: list[Annotated[bytes, Field(strict=True, max_length=MAX_JPEG_BYTES)] | None] | None = (
        Field(None, max_length=MAX_FRAMES_PER_BATCH)
    )
    class_names: list[_Names] = Field(max_length=MAX_CLASS_NAMES_PER_BATCH)
    frame_index: _FrameArray
    captured_at_us: _FrameArray
    width: _FrameArray
    height: _FrameArray
    brightness: _FrameArray
    contrast: _FrameArray
    sharpness: _FrameArray
    saturation: _FrameArray
    inference_ms: _FrameArray
    detection_count: _FrameArray
    x1: _DetectionArray
    y1: _DetectionArray
    x2: _DetectionArray
    y2: _DetectionArray
    confidence: _DetectionArray
    class_id: _DetectionArray
    class_name_index: _DetectionArray
    uncertain: _DetectionArray


_AS_VERSION_2 = (
    "agent_id",
    "sent_at",
    "frame_key",
    "camera_id",
    "model_version",
    "jpeg",
    "class_names",
)
"""The fields version 3 holds as version 2 does: all but the numbers, which it types."""


@dataclass(frozen=True)
class IngestBatchBinary:
    """A checked version-3 batch: version 2's content, its numbers as numpy arrays.

    Built by ``decode_binary`` only; the attributes mean what version 2's do
    (``IngestBatchColumnar``), and ``arrays()`` holds every number.
    """

    agent_id: str
    sent_at: datetime
    frame_key: list[str]
    camera_id: list[str]
    model_version: list[str]
    jpeg: list[bytes | None] | None
    class_names: list[str]
    numbers: ColumnarArrays
    wire_version: Literal["3"] = BINARY_WIRE_VERSION

    @property
    def frame_count(self) -> int:
        """Frames in the batch (repeated frame_keys counted each time)."""
        return len(self.frame_key)

    def arrays(self) -> ColumnarArrays:
        """Every number of the batch (see ``ColumnarArrays``)."""
        return self.numbers

    def to_columnar(self) -> IngestBatchColumnar:
        """The same batch as version 2, checked again by its model (for tools and tests)."""
        named = _named_arrays(self.numbers)
        times = named.pop("captured_at_us").tolist()
        return IngestBatchColumnar.model_validate(
            {
                "wire_version": "2",
                **{name: getattr(self, name) for name in _AS_VERSION_2},
                "captured_at": [EPOCH + us * MICROSECOND for us in times],
                **{name: values.tolist() for name, values in named.items()},
            }
        )

    @property
    def frames(self) -> list[FrameRecord]:
        """The batch as version 1's ``FrameRecord`` list (see ``IngestBatchColumnar.frames``)."""
        return self.to_columnar().frames


def _named_arrays(arrays: ColumnarArrays) -> dict[str, npt.NDArray[Any]]:
    """Every typed array of the wire by its name."""
    return {
        "frame_index": arrays.frame_index,
        "captured_at_us": arrays.captured_at_us,
        "width": arrays.width,
        "height": arrays.height,
        "brightness": arrays.brightness,
        "contrast": arrays.contrast,
        "sharpness": arrays.sharpness,
        "saturation": arrays.saturation,
        "inference_ms": arrays.inference_ms,
        "detection_count": arrays.detection_count,
        "x1": arrays.boxes[:, 0],
        "y1": arrays.boxes[:, 1],
        "x2": arrays.boxes[:, 2],
        "y2": arrays.boxes[:, 3],
        "confidence": arrays.confidence,
        "class_id": arrays.class_id,
        "class_name_index": arrays.class_name_index,
        "uncertain": arrays.uncertain,
    }


def _from_named(named: dict[str, npt.NDArray[Any]]) -> ColumnarArrays:
    """``_named_arrays``' inverse: the typed arrays read from the wire as ``ColumnarArrays``
    (integers as int64, floats as float64, ``uncertain`` as bool; copies in native order)."""

    def wide(name: str) -> npt.NDArray[Any]:
        kind = named[name].dtype.kind
        return named[name].astype(
            np.bool_ if name == "uncertain" else np.int64 if kind == "i" else np.float64
        )

    corners = ("x1", "y1", "x2", "y2")
    return ColumnarArrays(
        boxes=np.column_stack([wide(name) for name in corners]),
        **{name: wide(name) for name in named if name not in corners},
    )


def encode_binary(batch: ColumnarBatch) -> bytes:
    """The version-3 body of a columnar batch (what agents POST; see the module's layout).

    Args:
        batch: a version-2 batch (``edgeloop.wire.encode_columnar``'s) or a version-3 one.

    Returns:
        The MessagePack bytes; POST them with ``Content-Type: application/msgpack``.
    """
    body: dict[str, Any] = {
        "wire_version": BINARY_WIRE_VERSION,
        "agent_id": batch.agent_id,
        "sent_at": batch.sent_at.isoformat(),
        "frame_key": list(batch.frame_key),
        "camera_id": list(batch.camera_id),
        "model_version": list(batch.model_version),
        "jpeg": None if batch.jpeg is None else list(batch.jpeg),
        "class_names": list(batch.class_names),
    }
    arrays = _named_arrays(batch.arrays())
    for name, dtype in (FRAME_ARRAY_DTYPES | DETECTION_ARRAY_DTYPES).items():
        body[name] = np.ascontiguousarray(arrays[name], dtype=dtype).tobytes()
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _refusal(errors: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data("IngestBatchBinary", errors)


def _read_typed(body: _Body, dtypes: dict[str, str]) -> dict[str, npt.NDArray[Any]]:
    """Each typed array of ``dtypes`` read from its bytes (a view, no copy).

    Raises:
        pydantic.ValidationError: an array's bytes are not a whole number of items.
    """
    out: dict[str, npt.NDArray[Any]] = {}
    errors: list[InitErrorDetails] = []
    for name, dtype in dtypes.items():
        data: bytes = getattr(body, name)
        size = np.dtype(dtype).itemsize
        if len(data) % size:
            errors.append(
                violation(
                    "typed_array_size",
                    f"{name} has {len(data)} bytes: not a whole number of {dtype} items "
                    f"({size} bytes each)",
                    (name,),
                    len(data),
                )
            )
            continue
        out[name] = np.frombuffer(data, dtype=dtype)
    if errors:
        raise _refusal(errors)
    return out


def _check_items(arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Every item inside version 2's bounds for its array; floats finite; ``uncertain``
    0 or 1; ``captured_at_us`` inside Python's datetime range.

    Raises:
        pydantic.ValidationError: each bad item located as ``(array, index)``, at most
            ``MAX_VIOLATIONS_REPORTED`` per array.
    """
    errors: list[InitErrorDetails] = []
    for name, values in arrays.items():
        ok = np.ones(len(values), dtype=np.bool_)
        if name == "uncertain":
            ok &= values <= 1
            rule = "0 (false) or 1 (true)"
        elif name == "captured_at_us":
            ok &= (values >= MIN_CAPTURED_AT_US) & (values <= MAX_CAPTURED_AT_US)
            rule = "microseconds since the Unix epoch within the years 1 to 9999"
        else:
            bounds = _BOUNDS[name]
            kind = int if values.dtype.kind == "i" else float
            parts = []
            for op, limit, text in (
                (np.greater_equal, bounds.ge, ">="),
                (np.greater, bounds.gt, ">"),
                (np.less_equal, bounds.le, "<="),
                (np.less, bounds.lt, "<"),
            ):
                if limit is not None:
                    ok &= op(values, kind(limit))
                    parts.append(f"{text} {kind(limit)}")
            if values.dtype.kind == "f":
                ok &= np.isfinite(values)
                parts.append("finite")
            rule = ", ".join(parts)
        for i in np.flatnonzero(~ok)[:MAX_VIOLATIONS_REPORTED].tolist():
            value = values[i].item()
            errors.append(
                violation(
                    "item_out_of_bounds",
                    f"{name}[{i}] is {value}: must be {rule}",
                    (name, i),
                    value,
                )
            )
    if errors:
        raise _refusal(errors)


def decode_binary(body: bytes) -> IngestBatchBinary:
    """Read and check a version-3 body (every rule of version 2; see the module's layout).

    Args:
        body: the MessagePack bytes.

    Raises:
        pydantic.ValidationError: not one MessagePack map, a missing or unknown key, a
            value of the wrong type, or a bound or rule broken (located as version 2's
            errors are: ``("confidence", 17)``).
    """
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True, **_LIMITS)
    except Exception as exc:  # any failure of the decoder on hostile bytes is a refusal
        raise _refusal(
            [violation("msgpack_invalid", f"body is not one MessagePack value: {exc}", (), None)]
        ) from None
    checked = _Body.model_validate(raw)
    frame_arrays = _read_typed(checked, FRAME_ARRAY_DTYPES)
    detection_arrays = _read_typed(checked, DETECTION_ARRAY_DTYPES)
    model = "IngestBatchBinary"
    frame_lengths = {"frame_key": len(checked.frame_key)} | {
        name: len(getattr(checked, name))
        for name in ("camera_id", "model_version", "jpeg")
        if getattr(checked, name) is not None
    }
    check_lengths(
        model,
        frame_lengths | {name: len(values) for name, values in frame_arrays.items()},
        frame_arrays["detection_count"],
        {name: len(values) for name, values in detection_arrays.items()},
    )
    _check_items(frame_arrays | detection_arrays)
    numbers = _from_named(frame_arrays | detection_arrays)
    check_across_arrays(model, checked.frame_key, checked.class_names, numbers)
    return IngestBatchBinary(
        **{name: getattr(checked, name) for name in _AS_VERSION_2}, numbers=numbers
    )
