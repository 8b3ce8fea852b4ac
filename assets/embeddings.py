"""The ``crop_embeddings`` asset: a vector per detection crop, published to the crop index.

Crops are cut (with a margin) from the stored frame JPEGs (``frames.jpeg_path``; agents
send the JPEG of every frame with an uncertain detection), embedded by the configured
embedder (OpenCLIP, or the offline MobileNetV2), and written as a new complete version
of the crop index (a qdrant-edge shard, or a collection on a Qdrant server), which is
then published (``edgeloop.vectors``).

Each crop has a content key (``edgeloop.embeddings.crop_key``: frame JPEG, bbox, margin);
vectors already computed by the same embedder are reused from
``<data_dir>/embeddings/<embedder>.npz``, so a run embeds only new crops, and a run whose
crops all match the published version's digest publishes nothing (it never loads the
embedder). JPEGs are decoded and cut on a second thread while the embedder runs.
"""

import hashlib
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import cv2
import dagster as dg
import numpy as np
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.resources import EmbedderResource, StoreResource, VectorIndexResource
from edgeloop.embeddings import EmbeddingCache, crop_bgr, crop_key, embedder_name, embedder_slug
from edgeloop.settings import LoopSettings
from edgeloop.store import frames
from edgeloop.vectors import CropPoint
from edgeloop.vectors.versions import CorruptIndexError

if TYPE_CHECKING:  # pandas is imported where used: the code location loads in every run
    import pandas as pd

CROP_PAD = 0.1
"""Default margin around each box, as a share of its size (the crop cache is keyed by it)."""
CHUNK = 64
"""Crops handed to the embedder at once (the decode thread stays up to 4 chunks ahead)."""


class CropEmbeddingsConfig(dg.Config):
    """How crops are cut."""

    pad: float = Field(
        CROP_PAD, ge=0, le=1, description="Margin around each box, as a share of its size."
    )
    min_crop_px: int = Field(8, ge=1, description="Crops smaller than this (px) are skipped.")


def _load_detections(store: StoreResource) -> "pd.DataFrame":
    with store.store().connect() as con:
        return frames.detections_with_jpeg(con=con)


