"""Request and response models of ``/api/prediction-batches`` (``api.routes.prediction_batches``).

Boxes are ``(x1, y1, x2, y2)`` pixels of the stored image, origin top-left (xyxy); times
are timezone-aware UTC; confidences in [0, 1].
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VERSION_PATTERN = r"^[0-9]{1,9}$"
ModelVersion = Annotated[
    str, Field(pattern=VERSION_PATTERN, description="A registered model version, e.g. 3.")
]
Alias = Literal["production", "staging"]
"""The registry's aliases (``edgeloop.registry.PRODUCTION``, ``STAGING``)."""


class ModelChoice(BaseModel):
    """Which model to run: a registered version, or the version an alias points at
    (``production`` when neither is given)."""

    model_config = ConfigDict(extra="forbid")

    model_version: ModelVersion | None = None
    alias: Alias | None = None

    @model_validator(mode="after")
    def _one(self) -> ModelChoice:
        if self.model_version is not None and self.alias is not None:
            raise ValueError("give model_version or alias, not both")
        return self


class DetectionPublic(BaseModel):
    image_index: int
    detection_index: int
    class_id: int
    class_name: str
    confidence: float
    bbox_xyxy: tuple[float, float, float, float] = Field(description="xyxy px of the image.")


class RunPublic(BaseModel):
    model_name: str
    model_version: str
    alias: str | None = Field(description="The alias the version was resolved from, if any.")
    created_at: datetime
    created_by: str
    detection_count: int
    inference_ms: float = Field(description="Detector time over all the images, ms.")
    detections: list[DetectionPublic]


class ImagePublic(BaseModel):
    image_index: int
    file_name: str
    sha256: str = Field(description="sha256 of the stored JPEG (its ETag).")
    width: int
    height: int
    bytes: int
    url: str
    thumbnail_url: str


class BatchSummaryPublic(BaseModel):
    batch_id: int
    created_at: datetime
    created_by: str
    source: Literal["files", "zip"]
    image_count: int
    status: Literal["predicted", "queued"]
    queued_at: datetime | None
    queued_by: str | None
    model_versions: list[str] = Field(description="Versions run on the batch, oldest first.")


class BatchPublic(BatchSummaryPublic):
    images: list[ImagePublic]
    runs: list[RunPublic]


class ImageComparisonPublic(BaseModel):
    image_index: int
    file_name: str
    count_a: int
    count_b: int
    matched: int = Field(description="Same-class box pairs with IoU >= 0.5 (each box once).")
    only_a: int
    only_b: int
    mean_confidence_a: float | None
    mean_confidence_b: float | None
    mean_iou: float | None = Field(description="Mean IoU of the matched pairs.")


class ComparisonPublic(BaseModel):
    batch_id: int
    a: str
    b: str
    match_iou: float
    images: list[ImageComparisonPublic]
    count_a: int
    count_b: int
    matched: int


class QueueCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_version: ModelVersion | None = Field(
        None, description="Whose boxes become the pre-labels; default the batch's first run."
    )


class QueuePublic(BaseModel):
    batch_id: int
    model_version: str
    camera_id: str
    frame_keys: list[str] = Field(description="The frames the images became, in image order.")
    item_ids: list[int] = Field(description="Their labeling-queue items, in image order.")
