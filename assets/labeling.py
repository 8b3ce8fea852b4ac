"""The ``labeling_queue`` asset: the pending labeling queue, re-ranked.

Priority of a pending item = the largest uncertainty score of its frame's detections
(``edgeloop.rules.uncertainty_score``: 1 at the centre of the uncertainty band, 0 at and
outside its edges — least-confidence sampling restricted to the band) × a boost for
cameras whose latest drift report drifted. Readers order the queue by
``priority DESC, created_at DESC`` (ties go to the most recently queued frame).
Only ``priority`` is written; ``status``, ``updated_at`` and the rest belong to the API.
"""

import logging

import dagster as dg
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.drift import drift_report
from assets.resources import StoreResource
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW
from edgeloop.store import Store

logger = logging.getLogger(__name__)

DRIFT_BOOST = 2.0
"""Priority multiplier for a camera whose latest drift report drifted (sample where the
model is likely to be wrong; an edgeloop default, not from the seed)."""

QUEUE_ORDER = "priority DESC, created_at DESC, item_id DESC"
"""How readers should order pending items: priority first, then recency."""

_SCORE_SQL = """
    SELECT q.item_id,
           coalesce(max(greatest(0.0, 1.0 - abs(p.confidence - $centre) / $half)), 0.0)
               * {boost} AS priority
    FROM labeling_queue q
    LEFT JOIN prediction_logs p ON p.frame_key = q.frame_key
    {drift_join}
    WHERE q.status = 'pending' {camera_filter}
    GROUP BY q.item_id
"""

_LATEST_DRIFT = """
    LEFT JOIN (
        SELECT camera_id, drifted FROM drift_reports
        QUALIFY row_number() OVER (PARTITION BY camera_id ORDER BY computed_at DESC) = 1
    ) d ON d.camera_id = q.camera_id
"""


def _band_params(low: float, high: float) -> dict[str, float]:
    if not low < high:
        raise ValueError(f"uncertainty band is empty: low={low} must be below high={high}")
    return {"centre": (low + high) / 2, "half": (high - low) / 2}


def _apply(store: Store, scores_sql: str, params: dict[str, object]) -> int:
    with store.connect() as con:
        row = con.execute(
            f"""
            UPDATE labeling_queue AS q SET priority = s.priority
            FROM ({scores_sql}) AS s
            WHERE q.item_id = s.item_id
            """,
            params,
        ).fetchone()
    return int(row[0]) if row else 0


def rerank_queue(
    store: Store,
    *,
    drift_boost: float = DRIFT_BOOST,
    low: float = UNCERTAINTY_LOW,
    high: float = UNCERTAINTY_HIGH,
) -> int:
    """Recompute every pending item's priority (uncertainty × drift boost); idempotent.

    Args:
        drift_boost: multiplier for cameras whose latest ``drift_reports`` row has ``drifted``.
        low / high: the uncertainty band (exclusive), confidence in [0, 1].

    Returns:
        Pending items re-ranked.
    """
    if drift_boost <= 0:
        raise ValueError(f"drift_boost must be > 0, got {drift_boost}")
    sql = _SCORE_SQL.format(
        boost="CASE WHEN any_value(d.drifted) THEN $boost ELSE 1.0 END",
        drift_join=_LATEST_DRIFT,
        camera_filter="",
    )
    return _apply(store, sql, {**_band_params(low, high), "boost": drift_boost})


def boost_camera_queue(
    store: Store,
    camera_id: str,
    factor: float = DRIFT_BOOST,
    *,
    low: float = UNCERTAINTY_LOW,
    high: float = UNCERTAINTY_HIGH,
) -> int:
    """Reprioritise one camera's pending items: priority = max uncertainty score × ``factor``.

    The drift sensor calls this when a camera drifts but no new labels exist to retrain
    on (the seed's rule). Priorities are recomputed from the detections, not multiplied
    in place, so calling it again does not compound the boost.

    Args:
        store: the edgeloop DuckDB store.
        camera_id: the camera whose queue to boost.
        factor: multiplier (> 0; 1 removes a boost).
        low / high: the uncertainty band (exclusive), confidence in [0, 1].

    Returns:
        Pending items of the camera re-ranked (0 when it has none).
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    sql = _SCORE_SQL.format(
        boost="$boost", drift_join="", camera_filter="AND q.camera_id = $camera"
    )
    count = _apply(store, sql, {**_band_params(low, high), "boost": factor, "camera": camera_id})
    logger.info("boosted %s pending items of camera %s by %s", count, camera_id, factor)
    return count


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
    db = store.store()
    reranked = rerank_queue(
        db,
        drift_boost=config.drift_boost,
        low=settings.uncertainty_low,
        high=settings.uncertainty_high,
    )
    with db.connect() as con:
        per_camera = con.sql(
            f"""
            SELECT q.camera_id, count(*) FILTER (WHERE q.status = 'pending') AS pending,
                   count(*) FILTER (WHERE q.status <> 'pending') AS done,
                   coalesce(any_value(d.drifted), false) AS drifted,
                   max(q.priority) FILTER (WHERE q.status = 'pending') AS top_priority
            FROM labeling_queue q {_LATEST_DRIFT}
            GROUP BY q.camera_id ORDER BY q.camera_id
            """
        ).fetchall()
        top = con.execute(
            f"""
            SELECT item_id, camera_id, frame_key, priority, uncertain_count,
                   strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')
            FROM labeling_queue WHERE status = 'pending'
            ORDER BY {QUEUE_ORDER} LIMIT ?
            """,
            [config.top_items],
        ).fetchall()
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
