"""Ingest building blocks: JPEG checks and writes, and the batch as column-wise Arrow tables.

Everything here runs outside the DuckDB connection, so the file stays locked only for
the inserts themselves (``edgeloop.store.frames.insert_batch``). Arrow columns are built from
flat Python lists or numpy arrays, frame-level values repeated per detection with
``take`` — never row by row.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edgeloop.files import fsync_dir
from edgeloop.rules import uncertainty_scores
from edgeloop.wire import FrameRecord, IngestBatch

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"

_TS = pa.timestamp("us", tz="UTC")


class BadJpegError(ValueError):
    """A frame's JPEG is not a complete JPEG (missing SOI/EOI markers)."""

    def __init__(self, frame_key: str, reason: str) -> None:
        super().__init__(f"frame {frame_key}: {reason}")
        self.frame_key = frame_key


def check_jpeg(frame_key: str, data: bytes) -> None:
    """Cheap structural check: starts with SOI (FF D8 FF), ends with EOI (FF D9).

    Trailing zero padding after EOI is tolerated (some encoders add it).

    Raises:
        BadJpegError: naming the frame.
    """
    if not data.startswith(JPEG_SOI):
        raise BadJpegError(frame_key, "jpeg does not start with the JPEG SOI marker (FF D8 FF)")
    if not data.rstrip(b"\x00").endswith(JPEG_EOI):
        raise BadJpegError(
            frame_key, "jpeg is truncated: it does not end with the EOI marker (FF D9)"
        )


def jpeg_path(frames_dir: Path, camera_id: str, frame_key: str) -> Path:
    """Where a frame's JPEG lives: ``<frames_dir>/<camera_id>/<frame_key, ':' -> '~'>.jpg``.

    ``~`` is outside the frame_key alphabet (``[A-Za-z0-9_.:-]``), so names never collide.
    """
    return frames_dir / camera_id / f"{frame_key.replace(':', '~')}.jpg"


def jpeg_paths(frames: Iterable[FrameRecord], frames_dir: Path) -> dict[str, Path]:
    """frame_key -> absolute path of its JPEG, for the frames that carry one."""
    root = frames_dir.resolve()
    return {
        frame.frame_key: jpeg_path(root, frame.camera_id, frame.frame_key)
        for frame in frames
        if frame.jpeg is not None
    }


@dataclass(frozen=True)
class JpegWrites:
    """What ``write_jpegs`` did: the frames whose file it created, and those it refused
    because a different JPEG is already stored under their key."""

    created: frozenset[str]
    conflicts: frozenset[str]


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def write_jpegs(frames: Iterable[FrameRecord], paths: dict[str, Path]) -> JpegWrites:
    """Write each frame's JPEG durably and create-exclusive to ``paths[frame_key]``.

    The bytes go to a temporary file (fsync), which is then hard-linked to the target:
    ``link`` fails when the target exists, so a stored JPEG is never replaced, not even
    by two requests racing on one key. A target that already holds the same bytes (a
    replayed frame) is left as it is; one that holds different bytes makes the frame a
    conflict, which the caller must not store. The folders are fsync'ed after.

    Raises:
        OSError: a write failed; files created so far stay (they are removed by
            ``remove_jpegs`` when the batch is not stored).
    """
    touched_dirs: set[Path] = set()
    created: set[str] = set()
    conflicts: set[str] = set()
    for frame in frames:
        if frame.jpeg is None:
            continue
        target = paths[frame.frame_key]
        if target.exists():
            if not _same_bytes(target, frame.jpeg):
                conflicts.add(frame.frame_key)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(frame.jpeg)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
            created.add(frame.frame_key)
            touched_dirs.add(target.parent)
        except FileExistsError:  # another request created it since the check above
            if not _same_bytes(target, frame.jpeg):
                conflicts.add(frame.frame_key)
        finally:
            tmp.unlink(missing_ok=True)
    for folder in touched_dirs:
        fsync_dir(folder)
    return JpegWrites(created=frozenset(created), conflicts=frozenset(conflicts))


