"""``/api/review/grid``: check many detections at once, as a page of crops.

``GET`` hands out detections of frames no one has labeled (of one class, or of one
camera), least confident first. ``POST`` takes a verdict for each crop and stores, per
frame, one reviewed label through ``edgeloop.store.labels.create`` (the path of the
labeling page's labels, so the dataset builder and the retrain trigger count it): the
frame's detections, minus those marked ``wrong``, with ``wrong_class`` ones relabeled to
the class sent; detections of the frame not on the grid are kept as the model drew them.
A frame that ends with no box is labeled "no object". A frame never queued gets a queue
item first (``edgeloop.store.queue.ensure_item``). A frame labeled or claimed by another
labeler since the grid was read is not labeled again: it is listed in ``refused``.

Every verdict is kept too (``edgeloop.store.verdicts``), marked when the crop was in the
audit sample (``edgeloop.audit``). ``source=audit`` shows only the sample: the detections of
its frames (the confident ones are the audited ones, ``audit`` true; the others are shown
too, so that the label the submit stores accepts no box of the frame unseen) and its frames
with no detection, shown whole. Such a frame is labeled "no object" when left right, or flipped to ``missed`` and queued for labeling, where a labeler
draws the object the model did not box. ``GET /api/review/audit`` reports what the sample
found (``api.review_stats``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import BackgroundTasks, HTTPException, Query, status

from api import crud, deps
from api import review_models as schemas
from api.retrain_push import PushLauncherDep, RetrainPushDep, push_due
from api.review_stats import audit_report
from api.routes.labeling_queue import _class_names  # the one source of the class list
from api.settings import ApiSettings
from edgeloop.annotations import InvalidBoxesError, review_boxes
from edgeloop.audit import in_audit_sample
from edgeloop.store import Connection, labels, queue, verdicts
from edgeloop.store.queue import ClaimConflictError
from edgeloop.store.verdicts import VerdictRow
from edgeloop.wire import BBoxXYXY

logger = logging.getLogger(__name__)

router = deps.secured_router("/api/review", tag="review")


def _audited(settings: ApiSettings, frame_key: str, confidence: float | None) -> bool:
    """In the audit sample: a confident detection (or, ``confidence`` None, a frame with no
    detection) of a frame the hash samples (``edgeloop.audit``)."""
    loop = settings.loop
    confident = confidence is None or confidence >= loop.uncertainty_high
    return confident and in_audit_sample(frame_key, loop.audit_share)


@router.get("/audit", response_model=schemas.AuditPublic)
def read_audit(
    _principal: deps.LabelerPrincipal,
    store: deps.StoreDep,
    settings: deps.SettingsDep,
    window: Annotated[
        schemas.AuditWindow, Query(description="How far back: 24h, 7d or all.")
    ] = "7d",
) -> schemas.AuditPublic:
    """What the audit sample found (role ``labeler``): the confident-mistake rate (wrong or
    wrong class over audited confident detections), overall and per class, and the miss
    rate of audited frames with no detection, each with n and a 95 % Wilson interval."""
    return audit_report(store, settings, window=window)


@router.get("/grid", response_model=schemas.GridPublic)
def read_grid(
    principal: deps.LabelerPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
    settings: deps.SettingsDep,
    class_name: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this class.")
    ] = None,
    camera_id: deps.CameraQuery = None,
    min_confidence: Annotated[
        float, Query(ge=0.0, le=1.0, description="Only detections at least this confident.")
    ] = 0.0,
    limit: Annotated[int, Query(ge=1, le=200, description="Crops on the page.")] = 48,
    source: Annotated[
        schemas.GridSource,
        Query(description="all, or audit: the audit sample's detections and empty frames."),
    ] = "all",
) -> schemas.GridPublic:
    """A page of crops to review (role ``labeler``): detections of unlabeled frames with a
    JPEG, not claimed by another labeler, least confident first (see module doc). With
    ``source=audit``, also up to ``limit`` of the sample's frames with no detection (of the
    camera; not with a class filter)."""
    audit = source == "audit"
    now = datetime.now(UTC)
    with store.connect() as con:
        rows = labels.review_candidates(
            con=con,
            class_name=class_name,
            camera_id=camera_id,
            min_confidence=min_confidence,
            labeler=principal.name,
            now=now,
            limit=limit,
            audit_share=settings.loop.audit_share if audit else None,
        )
        empty = (
            verdicts.audit_frames(
                con=con,
                share=settings.loop.audit_share,
                camera_id=camera_id,
                labeler=principal.name,
                now=now,
                limit=limit,
            )
            if audit and class_name is None
            else []
        )
        class_names = _class_names(con, registry)
    crops = [
        schemas.GridCropPublic(
            **{k: r[k] for k in ("detection_id", "frame_key", "camera_id", "width", "height")},
            frame_url=crud.frame_url(r["frame_key"]),
            bbox_xyxy=(r["x1"], r["y1"], r["x2"], r["y2"]),
            class_name=r["class_name"],
            confidence=r["confidence"],
            audit=_audited(settings, r["frame_key"], r["confidence"]),
        )
        for r in rows
    ]
    frames = [
        schemas.GridFramePublic(
            **{k: f[k] for k in ("frame_key", "camera_id", "width", "height")},
            frame_url=crud.frame_url(f["frame_key"]),
        )
        for f in empty
    ]
    return schemas.GridPublic(crops=crops, frames=frames, class_names=class_names)


def _unprocessable(problems: list[str]) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="; ".join(problems))


Planned = tuple[dict[str, Any], list[tuple[BBoxXYXY, str]], list[VerdictRow]]
"""A frame to label: its row, its boxes after the verdicts, the verdicts to keep."""


def _plan_frame(
    con: Connection,
    frame_key: str,
    reviews: dict[str, schemas.GridReviewBox],
    settings: ApiSettings,
    reviewer: str,
    now: datetime,
) -> tuple[Planned | None, list[str]]:
    """The frame's boxes after the verdicts (xyxy px clamped to the frame, class name) and
    the verdict rows (``label_id`` to fill in), or what in ``reviews`` does not match the
    frame's detections."""
    frame = crud.get_frame(con=con, frame_key=frame_key)
    if frame is None:
        return None, [f"frame {frame_key!r} is not stored"]
    detections = {d.detection_id: d for d in crud.frame_detections(con=con, frame_key=frame_key)}
    problems = [
        f"detection {d!r} is not a detection of frame {frame_key!r}"
        for d in reviews
        if d not in detections
    ]
    boxes: list[tuple[BBoxXYXY, str]] = []
    rows: list[VerdictRow] = []
    for detection_id, detection in detections.items():
        review = reviews.get(detection_id)
        if review is not None:
            rows.append(
                VerdictRow(
                    target_kind="detection",
                    target_id=detection_id,
                    frame_key=frame_key,
                    camera_id=frame["camera_id"],
                    class_name=detection.class_name,
                    confidence=detection.confidence,
                    verdict=review.verdict,
                    corrected_class=review.class_name,
                    audit=_audited(settings, frame_key, detection.confidence),
                    reviewer=reviewer,
                    reviewed_at=now,
                    label_id=None,
                )
            )
            if review.verdict == "wrong":
                continue
        x1, y1, x2, y2 = detection.bbox_xyxy
        w, h = frame["width"], frame["height"]
        clamped = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
        name = review.class_name if review is not None and review.class_name else None
        boxes.append((clamped, name or detection.class_name))
    return (frame, boxes, rows), problems


