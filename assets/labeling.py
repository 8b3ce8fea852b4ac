"""The ``labeling_queue`` asset: the pending labeling queue, re-ranked.

Priority of a pending item = the largest uncertainty score of its frame's detections
(``edgeloop.rules.uncertainty_scores``: 1 at the centre of the uncertainty band, 0 at and
outside its edges — least-confidence sampling restricted to the band) × a boost for
cameras whose latest drift report drifted. The SQL is ``edgeloop.store.queue``'s; only
``priority`` is written here, ``status`` and the rest belong to the labeling API.
"""

import logging

import dagster as dg
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.drift import drift_report
from assets.resources import StoreResource
from edgeloop.store import analytics, queue

logger = logging.getLogger(__name__)

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


@dg.asset(group_name="labeling", deps=[detections, drift_report], kinds={"duckdb"})
def labeling_queue(
    context: dg.AssetExecutionContext, config: LabelingQueueConfig, store: StoreResource
) -> dg.MaterializeResult:
    """Pending labeling queue, ranked by detection uncertainty × a boost for drifted cameras."""
    settings = store.loop.settings()
    with store.store().connect() as con:
        reranked = queue.rerank(
            con=con,
            low=settings.uncertainty_low,
            high=settings.uncertainty_high,
            drift_boost=config.drift_boost,
        )
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
    context.log.info("re-ranked %s pending items across %s cameras", reranked, len(per_camera))
    return dg.MaterializeResult(metadata=metadata)
