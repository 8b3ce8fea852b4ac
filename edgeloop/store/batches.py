"""The rows a batch of frames adds to the ``frames``, ``prediction_logs`` and
``labeling_queue`` tables, built as Arrow tables (``tables_from_columns``) before a
connection is opened, and written by ``edgeloop.store.ingest``.

Every wire version becomes one ``BatchColumns`` (``api.ingest`` decodes them), and one
function builds the tables from it, so every version stores the same rows; tests and tools
build their rows the same way. Arrow columns are built from flat Python lists or numpy
arrays, frame-level values repeated per detection with ``take``, never row by row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from edgeloop.rules import uncertainty_scores

_TS = pa.timestamp("us", tz="UTC")

FRAME_SCHEMA = pa.schema(
    [
        ("frame_key", pa.string()),
        ("camera_id", pa.string()),
        ("frame_index", pa.int64()),
        ("captured_at", _TS),
        ("received_at", _TS),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("brightness", pa.float64()),
        ("contrast", pa.float64()),
        ("sharpness", pa.float64()),
        ("saturation", pa.float64()),
        ("detection_count", pa.int32()),
        ("mean_confidence", pa.float64()),
        ("inference_ms", pa.float64()),
        ("model_version", pa.string()),
        ("agent_id", pa.string()),
        ("jpeg_path", pa.string()),
    ]
)
"""The ``frames`` rows of a batch (times UTC; ``jpeg_path`` the JPEG's object key)."""
DETECTION_SCHEMA = pa.schema(
    [
        ("detection_id", pa.string()),
        ("frame_key", pa.string()),
        ("camera_id", pa.string()),
        ("captured_at", _TS),
        ("class_id", pa.int32()),
        ("class_name", pa.string()),
        ("confidence", pa.float64()),
        ("x1", pa.float64()),
        ("y1", pa.float64()),
        ("x2", pa.float64()),
        ("y2", pa.float64()),
        ("uncertain", pa.bool_()),
        ("model_version", pa.string()),
        ("detection_index", pa.int32()),
    ]
)
"""The ``prediction_logs`` rows (detections) of a batch: bbox xyxy px of the frame;
``detection_index`` the detection's place in its frame (``detection_id``'s suffix)."""
QUEUE_SCHEMA = pa.schema(
    [
        ("frame_key", pa.string()),
        ("camera_id", pa.string()),
        ("priority", pa.float64()),
        ("uncertain_count", pa.int32()),
        ("created_at", _TS),
        ("updated_at", _TS),
        ("jpeg_sha256", pa.binary()),
    ]
)
"""The ``labeling_queue`` rows of a batch (``edgeloop.store.queue.insert_items``)."""


def tables_from_rows(
    frames: Iterable[Mapping[str, object]],
    detections: Iterable[Mapping[str, object]] = (),
    queue: Iterable[Mapping[str, object]] = (),
) -> IngestTables:
    """A batch from rows given one by one (tests, tools, imports), typed by
    ``FRAME_SCHEMA``, ``DETECTION_SCHEMA`` and ``QUEUE_SCHEMA``; a column a row leaves out
    is NULL (``jpeg_sha256`` of a queue row, say), but for a detection's
    ``detection_index``, taken from its ``detection_id`` (``<frame_key>:<index>``).

    Raises:
        pyarrow.ArrowInvalid / ArrowTypeError: a value that does not fit its column.
    """
    return IngestTables(
        frames=pa.Table.from_pylist(list(frames), schema=FRAME_SCHEMA),
        detections=pa.Table.from_pylist(
            [_with_detection_index(d) for d in detections], schema=DETECTION_SCHEMA
        ),
        queue=pa.Table.from_pylist(list(queue), schema=QUEUE_SCHEMA),
    )


def _with_detection_index(row: Mapping[str, object]) -> Mapping[str, object]:
    if row.get("detection_index") is not None:
        return row
    return {**row, "detection_index": int(str(row["detection_id"]).rpartition(":")[2])}


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
        ``f"{frame_key}:{i}"`` (``detection_index`` i), bbox as ``x1..y2`` px; ``queue``:
        one per frame that has at least one detection flagged uncertain and a stored JPEG
        (a frame without its JPEG cannot be labeled), priority = max
        ``uncertainty_scores`` over its detections, ``jpeg_sha256`` = the sha256 digest
        (32 bytes) of its JPEG, by which the store queues byte-identical frames once
        (``edgeloop.store.queue.insert_items``). Only the queued frames' JPEGs are hashed
        (hashlib releases the GIL while it hashes).
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
            "detection_index": pa.array(index_in_frame, pa.int32()),
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
