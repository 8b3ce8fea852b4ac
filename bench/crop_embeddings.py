"""The ``crop_embeddings`` asset against the bare embedder: crops/s, and a re-run with nothing new.

What it measures, in one run on the same machine:
  * a loop data folder (temporary) with real frames of ``data/samples/vtest.avi``
    (768x576, people walking) written as JPEGs, and ``--boxes`` person-sized detections per
    frame at different places (real pixels; the boxes are laid out, not detected), so
    ``--size`` crops in all;
  * bare: the configured embedder (MobileNetV2, the offline default; 1280-d) on the same
    crops, cut in memory beforehand, in one ``embed_images`` call: its batch throughput,
    timed before and after the asset; the faster of the two is the baseline (on a shared
    machine the load changes between them);
  * asset: the ``crop_embeddings`` asset called directly on that folder: the DuckDB read,
    JPEG decoding and cutting (on a second thread), embedding, the vector cache and the
    publish of a qdrant-edge version. The embedder is loaded before both timings;
  * re-run: the asset again with nothing new (every crop's content key is cached and the
    published version's digest matches, so it publishes nothing and loads no model).

Usage: ``uv run --frozen python bench/crop_embeddings.py [--size 640]``; ``--size 2600``
is the demo's size (2,649 crops took 5.5 min to embed and publish in ``make demo``).
Targets: asset >= 0.9x the bare embedder's crops/s; re-run <= 5 % of the first run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pandas as pd

from assets.embeddings import CropEmbeddingsConfig, crop_embeddings
from assets.resources import (
    EmbedderResource,
    LoopSettingsResource,
    StoreResource,
    VectorIndexResource,
)
from edgeloop.embeddings import crop_bgr
from edgeloop.settings import LoopSettings
from edgeloop.store import Store

REPO = Path(__file__).resolve().parents[1]

VTEST = REPO / "data" / "samples" / "vtest.avi"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
BOX_W, BOX_H = 90, 200


def boxes(frame_index: int, count: int) -> list[tuple[float, float, float, float]]:
    """``count`` person-sized xyxy boxes (px of a 768x576 frame), shifted per frame."""
    out = []
    for b in range(count):
        x1 = 20 + (b * 170 + frame_index * 7) % (768 - BOX_W - 40)
        y1 = 60 + (b * 90 + frame_index * 5) % (576 - BOX_H - 80)
        out.append((float(x1), float(y1), float(x1 + BOX_W), float(y1 + BOX_H)))
    return out


def build_loop(settings: LoopSettings, size: int, per_frame: int) -> list[np.ndarray]:
    """Write frames + detections for ``size`` crops; returns the crops cut in memory."""
    n_frames = -(-size // per_frame)
    cap = cv2.VideoCapture(str(VTEST))
    frame_rows, det_rows, crops = [], [], []
    for i in range(n_frames):
        ok, image = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = cap.read()
        assert ok, f"cannot read {VTEST}"
        key = f"cam-{i % 3}:{i:06d}"
        path = settings.frames_dir / f"cam-{i % 3}" / f"{key.replace(':', '_')}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        stored = cv2.imread(str(path))
        captured = T0 + timedelta(seconds=i)
        these = boxes(i, min(per_frame, size - len(det_rows)))
        for b, box in enumerate(these):
            det_rows.append(
                {
                    "detection_id": f"{key}:{b}",
                    "frame_key": key,
                    "camera_id": f"cam-{i % 3}",
                    "captured_at": captured,
                    "class_id": 0,
                    "class_name": "Normal",
                    "confidence": 0.55,
                    "x1": box[0],
                    "y1": box[1],
                    "x2": box[2],
                    "y2": box[3],
                    "uncertain": True,
                    "model_version": "1",
                }
            )
            crops.append(np.ascontiguousarray(crop_bgr(stored, box)))
        frame_rows.append(
            {
                "frame_key": key,
                "camera_id": f"cam-{i % 3}",
                "frame_index": i,
                "captured_at": captured,
                "received_at": captured,
                "width": 768,
                "height": 576,
                "brightness": 110.0,
                "contrast": 50.0,
                "sharpness": 300.0,
                "saturation": 40.0,
                "detection_count": len(these),
                "mean_confidence": 0.55,
                "inference_ms": 30.0,
                "model_version": "1",
                "agent_id": "bench",
                "jpeg_path": str(path),
            }
        )
    cap.release()
    with Store(settings.duckdb_path).connect() as con:
        for table, rows in (("frames", frame_rows), ("prediction_logs", det_rows)):
            frame = pd.DataFrame(rows)
            con.register("new_rows", frame)
            con.execute(f"INSERT INTO {table} ({', '.join(frame.columns)}) SELECT * FROM new_rows")
            con.unregister("new_rows")
    return crops


def run_asset(loop: LoopSettingsResource, embedder: EmbedderResource) -> tuple[float, dict]:
    """One call of the asset function, timed; its Dagster context is built before the
    clock starts, as a real run's exists before the asset runs (the first build makes an
    ephemeral instance and imports Dagster's storage: 0.6 s, until 2026-12-01 timed)."""
    context = dg.build_asset_context()
    start = time.perf_counter()
    result = crop_embeddings(
        context,
        config=CropEmbeddingsConfig(),
        store=StoreResource(loop=loop),
        embedder=embedder,
        vectors=VectorIndexResource(loop=loop),
    )
    return time.perf_counter() - start, {
        k: getattr(v, "value", v) for k, v in result.metadata.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640, help="crops (the demo had 2,649)")
    parser.add_argument("--boxes", type=int, default=4, help="detections per frame")
    parser.add_argument("--batch-size", type=int, default=32, help="embedder batch size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgeloop-crops-") as tmp:
        loop = LoopSettingsResource(data_dir=str(Path(tmp) / "data"))
        crops = build_loop(loop.settings(), args.size, args.boxes)
        embedder = EmbedderResource(loop=loop, batch_size=args.batch_size)
        start = time.perf_counter()
        model = embedder.embedder()
        load_s = time.perf_counter() - start
        print(
            f"{len(crops)} crops of real vtest.avi frames; embedder {model.name} ({model.dims}-d)"
        )
        model.embed_images(crops[: args.batch_size])  # warm-up, as the asset's loaded model is
        start = time.perf_counter()
        model.embed_images(crops)
        bare_before = time.perf_counter() - start
        first_s, md = run_asset(loop, embedder)
        start = time.perf_counter()
        model.embed_images(crops)
        bare_after = time.perf_counter() - start
        bare_s = min(bare_before, bare_after)  # the faster: the stricter baseline
        assert md["points"] == len(crops) and md["embedded_now"] == len(crops), md
        again_s, md2 = run_asset(loop, embedder)
        assert md2["published_now"] is False and md2["embedded_now"] == 0, md2

    bare_rate, asset_rate = len(crops) / bare_s, len(crops) / first_s
    print(f"embedder load            : {load_s:6.2f} s (before both timings)")
    print(
        f"bare embedder            : {bare_s:6.2f} s  {bare_rate:7.1f} crops/s  "
        f"(faster of {bare_before:.1f} s before and {bare_after:.1f} s after the asset)"
    )
    print(
        f"crop_embeddings asset    : {first_s:6.2f} s  {asset_rate:7.1f} crops/s  "
        f"= {asset_rate / bare_rate:.2f}x bare (version {md['version']}, {md['points']} points)"
    )
    print(
        f"re-run, nothing new      : {again_s:6.2f} s  = {100 * again_s / first_s:.1f} % of the first"
    )
    met = asset_rate >= 0.9 * bare_rate and again_s <= 0.05 * first_s
    print(
        f"TARGET {'met' if met else 'NOT met'}: asset {asset_rate / bare_rate:.2f}x bare (>= 0.9), "
        f"re-run {100 * again_s / first_s:.1f} % of the first (<= 5 %), {len(crops)} crops"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