def _cut_crops(
    settings: LoopSettings, todo: "pd.DataFrame", config: CropEmbeddingsConfig, stats: Counter[str]
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """``(content keys, crops)`` chunks of at most ``CHUNK`` crops, each crop ``(h, w, 3)``
    uint8 BGR; counts unreadable frames and too-small crops in ``stats``."""
    keys: list[str] = []
    crops: list[np.ndarray] = []
    for _, group in todo.groupby("frame_key", sort=False):
        path = settings.stored_file(str(group["jpeg_path"].iloc[0]))
        image = None if path is None else cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            stats["missing_frames"] += 1
            continue
        for det in group.itertuples(index=False):
            crop = crop_bgr(
                image,
                (det.x1, det.y1, det.x2, det.y2),
                frame_size=(int(det.width), int(det.height)),
                pad=config.pad,
                min_px=config.min_crop_px,
            )
            if crop is None:
                stats["small_crops"] += 1
                continue
            keys.append(str(det.crop_key))
            crops.append(np.ascontiguousarray(crop))
            if len(crops) >= CHUNK:
                yield keys, crops
                keys, crops = [], []
    if crops:
        yield keys, crops


def _prefetched(chunks: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """Run ``chunks`` on a worker thread, ``depth`` items ahead (JPEG decoding releases the
    GIL, and so does the embedder's forward pass); re-raises the worker's error."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)

    def work() -> None:
        try:
            for item in chunks:
                q.put(("item", item))
            q.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(("error", exc))

    threading.Thread(target=work, name="crop-decoder", daemon=True).start()
    while True:
        kind, value = q.get()
        if kind == "done":
            return
        if kind == "error":
            raise value
        yield value


def index_digest(embedder: str, pairs: list[tuple[str, str]]) -> str:
    """sha256 over the embedder and the sorted ``(detection_id, content key)`` pairs."""
    digest = hashlib.sha256(embedder.encode())
    for det_id, key in sorted(pairs):
        digest.update(f"\n{det_id}|{key}".encode())
    return digest.hexdigest()


@dg.asset(group_name="embeddings", deps=[detections], kinds={"qdrant", "pytorch"})
def crop_embeddings(
    context: dg.AssetExecutionContext,
    config: CropEmbeddingsConfig,
    store: StoreResource,
    embedder: EmbedderResource,
    vectors: VectorIndexResource,
) -> dg.MaterializeResult:
    """Embeddings of detection crops from stored frame JPEGs, published as a new crop index version."""
    settings = store.loop.settings()
    rows = _load_detections(store)
    if rows.empty:
        raise dg.Failure(
            description=(
                "no detections with a stored frame JPEG: agents send JPEGs for frames with "
                "uncertain detections; ingest some frames first"
            )
        )
    name = embedder_name(settings)
    rows["crop_key"] = [
        crop_key(str(r.jpeg_path), (r.x1, r.y1, r.x2, r.y2), pad=config.pad)
        for r in rows.itertuples(index=False)
    ]
    cache = EmbeddingCache(settings.data_dir / "embeddings" / f"{embedder_slug(name)}.npz")
    cached = cache.load()
    todo = rows[~rows["crop_key"].isin(cached.keys())].drop_duplicates("crop_key")
    context.log.info(
        "%s crops: %s cached, %s to embed with %s",
        len(rows),
        len(rows) - len(todo),
        len(todo),
        name,
    )
    computed: dict[str, np.ndarray] = {}
    stats: Counter[str] = Counter()
    for keys, crops in _prefetched(_cut_crops(settings, todo, config, stats)):
        model = embedder.embedder()
        if model.name != name:
            raise dg.Failure(f"embedder {model.name} loaded where the settings name {name}")
        computed.update(zip(keys, model.embed_images(crops), strict=True))
        context.log.debug("embedded %s crops so far", len(computed))

    vectors_by_key = {**cached, **computed}
    kept = rows[rows["crop_key"].isin(vectors_by_key.keys())]
    points = [
        CropPoint(
            detection_id=str(r.detection_id),
            frame_key=str(r.frame_key),
            camera_id=str(r.camera_id),
            class_name=str(r.class_name),
            confidence=float(r.confidence),
            bbox_xyxy=(float(r.x1), float(r.y1), float(r.x2), float(r.y2)),
            captured_at_iso=str(r.captured_at),
            vector=vectors_by_key[str(r.crop_key)],
        )
        for r in kept.itertuples(index=False)
    ]
    reused = int((~kept["crop_key"].isin(computed.keys())).sum())
    if not points:
        raise dg.Failure(
            description=(
                f"no crop could be embedded: {stats['missing_frames']} frame JPEGs unreadable, "
                f"{stats['small_crops']} crops under {config.min_crop_px} px"
            )
        )
    if stats["missing_frames"]:
        context.log.warning("%s frame JPEGs missing or unreadable", stats["missing_frames"])
    wanted = set(rows["crop_key"])
    if computed or set(cached) - wanted:
        cache.save({k: v for k, v in vectors_by_key.items() if k in wanted})

    index = vectors.index()
    digest = index_digest(
        name, list(zip(kept["detection_id"].astype(str), kept["crop_key"].astype(str), strict=True))
    )
    try:
        current = index.published()
    except CorruptIndexError as exc:
        context.log.warning("publishing a new version over an unreadable pointer: %s", exc)
        current = None
    unchanged = current is not None and current.digest == digest and current.embedder == name
    published = current if unchanged and current is not None else None
    if published is None:
        published = index.publish(points, embedder=name, digest=digest)
    else:
        context.log.info(
            "nothing new: %s already holds these %s crops", published.version, len(points)
        )

    per_camera = Counter(p.camera_id for p in points)
    metadata: dict[str, Any] = {
        "points": published.points,
        "dims": published.dims,
        "embedder": published.embedder,
        "version": published.version,
        "published_now": not unchanged,
        "embedded_now": len(points) - reused,
        "reused_from_cache": reused,
        "missing_frames": stats["missing_frames"],
        "small_crops_skipped": stats["small_crops"],
        "index_location": published.location,
        "per_camera": dg.MetadataValue.md(
            md_table(["camera", "points"], sorted(per_camera.items()))
        ),
        "dagster/row_count": published.points,
    }
    for camera, count in per_camera.items():
        metadata[f"{camera}/points"] = count
    return dg.MaterializeResult(
        metadata=metadata, data_version=dg.DataVersion(f"{published.version}-{published.points}")
    )
