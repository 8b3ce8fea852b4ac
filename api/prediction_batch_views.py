"""The prediction batches' answers, built from their rows (``edgeloop.store.prediction_batches``):
a batch with its images and runs, and two runs compared. The routes
(``api.routes.prediction_batches``) and the console's uploads panel both serve them.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from api.prediction_batch_models import (
    BatchPublic,
    ComparisonPublic,
    DetectionPublic,
    ImageComparisonPublic,
    ImagePublic,
    RunPublic,
)
from edgeloop.store import AnyStore
from edgeloop.store import prediction_batches as batches
from edgeloop.uploads import compare as comparing

PREFIX = "/api/prediction-batches"


def _image_url(batch_id: int, index: int, what: str = "") -> str:
    """The URL of a batch image (``what``: ``""``, or ``"/thumbnail"`` for its thumbnail)."""
    return f"{PREFIX}/{batch_id}/images/{index}{what}.jpg"


def batch_detail(store: AnyStore, batch_id: int) -> BatchPublic:
    """The batch with its images and runs (404 when there is none); the console shows it too."""
    with store.connect() as con:
        batch = batches.get(con=con, batch_id=batch_id)
        if batch is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no prediction batch {batch_id}")
        images = batches.images(con=con, batch_id=batch_id)
        runs = batches.runs(con=con, batch_id=batch_id)
        detections = batches.detections(con=con, batch_id=batch_id)
    by_version: dict[str, list[DetectionPublic]] = {}
    for d in detections:
        by_version.setdefault(d["model_version"], []).append(
            DetectionPublic(
                image_index=d["image_index"],
                detection_index=d["detection_index"],
                class_id=d["class_id"],
                class_name=d["class_name"],
                confidence=d["confidence"],
                bbox_xyxy=(d["x1"], d["y1"], d["x2"], d["y2"]),
            )
        )
    return BatchPublic(
        **batch,
        model_versions=[r["model_version"] for r in runs],
        images=[
            ImagePublic(
                **{k: i[k] for k in ("image_index", "file_name", "sha256", "width", "height")},
                bytes=i["bytes"],
                url=_image_url(batch_id, i["image_index"]),
                thumbnail_url=_image_url(batch_id, i["image_index"], "/thumbnail"),
            )
            for i in images
        ],
        runs=[RunPublic(**r, detections=by_version.get(r["model_version"], [])) for r in runs],
    )


def comparison(store: AnyStore, batch_id: int, a: str, b: str) -> ComparisonPublic:
    """``edgeloop.uploads.compare`` of the batch's runs of versions ``a`` and ``b``; 404
    when the batch or either run is missing. The console shows it too."""
    with store.connect() as con:
        if batches.get(con=con, batch_id=batch_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no prediction batch {batch_id}")
        versions = {r["model_version"] for r in batches.runs(con=con, batch_id=batch_id)}
        for version in (a, b):
            if version not in versions:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND,
                    detail=f"batch {batch_id} has no run of version {version}; run it first",
                )
        images = batches.images(con=con, batch_id=batch_id)
        det_a = batches.detections(con=con, batch_id=batch_id, model_version=a)
        det_b = batches.detections(con=con, batch_id=batch_id, model_version=b)
    names = {i["image_index"]: i["file_name"] for i in images}
    rows = comparing.compare(names, det_a, det_b)
    return ComparisonPublic(
        batch_id=batch_id,
        a=a,
        b=b,
        match_iou=comparing.MATCH_IOU,
        images=[
            ImageComparisonPublic(
                **vars(r), file_name=names[r.image_index], only_a=r.only_a, only_b=r.only_b
            )
            for r in rows
        ],
        count_a=len(det_a),
        count_b=len(det_b),
        matched=sum(r.matched for r in rows),
    )
