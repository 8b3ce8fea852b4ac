"""The ``labeling_queue`` asset: the pending labeling queue, re-ranked.

Priority of a pending item = the largest uncertainty score of its frame's detections
(``edgeloop.rules.uncertainty_scores``: 1 at the centre of the uncertainty band, 0 at and
outside its edges — least-confidence sampling restricted to the band) × a boost for
cameras whose latest drift report drifted. The SQL is ``edgeloop.store.queue``'s; only
``priority`` is written here, ``status`` and the rest belong to the labeling API.

Then near-duplicates are ranked down (``edgeloop.diversity``, issue 18): a pending frame
whose vector (the mean of its crops' embeddings, from the ``crop_embeddings`` asset's
vector cache) is within ``near_duplicate_distance`` of a labeled frame, or of a
higher-priority pending frame kept, of the same camera gets its priority multiplied by
``near_duplicate_factor`` (0 by default: after every other item, still handed out when
nothing else is left), in this and every later re-rank until the next pass recomputes the
marks (``edgeloop.store.diversity``). Frames with no embedded crop are never marked.
"""

import logging
from collections import Counter
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.drift import drift_report
from assets.embeddings import CROP_PAD, crop_embeddings
from assets.resources import StoreResource
from edgeloop.diversity import NEAR_DUPLICATE_DISTANCE, frame_vector, near_duplicates
from edgeloop.embeddings import EmbeddingCache, crop_key, embedder_name, embedder_slug
from edgeloop.store import analytics, diversity, queue
from edgeloop.store.diversity import NEAR_DUPLICATE_FACTOR, QueueDetection

logger = logging.getLogger(__name__)

NEAR_DUPLICATES = False
"""The near-duplicate pass is off by default; ``near_duplicates`` (or
``EDGELOOP_PIPELINES_LABELING_QUEUE__NEAR_DUPLICATES=true``) turns it on. Measured by
``bench/queue_diversity.py`` on ``vtest.avi`` (README, "Near-duplicates go last"), it ranked
down 170 of 300 queued items, and retrains on the same label budget at the demo's training
settings were not worse (diverse - plain mAP50-95: 60 labels +0.002 [-0.003, +0.007], 30
labels -0.004 [-0.009, +0.000], 95 %, n=40; a 30-label run at 320 px was -0.030 [-0.042,
-0.015]). But with it on, ``make demo`` (2026-12-07, a fresh clone) labeled other frames
with its 110 labels, its held-out set got 18 of them, under the promotion policy's n >= 20,
and production stayed v1: the loop did not close. Off until the demo's whole loop is
measured with it on."""
NEAR_DUPLICATE_WINDOW = 5000
"""Pending items the near-duplicate pass compares (highest priority first): each is compared
with every labeled frame and every item kept above it, so the cost grows with the square
of the window (5,000 items of 1,280-d vectors with 2,000 labeled: 14 s on the loaded 2-core
machine, all kept, the worst case); the labeling job runs hourly and a person labels far
fewer than 5,000 items an hour (an edgeloop default)."""

DRIFT_BOOST = 2.0
"""Priority multiplier for a camera whose latest drift report drifted (sample where the
model is likely to be wrong; an edgeloop default, not from the seed)."""


class LabelingQueueConfig(dg.Config):
    """Knobs of the queue re-ranking."""

    drift_boost: float = Field(
        DRIFT_BOOST,
        gt=0,
        description="Priority multiplier for cameras whose latest drift report drifted.",
    )
    top_items: int = Field(
        10, ge=1, le=100, description="Top pending items listed in the metadata."
    )
    near_duplicates: bool = Field(
        NEAR_DUPLICATES,
        description=(
            "Rank near-duplicate frames down (issue 18); off: every mark is cleared and "
            "priorities are uncertainty x drift boost only."
        ),
    )
    near_duplicate_distance: float = Field(
        NEAR_DUPLICATE_DISTANCE,
        ge=0,
        le=2,
        description=(
            "Cosine distance of frame vectors under which a pending frame is a near-duplicate "
            "of a labeled or higher-priority frame of its camera; 0 marks nothing."
        ),
    )
    near_duplicate_factor: float = Field(
        NEAR_DUPLICATE_FACTOR,
        ge=0,
        lt=1,
        description="Multiplier of a near-duplicate's priority (0: after every other item).",
    )
    near_duplicate_window: int = Field(
        NEAR_DUPLICATE_WINDOW,
        ge=1,
        description=(
            "Pending items compared per pass, highest priority first; the rest stay unmarked "
            "until a later pass reaches them."
        ),
    )
    crop_pad: float = Field(
        CROP_PAD, ge=0, le=1, description="The crop margin crop_embeddings cut the crops with."
    )


NearDuplicateItem = tuple[int, str, int, float]
"""``(item_id, camera_id, item_id of the frame it is like, cosine distance)``."""


