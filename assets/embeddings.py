"""The ``crop_embeddings`` asset: a vector per detection crop, published to Qdrant.

Crops are cut (with a margin) from the stored frame JPEGs (``frames.jpeg_path``; agents
send the JPEG of every frame with an uncertain detection), embedded by the configured
embedder (OpenCLIP, or the offline MobileNetV2), and written as a new complete version
of the crop index, which is then published (``edgeloop.vectors``). Vectors already
computed by the same embedder are reused from ``<data_dir>/embeddings/<embedder>.npz``,
so each run embeds only new crops.
"""

from collections import Counter
from typing import Any

import cv2
import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.resources import EmbedderResource, StoreResource, VectorIndexResource
from edgeloop.datasets import resolve_frame_path
from edgeloop.embeddings import EmbeddingCache, crop_bgr
from edgeloop.store import frames
from edgeloop.vectors import CropPoint


class CropEmbeddingsConfig(dg.Config):
    """How crops are cut."""

    pad: float = Field(
        0.1, ge=0, le=1, description="Margin around each box, as a share of its size."
    )
    min_crop_px: int = Field(8, ge=1, description="Crops smaller than this (px) are skipped.")


def _load_detections(store: StoreResource) -> pd.DataFrame:
    with store.store().connect() as con:
        return frames.detections_with_jpeg(con=con)


@dg.asset(group_name="embeddings", deps=[detections], kinds={"qdrant", "pytorch"})
def crop_embeddings(
    context: dg.AssetExecutionContext,
    config: CropEmbeddingsConfig,
    store: StoreResource,
    embedder: EmbedderResource,
    vectors: VectorIndexResource,
) -> dg.MaterializeResult:
    """Embeddings of detection crops from stored frame JPEGs, published as a new Qdrant index version."""
    settings = store.loop.settings()
    rows = _load_detections(store)
    if rows.empty:
        raise dg.Failure(
            description=(
                "no detections with a stored frame JPEG: agents send JPEGs for frames with "
                "uncertain detections; ingest some frames first"
            )
        )
    model = embedder.embedder()
    cache = EmbeddingCache(settings.data_dir / "embeddings" / f"{model.slug}.npz")
    cached = cache.load()
    computed: dict[str, np.ndarray] = {}
    missing_frames: list[str] = []
    small_crops = 0
    pending_ids: list[str] = []
    pending_crops: list[np.ndarray] = []

    def flush() -> None:
        if pending_crops:
            for det_id, vec in zip(pending_ids, model.embed_images(pending_crops), strict=True):
                computed[det_id] = vec
            pending_ids.clear()
            pending_crops.clear()

    todo = rows[~rows["detection_id"].isin(cached.keys())]
    context.log.info(
        "%s crops: %s cached, %s to embed with %s",
        len(rows),
        len(rows) - len(todo),
        len(todo),
        model.name,
    )
    for frame_key, group in todo.groupby("frame_key", sort=False):
        first = group.iloc[0]
        path = resolve_frame_path(settings, str(first["jpeg_path"]))
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            missing_frames.append(str(frame_key))
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
                small_crops += 1
                continue
            pending_ids.append(str(det.detection_id))
            pending_crops.append(np.ascontiguousarray(crop))
        if len(pending_crops) >= 256:
            flush()
            context.log.debug("embedded %s crops so far", len(computed))
    flush()

    wanted = set(rows["detection_id"].astype(str))
    vectors_by_id = {**{k: v for k, v in cached.items() if k in wanted}, **computed}
    points = [
        CropPoint(
            detection_id=str(r.detection_id),
            frame_key=str(r.frame_key),
            camera_id=str(r.camera_id),
            class_name=str(r.class_name),
            confidence=float(r.confidence),
            bbox_xyxy=(float(r.x1), float(r.y1), float(r.x2), float(r.y2)),
            captured_at_iso=str(r.captured_at),
            vector=vectors_by_id[str(r.detection_id)],
        )
        for r in rows.itertuples(index=False)
        if str(r.detection_id) in vectors_by_id
    ]
    if not points:
        raise dg.Failure(
            description=(
                f"no crop could be embedded: {len(missing_frames)} frame JPEGs unreadable "
                f"(e.g. {missing_frames[:3]}), {small_crops} crops under {config.min_crop_px} px"
            )
        )
    if missing_frames:
        context.log.warning(
            "%s frame JPEGs missing or unreadable, e.g. %s", len(missing_frames), missing_frames[:5]
        )
    cache.save(vectors_by_id)
    published = vectors.index().publish(points, embedder=model.name)

    per_camera = Counter(p.camera_id for p in points)
    metadata: dict[str, Any] = {
        "points": published.points,
        "dims": published.dims,
        "embedder": published.embedder,
        "version": published.version,
        "embedded_now": len(computed),
        "reused_from_cache": len(points) - len(computed),
        "missing_frames": len(missing_frames),
        "small_crops_skipped": small_crops,
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
