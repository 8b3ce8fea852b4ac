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
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import BackgroundTasks, HTTPException, Query, status

from api import crud, deps
from api import review_models as schemas
from api.retrain_push import PushLauncherDep, RetrainPushDep, push_due
from api.routes.labeling_queue import _class_names  # the one source of the class list
from edgeloop.annotations import InvalidBoxesError, review_boxes
from edgeloop.store import Connection, labels, queue
from edgeloop.store.queue import ClaimConflictError

logger = logging.getLogger(__name__)

router = deps.secured_router("/api/review", tag="review")


@router.get("/grid", response_model=schemas.GridPublic)
def read_grid(
    principal: deps.LabelerPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
    class_name: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this class.")
    ] = None,
    camera_id: deps.CameraQuery = None,
    min_confidence: Annotated[
        float, Query(ge=0.0, le=1.0, description="Only detections at least this confident.")
    ] = 0.0,
    limit: Annotated[int, Query(ge=1, le=200, description="Crops on the page.")] = 48,
) -> schemas.GridPublic:
    """A page of crops to review (role ``labeler``): detections of unlabeled frames with a
    JPEG, not claimed by another labeler, least confident first (see module doc)."""
    with store.connect() as con:
        rows = labels.review_candidates(
            con=con,
            class_name=class_name,
            camera_id=camera_id,
            min_confidence=min_confidence,
            labeler=principal.name,
            now=datetime.now(UTC),
            limit=limit,
        )
        class_names = _class_names(con, registry)
    crops = [
        schemas.GridCropPublic(
            **{k: r[k] for k in ("detection_id", "frame_key", "camera_id", "width", "height")},
            frame_url=crud.frame_url(r["frame_key"]),
            bbox_xyxy=(r["x1"], r["y1"], r["x2"], r["y2"]),
            class_name=r["class_name"],
            confidence=r["confidence"],
        )
        for r in rows
    ]
    return schemas.GridPublic(crops=crops, class_names=class_names)


def _unprocessable(problems: list[str]) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="; ".join(problems))


def _frame_boxes(
    con: Connection, frame_key: str, reviews: dict[str, schemas.GridReviewBox]
) -> tuple[dict[str, Any] | None, list[tuple[tuple[float, float, float, float], str]], list[str]]:
    """The frame row, its boxes after the verdicts (xyxy px clamped to the frame, class
    name) and what in ``reviews`` does not match the frame's detections."""
    frame = crud.get_frame(con=con, frame_key=frame_key)
    if frame is None:
        return None, [], [f"frame {frame_key!r} is not stored"]
    detections = {d.detection_id: d for d in crud.frame_detections(con=con, frame_key=frame_key)}
    problems = [
        f"detection {d!r} is not a detection of frame {frame_key!r}"
        for d in reviews
        if d not in detections
    ]
    boxes = []
    for detection_id, detection in detections.items():
        review = reviews.get(detection_id)
        if review is not None and review.verdict == "wrong":
            continue
        x1, y1, x2, y2 = detection.bbox_xyxy
        w, h = frame["width"], frame["height"]
        clamped = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
        name = review.class_name if review is not None and review.class_name else None
        boxes.append((clamped, name or detection.class_name))
    return frame, boxes, problems


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
    """Store the verdicts of a grid page (role ``labeler``) as one reviewed label per frame
    (see module doc). 422, storing nothing, when a frame or detection is unknown or a
    wrong-class crop names a class that is not a class of the site."""
    by_frame: dict[str, dict[str, schemas.GridReviewBox]] = defaultdict(dict)
    for review in body.reviews:
        by_frame[review.frame_key][review.detection_id] = review
    now = datetime.now(UTC)
    labeled: list[schemas.GridLabelPublic] = []
    refused: list[schemas.GridRefusedPublic] = []
    with store.connect() as con:
        class_names = _class_names(con, registry)
        problems = [
            f"detection {r.detection_id!r}: unknown class {r.class_name!r}; known: {class_names}"
            for r in body.reviews
            if r.class_name is not None and r.class_name not in class_names
        ]
        planned = []
        for frame_key, reviews in by_frame.items():
            frame, boxes, wrong = _frame_boxes(con, frame_key, reviews)
            problems += wrong
            planned.append((frame, boxes))
        if problems:
            raise _unprocessable(problems)
        for frame, boxes in planned:
            assert frame is not None
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
        "grid review by %s: %s frames labeled, %s refused",
        principal.name,
        len(labeled),
        len(refused),
    )
    if labeled and push_due(since, settings):
        background_tasks.add_task(retrain_push.request, launcher)
    return schemas.GridReviewPublic(labeled=labeled, refused=refused, labels_since_training=since)
