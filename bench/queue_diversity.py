"""Near-duplicate suppression in the labeling queue, on ``vtest.avi``: what it removes, what it costs.

What it measures, in one run on the same machine (issue 18, "a queue worth a person's time"):

1. **Queue**: ``--frames`` frames of ``data/samples/vtest.avi`` go through the real path
   (the edge agent process, ONNX Runtime, posting to the API under uvicorn; the API
   queues frames with uncertain detections), then the ``crop_embeddings`` and
   ``labeling_queue`` assets run. Printed: pending items, and how many the near-duplicate
   pass ranks down, per camera (without suppression none is); and the distribution of
   frame-vector cosine distances by how many frames apart two frames are (where the
   default threshold, ``edgeloop.diversity.NEAR_DUPLICATE_DISTANCE``, comes from).
2. **Same label budget** (``--labels N``, 0 skips it): the data folder is copied twice;
   in each copy the ``labeling_queue`` asset runs (``plain``: the near-duplicate pass off;
   ``diverse``: on, default threshold), the demo's simulated reviewer (``edgeloop.cli.reviewer``,
   truth: the seed at 1280 px with test-time augmentation) labels the first N items the
   API hands out, and the retrain assets (``training_dataset`` → ``detector_model``)
   fine-tune the seed on them (``--epochs``, ``--imgsz``). Both candidates (and the seed)
   are scored on one common held-out set: ``--heldout`` frames from the part of the
   video the agent never sent, labeled by the same reference, with the model evaluation's
   per-image validation (``assets.yolo.validate_per_image``) and paired bootstrap
   (``assets.heldout.paired_bootstrap``, diverse minus plain).

Target: suppression's held-out gain is not worse: the 95 % interval of mAP50-95
(diverse − plain) has its lower bound at or above ``--margin`` (−0.02). Without a
retrain pair (``--labels 0``) no target is judged.

Usage: ``nice -n 10 uv run --frozen python bench/queue_diversity.py [--frames 300]
[--labels 30] [--heldout 30] [--epochs 5] [--imgsz 320]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import cv2
import dagster as dg
import numpy as np
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
CAMERA = "cam-campus"
VIDEO = "vtest.avi"
VTEST_FRAMES = 795
"""Frames in ``vtest.avi`` (768x576, people walking; Debian's opencv-doc)."""


def _prepare(data_dir: Path, work: Path) -> Any:
    """A fresh data folder with the samples and the seed (copied from the repository's
    ``data/``), the seed registered as production; its ``LoopSettings``."""
    from edgeloop.bootstrap import register_seed

    for name in ("samples", "seed"):
        shutil.copytree(REPO / "data" / name, data_dir / name)
    settings = _settings(data_dir, work)
    register_seed(settings, replace_production=True, actor="bench/queue_diversity.py")
    return settings


def _settings(data_dir: Path, work: Path) -> Any:
    """``LoopSettings`` on ``data_dir``, with ultralytics kept offline (its config folder
    in ``work``, outside every data folder)."""
    from edgeloop.offline import configure_offline_environment
    from edgeloop.settings import LoopSettings

    os.environ["YOLO_CONFIG_DIR"] = str(work / "yolo-config")
    settings = LoopSettings(data_dir=data_dir)
    configure_offline_environment(settings.yolo_config_dir)
    return settings


def _token(settings: Any, name: str, role: Literal["agent", "labeler"]) -> str:
    from edgeloop.tokens import create_token

    return create_token(settings.data_dir / "api-tokens.json", name=name, role=role, replace=True)


def _api(settings: Any) -> Any:
    from edgeloop.cli.services import start_api

    return start_api(settings)  # its tokens file: <data_dir>/api-tokens.json


def ingest(settings: Any, frames: int, console: Console) -> None:
    """The agent process on the first ``frames`` frames of the video, posting to the API."""
    from edgeloop.cli.agents import run_agent

    token = _token(settings, "bench-agent", "agent")
    api = _api(settings)
    try:
        run_agent(
            settings,
            api.url,
            token,
            video=settings.samples_dir / VIDEO,
            camera_id=CAMERA,
            max_frames=frames,
            console=console,
        )
    finally:
        api.stop()


def _resources(settings: Any) -> dict[str, Any]:
    """The resources the assets run here need, on the data folder of ``settings``."""
    from assets import resources as r

    loop = r.LoopSettingsResource(data_dir=str(settings.data_dir))
    return {
        "store": r.StoreResource(loop=loop),
        "embedder": r.EmbedderResource(loop=loop),
        "vectors": r.VectorIndexResource(loop=loop),
        "mlflow": r.MlflowResource(loop=loop),
        "dataset_repo": r.DatasetRepoResource(loop=loop),
    }


def rank_queue(settings: Any, near_duplicates: bool) -> dict[str, Any]:
    """Materialize ``labeling_queue`` with the near-duplicate pass on or off (its default
    threshold); its metadata values."""
    from assets.labeling import labeling_queue

    config = {"near_duplicates": near_duplicates}
    result = dg.materialize(
        [labeling_queue],
        resources=_resources(settings),
        run_config={"ops": {"labeling_queue": {"config": config}}},
    )
    metadata = result.asset_materializations_for_node("labeling_queue")[0].metadata
    return {key: value.value for key, value in metadata.items()}


def distance_table(settings: Any) -> list[tuple[str, int, float, float, float]]:
    """Frame-vector cosine distances by frame gap: ``(gap, pairs, p5, median, share <
    threshold)``, from the crop vectors ``crop_embeddings`` cached."""
    from assets.embeddings import CROP_PAD
    from edgeloop.diversity import NEAR_DUPLICATE_DISTANCE, frame_vector
    from edgeloop.embeddings import EmbeddingCache, crop_key, embedder_name, embedder_slug

    cache = EmbeddingCache(
        settings.data_dir / "embeddings" / f"{embedder_slug(embedder_name(settings))}.npz"
    ).load()
    with settings.store().connect() as con:
        rows = con.execute(
            """
            SELECT f.frame_index, f.jpeg_path, p.x1, p.y1, p.x2, p.y2
            FROM frames f JOIN prediction_logs p USING (frame_key)
            WHERE f.jpeg_path IS NOT NULL ORDER BY f.frame_index
            """
        ).fetchall()
    crops: dict[int, list[np.ndarray]] = {}
    for index, jpeg, *box in rows:
        vector = cache.get(crop_key(jpeg, box, pad=CROP_PAD))
        if vector is not None:
            crops.setdefault(int(index), []).append(vector)
    indices = np.array(sorted(crops))
    vectors = np.stack([frame_vector(crops[i]) for i in indices])
    distances = 1.0 - vectors @ vectors.T
    gaps = np.abs(indices[:, None] - indices[None, :])
    table = []
    for low, high in ((1, 2), (2, 5), (5, 10), (10, 25), (25, 50), (50, 100), (100, 10_000)):
        chosen = distances[np.triu((gaps >= low) & (gaps < high), 1)]
        if chosen.size:
            table.append(
                (
                    f"{low}-{high - 1}" if high < 10_000 else f">={low}",
                    int(chosen.size),
                    float(np.percentile(chosen, 5)),
                    float(np.median(chosen)),
                    float((chosen < NEAR_DUPLICATE_DISTANCE).mean()),
                )
            )
    return table


def cached_reference(settings: Any) -> tuple[Callable[[np.ndarray], list], str]:
    """The simulated reviewer's truth (the seed at 1280 px with TTA), memoised by frame bytes
    so the two arms and the held-out set pay for each frame once."""
    from edgeloop.cli.reviewer import TtaReference
    from edgeloop.devices import torch_device

    reference = TtaReference(settings.seed_dir / "best.pt", device=torch_device(settings.device))
    detect = reference.detector()
    memo: dict[str, list] = {}

    def boxes(image: np.ndarray) -> list:
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        if key not in memo:
            memo[key] = detect(image)
        return memo[key]

    return boxes, reference.name


def heldout_set(
    root: Path, reference: Callable[[np.ndarray], list], first: int, count: int
) -> tuple[Path, list[str]]:
    """A YOLO dataset (``val`` split) of ``count`` frames from ``first`` on, evenly spaced,
    labeled by the reference (class 0, ``Normal``: people only walk in this video)."""
    capture = cv2.VideoCapture(str(REPO / "data" / "samples" / VIDEO))
    wanted = set(np.linspace(first, VTEST_FRAMES - 1, count).astype(int).tolist())
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    names = []
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index in wanted:
            name = f"vtest_{index:04d}"
            cv2.imwrite(str(root / "images" / "val" / f"{name}.jpg"), image)
            h, w = image.shape[:2]
            lines = [
                f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                f"{(y2 - y1) / h:.6f}"
                for (x1, y1, x2, y2), _ in reference(image)
            ]
            (root / "labels" / "val" / f"{name}.txt").write_text("\n".join(lines))
            names.append(name)
        index += 1
    capture.release()
    data_yaml = root / "data.yaml"
    data_yaml.write_text(
        f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n  0: Normal\n  1: Fall\n"
    )
    return data_yaml, names


def arm(
    settings: Any,
    near_duplicates: bool,
    labels: int,
    reference: Callable[[np.ndarray], list],
    args: argparse.Namespace,
) -> tuple[Path, list[str], dict[str, Any]]:
    """Rank the queue, label the first ``labels`` items through the API, fine-tune; the
    candidate's ``best.pt``, the frames labeled, and the queue metadata."""
    from assets.datasets import TrainingDatasetConfig, training_dataset
    from assets.training import TrainingConfig, detector_model
    from edgeloop.cli.reviewer import SimulatedReviewer

    ranked = rank_queue(settings, near_duplicates)
    token = _token(settings, "bench-reviewer", "labeler")
    api = _api(settings)
    try:
        with SimulatedReviewer(api.url, token, reference) as reviewer:
            tally = reviewer.review(labels, camera_id=CAMERA)
    finally:
        api.stop()
    with settings.store().connect() as con:
        labeled = [
            str(r[0])
            for r in con.execute(
                "SELECT frame_key FROM labeling_queue WHERE status = 'labeled' ORDER BY frame_key"
            ).fetchall()
        ]
    if tally.items != labels:
        raise RuntimeError(f"the reviewer labeled {tally.items} items, not {labels}")
    result = dg.materialize(
        [training_dataset, detector_model],
        resources=_resources(settings),
        run_config=dg.RunConfig(
            ops={
                "training_dataset": TrainingDatasetConfig(min_train_images=4, min_val_images=1),
                "detector_model": TrainingConfig(
                    epochs=args.epochs, imgsz=args.imgsz, batch=4, patience=args.epochs
                ),
            }
        ),
    )
    return Path(result.output_for_node("detector_model").pt_path), labeled, ranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames the agent sends")
    parser.add_argument("--labels", type=int, default=30, help="label budget N per arm (0: none)")
    parser.add_argument("--heldout", type=int, default=30, help="common held-out frames")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--margin", type=float, default=-0.02, help="lowest acceptable bound")
    parser.add_argument("--work", type=Path, default=None, help="kept work folder (default: tmp)")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="reuse the data folder of an earlier --work run (WORK/base/data): skips ingest "
        "and embedding; --frames must be the one it ran with",
    )
    args = parser.parse_args()
    console = Console(width=160)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        run(args, args.work, console)
        return
    with tempfile.TemporaryDirectory(prefix="queue-diversity-") as work:
        run(args, Path(work), console)


