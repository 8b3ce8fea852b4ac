"""Ingest building blocks: the batch as column-wise Arrow tables (the JPEG checks and
writes are ``api.jpegs``).

Everything here runs outside the DuckDB connection, so the file stays locked only for
the inserts themselves (``edgeloop.store.ingest.insert_batch``). Every wire version becomes
one ``BatchColumns`` (version 1 by one pass over its per-detection objects, versions 2 and
3 as their arrays are), and one function builds the tables from it, so every version
stores the same rows. Arrow columns are built from flat Python lists or numpy arrays, frame-level
values repeated per detection with ``take`` — never row by row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from api.jpegs import jpeg_key
from edgeloop.rules import uncertainty_scores
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


def without_frames(tables: IngestTables, keys: Iterable[str]) -> IngestTables:
    """``tables`` without the rows of the frames ``keys`` (conflicts refused before insert)."""
    refused = pa.array(sorted(keys), pa.string())
    if not len(refused):
        return tables

    def keep(table: pa.Table) -> pa.Table:
        return table.filter(pc.invert(pc.is_in(table["frame_key"], value_set=refused)))

    return IngestTables(
        frames=keep(tables.frames), detections=keep(tables.detections), queue=keep(tables.queue)
    )


@dataclass(frozen=True)
class IngestTables:
    """One batch as Arrow tables whose columns are named as in the DuckDB tables."""

    frames: pa.Table
    detections: pa.Table
    queue: pa.Table


@dataclass(frozen=True)
class BatchColumns:
    """One batch of any wire version as parallel columns: what the tables are built from.

    Frame columns hold one item per frame (``n_frames``), detection columns one per
    detection (``n_detections``), the detections of frame 0 first, then frame 1's, ...
    Coordinates are xyxy px of the original frame.

    Attributes:
        agent_id: the sending agent.
        sent_frames: frames as sent, repeats included (the ack counts them).
        frame_key, camera_id, model_version, jpeg: per frame, lists, as in
            ``edgeloop.wire.FrameRecord``.
        captured_at: (n_frames,) Arrow timestamp[us, UTC].
        frame_index, width, height: (n_frames,) int64. brightness ... saturation,
            inference_ms: (n_frames,) float64 (``FrameQuality``; ms).
        detection_count: (n_frames,) int64.
        boxes: (n_detections, 4) float64 xyxy px. confidence: (n_detections,) float64.
        class_id: (n_detections,) int64. class_name: (n_detections,) Arrow strings.
        uncertain: (n_detections,) bool.
    """

    agent_id: str
    sent_frames: int
    frame_key: list[str]
    camera_id: list[str]
    frame_index: npt.NDArray[np.int64]
    captured_at: pa.Array
    width: npt.NDArray[np.int64]
    height: npt.NDArray[np.int64]
    brightness: npt.NDArray[np.float64]
    contrast: npt.NDArray[np.float64]
    sharpness: npt.NDArray[np.float64]
    saturation: npt.NDArray[np.float64]
    inference_ms: npt.NDArray[np.float64]
    model_version: list[str]
    jpeg: list[bytes | None]
    detection_count: npt.NDArray[np.int64]
    boxes: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    class_id: npt.NDArray[np.int64]
    class_name: pa.Array
    uncertain: npt.NDArray[np.bool_]

    def jpegs(self) -> dict[str, bytes]:
        """frame_key -> JPEG bytes, for the frames that carry one."""
        return {
            key: jpeg
            for key, jpeg in zip(self.frame_key, self.jpeg, strict=True)
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


def tables_from_columns(
    columns: BatchColumns,
    *,
    received_at: datetime,
    jpeg_paths: Mapping[str, str | Path],
    uncertainty_low: float,
    uncertainty_high: float,
) -> IngestTables:
    """Build the ``frames``, ``prediction_logs`` and ``labeling_queue`` rows of a batch.

    Args:
        columns: the batch, frame_keys unique.
        received_at: when the API received the batch (UTC).
        jpeg_paths: frame_key -> the JPEG's ``frames.jpeg_path`` (its object key,
            ``api.jpegs.jpeg_key``), for frames that carry one.
        uncertainty_low, uncertainty_high: the band of ``edgeloop.rules.uncertainty_scores``.

    Returns:
        ``frames``: one row per frame; ``detections``: one per detection, ``detection_id``
        ``f"{frame_key}:{i}"``, bbox as ``x1..y2`` px; ``queue``: one per frame that has at
        least one detection flagged uncertain and a stored JPEG (a frame without its JPEG
        cannot be labeled), priority = max ``uncertainty_scores`` over its detections,
        ``jpeg_sha256`` = the sha256 digest (32 bytes) of its JPEG, by which the store
        queues byte-identical frames once (``edgeloop.store.queue.insert_items``). Only
        the queued frames' JPEGs are hashed (hashlib releases the GIL while it hashes).
    """
    n_frames = len(columns.frame_key)
    counts = columns.detection_count
    n_dets = int(counts.sum())
    frame_of_det = np.repeat(np.arange(n_frames, dtype=np.int64), counts)

    confidence = columns.confidence
    boxes = columns.boxes
    uncertain = columns.uncertain
    flagged = np.bincount(frame_of_det, weights=uncertain, minlength=n_frames).astype(np.int32)
    # i-th detection of its frame: position in the batch minus the frame's first position.
    first_of_frame = np.cumsum(counts) - counts
    index_in_frame = np.arange(n_dets, dtype=np.int64) - np.repeat(first_of_frame, counts)
    conf_sum = np.bincount(frame_of_det, weights=confidence, minlength=n_frames)
    no_dets = counts == 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(n_frames), where=~no_dets)

    keys = pa.array(columns.frame_key, pa.string())
    cameras = pa.array(columns.camera_id, pa.string())
    captured = columns.captured_at
    versions = pa.array(columns.model_version, pa.string())
    paths = [jpeg_paths.get(key) for key in columns.frame_key]

    frames_table = pa.table(
        {
            "frame_key": keys,
            "camera_id": cameras,
            "frame_index": pa.array(columns.frame_index, pa.int64()),
            "captured_at": captured,
            "received_at": pa.array([received_at] * n_frames, _TS),
            "width": pa.array(columns.width, pa.int32()),
            "height": pa.array(columns.height, pa.int32()),
            "brightness": pa.array(columns.brightness, pa.float64()),
            "contrast": pa.array(columns.contrast, pa.float64()),
            "sharpness": pa.array(columns.sharpness, pa.float64()),
            "saturation": pa.array(columns.saturation, pa.float64()),
            "detection_count": pa.array(counts.astype(np.int32)),
            "mean_confidence": pa.array(mean_conf, mask=no_dets),
            "inference_ms": pa.array(columns.inference_ms, pa.float64()),
            "model_version": versions,
            "agent_id": pa.array([columns.agent_id] * n_frames, pa.string()),
            "jpeg_path": pa.array([str(p) if p else None for p in paths], pa.string()),
        }
    )

    take = pa.array(frame_of_det)
    det_keys = keys.take(take)
    detections_table = pa.table(
        {
            "detection_id": pc.binary_join_element_wise(
                det_keys, pa.array(index_in_frame).cast(pa.string()), ":"
            ),
            "frame_key": det_keys,
            "camera_id": cameras.take(take),
            "captured_at": captured.take(take),
            "class_id": pa.array(columns.class_id.astype(np.int32)),
            "class_name": columns.class_name,
            "confidence": pa.array(confidence),
            "x1": pa.array(boxes[:, 0]),
            "y1": pa.array(boxes[:, 1]),
            "x2": pa.array(boxes[:, 2]),
            "y2": pa.array(boxes[:, 3]),
            "uncertain": pa.array(uncertain),
            "model_version": versions.take(take),
        }
    )

    # Priority of a queued frame: the largest uncertainty score among its detections.
    top_score = np.zeros(n_frames)
    np.maximum.at(
        top_score, frame_of_det, uncertainty_scores(confidence, uncertainty_low, uncertainty_high)
    )
    has_jpeg = np.fromiter((p is not None for p in paths), dtype=np.bool_, count=n_frames)
    queued_frames = np.flatnonzero((flagged > 0) & has_jpeg)
    queued = pa.array(queued_frames)
    n_queue = len(queued)
    jpegs = [columns.jpeg[i] for i in queued_frames]
    digests = [hashlib.sha256(jpeg).digest() if jpeg is not None else None for jpeg in jpegs]
    queue_table = pa.table(
        {
            "frame_key": keys.take(queued),
            "camera_id": cameras.take(queued),
            "priority": pa.array(top_score, pa.float64()).take(queued),
            "uncertain_count": pa.array(flagged, pa.int32()).take(queued),
            "created_at": pa.array([received_at] * n_queue, _TS),
            "updated_at": pa.array([received_at] * n_queue, _TS),
            "jpeg_sha256": pa.array(digests, pa.binary()),
        }
    )
    return IngestTables(frames=frames_table, detections=detections_table, queue=queue_table)