def _plan_empty_frame(
    con: Connection,
    review: schemas.GridFrameReview,
    settings: ApiSettings,
    reviewer: str,
    now: datetime,
) -> tuple[Planned | None, list[str]]:
    """An audited frame with no detection: no boxes, one frame verdict; or why not."""
    key = review.frame_key
    frame = crud.get_frame(con=con, frame_key=key)
    if frame is None:
        return None, [f"frame {key!r} is not stored"]
    if frame["detection_count"]:
        return None, [f"frame {key!r} has detections: review them as crops, not as a frame"]
    row = VerdictRow(
        target_kind="frame",
        target_id=key,
        frame_key=key,
        camera_id=frame["camera_id"],
        class_name=None,
        confidence=None,
        verdict=review.verdict,
        corrected_class=None,
        audit=_audited(settings, key, None),
        reviewer=reviewer,
        reviewed_at=now,
        label_id=None,
    )
    return (frame, [], [row]), []


def _queue_missed(
    con: Connection, planned: Planned, reviewer: str, now: datetime
) -> tuple[schemas.GridQueuedPublic | None, schemas.GridRefusedPublic | None]:
    """A frame flipped to ``missed``: queued for labeling (its verdict kept), unless labeled
    or claimed by someone else meanwhile."""
    frame, _, rows = planned
    key = frame["frame_key"]
    item_id = queue.ensure_item(con=con, frame_key=key, camera_id=frame["camera_id"], now=now)
    item = queue.get_item(con=con, item_id=item_id)
    try:
        assert item is not None
        queue.check_claim(item=item, labeler=reviewer, now=now)
        if item["status"] == "labeled":
            raise ClaimConflictError(
                f"frame {key!r} is labeled already",
                item_id=item_id,
                claimed_by=None,
                claimed_until=None,
            )
    except ClaimConflictError as exc:
        return None, schemas.GridRefusedPublic(frame_key=key, detail=str(exc))
    verdicts.record(con=con, rows=rows)
    return schemas.GridQueuedPublic(frame_key=key, item_id=item_id), None