def run(args: argparse.Namespace, work: Path, console: Console) -> None:
    """Both parts (module docstring) in the folder ``work``; prints the figures."""
    from assets.embeddings import crop_embeddings

    t0 = time.monotonic()

    if args.base is not None:  # an earlier run's folder: frames ingested, crops embedded
        base = _settings(args.base.resolve(), work)
    else:
        base = _prepare(work / "base" / "data", work)
        ingest(base, args.frames, console)
        dg.materialize([crop_embeddings], resources=_resources(base))
    off = rank_queue(base, False)
    on = rank_queue(base, True)
    pending = int(on["pending"])
    removed = int(on["near_duplicates"])
    console.print(f"vtest.avi, {args.frames} frames sent by the agent, camera {CAMERA}:")
    console.print(
        f"  queue: pending {int(off['pending'])}; near-duplicates ranked down: without "
        f"suppression {int(off['near_duplicates'])}, with {removed} "
        f"(threshold {on['near_duplicate_distance']}, {removed / max(pending, 1):.0%}); "
        f"items ahead of them {pending - removed}; compared {on['near_duplicate_compared']}, "
        f"without crop vectors {on['pending_without_crop_vectors']}"
    )
    for key, value in sorted(on.items()):
        if key.endswith("/near_duplicates"):
            console.print(f"  {key}: {value} of {on[key.split('/')[0] + '/pending']} pending")
    console.print(
        "  frame-vector cosine distance by frame gap (pairs, p5, median, share < threshold):"
    )
    for gap, pairs, p5, median, share in distance_table(base):
        console.print(
            f"    {gap:>7} frames apart: {pairs:6d} pairs  {p5:.4f}  {median:.4f}  {share:.1%}"
        )
    if args.labels <= 0:
        console.print(f"({time.monotonic() - t0:.0f} s) no retrain pair (--labels 0)")
        console.print(
            "TARGET NOT met: no retrain pair was run, so the held-out gain was not measured"
        )
        return

    from assets.heldout import paired_bootstrap
    from assets.yolo import load_yolo, validate_per_image

    reference, reference_name = cached_reference(base)
    arms: dict[str, tuple[Path, list[str], dict[str, Any]]] = {}
    for name, near_duplicates in (("plain", False), ("diverse", True)):
        folder = work / name / "data"
        shutil.copytree(base.data_dir, folder)
        settings = type(base)(data_dir=folder)
        arms[name] = arm(settings, near_duplicates, args.labels, reference, args)
        console.print(
            f"  {name}: labeled {len(arms[name][1])} frames "
            f"(near-duplicates ranked down: {int(arms[name][2]['near_duplicates'])})"
        )
    overlap = len(set(arms["plain"][1]) & set(arms["diverse"][1]))
    data_yaml, names = heldout_set(work / "heldout", reference, args.frames + 50, args.heldout)
    yolo = load_yolo(base)
    scores = {}
    for name, pt in (("seed", base.seed_dir / "best.pt"), *((n, a[0]) for n, a in arms.items())):
        metrics, images = validate_per_image(
            yolo, pt, data_yaml, imgsz=args.imgsz, batch=4, save_dir=work / "val" / name
        )
        scores[name] = (metrics, images)
    gain = paired_bootstrap(scores["diverse"][1], scores["plain"][1], resamples=args.resamples)[
        "mAP50-95"
    ]
    console.print(
        f"same label budget N={args.labels} per arm ({overlap} frames in both), truth: "
        f"{reference_name}; fine-tune {args.epochs} epochs at {args.imgsz} px; held-out: "
        f"{len(names)} frames {args.frames + 50}-{VTEST_FRAMES - 1} the agent never sent"
    )
    for name, (metrics, _) in scores.items():
        console.print(
            f"  held-out mAP50-95 {name}: {metrics.map50_95:.4f} (mAP50 {metrics.map50:.4f})"
        )
    console.print(f"  diverse − plain: {gain.label()}")
    console.print(f"({time.monotonic() - t0:.0f} s in all; work folder {work})")
    verdict = "TARGET met" if gain.low >= args.margin else "TARGET NOT met"
    console.print(
        f"{verdict}: suppression ranked down {removed} of {pending} queued items; held-out "
        f"mAP50-95 diverse − plain {gain.point:+.4f}, 95% interval low {gain.low:+.4f} vs "
        f">= {args.margin:+.2f} (n={gain.n} images)"
    )


if __name__ == "__main__":
    main()
