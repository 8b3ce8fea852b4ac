"""Request and response models of the grid review (``api/routes/review.py``).

A grid shows crops of detections of one class (or one camera); each is right unless the
reviewer flips it to ``wrong`` (not an object of any class: dropped) or ``wrong_class``
(an object of another class: relabeled). Boxes are ``(x1, y1, x2, y2)`` pixels of the
original frame, origin top-left (xyxy).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GridVerdict = Literal["ok", "wrong", "wrong_class"]
"""What the reviewer said of one crop: ``ok`` (the default), ``wrong`` (no object there),
``wrong_class`` (an object, of ``class_name``)."""


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class GridCropPublic(_Public):
    """One detection to review, cut from its frame by the page."""

    detection_id: str
    frame_key: str
    camera_id: str
    frame_url: str = Field(description="Path of the frame JPEG on this API.")
    width: int = Field(description="Frame width, px.")
    height: int = Field(description="Frame height, px.")
    bbox_xyxy: tuple[float, float, float, float] = Field(description="xyxy px of the frame.")
    class_name: str
    confidence: float = Field(description="The detector's confidence, [0, 1].")


class GridPublic(_Public):
    """``GET /api/review/grid``: crops, least confident first, and the classes to pick from."""

    crops: list[GridCropPublic]
    class_names: list[str] = Field(description="Classes a wrong-class crop may be relabeled to.")


_RIGHT_CLASS = "The right class of a wrong_class crop (required then, refused otherwise)."


class GridReviewBox(BaseModel):
    """The reviewer's verdict on one crop of the grid."""

    model_config = ConfigDict(extra="forbid")

    frame_key: str = Field(min_length=1, max_length=256)
    detection_id: str = Field(min_length=1, max_length=300)
    verdict: GridVerdict = "ok"
    class_name: str | None = Field(None, min_length=1, max_length=64, description=_RIGHT_CLASS)

    @model_validator(mode="after")
    def _class_with_wrong_class(self) -> GridReviewBox:
        if self.verdict == "wrong_class" and self.class_name is None:
            raise ValueError("a wrong_class verdict needs the right class_name")
        if self.verdict != "wrong_class" and self.class_name is not None:
            raise ValueError(f"class_name is only for wrong_class verdicts, not {self.verdict!r}")
        return self


class GridReviewCreate(BaseModel):
    """``POST /api/review/grid`` body: every crop of the grid page with its verdict."""

    model_config = ConfigDict(extra="forbid")

    reviews: list[GridReviewBox] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _each_detection_once(self) -> GridReviewCreate:
        ids = [r.detection_id for r in self.reviews]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"detections reviewed twice: {repeated}")
        return self


class GridLabelPublic(_Public):
    """A frame labeled by the grid submit."""

    frame_key: str
    item_id: int
    label_id: int
    box_count: int


class GridRefusedPublic(_Public):
    """A frame the grid submit did not label, and why (labeled or claimed meanwhile)."""

    frame_key: str
    detail: str


class GridReviewPublic(_Public):
    """What a grid submit stored: one reviewed label per frame."""

    labeled: list[GridLabelPublic]
    refused: list[GridRefusedPublic]
    labels_since_training: int
