"""The wire contract between the edge agent and the API: one versioned set of models.

Both sides import these; neither defines its own. Coordinates are pixels of the
original frame, bbox as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
(xyxy, origin top-left). Times are timezone-aware UTC.

Modules: ``records`` (version 1, the answers, the heartbeat and the bounds),
``arrays`` (the numpy arrays of every columnar batch and the rules across them),
``columnar`` (version 2), ``binary`` (version 3).

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
    "3": ``IngestBatchBinary``, version 2's batch in MessagePack (``Content-Type:
        application/msgpack``) with its numbers as little-endian typed bytes and its
        JPEGs as raw bytes (``edgeloop.wire.binary``): the API reads it about 5x faster
        than version 2 and JPEGs travel without base64. What agents send
        (``encode_binary``); versions 1 and 2 stay accepted on the same route. An API
        from before version 3 refuses it (422): upgrade the API before the agents.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from edgeloop.wire.arrays import MAX_VIOLATIONS_REPORTED, ColumnarArrays, ColumnarBatch
from edgeloop.wire.binary import (
    BINARY_WIRE_VERSION,
    MSGPACK_MEDIA_TYPE,
    MSGPACK_MEDIA_TYPES,
    IngestBatchBinary,
    decode_binary,
    encode_binary,
)
from edgeloop.wire.columnar import (
    COLUMNAR_WIRE_VERSION,
    MAX_CLASS_NAMES_PER_BATCH,
    MAX_DETECTIONS_PER_BATCH,
    IngestBatchColumnar,
    encode_columnar,
)
from edgeloop.wire.records import (
    MAX_CLASS_ID,
    MAX_DETECTIONS_PER_FRAME,
    MAX_FRAME_SIDE,
    MAX_FRAMES_PER_BATCH,
    MAX_INFERENCE_MS,
    MAX_INT64,
    MAX_JPEG_BYTES,
    MAX_JPEG_SIDE,
    MAX_QUALITY_STAT,
    MODEL_PRECISION_KEY,
    WIRE_VERSION,
    AgentHeartbeat,
    BBoxXYXY,
    CameraId,
    Detection,
    FrameKey,
    FrameQuality,
    FrameRecord,
    IngestAck,
    IngestBatch,
    ModelPrecision,
    ProductionModel,
    model_precision,
)

__all__ = [
    "BINARY_WIRE_VERSION",
    "COLUMNAR_WIRE_VERSION",
    "JSON_MEDIA_TYPE",
    "MAX_CLASS_ID",
    "MAX_CLASS_NAMES_PER_BATCH",
    "MAX_DETECTIONS_PER_BATCH",
    "MAX_DETECTIONS_PER_FRAME",
    "MAX_FRAMES_PER_BATCH",
    "MAX_FRAME_SIDE",
    "MAX_INFERENCE_MS",
    "MAX_INT64",
    "MAX_JPEG_BYTES",
    "MAX_JPEG_SIDE",
    "MAX_QUALITY_STAT",
    "MAX_VIOLATIONS_REPORTED",
    "MODEL_PRECISION_KEY",
    "MSGPACK_MEDIA_TYPE",
    "MSGPACK_MEDIA_TYPES",
    "WIRE_VERSION",
    "AgentHeartbeat",
    "AnyIngestBatch",
    "BBoxXYXY",
    "CameraId",
    "ColumnarArrays",
    "ColumnarBatch",
    "Detection",
    "FrameKey",
    "FrameQuality",
    "FrameRecord",
    "IngestAck",
    "IngestBatch",
    "IngestBatchBinary",
    "IngestBatchColumnar",
    "ModelPrecision",
    "ProductionModel",
    "decode_binary",
    "encode_binary",
    "encode_columnar",
    "ingest_body",
    "ingest_media_type",
    "model_precision",
    "parse_ingest_batch",
]

JSON_MEDIA_TYPE = "application/json"
"""Content-Type of a version-1 or version-2 body."""

AnyIngestBatch = IngestBatch | IngestBatchColumnar | IngestBatchBinary
"""A batch of any wire version."""


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    wire_version: Literal["1", "2"] = "1"


_VERSION_PREFIX = re.compile(rb'\s*\{\s*"wire_version"\s*:\s*"([12])"')
_MSGPACK_MAP_FIRST_BYTES = frozenset({*range(0x80, 0x90), 0xDE, 0xDF})
"""First byte of a MessagePack map (fixmap, map 16, map 32); a JSON object starts with
``{`` or whitespace, so the two never mix up."""


def ingest_media_type(body: bytes) -> str:
    """``MSGPACK_MEDIA_TYPE`` for a body that starts as a MessagePack map, else
    ``JSON_MEDIA_TYPE`` (for a spooled body whose Content-Type was not kept)."""
    return (
        MSGPACK_MEDIA_TYPE if body[:1] and body[0] in _MSGPACK_MAP_FIRST_BYTES else JSON_MEDIA_TYPE
    )


def ingest_body(batch: AnyIngestBatch) -> bytes:
    """The body an agent POSTs for ``batch``: version 3 (MessagePack) for a columnar batch,
    JSON for a version-1 ``IngestBatch``. Its Content-Type is ``ingest_media_type(body)``."""
    if isinstance(batch, IngestBatch):
        return batch.model_dump_json().encode()
    return encode_binary(batch)


def parse_ingest_batch(body: bytes, media_type: str | None = None) -> AnyIngestBatch:
    """Parse an ingest body of any wire version.

    A MessagePack body (``media_type`` one of ``MSGPACK_MEDIA_TYPES``, or, when
    ``media_type`` is None, a body that starts as a MessagePack map) is version 3. Any
    other is JSON, dispatched on its ``wire_version``: a body whose first member is
    ``wire_version`` (as pydantic writes both models) directly; any other is read once
    for ``wire_version`` first (a version 1 body without it is version 1, as
    ``IngestBatch``'s default says).

    Args:
        body: the body's bytes.
        media_type: the request's Content-Type without parameters, lower case; None to
            tell from the bytes (``ingest_media_type``).

    Raises:
        pydantic.ValidationError: not JSON or MessagePack as declared, an unknown
            ``wire_version``, or a batch that breaks its version's bounds (locations in
            the body, e.g. ``("frames", 3, "detections", 0, "confidence")`` or
            ``("confidence", 17)``).
    """
    if media_type is None:
        media_type = ingest_media_type(body)
    if media_type in MSGPACK_MEDIA_TYPES:
        return decode_binary(body)
    match = _VERSION_PREFIX.match(body, 0, 64)
    version = match.group(1).decode() if match else _Envelope.model_validate_json(body).wire_version
    if version == COLUMNAR_WIRE_VERSION:
        return IngestBatchColumnar.model_validate_json(body)
    return IngestBatch.model_validate_json(body)