def remove_jpegs(keys: Iterable[str], paths: dict[str, Path]) -> None:
    """Remove the JPEGs of ``keys`` that this request created but did not store (a
    duplicate or conflicting frame): no file outlives a frame row that refers to it."""
    for key in keys:
        paths[key].unlink(missing_ok=True)


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
    jpeg_paths: dict[str, Path],
    uncertainty_low: float,
    uncertainty_high: float,
) -> IngestTables:
    """Build the ``frames``, ``prediction_logs`` and ``labeling_queue`` rows of a batch.

    Args:
        frames: frames with unique frame_keys.
        agent_id: the sending agent.
        received_at: when the API received the batch (UTC).
        jpeg_paths: frame_key -> stored JPEG path, for frames that carry one.
        uncertainty_low, uncertainty_high: the band of ``edgeloop.rules.uncertainty_scores``.

    Returns:
        ``frames``: one row per frame; ``detections``: one per detection, ``detection_id``
        ``f"{frame_key}:{i}"``, bbox as ``x1..y2`` px; ``queue``: one per frame that has at
        least one detection flagged uncertain and a stored JPEG (a frame without its JPEG
        cannot be labeled), priority = max ``uncertainty_scores`` over its detections.
    """
    n_frames = len(frames)
    counts = np.fromiter((len(f.detections) for f in frames), dtype=np.int64, count=n_frames)
    dets = [d for f in frames for d in f.detections]
    n_dets = len(dets)
    frame_of_det = np.repeat(np.arange(n_frames, dtype=np.int64), counts)

    confidence = np.fromiter((d.confidence for d in dets), dtype=np.float64, count=n_dets)
    boxes = np.fromiter(
        chain.from_iterable(d.bbox_xyxy for d in dets), dtype=np.float64, count=4 * n_dets
    ).reshape(n_dets, 4)
    uncertain = np.fromiter((d.uncertain for d in dets), dtype=np.bool_, count=n_dets)
    flagged = np.bincount(frame_of_det, weights=uncertain, minlength=n_frames).astype(np.int32)
    # i-th detection of its frame: position in the batch minus the frame's first position.
    first_of_frame = np.cumsum(counts) - counts
    index_in_frame = np.arange(n_dets, dtype=np.int64) - np.repeat(first_of_frame, counts)
    conf_sum = np.bincount(frame_of_det, weights=confidence, minlength=n_frames)
    no_dets = counts == 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(n_frames), where=~no_dets)

    keys = pa.array([f.frame_key for f in frames], pa.string())
    cameras = pa.array([f.camera_id for f in frames], pa.string())
    captured = pa.array([f.captured_at for f in frames], _TS)
    versions = pa.array([f.model_version for f in frames], pa.string())
    paths = [jpeg_paths.get(f.frame_key) for f in frames]
    qualities = [f.quality for f in frames]

    frames_table = pa.table(
        {
            "frame_key": keys,
            "camera_id": cameras,
            "frame_index": pa.array([f.frame_index for f in frames], pa.int64()),
            "captured_at": captured,
            "received_at": pa.array([received_at] * n_frames, _TS),
            "width": pa.array([f.width for f in frames], pa.int32()),
            "height": pa.array([f.height for f in frames], pa.int32()),
            "brightness": pa.array([q.brightness for q in qualities], pa.float64()),
            "contrast": pa.array([q.contrast for q in qualities], pa.float64()),
            "sharpness": pa.array([q.sharpness for q in qualities], pa.float64()),
            "saturation": pa.array([q.saturation for q in qualities], pa.float64()),
            "detection_count": pa.array(counts.astype(np.int32)),
            "mean_confidence": pa.array(mean_conf, mask=no_dets),
            "inference_ms": pa.array([f.inference_ms for f in frames], pa.float64()),
            "model_version": versions,
            "agent_id": pa.array([agent_id] * n_frames, pa.string()),
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
            "class_id": pa.array([d.class_id for d in dets], pa.int32()),
            "class_name": pa.array([d.class_name for d in dets], pa.string()),
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
    q_keys: list[str] = []
    q_cameras: list[str] = []
    q_priority: list[float] = []
    q_uncertain: list[int] = []
    for i in np.flatnonzero(flagged).tolist():
        frame = frames[i]
        if paths[i] is None:
            continue
        q_keys.append(frame.frame_key)
        q_cameras.append(frame.camera_id)
        q_priority.append(float(top_score[i]))
        q_uncertain.append(int(flagged[i]))
    n_queue = len(q_keys)
    queue_table = pa.table(
        {
            "frame_key": pa.array(q_keys, pa.string()),
            "camera_id": pa.array(q_cameras, pa.string()),
            "priority": pa.array(q_priority, pa.float64()),
            "uncertain_count": pa.array(q_uncertain, pa.int32()),
            "created_at": pa.array([received_at] * n_queue, _TS),
            "updated_at": pa.array([received_at] * n_queue, _TS),
        }
    )
    return IngestTables(frames=frames_table, detections=detections_table, queue=queue_table)
