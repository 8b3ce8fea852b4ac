"""Similarity search through the API: ``GET /api/search/similar`` latency at 100k points.

What it measures, in one run on the same machine, with synthetic vectors (``--dims``,
clustered around 50 centres, L2-normalised float32; ``--cameras`` cameras):
  * a version published by ``VectorIndex.publish`` (qdrant-edge shard, payload indexes,
    HNSW graph from 10,000 points), as the ``crop_embeddings`` asset publishes it;
  * in-process (baseline): the engine queried directly, the same two calls a request
    makes (the detection's stored vector by point id, then a top-10 search with a camera
    filter), through ``edgeloop.vectors.ShardReader``;
  * api: real uvicorn on loopback (a subprocess, ``edgeloop.cli.services.start_api``),
    one client with keep-alive sending ``GET /api/search/similar?detection_id=..&camera_id=..``
    one request at a time; latency measured at the client (HTTP, auth, JSON included);
  * recall@10 of the API's answers against exact search (numpy brute force over the
    points of the same camera).

Usage: ``uv run --frozen python bench/search.py [--points 100000] [--queries 400]``.
Target: p99 <= 25 ms at 100,000 points, recall@10 >= 0.95. The issue measured 2,007 ms
(p50, 10k points) and 27.8 s (100k) when the route opened qdrant-client's local mode
per request.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from vector_publish import synthetic_points

from edgeloop.cli.services import free_port, start_api
from edgeloop.settings import LoopSettings
from edgeloop.vectors import ShardReader, VectorIndex

TARGET_P99_MS = 25.0
TARGET_RECALL = 0.95
TOKEN = "bench-labeler-token"


def percentiles(ms: list[float]) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  mean {np.mean(ms):6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="points in the index")
    parser.add_argument("--dims", type=int, default=1280, help="vector length")
    parser.add_argument("--cameras", type=int, default=5, help="cameras (filter selectivity 1/N)")
    parser.add_argument("--queries", type=int, default=400, help="timed requests")
    args = parser.parse_args()

    points = synthetic_points(args.points, args.dims, cameras=args.cameras)
    vectors = np.stack([p.vector for p in points])
    cameras = np.array([p.camera_id for p in points])
    rng = np.random.default_rng(1)
    picks = rng.integers(0, args.points, args.queries + 20)
    queries = [(points[i].detection_id, f"cam-{rng.integers(0, args.cameras)}", i) for i in picks]
    print(
        f"{args.points:,} synthetic points, {args.dims}-d, {args.cameras} cameras; "
        f"{args.queries} queries, top-10 with a camera filter"
    )
    with tempfile.TemporaryDirectory(prefix="edgeloop-search-") as tmp:
        settings = LoopSettings(data_dir=Path(tmp) / "data")
        start = time.perf_counter()
        info = VectorIndex.from_settings(settings).publish(points, embedder="synthetic")
        print(
            f"published {info.version}: {info.points:,} points in {time.perf_counter() - start:.1f} s"
        )

        reader = ShardReader(info)
        in_process: list[float] = []
        for n, (det_id, camera, _) in enumerate(queries):
            t0 = time.perf_counter()
            vector = reader.vector_of(det_id)
            reader.search(vector, 10, camera_id=camera)
            if n >= 20:
                in_process.append((time.perf_counter() - t0) * 1e3)
        reader.close()  # one process per shard: the API opens it next

        env = {
            "EDGELOOP_API_TOKENS": json.dumps({TOKEN: "labeler"}),
            "EDGELOOP_API_WARM_REGISTRY": "false",
            "EDGELOOP_API_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
        }
        api_ms: list[float] = []
        recalls: list[float] = []
        with (
            start_api(settings, extra_env=env) as service,
            httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as http,
        ):
            for n, (det_id, camera, qi) in enumerate(queries):
                t0 = time.perf_counter()
                answer = http.get(
                    "/api/search/similar",
                    params={"detection_id": det_id, "camera_id": camera, "limit": 10},
                )
                elapsed = (time.perf_counter() - t0) * 1e3
                answer.raise_for_status()
                if n < 20:
                    continue  # warm-up: the first request opens the version
                api_ms.append(elapsed)
                got = {h["detection_id"] for h in answer.json()["hits"]}
                mask = np.flatnonzero(cameras == camera)
                top = mask[np.argsort(-(vectors[mask] @ vectors[qi]))[:10]]
                recalls.append(len(got & {points[j].detection_id for j in top}) / 10)

    p99 = float(np.percentile(api_ms, 99))
    recall = float(np.mean(recalls))
    print(f"in-process engine : {percentiles(in_process)}")
    print(f"api over HTTP     : {percentiles(api_ms)}")
    print(f"ratio api/engine  : p99 {p99 / float(np.percentile(in_process, 99)):.1f}x")
    print(f"recall@10 vs exact numpy search (same filter): {recall:.3f}")
    met = p99 <= TARGET_P99_MS and recall >= TARGET_RECALL
    print(
        f"TARGET {'met' if met else 'NOT met'}: api p99 {p99:.1f} ms (<= {TARGET_P99_MS:.0f}) "
        f"and recall@10 {recall:.3f} (>= {TARGET_RECALL}) at {args.points:,} points"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
