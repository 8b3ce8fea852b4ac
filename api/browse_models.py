"""The dataset browser's wire models and query parameters, shared by its JSON routes
(``api.routes.browse``, ``api.routes.tags``) and its console panel
(``api.console.browse_view``).

Boxes are xyxy px of the original frame; ``box_pct`` is the same box as
``(left, top, width, height)`` in % of the frame, for overlays; times are UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import HTTPException, Query, status
from pydantic import BaseModel, Field

from edgeloop.store import dataset_frames, tags
from edgeloop.store.browse import BrowseFilter

MAX_IDS = 100
"""Most ids one batch fetch takes."""
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
"""A frame key (the wire's ``FrameKey``) or a detection id (``<frame_key>:<index>``)."""
ID_MAX_CHARS = 220
FRAME_THUMB_PX = 256
CROP_THUMB_PX = 128

ItemId = Annotated[str, Field(min_length=1, max_length=ID_MAX_CHARS, pattern=ID_PATTERN)]


def frame_thumbnail_url(frame_key: str, size: int = FRAME_THUMB_PX) -> str:
    """Path of a frame's thumbnail on this API (``api.routes.thumbnails``)."""
    return f"/api/thumbnails/frames/{quote(frame_key)}.jpg?size={size}"


def crop_url(detection_id: str, size: int = CROP_THUMB_PX) -> str:
    """Path of a detection's crop on this API (``api.routes.thumbnails``)."""
    return f"/api/thumbnails/detections/{quote(detection_id)}.jpg?size={size}"


class TagPublic(BaseModel):
    tag: str
    source: Literal["person", "suggested"]
    score: float | None = Field(None, description="A CLIP prompt's cosine score; else null.")


class DetectionPublic(BaseModel):
    detection_id: str
    class_id: int
    class_name: str
    confidence: float = Field(description="In [0, 1].")
    uncertain: bool
    bbox_xyxy: tuple[float, float, float, float] = Field(description="px of the original frame")
    box_pct: tuple[float, float, float, float] = Field(
        description="left, top, width, height in % of the frame"
    )
    model_version: str
    tags: list[TagPublic]
    crop_url: str | None = Field(description="The crop's thumbnail; null without a JPEG.")


class FramePublic(BaseModel):
    """What the browser shows of a frame."""

    frame_key: str
    camera_id: str
    captured_at: datetime
    width: int = Field(description="px")
    height: int = Field(description="px")
    state: Literal["labeled", "queued", "unlabeled"] = Field(
        description="labeled; queued (pending or skipped in the labeling queue); unlabeled."
    )


class ItemPublic(FramePublic):
    """A frame, or a detection with its frame, as the batch fetch answers it."""

    id: str
    kind: Literal["frame", "detection"]
    model_version: str
    tags: list[TagPublic] = Field(description="The frame's tags.")
    thumbnail_url: str | None = Field(description="The frame's thumbnail; null without a JPEG.")
    frame_url: str | None = Field(description="The full JPEG; null without one.")
    detections: list[DetectionPublic] = Field(
        description="Every detection of a frame, or the one a detection id names."
    )


class ItemsPublic(BaseModel):
    items: list[ItemPublic] = Field(description="In the order asked, each id once.")
    missing: list[str] = Field(description="Ids asked for that are not stored.")


class ItemsRequest(BaseModel):
    ids: list[ItemId] = Field(min_length=1, max_length=MAX_IDS)


class BrowseRowPublic(FramePublic):
    """One detection of a browser page, with its frame."""

    detection: DetectionPublic
    tags: list[TagPublic] = Field(description="The detection's tags, then its frame's.")
    thumbnail_url: str | None
    score: float | None = Field(None, description="Similarity to the query, when searched.")


class BrowsePagePublic(BaseModel):
    count: int = Field(description="Matches over all pages (of the hits, when searched).")
    count_capped: bool = Field(
        False, description="True when more match: counting stopped 10,000 past this page."
    )
    limit: int
    offset: int
    data: list[BrowseRowPublic]
    query: str | None = Field(None, description="What was searched for, when searched.")
    index_version: str | None = None


def detection_public(
    row: dict[str, Any], width: int, height: int, has_jpeg: bool
) -> DetectionPublic:
    """A stored detection row (``edgeloop.store.browse``) as ``DetectionPublic``."""
    x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
    w, h = max(width, 1), max(height, 1)
    return DetectionPublic(
        detection_id=row["detection_id"],
        class_id=row["class_id"],
        class_name=row["class_name"],
        confidence=row["confidence"],
        uncertain=row["uncertain"],
        bbox_xyxy=(x1, y1, x2, y2),
        box_pct=(100 * x1 / w, 100 * y1 / h, 100 * (x2 - x1) / w, 100 * (y2 - y1) / h),
        model_version=row["model_version"],
        tags=[TagPublic(**t) for t in row.get("tags", [])],
        crop_url=crop_url(row["detection_id"]) if has_jpeg else None,
    )


def row_public(row: dict[str, Any], score: float | None = None) -> BrowseRowPublic:
    """A page row of ``edgeloop.store.browse.page`` as ``BrowseRowPublic``."""
    return BrowseRowPublic(
        detection=detection_public(row, row["width"], row["height"], row["has_jpeg"]),
        frame_key=row["frame_key"],
        camera_id=row["camera_id"],
        captured_at=row["captured_at"],
        width=row["width"],
        height=row["height"],
        state=row["state"],
        tags=[TagPublic(**t) for t in row["tags"]],
        thumbnail_url=frame_thumbnail_url(row["frame_key"]) if row["has_jpeg"] else None,
        score=score,
    )


def item_public(id_: str, item: dict[str, Any]) -> ItemPublic:
    """A batch-fetched item of ``edgeloop.store.browse.fetch`` as ``ItemPublic``."""
    w, h, has_jpeg = item["width"], item["height"], item["has_jpeg"]
    return ItemPublic(
        id=id_,
        kind=item["kind"],
        frame_key=item["frame_key"],
        camera_id=item["camera_id"],
        captured_at=item["captured_at"],
        model_version=item["model_version"],
        width=w,
        height=h,
        state=item["state"],
        tags=[TagPublic(**t) for t in item["tags"]],
        thumbnail_url=frame_thumbnail_url(item["frame_key"]) if has_jpeg else None,
        frame_url=f"/api/frames/{quote(item['frame_key'])}.jpg" if has_jpeg else None,
        detections=[detection_public(d, w, h, has_jpeg) for d in item["detections"]],
    )


def _tag_query(tag: str | None) -> str | None:
    if tag is None or tag == "":
        return None
    try:
        return tags.normalise(tag)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None


def _dataset_version_query(version: str | None) -> str | None:
    if not version:
        return None
    try:
        dataset_frames.version_number(version)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return version


def browse_filter(
    camera_id: Annotated[str | None, Query(max_length=64, description="One camera.")] = None,
    since: Annotated[datetime | None, Query(description="Captured at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Captured before (ISO 8601).")] = None,
    class_name: Annotated[
        str | None, Query(max_length=128, description="The detector's class.")
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=128, description="A tag on the detection or its frame.")
    ] = None,
    model_version: Annotated[
        str | None, Query(max_length=64, description="The model version.")
    ] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    uncertain: Annotated[bool | None, Query(description="In the uncertainty band.")] = None,
    state: Annotated[
        Literal["labeled", "queued", "unlabeled"] | None,
        Query(description="labeled; queued (pending or skipped); unlabeled (never queued)."),
    ] = None,
    split: Annotated[
        Literal["train", "val"] | None,
        Query(description="Labeled frames of the train or held-out (val) split."),
    ] = None,
    dataset_version: Annotated[
        str | None,
        Query(
            max_length=16,
            description="Frames in this dataset version (v1, v2, …; /api/browse/facets).",
        ),
    ] = None,
) -> BrowseFilter:
    """The browser's filters from the query string (empty values are left out); 422 for a
    tag that is not a valid tag or a time without a UTC offset."""
    for name, at in (("since", since), ("until", until)):
        if at is not None and at.tzinfo is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"{name} needs a UTC offset, e.g. 2026-01-01T00:00:00Z",
            )
    return BrowseFilter(
        camera_id=camera_id or None,
        since=since,
        until=until,
        class_name=class_name or None,
        tag=_tag_query(tag),
        model_version=model_version or None,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        uncertain=uncertain,
        state=state,
        split=split,
        dataset_version=_dataset_version_query(dataset_version),
    )