def _verdicts_of(con: Connection, rows: list[VerdictRow]) -> Callable[[int], None]:
    """What stores a frame's verdicts with its label, in the label's transaction
    (``labels.create``'s ``with_label``): both are kept, or neither."""

    def keep(label_id: int) -> None:
        verdicts.record(con=con, rows=[{**r, "label_id": label_id} for r in rows])

    return keep


_UNKNOWN_422: dict[int | str, dict[str, Any]] = {
    422: {"description": "Unknown frames, detections or classes"}
}


@router.post("/grid", response_model=schemas.GridReviewPublic, responses=_UNKNOWN_422)
def review_grid(
    principal: deps.LabelerPrincipal,
    body: schemas.GridReviewCreate,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
    background_tasks: BackgroundTasks,
    settings: deps.SettingsDep,
    launcher: PushLauncherDep,
    retrain_push: RetrainPushDep,
) -> schemas.GridReviewPublic:
    """Store the verdicts of a grid page (role ``labeler``) as one reviewed label per frame,
    and each verdict (see module doc). 422, storing nothing, when a frame or detection is
    unknown, a wrong-class crop names a class that is not a class of the site, or a frame
    sent whole has detections."""
    by_frame: dict[str, dict[str, schemas.GridReviewBox]] = defaultdict(dict)
    for review in body.reviews:
        by_frame[review.frame_key][review.detection_id] = review
    now = datetime.now(UTC)
    labeled: list[schemas.GridLabelPublic] = []
    queued: list[schemas.GridQueuedPublic] = []
    refused: list[schemas.GridRefusedPublic] = []
    with store.connect() as con:
        class_names = _class_names(con, registry)
        problems = [
            f"detection {r.detection_id!r}: unknown class {r.class_name!r}; known: {class_names}"
            for r in body.reviews
            if r.class_name is not None and r.class_name not in class_names
        ]
        problems += [
            f"frame {f.frame_key!r} is sent both whole and as crops"
            for f in body.frames
            if f.frame_key in by_frame
        ]
        planned: list[Planned] = []
        missed: list[Planned] = []
        for frame_key, reviews in by_frame.items():
            plan, wrong = _plan_frame(con, frame_key, reviews, settings, principal.name, now)
            problems += wrong
            planned += [plan] if plan else []
        for frame_review in body.frames:
            plan, wrong = _plan_empty_frame(con, frame_review, settings, principal.name, now)
            problems += wrong
            if plan:
                (missed if frame_review.verdict == "missed" else planned).append(plan)
        if problems:
            raise _unprocessable(problems)
        for plan in missed:
            done, refusal = _queue_missed(con, plan, principal.name, now)
            queued += [done] if done else []
            refused += [refusal] if refusal else []
        for frame, boxes, rows in planned:
            key = frame["frame_key"]
            try:
                reviewed = review_boxes(
                    boxes, width=frame["width"], height=frame["height"], class_names=class_names
                )
            except InvalidBoxesError as exc:
                refused.append(schemas.GridRefusedPublic(frame_key=key, detail=str(exc)))
                continue
            item_id = queue.ensure_item(
                con=con, frame_key=key, camera_id=frame["camera_id"], now=now
            )
            try:
                label_id = labels.create(
                    con=con,
                    item_id=item_id,
                    frame_key=key,
                    camera_id=frame["camera_id"],
                    boxes=reviewed,
                    labeler=principal.name,
                    labeled_at=now,
                    with_label=_verdicts_of(con, rows),
                )
            except ClaimConflictError as exc:
                refused.append(schemas.GridRefusedPublic(frame_key=key, detail=str(exc)))
                continue
            labeled.append(
                schemas.GridLabelPublic(
                    frame_key=key, item_id=item_id, label_id=label_id, box_count=len(reviewed)
                )
            )
        since = labels.since_last_training(con=con)
    logger.info(
        "grid review by %s: %s frames labeled, %s queued as missed, %s refused",
        principal.name,
        len(labeled),
        len(queued),
        len(refused),
    )
    if labeled and push_due(since, settings):
        background_tasks.add_task(retrain_push.request, launcher)
    return schemas.GridReviewPublic(
        labeled=labeled, refused=refused, queued=queued, labels_since_training=since
    )