def near_duplicate_items(
    rows: list[QueueDetection],
    vectors: dict[str, np.ndarray],
    *,
    pad: float,
    threshold: float,
    window: int = NEAR_DUPLICATE_WINDOW,
) -> tuple[list[NearDuplicateItem], Counter[str]]:
    """Apply ``edgeloop.diversity.near_duplicates`` to the queue's items.

    Args:
        rows: ``edgeloop.store.diversity.queue_detections`` (labeled items first, then
            pending ones in queue order).
        vectors: crop content key (``edgeloop.embeddings.crop_key``) -> ``(d,)`` float32.
        pad: the crop margin the keys were made with.
        threshold: cosine distance.
        window: the first ``window`` pending items with a vector are compared, the rest
            are left unmarked.

    Returns:
        The marked pending items, and counts: ``compared`` (pending items with a vector,
        within the window), ``beyond_window``, ``references`` (labeled items with a
        vector), ``without_vectors`` (pending items with none, never marked).
    """
    crops: dict[int, tuple[str, str, list[np.ndarray]]] = {}
    for item_id, camera, status, _, jpeg_path, bbox in rows:
        entry = crops.setdefault(item_id, (camera, status, []))
        vector = vectors.get(crop_key(jpeg_path, bbox, pad=pad))
        if vector is not None:
            entry[2].append(vector)
    stats: Counter[str] = Counter()
    refs: list[tuple[int, str, np.ndarray]] = []
    cands: list[tuple[int, str, np.ndarray]] = []
    for item_id, (camera, status, found) in crops.items():
        if not found:
            stats["without_vectors"] += status == "pending"
            continue
        (refs if status == "labeled" else cands).append((item_id, camera, frame_vector(found)))
    stats["beyond_window"] = max(0, len(cands) - window)
    cands = cands[:window]
    stats["compared"], stats["references"] = len(cands), len(refs)
    if not cands:
        return [], stats
    marks = near_duplicates(
        np.stack([c[2] for c in cands]),
        [c[1] for c in cands],
        np.stack([r[2] for r in refs]) if refs else np.zeros((0, cands[0][2].shape[0])),
        [r[1] for r in refs],
        threshold=threshold,
    )
    return [
        (
            cands[m.index][0],
            cands[m.index][1],
            (refs if m.of_reference else cands)[m.of_index][0],
            m.distance,
        )
        for m in marks
    ], stats


@dg.asset(group_name="labeling", deps=[detections, drift_report, crop_embeddings], kinds={"duckdb"})
def labeling_queue(
    context: dg.AssetExecutionContext, config: LabelingQueueConfig, store: StoreResource
) -> dg.MaterializeResult:
    """Pending labeling queue, ranked by detection uncertainty × a boost for drifted cameras, near-duplicates last."""
    settings = store.loop.settings()
    cache = EmbeddingCache(
        settings.data_dir / "embeddings" / f"{embedder_slug(embedder_name(settings))}.npz"
    )
    with store.store().connect() as con:  # closed while the vectors are compared
        unmarked = diversity.clear_marks(con=con)
        reranked = queue.rerank(
            con=con,
            low=settings.uncertainty_low,
            high=settings.uncertainty_high,
            drift_boost=config.drift_boost,
        )
        compare = config.near_duplicates and config.near_duplicate_distance > 0
        rows = diversity.queue_detections(con=con) if compare else []
    vectors = cache.load() if rows else {}
    marked, stats = near_duplicate_items(
        rows,
        vectors,
        pad=config.crop_pad,
        threshold=config.near_duplicate_distance,
        window=config.near_duplicate_window,
    )
    with store.store().connect() as con:
        stats["marked"] = diversity.mark_near_duplicates(
            con=con, marks=[(m[0], m[2]) for m in marked], factor=config.near_duplicate_factor
        )
        stats["unmarked"] = unmarked
        per_camera = analytics.per_camera_summary(con=con)
        top = analytics.top_pending(con=con, limit=config.top_items)
    pending_total = sum(int(r[1]) for r in per_camera)
    metadata: dict[str, dg.RawMetadataValue] = {
        "pending": pending_total,
        "reranked": reranked,
        "drift_boost": config.drift_boost,
        "boosted_cameras": ", ".join(r[0] for r in per_camera if r[3]) or "none",
        "per_camera": dg.MetadataValue.md(
            md_table(
                ["camera", "pending", "labeled/skipped", "drifted (boosted)", "top priority"],
                per_camera,
            )
        ),
        "top_items": dg.MetadataValue.md(
            md_table(["item", "camera", "frame", "priority", "uncertain detections", "queued"], top)
        ),
    }
    for camera, pending, *_ in per_camera:
        metadata[f"{camera}/pending"] = int(pending)
    metadata |= _near_duplicate_metadata(config, marked, stats)
    if rows and not vectors:
        # The cache is the crop_embeddings step's, on the host that ran it: a step on
        # another worker host (networked topology, several workers) finds none.
        context.log.warning(
            "near-duplicates: no crop vectors at %s (crop_embeddings ran on another host, "
            "or not yet); nothing was ranked down",
            cache.path,
        )
    context.log.info("re-ranked %s pending items across %s cameras", reranked, len(per_camera))
    return dg.MaterializeResult(metadata=metadata)


def _near_duplicate_metadata(
    config: LabelingQueueConfig,
    marked: list[NearDuplicateItem],
    stats: Counter[str],
) -> dict[str, Any]:
    """What the near-duplicate pass did: totals, per camera, and the first marked items."""
    per_camera = Counter(camera for _, camera, _, _ in marked)
    metadata: dict[str, Any] = {
        "near_duplicates_on": config.near_duplicates,
        "near_duplicate_distance": config.near_duplicate_distance,
        "near_duplicate_factor": config.near_duplicate_factor,
        "near_duplicates": stats["marked"],
        "near_duplicate_marks_cleared": stats["unmarked"],
        "near_duplicate_compared": stats["compared"],
        "near_duplicate_references": stats["references"],
        "near_duplicate_beyond_window": stats["beyond_window"],
        "pending_without_crop_vectors": stats["without_vectors"],
        "near_duplicates_per_camera": dg.MetadataValue.md(
            md_table(["camera", "near-duplicates ranked down"], sorted(per_camera.items()))
        ),
        "near_duplicate_examples": dg.MetadataValue.md(
            md_table(
                ["item", "camera", "like item", "cosine distance"],
                [(i, c, o, f"{d:.4f}") for i, c, o, d in marked[:20]],
            )
        ),
    }
    for camera, count in per_camera.items():
        metadata[f"{camera}/near_duplicates"] = count
    return metadata
