"""Ingest building blocks: every wire version decoded into one ``BatchColumns`` (version
1 by one pass over its per-detection objects, versions 2 and 3 as their arrays are), from
which the store builds its rows (``edgeloop.store.batches.tables_from_columns``); the JPEG
checks and writes are ``api.jpegs``.

Everything here runs outside the store's connection, so a DuckDB file stays locked only
for the inserts themselves (``edgeloop.store.ingest.insert_batch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from api.jpegs import jpeg_key
from edgeloop.store.batches import BatchColumns, IngestTables, tables_from_columns
from edgeloop.wire import AnyIngestBatch, ColumnarBatch, FrameRecord, IngestBatch, encode_columnar

_TS = pa.timestamp("us", tz="UTC")


def jpeg_keys(columns: BatchColumns) -> dict[str, str]:
    """frame_key -> the object key of its JPEG (``api.jpegs.jpeg_key``), for the frames
    that carry one."""
    return {
        key: jpeg_key(camera, key)
        for key, camera, jpeg in zip(
            columns.frame_key, columns.camera_id, columns.jpeg, strict=True
        )
        if jpeg is not None
    }


def columns_from_records(
    frames: Sequence[FrameRecord], *, agent_id: str, sent_frames: int | None = None
) -> BatchColumns:
    """Version 1: ``frames`` (1 or more) as the agents' encoder puts them in version 2
    (``edgeloop.wire.encode_columnar``, one pass over the per-detection objects), read as
    columns: one mapping of frame fields to columns serves both wire versions.

    Raises:
        ValueError: no frame, or more than ``MAX_FRAMES_PER_BATCH``.
    """
    batch = encode_columnar(frames, agent_id=agent_id, sent_at=datetime.now(UTC))
    columns = columns_from_columnar(batch)
    return replace(columns, sent_frames=len(frames) if sent_frames is None else sent_frames)


def columns_from_columnar(batch: ColumnarBatch) -> BatchColumns:
    """Versions 2 and 3: the batch's arrays as they are (numpy views, no per-detection object)."""
    arrays = batch.arrays()
    return BatchColumns(
        agent_id=batch.agent_id,
        sent_frames=batch.frame_count,
        frame_key=batch.frame_key,
        camera_id=batch.camera_id,
        frame_index=arrays.frame_index,
        captured_at=pa.array(arrays.captured_at_us.view("datetime64[us]"), _TS),
        width=arrays.width,
        height=arrays.height,
        brightness=arrays.brightness,
        contrast=arrays.contrast,
        sharpness=arrays.sharpness,
        saturation=arrays.saturation,
        inference_ms=arrays.inference_ms,
        model_version=batch.model_version,
        jpeg=batch.jpeg if batch.jpeg is not None else [None] * batch.frame_count,
        detection_count=arrays.detection_count,
        boxes=arrays.boxes,
        confidence=arrays.confidence,
        class_id=arrays.class_id,
        class_name=pa.array(batch.class_names, pa.string()).take(arrays.class_name_index),
        uncertain=arrays.uncertain,
    )


def batch_columns(batch: AnyIngestBatch) -> BatchColumns:
    """The columns of a batch of any wire version, repeated frame_keys dropped (the
    first kept, as ``unique_frames``)."""
    if isinstance(batch, IngestBatch):
        frames, _ = unique_frames(batch)
        return columns_from_records(frames, agent_id=batch.agent_id, sent_frames=len(batch.frames))
    return unique_columns(columns_from_columnar(batch))


def unique_columns(columns: BatchColumns) -> BatchColumns:
    """``columns`` without the frames whose frame_key came earlier in the batch (and
    without their detections)."""
    first: dict[str, int] = {}
    for i, key in enumerate(columns.frame_key):
        first.setdefault(key, i)
    if len(first) == len(columns.frame_key):
        return columns
    kept = list(first.values())
    keep_frame = np.zeros(len(columns.frame_key), dtype=np.bool_)
    keep_frame[kept] = True
    keep_det = np.repeat(keep_frame, columns.detection_count)

    def pick(values: list[Any]) -> list[Any]:
        return [values[i] for i in kept]

    return BatchColumns(
        agent_id=columns.agent_id,
        sent_frames=columns.sent_frames,
        frame_key=pick(columns.frame_key),
        camera_id=pick(columns.camera_id),
        frame_index=columns.frame_index[kept],
        captured_at=columns.captured_at.take(pa.array(kept)),
        width=columns.width[kept],
        height=columns.height[kept],
        brightness=columns.brightness[kept],
        contrast=columns.contrast[kept],
        sharpness=columns.sharpness[kept],
        saturation=columns.saturation[kept],
        inference_ms=columns.inference_ms[kept],
        model_version=pick(columns.model_version),
        jpeg=pick(columns.jpeg),
        detection_count=columns.detection_count[keep_frame],
        boxes=columns.boxes[keep_det],
        confidence=columns.confidence[keep_det],
        class_id=columns.class_id[keep_det],
        class_name=columns.class_name.filter(pa.array(keep_det)),
        uncertain=columns.uncertain[keep_det],
    )


def unique_frames(batch: IngestBatch) -> tuple[list[FrameRecord], int]:
    """The batch's frames with repeated frame_keys dropped (first kept), and how many were dropped."""
    seen: dict[str, FrameRecord] = {}
    for frame in batch.frames:
        seen.setdefault(frame.frame_key, frame)
    return list(seen.values()), len(batch.frames) - len(seen)


def build_tables(
    frames: list[FrameRecord],
    *,
    agent_id: str,
    received_at: datetime,
    jpeg_paths: Mapping[str, str | Path],
    uncertainty_low: float,
    uncertainty_high: float,
) -> IngestTables:
    """``tables_from_columns`` of version-1 frames (with unique frame_keys)."""
    return tables_from_columns(
        columns_from_records(frames, agent_id=agent_id),
        received_at=received_at,
        jpeg_paths=jpeg_paths,
        uncertainty_low=uncertainty_low,
        uncertainty_high=uncertainty_high,
    )
