"""The console's uploads panel (``/console/uploads``): upload images or a zip and run a
model on them (the form and its progress bar are ``static/uploads.js`` against
``POST /api/prediction-batches``), the recent prediction batches, and one batch
(``?batch=<id>``): its images as thumbnails with every run's boxes drawn (one run shown at
a time, or all), the comparison of two runs, another version's run, and sending the
images to the labeling queue.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

from api.deps import CurrentPrincipal, StoreDep
from api.prediction_batch_models import (
    BatchPublic,
    BatchSummaryPublic,
    ComparisonPublic,
    ImagePublic,
    ModelVersion,
)
from api.prediction_batch_views import batch_detail, comparison
from edgeloop.store import prediction_batches as batches

RECENT = 20
"""Batches listed on the panel."""


class UploadBoxPublic(BaseModel):
    """One detection drawn on its image: the run, class, confidence and the box as
    percentages of the image (left, top, width, height; xyxy px of the image / its size)."""

    model_version: str
    class_name: str
    confidence: float
    box_pct: tuple[float, float, float, float]


class UploadImageView(BaseModel):
    image: ImagePublic
    boxes: list[UploadBoxPublic]
    counts: dict[str, int] = Field(description="Detections per model version.")


class UploadsPanelPublic(BaseModel):
    """The recent batches; with ``batch``, that batch, its images with their boxes, and the
    comparison of runs ``a`` and ``b`` when it has two runs or more."""

    batches: list[BatchSummaryPublic]
    batch: BatchPublic | None = None
    images: list[UploadImageView] = Field(default_factory=list)
    comparison: ComparisonPublic | None = None


def _images(batch: BatchPublic) -> list[UploadImageView]:
    views = []
    for image in batch.images:
        boxes = [
            UploadBoxPublic(
                model_version=run.model_version,
                class_name=d.class_name,
                confidence=d.confidence,
                box_pct=(
                    100 * d.bbox_xyxy[0] / image.width,
                    100 * d.bbox_xyxy[1] / image.height,
                    100 * (d.bbox_xyxy[2] - d.bbox_xyxy[0]) / image.width,
                    100 * (d.bbox_xyxy[3] - d.bbox_xyxy[1]) / image.height,
                ),
            )
            for run in batch.runs
            for d in run.detections
            if d.image_index == image.image_index
        ]
        counts = {
            run.model_version: sum(d.image_index == image.image_index for d in run.detections)
            for run in batch.runs
        }
        views.append(UploadImageView(image=image, boxes=boxes, counts=counts))
    return views


def uploads_panel(
    _principal: CurrentPrincipal,
    store: StoreDep,
    batch: Annotated[int | None, Query(ge=1, le=2**62, description="Show this batch.")] = None,
    a: Annotated[ModelVersion | None, Query(description="Compare: version A.")] = None,
    b: Annotated[ModelVersion | None, Query(description="Compare: version B.")] = None,
) -> UploadsPanelPublic:
    """The panel's data: recent batches, and the batch asked for (its first and last runs
    compared unless ``a`` and ``b`` name two)."""
    with store.connect() as con:
        recent = [BatchSummaryPublic(**r) for r in batches.recent(con=con, limit=RECENT)]
    if batch is None:
        return UploadsPanelPublic(batches=recent)
    detail = batch_detail(store, batch)
    versions = [r.model_version for r in detail.runs]
    compared = None
    if len(versions) >= 2:
        compared = comparison(store, batch, a or versions[0], b or versions[-1])
    return UploadsPanelPublic(
        batches=recent, batch=detail, images=_images(detail), comparison=compared
    )
