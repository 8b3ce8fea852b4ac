"""Request and response models of the grid review (``api/routes/review.py``).

A grid shows crops of detections of one class (or one camera); each is right unless the
reviewer flips it to ``wrong`` (not an object of any class: dropped) or ``wrong_class``
(an object of another class: relabeled). The audit source adds frames with no detection,
each right (nothing there) unless flipped to ``missed``. Boxes are ``(x1, y1, x2, y2)``
pixels of the original frame, origin top-left (xyxy). Also the audit's figures
(``GET /api/review/audit``): the confident-mistake and miss rates, each labeler's pace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgeloop.wire.records import FrameKey

GridVerdict = Literal["ok", "wrong", "wrong_class"]
"""What the reviewer said of one crop: ``ok`` (the default), ``wrong`` (no object there),
``wrong_class`` (an object, of ``class_name``)."""
FrameVerdict = Literal["ok", "missed"]
"""What the reviewer said of an audited frame with no detection: ``ok`` (nothing to box,
the default: labeled as no object) or ``missed`` (an object the model did not box: the
frame goes to the labeling queue, where it is boxed)."""
GridSource = Literal["all", "audit"]
"""Which detections a grid shows: ``all`` (of unlabeled frames, least confident first) or
``audit`` (the detections of the audit sample's frames, its confident ones marked ``audit``,
and its frames with no detection)."""
AuditWindow = Literal["24h", "7d", "all"]
"""How far back the audit's figures reach: the last 24 hours, 7 days, or everything."""


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
    audit: bool = Field(
        False, description="In the audit sample: confident, of a sampled frame (edgeloop.audit)."
    )


class GridFramePublic(_Public):
    """An audited frame with no detection, shown whole: is an object missing?"""

    frame_key: str
    camera_id: str
    frame_url: str = Field(description="Path of the frame JPEG on this API.")
    width: int = Field(description="Frame width, px.")
    height: int = Field(description="Frame height, px.")


class GridPublic(_Public):
    """``GET /api/review/grid``: crops, least confident first, and the classes to pick from;
    with ``source=audit``, the sample's frames with no detection too (oldest first)."""

    crops: list[GridCropPublic]
    frames: list[GridFramePublic] = Field(default_factory=list)
    class_names: list[str] = Field(description="Classes a wrong-class crop may be relabeled to.")


DetectionId = Annotated[
    str, Field(min_length=3, max_length=220, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*:[0-9]+$")
]
"""A detection's id: ``<frame_key>:<index>`` (``edgeloop.wire``'s ``FrameKey``, then the
detection's index in its frame)."""
_RIGHT_CLASS = "The right class of a wrong_class crop (required then, refused otherwise)."


class GridReviewBox(BaseModel):
    """The reviewer's verdict on one crop of the grid."""

    model_config = ConfigDict(extra="forbid")

    frame_key: FrameKey
    detection_id: DetectionId
    verdict: GridVerdict = "ok"
    class_name: str | None = Field(None, min_length=1, max_length=64, description=_RIGHT_CLASS)

    @model_validator(mode="after")
    def _class_with_wrong_class(self) -> GridReviewBox:
        if self.verdict == "wrong_class" and self.class_name is None:
            raise ValueError("a wrong_class verdict needs the right class_name")
        if self.verdict != "wrong_class" and self.class_name is not None:
            raise ValueError(f"class_name is only for wrong_class verdicts, not {self.verdict!r}")
        return self


class GridFrameReview(BaseModel):
    """The reviewer's verdict on one audited frame with no detection."""

    model_config = ConfigDict(extra="forbid")

    frame_key: FrameKey
    verdict: FrameVerdict = "ok"


class GridReviewCreate(BaseModel):
    """``POST /api/review/grid`` body: every crop and frame of the grid page with its verdict
    (at least one of either)."""

    model_config = ConfigDict(extra="forbid")

    reviews: list[GridReviewBox] = Field(default_factory=list, max_length=500)
    frames: list[GridFrameReview] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _each_target_once(self) -> GridReviewCreate:
        if not self.reviews and not self.frames:
            raise ValueError("nothing to review: send reviews (crops) or frames")
        for name, ids in (
            ("detections", [r.detection_id for r in self.reviews]),
            ("frames", [f.frame_key for f in self.frames]),
        ):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                raise ValueError(f"{name} reviewed twice: {repeated}")
        return self


class GridLabelPublic(_Public):
    """A frame labeled by the grid submit."""

    frame_key: str
    item_id: int
    label_id: int
    box_count: int


class GridQueuedPublic(_Public):
    """An audited frame flipped to ``missed``: queued for labeling (its queue item)."""

    frame_key: str
    item_id: int


class GridRefusedPublic(_Public):
    """A frame the grid submit did not label, and why (labeled or claimed meanwhile)."""

    frame_key: str
    detail: str


class GridReviewPublic(_Public):
    """What a grid submit stored: one reviewed label per frame; frames flipped to ``missed``
    are queued for labeling instead (``queued``, their queue item ids)."""

    labeled: list[GridLabelPublic]
    refused: list[GridRefusedPublic]
    queued: list[GridQueuedPublic] = Field(default_factory=list)
    labels_since_training: int


class RatePublic(_Public):
    """``k`` of ``n`` with its 95 % Wilson score interval (``edgeloop.audit.wilson``);
    ``rate``, ``low``, ``high`` in [0, 1], None when ``n`` is 0."""

    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


class AuditClassPublic(_Public):
    """One model class's audited confident detections."""

    class_name: str = Field(description="The model's class of the detections.")
    wrong: int = Field(description="Flipped to wrong: no object there.")
    wrong_class: int = Field(description="Flipped to wrong class: an object of another class.")
    mistakes: RatePublic = Field(description="(wrong + wrong_class) of audited.")


class AuditPublic(_Public):
    """``GET /api/review/audit``: what the audit sample found over the window."""

    window: AuditWindow
    since: datetime | None = Field(description="Start of the window, UTC (None: all).")
    audit_share: float = Field(description="EDGELOOP_AUDIT_SHARE: the share of frames sampled.")
    confident_at: float = Field(
        description="Detections at or above this confidence are confident (EDGELOOP_UNCERTAINTY_HIGH)."
    )
    mistakes: RatePublic = Field(
        description="Confident-mistake rate: audited detections flipped to wrong or wrong class."
    )
    classes: list[AuditClassPublic] = Field(description="The same, per model class.")
    misses: RatePublic = Field(description="Audited frames with no detection flipped to missed.")


class LabelerThroughputPublic(_Public):
    """One labeler's pace over the window (``edgeloop.audit.throughput``)."""

    labeler: str
    items: int = Field(description="Labels stored (frames).")
    boxes: int = Field(description="Boxes in them.")
    timed_items: int = Field(description="Items whose time was measured (not after a break).")
    active_s: float = Field(description="Work time: gaps between submits up to the idle gap, s.")
    items_per_hour: float | None
    boxes_per_hour: float | None
    median_s_per_item: float | None = Field(description="Median seconds per item, s.")
    pre_labels: int = Field(description="Model boxes shown on the labeled frames.")
    changed_share: float | None = Field(
        description="Share of pre-labels moved, resized, reclassed or rejected, [0, 1]."
    )


class ReviewStatsPublic(_Public):
    """The console's review panel: the audit's rates and each labeler's pace."""

    audit: AuditPublic
    labelers: list[LabelerThroughputPublic]
    idle_gap_s: float = Field(description="A longer gap between submits is a break, s.")
    tolerance_px: float = Field(description="A kept pre-label moved at most this far, px.")
