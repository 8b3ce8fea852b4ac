"""Publishing the crop index: points/s of ``VectorIndex.publish`` against the raw engine.

What it measures, in one run on the same machine, with synthetic vectors (``--dims``,
clustered, L2-normalised float32; payloads like the asset's):
  * raw: the engine alone: ``qdrant_edge.EdgeShard.create`` with the same config and
    payload indexes, ``upsert_points`` in batches of 1,024, ``flush``.
  * publish: ``edgeloop.vectors.VectorIndex.publish`` as the ``crop_embeddings`` asset calls
    it: the same writes and flush, then close, rename of the version folder + fsync of its
    parent, and the pointer replaced with fsync; below ``hnsw_min_points``, so no graph.
  * publish + HNSW: the same with the HNSW graph built before the pointer flips (what a
    version of >= 10,000 points gets), reported separately.
Durability: ``flush`` is qdrant-edge's persist call (segments written to disk; its
write-ahead log is on as well); publish returns only after the folder rename and the
pointer write are fsynced, so a crash leaves the old version or the new one published.

Usage: ``uv run --frozen python bench/vector_publish.py [--points 20000] [--dims 1280]``.
Target: >= 5,000 points/s published with durability on (the issue measured 71-709
points/s through qdrant-client's local mode, one SQLite commit per point).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeloop.vectors import VectorIndex
from edgeloop.vectors.versions import (
    KEYWORD_FIELDS,
    UPSERT_BATCH,
    CropPoint,
    edge_config,
    point_uuid,
)

TARGET_POINTS_PER_S = 5_000


def synthetic_points(n: int, dims: int, *, cameras: int = 5, seed: int = 0) -> list[CropPoint]:
    """``n`` synthetic crops: vectors around 50 cluster centres (L2-normalised float32),
    cameras ``cam-0``.. round-robin by a random draw, payloads shaped like the asset's."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dims)).astype(np.float32)
    vectors = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        block = centres[rng.integers(0, 50, stop - start)]
        block += 0.7 * rng.normal(size=block.shape).astype(np.float32)
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    camera = rng.integers(0, cameras, n)
    return [
        CropPoint(
            detection_id=f"cam-{camera[i]}:{i // 4}:{i % 4}",
            frame_key=f"cam-{camera[i]}:{i // 4}",
            camera_id=f"cam-{camera[i]}",
            class_name="Normal" if i % 7 else "Fall",
            confidence=0.4 + (i % 30) / 100,
            bbox_xyxy=(10.0, 20.0, 110.0, 260.0),
            captured_at_iso="2025-06-01T12:00:00.000000Z",
            vector=vectors[i],
        )
        for i in range(n)
    ]


def raw_engine_write(folder: Path, points: list[CropPoint]) -> float:
    """Seconds for the engine alone to take ``points`` durably (create, index, upsert, flush)."""
    import qdrant_edge as qe

    start = time.perf_counter()
    shard = qe.EdgeShard.create(str(folder), edge_config(points[0].vector.shape[0]))
    for key in KEYWORD_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
    for i in range(0, len(points), UPSERT_BATCH):
        batch = points[i : i + UPSERT_BATCH]
        rows = np.stack([p.vector for p in batch]).tolist()
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(point_uuid(p.detection_id), r, p.payload())
                    for p, r in zip(batch, rows, strict=True)
                ]
            )
        )
    shard.flush()
    elapsed = time.perf_counter() - start
    shard.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000, help="points per version")
    parser.add_argument("--dims", type=int, default=1280, help="vector length")
    parser.add_argument("--no-hnsw", action="store_true", help="skip the publish + HNSW run")
    args = parser.parse_args()

    points = synthetic_points(args.points, args.dims)
    print(f"{args.points:,} synthetic points, {args.dims}-d (clustered, L2-normalised float32)")
    with tempfile.TemporaryDirectory(prefix="edgeloop-publish-") as tmp:
        root = Path(tmp)
        raw_s = raw_engine_write(root / "raw", points)
        index = VectorIndex(root / "qdrant", hnsw_min_points=args.points + 1)
        start = time.perf_counter()
        info = index.publish(points, embedder="synthetic")
        publish_s = time.perf_counter() - start
        assert info.points == args.points, info
        raw_rate, publish_rate = args.points / raw_s, args.points / publish_s
        print(f"raw engine write + flush : {raw_s:7.2f} s  {raw_rate:9,.0f} points/s")
        print(
            f"publish (durable, flip)  : {publish_s:7.2f} s  {publish_rate:9,.0f} points/s  "
            f"= {publish_rate / raw_rate:.2f}x raw"
        )
        if not args.no_hnsw:
            graph = VectorIndex(root / "qdrant-hnsw", hnsw_min_points=0)
            start = time.perf_counter()
            graph.publish(points, embedder="synthetic")
            hnsw_s = time.perf_counter() - start
            print(
                f"publish + HNSW graph    : {hnsw_s:7.2f} s  {args.points / hnsw_s:9,.0f} points/s"
                f"  (graph build {hnsw_s - publish_s:.1f} s; versions >= 10,000 points get it)"
            )
    verdict = "met" if publish_rate >= TARGET_POINTS_PER_S else "NOT met"
    print(
        f"TARGET {verdict}: publish {publish_rate:,.0f} points/s with durability on "
        f"(target >= {TARGET_POINTS_PER_S:,}; raw engine {raw_rate:,.0f} in this run)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
