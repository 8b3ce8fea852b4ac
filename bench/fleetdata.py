"""Load a SIMULATED camera fleet into a DuckDB file: the data the console benchmark reads.

Nothing here comes from a camera: frames, detections, heartbeats, queue items, labels,
drift reports and alias moves are drawn from a seeded random generator, shaped like a
running loop (``--cameras`` cameras at a steady frame rate over the last ``--hours``
hours, ending now; ~8 detections per frame with Poisson counts; confidences from a beta
distribution, so about a third fall in the uncertainty band). Rows go in through the
store's own writers: ``edgeloop.store.ingest.insert_batch`` (one Arrow insert per table
and chunk, queue items with it), ``agents.upsert``, ``labels.create``, ``drift.insert``
and ``deployments.record``.

Usage: ``uv run --frozen python bench/fleetdata.py data/bench-console.duckdb``
(default 1,000,000 detections over ~125,000 frames, 3 cameras).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from edgeloop.annotations import REVIEWED_BOXES
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW, uncertainty_scores
from edgeloop.store import (
    Store,
    agents,
    deployments,
    drift,
    frames,
    ingest,
    labels,
    queue,
)
from edgeloop.wire import AgentHeartbeat

CLASSES = ("Normal", "Fall")
WIDTH, HEIGHT = 768, 576
FEATURES = frames.QUALITY_FEATURES
CHUNK_FRAMES = 10_000


def _frames_and_detections(
    rng: np.random.Generator,
    *,
    n_frames: int,
    n_detections: int,
    cameras: list[str],
    end: datetime,
    hours: float,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Frames (interleaved cameras, capture order), their detections and queue items."""
    camera_idx = np.arange(n_frames) % len(cameras)
    span_s = hours * 3600
    offsets = np.sort(rng.uniform(0, span_s, n_frames))
    captured = pd.to_datetime(end.timestamp() - span_s + offsets, unit="s", utc=True).floor("us")
    counts = rng.poisson(n_detections / n_frames, n_frames)
    counts[rng.random(n_frames) < 0.05] = 0  # some empty scenes
    diff = n_detections - int(counts.sum())  # exact total: spread the rest one by one
    idx = rng.choice(
        np.flatnonzero(counts > 0) if diff < 0 else np.arange(n_frames), abs(diff), replace=diff > 0
    )
    np.add.at(counts, idx, 1 if diff > 0 else -1)
    counts = np.maximum(counts, 0)
    while int(counts.sum()) != n_detections:  # a few went below zero: fix up deterministically
        gap = n_detections - int(counts.sum())
        pos = np.flatnonzero(counts > 0)[: abs(gap)] if gap < 0 else np.arange(abs(gap))
        counts[pos] += 1 if gap > 0 else -1
    keys = np.array([f"{cameras[c]}:{i:08d}" for i, c in enumerate(camera_idx)], dtype=object)
    frame_of_det = np.repeat(np.arange(n_frames), counts)
    conf = rng.beta(4, 2.5, len(frame_of_det))
    uncertain = (conf > UNCERTAINTY_LOW) & (conf < UNCERTAINTY_HIGH)
    class_id = (rng.random(len(frame_of_det)) < 0.12).astype(np.int32)
    x1 = rng.uniform(0, WIDTH - 120, len(frame_of_det))
    y1 = rng.uniform(0, HEIGHT - 240, len(frame_of_det))
    index_in_frame = np.arange(len(frame_of_det)) - np.repeat(np.cumsum(counts) - counts, counts)
    det_keys = keys[frame_of_det]
    sums = np.bincount(frame_of_det, weights=conf, minlength=n_frames)
    mean_conf = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    version = np.where(offsets < span_s * 0.6, "1", "2")
    frames_t = pa.table(
        {
            "frame_key": pa.array(keys, pa.string()),
            "camera_id": pa.array(np.array(cameras, dtype=object)[camera_idx], pa.string()),
            "frame_index": pa.array(np.arange(n_frames) // len(cameras), pa.int64()),
            "captured_at": pa.array(captured, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array(
                captured + pd.Timedelta(seconds=1), pa.timestamp("us", tz="UTC")
            ),
            "width": pa.array(np.full(n_frames, WIDTH), pa.int32()),
            "height": pa.array(np.full(n_frames, HEIGHT), pa.int32()),
            "brightness": rng.normal(110, 12, n_frames) + 10 * camera_idx,
            "contrast": rng.normal(50, 6, n_frames),
            "sharpness": rng.normal(300, 40, n_frames),
            "saturation": rng.normal(40, 5, n_frames),
            "detection_count": pa.array(counts, pa.int32()),
            "mean_confidence": pa.array(mean_conf, pa.float64(), from_pandas=True),
            "inference_ms": rng.gamma(9, 3.2, n_frames),
            "model_version": pa.array(version, pa.string()),
            "agent_id": pa.array(
                np.array([f"agent-{c}" for c in cameras], dtype=object)[camera_idx], pa.string()
            ),
            "jpeg_path": pa.nulls(n_frames, pa.string()),
        }
    )
    dets_t = pa.table(
        {
            "detection_id": pa.array(
                [f"{k}:{i}" for k, i in zip(det_keys, index_in_frame, strict=True)], pa.string()
            ),
            "frame_key": pa.array(det_keys, pa.string()),
            "camera_id": frames_t["camera_id"].take(pa.array(frame_of_det)),
            "captured_at": frames_t["captured_at"].take(pa.array(frame_of_det)),
            "class_id": pa.array(class_id, pa.int32()),
            "class_name": pa.array(np.array(CLASSES, dtype=object)[class_id], pa.string()),
            "confidence": conf,
            "x1": x1,
            "y1": y1,
            "x2": x1 + rng.uniform(40, 120, len(x1)),
            "y2": y1 + rng.uniform(100, 240, len(y1)),
            "uncertain": uncertain,
            "model_version": frames_t["model_version"].take(pa.array(frame_of_det)),
            "detection_index": pa.array(index_in_frame, pa.int32()),
        }
    )
    scores = uncertainty_scores(conf, UNCERTAINTY_LOW, UNCERTAINTY_HIGH)
    best = np.zeros(n_frames)
    np.maximum.at(best, frame_of_det, np.where(uncertain, scores, 0.0))
    n_unc = np.bincount(frame_of_det, weights=uncertain, minlength=n_frames).astype(np.int32)
    queued = np.flatnonzero(n_unc > 0)
    queue_t = pa.table(
        {
            "frame_key": frames_t["frame_key"].take(pa.array(queued)),
            "camera_id": frames_t["camera_id"].take(pa.array(queued)),
            "priority": best[queued],
            "uncertain_count": pa.array(n_unc[queued], pa.int32()),
            "created_at": frames_t["received_at"].take(pa.array(queued)),
            "updated_at": frames_t["received_at"].take(pa.array(queued)),
        }
    )
    return frames_t, dets_t, queue_t


def load_fleet(
    path: Path,
    *,
    detections: int = 1_000_000,
    frames_n: int = 125_000,
    cameras: int = 3,
    hours: float = 24.0,
    labels_n: int = 600,
    seed: int = 0,
    end: datetime | None = None,
) -> dict[str, int]:
    """Write the simulated fleet into ``path`` (a new DuckDB file); returns row counts.

    Raises:
        FileExistsError: ``path`` exists (the loader never adds to a real store).
    """
    if path.exists():
        raise FileExistsError(f"{path} exists; the simulated fleet goes into a new file only")
    rng = np.random.default_rng(seed)
    end = end or datetime.now(UTC)
    names = [f"sim-cam-{i + 1}" for i in range(cameras)]
    frames_t, dets_t, queue_t = _frames_and_detections(
        rng, n_frames=frames_n, n_detections=detections, cameras=names, end=end, hours=hours
    )
    store = Store(path)
    import pyarrow.compute as pc

    with store.connect() as con:
        for start in range(0, frames_n, CHUNK_FRAMES):
            chunk = frames_t.slice(start, CHUNK_FRAMES)
            keys = chunk["frame_key"]
            ingest.insert_batch(
                con=con,
                frames=chunk,
                detections=dets_t.filter(pc.is_in(dets_t["frame_key"], value_set=keys)),
                queue_items=queue_t.filter(pc.is_in(queue_t["frame_key"], value_set=keys)),
            )
        # Labels: the oldest queued frames, by three labelers over the last day.
        queued = queue.list_items(
            con=con, status="pending", camera_id=None, limit=labels_n, offset=0
        )[0]
        boxes = REVIEWED_BOXES.validate_python(
            [{"bbox_xyxy": [100.0, 100.0, 180.0, 300.0], "class_id": 0, "class_name": "Normal"}]
        )
        for i, item in enumerate(queued):
            labels.create(
                con=con,
                item_id=item["item_id"],
                frame_key=item["frame_key"],
                camera_id=item["camera_id"],
                boxes=boxes,
                labeler=f"labeler-{i % 3 + 1}",
                labeled_at=end - timedelta(seconds=(labels_n - i) * 120),
            )
        # Heartbeats: one agent per camera, the last one stale.
        for i, camera in enumerate(names):
            agents.upsert(
                con=con,
                heartbeat=AgentHeartbeat(
                    agent_id=f"agent-{camera}",
                    camera_id=camera,
                    host=f"edge-host-{i + 1}",
                    agent_version="0.1.0",
                    sent_at=end,
                    started_at=end - timedelta(hours=hours),
                    model_version="2",
                    source_connected=True,
                    reconnects=i,
                    frames_processed=frames_n // cameras,
                    frames_skipped=3 * i,
                    frames_per_s=12.0 - i,
                    inference_ms_p50=28.0 + i,
                    inference_ms_p95=41.0 + i,
                    spool_batches=i,
                    spool_bytes=i * 48_000,
                    spool_dropped_batches=0,
                ),
                received_at=end - timedelta(seconds=5 if i < cameras - 1 else 600),
            )
        # Drift reports: every 15 minutes per camera over the range.
        rows = []
        steps = int(hours * 4)
        for camera in names:
            for k in range(steps):
                p = {f: float(rng.beta(2, 3)) for f in FEATURES}
                share = sum(v < 0.05 for v in p.values()) / len(FEATURES)
                rows.append(
                    {
                        "camera_id": camera,
                        "computed_at": end - timedelta(minutes=15 * (steps - k)),
                        "reference_frames": 500,
                        "current_frames": 500,
                        "drift_share": share,
                        "min_p_value": min(p.values()),
                        "drifted": share > 0.3,
                        "p_values": json.dumps(p),
                        "report_path": None,
                    }
                )
        drift.insert(con=con, rows=pd.DataFrame(rows))
        for version, at in (
            ("1", end - timedelta(hours=hours)),
            ("2", end - timedelta(hours=hours * 0.4)),
        ):
            deployments.record(
                con=con,
                model_name="edgeloop-detector",
                version=version,
                alias="production",
                previous_version=None if version == "1" else "1",
                action="register" if version == "1" else "promote",
                actor="simulation",
                reason="simulated alias move",
                created_at=at,
            )
        n_frames, n_dets = frames.counts(con=con)
        pending = queue.status_counts(con=con)["pending"]
    return {
        "frames": n_frames,
        "detections": n_dets,
        "pending": pending,
        "labels": len(queued),
        "drift_reports": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="new DuckDB file to write")
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=125_000)
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = load_fleet(
        args.path,
        detections=args.detections,
        frames_n=args.frames,
        cameras=args.cameras,
        hours=args.hours,
    )
    took = time.perf_counter() - started
    sys.stdout.write(
        f"SIMULATED fleet written to {args.path} in {took:.1f} s: "
        + ", ".join(f"{v:,} {k}" for k, v in counts.items())
        + "\n"
    )


if __name__ == "__main__":
    main()
