"""``/api/labeling-queue``: frames with uncertain detections, labeled by people.

Order: pending items by priority (max uncertainty score of the frame's detections),
highest first. A skipped item goes to the back: it comes back from ``/next`` only when
no item is pending (least-skipped first, then the one skipped longest ago).

One item, one labeler: ``/next`` claims the item it returns for the caller for
``EDGELOOP_API_CLAIM_LEASE_S`` (300 s); until the lease expires nobody else gets it,
labels it or skips it (409). Labeling or skipping releases the claim. A second label on a
labeled item is a 409 unless the body says ``"edit": true``, which records the new label
as replacing the old one (``edgeloop.store.labels.create``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import BackgroundTasks, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from api import crud, deps
from api import models as schemas
from api.deps import secured_router
from api.model_registry import ModelRegistry
from api.retrain_push import PushLauncherDep, RetrainPushDep, push_due
from api.routes.classes import site_class_names
from edgeloop.annotations import InvalidBoxesError, ReviewedBox, review_boxes
from edgeloop.store import Connection, classes, labels, queue
from edgeloop.store.queue import ClaimConflictError
from edgeloop.wire import MAX_INT64

logger = logging.getLogger(__name__)

router = secured_router("/api/labeling-queue", tag="labeling-queue")


def _class_names(con: Connection, registry: ModelRegistry) -> list[str]:
    """The site's active classes (``api.routes.classes.site_class_names``: seeded from the
    production model's names on first use); a label naming any other class is a 422."""
    return site_class_names(con, registry)


def _not_found(item_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no labeling-queue item {item_id}")


def _conflict(exc: ClaimConflictError) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))


_CONFLICT_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "Another labeler holds the item's claim, or it is labeled already"}
}


def _label_public(row: dict[str, Any], labels_since_training: int) -> schemas.LabelPublic:
    return schemas.LabelPublic(**row, labels_since_training=labels_since_training)


def _current_names(
    con: Connection, boxes: list[schemas.ProposedBoxPublic], class_names: list[str]
) -> list[schemas.ProposedBoxPublic]:
    """Pre-labels under the site's current class names: the model that drew them may use a
    name since renamed or merged (``edgeloop.store.classes.name_map``), which the labeler
    could not send back unchanged. A box of a retired class keeps its name: the label route
    refuses it until the labeler changes or rejects it."""
    current = classes.name_map(con=con)
    renamed = []
    for box in boxes:
        name = current.get(box.class_name) or box.class_name
        class_id = class_names.index(name) if name in class_names else box.class_id
        renamed.append(box.model_copy(update={"class_name": name, "class_id": class_id}))
    return renamed


def _detail(
    con: Connection, item: schemas.QueueItemPublic, class_names: list[str]
) -> schemas.QueueItemDetailPublic:
    frame = crud.get_frame(con=con, frame_key=item.frame_key)
    if frame is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"queue item {item.item_id} points at frame {item.frame_key}, which is not stored",
        )
    since = labels.since_last_training(con=con)
    label = labels.latest_for_frame(con=con, frame_key=item.frame_key)
    return schemas.QueueItemDetailPublic(
        **item.model_dump(),
        frame_index=frame["frame_index"],
        captured_at=frame["captured_at"],
        width=frame["width"],
        height=frame["height"],
        frame_url=crud.frame_url(item.frame_key) if frame["jpeg_path"] else None,
        proposed_boxes=_current_names(
            con, crud.frame_detections(con=con, frame_key=item.frame_key), class_names
        ),
        class_names=class_names,
        latest_label=_label_public(label, since) if label else None,
        labels_since_training=since,
    )


@router.get("", response_model=schemas.QueueItemsPublic)
def read_queue(
    _principal: deps.CurrentPrincipal,
    store: deps.StoreDep,
    camera_id: deps.CameraQuery = None,
    status_: Annotated[schemas.QueueStatus, Query(alias="status")] = "pending",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
) -> schemas.QueueItemsPublic:
    """Queue items with a status (``pending`` by default), highest priority first."""
    with store.connect() as con:
        data, count = crud.list_queue_items(
            con=con, status=status_, camera_id=camera_id, limit=limit, offset=offset
        )
    return schemas.QueueItemsPublic(data=data, count=count)


@router.get(
    "/next",
    response_model=schemas.QueueItemDetailPublic,
    responses={404: {"description": "Nothing left to label"}},
)
def read_next_item(
    principal: deps.CurrentPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
    settings: deps.SettingsDep,
    camera_id: deps.CameraQuery = None,
    exclude: Annotated[
        list[Annotated[int, Query(ge=1, le=MAX_INT64)]],
        Query(
            max_length=20,
            description="Item ids to pass over (the page's current item, when it prefetches).",
        ),
    ] = [],  # noqa: B006 (FastAPI copies query defaults)
) -> schemas.QueueItemDetailPublic:
    """The item to label next, claimed for the caller (see module doc), with its frame,
    proposed boxes (xyxy px) and class names."""
    with store.connect() as con:
        item = crud.claim_next_queue_item(
            con=con,
            camera_id=camera_id,
            labeler=principal.name,
            lease_s=settings.claim_lease_s,
            exclude=exclude,
        )
        if item is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail="the labeling queue is empty"
                + (f" for camera {camera_id}" if camera_id else ""),
            )
        return _detail(con, item, _class_names(con, registry))


_NOTHING_LABELED_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "The caller has labeled nothing (before `before`)"}
}


@router.get(
    "/mine/previous", response_model=schemas.QueueItemDetailPublic, responses=_NOTHING_LABELED_404
)
def read_my_previous_item(
    principal: deps.LabelerPrincipal,
    registry: deps.RegistryDep,
    store: deps.StoreDep,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_INT64,
            description="A label id from an earlier answer: the item labeled before that one.",
        ),
    ] = None,
) -> schemas.QueueItemDetailPublic:
    """The item the caller (role ``labeler``) labeled most recently, or the one before
    ``before``, with its current label (``latest_label``): the page re-opens it and sends
    the correction with ``"edit": true``. ``latest_label.label_id`` is the cursor for the
    item before it."""
    with store.connect() as con:
        mine = labels.previous_of_labeler(con=con, labeler=principal.name, before_label_id=before)
        item = crud.get_queue_item(con=con, item_id=mine["item_id"]) if mine else None
        if item is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"{principal.name} has labeled no item"
                + (f" before label {before}" if before else ""),
            )
        return _detail(con, item, _class_names(con, registry))


@router.get("/{item_id}", response_model=schemas.QueueItemDetailPublic)
def read_item(
    item_id: deps.ItemId,
    _principal: deps.CurrentPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
) -> schemas.QueueItemDetailPublic:
    """One item with its frame URL, size (px), proposed boxes (xyxy px) and class names."""
    with store.connect() as con:
        item = crud.get_queue_item(con=con, item_id=item_id)
        if item is None:
            raise _not_found(item_id)
        return _detail(con, item, _class_names(con, registry))


@router.get(
    "/{item_id}/previous-label",
    response_model=schemas.LabelPublic,
    responses={404: {"description": "No such item, or no earlier frame of its camera is labeled"}},
)
def read_previous_frame_label(
    item_id: deps.ItemId, _principal: deps.CurrentPrincipal, store: deps.StoreDep
) -> schemas.LabelPublic:
    """The current label of the latest frame of the item's camera captured before the
    item's frame, by anyone: on a fixed camera, what this frame most likely holds (the
    page's "copy the previous frame's boxes", xyxy px of that frame)."""
    with store.connect() as con:
        item = crud.get_queue_item(con=con, item_id=item_id)
        frame = crud.get_frame(con=con, frame_key=item.frame_key) if item else None
        if item is None or frame is None:
            raise _not_found(item_id)
        label = labels.previous_on_camera(
            con=con, camera_id=item.camera_id, captured_before=frame["captured_at"]
        )
        if label is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"no frame of camera {item.camera_id} before this one is labeled",
            )
        return _label_public(label, labels.since_last_training(con=con))


def _review(
    label: schemas.LabelCreate, *, width: int, height: int, class_names: list[str]
) -> list[ReviewedBox]:
    """The label's boxes checked once against the frame (px) and the class names; a 422
    listing every refused box otherwise."""
    try:
        return review_boxes(
            [(box.bbox_xyxy, box.class_name) for box in label.boxes],
            width=width,
            height=height,
            class_names=class_names,
        )
    except InvalidBoxesError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "boxes", p.index, p.field),
                    "msg": p.message,
                }
                for p in exc.problems
            ]
        ) from None


@router.post(
    "/{item_id}/label",
    response_model=schemas.LabelPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No such item"},
        422: {"description": "Invalid boxes"},
        **_CONFLICT_409,
    },
)
def label_item(
    item_id: deps.ItemId,
    label: schemas.LabelCreate,
    principal: deps.LabelerPrincipal,
    store: deps.StoreDep,
    registry: deps.RegistryDep,
    settings: deps.SettingsDep,
    background_tasks: BackgroundTasks,
    retrain_push: RetrainPushDep,
    launcher: PushLauncherDep,
) -> schemas.LabelPublic:
    """Store the reviewed boxes of an item (role ``labeler``) and mark it ``labeled``.

    Boxes are xyxy px of the original frame, inside it, with a class of the production
    model; ``no_object: true`` with no boxes says the frame holds nothing. The labeler
    recorded is the token's name. 409 when another labeler holds the item's claim, or the
    item is labeled and ``edit`` is not true. A label that brings the labels since
    training to the threshold asks Dagster for the retrain run after the response
    (``api/retrain_push.py``).
    """
    with store.connect() as con:
        item = crud.get_queue_item(con=con, item_id=item_id)
        if item is None:
            raise _not_found(item_id)
        frame = crud.get_frame(con=con, frame_key=item.frame_key)
        if frame is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"frame {item.frame_key} is not stored"
            )
        boxes = _review(
            label,
            width=frame["width"],
            height=frame["height"],
            class_names=_class_names(con, registry),
        )
        try:
            label_id = labels.create(
                con=con,
                item_id=item.item_id,
                frame_key=item.frame_key,
                camera_id=item.camera_id,
                boxes=boxes,
                labeler=principal.name,
                labeled_at=datetime.now(UTC),
                edit=label.edit,
            )
        except ClaimConflictError as exc:
            raise _conflict(exc) from None
        except LookupError:
            raise _not_found(item_id) from None
        stored = labels.get(con=con, label_id=label_id)
        since = labels.since_last_training(con=con)
    assert stored is not None
    logger.info(
        "item %s (%s) labeled by %s: %s boxes", item_id, item.frame_key, principal.name, len(boxes)
    )
    if push_due(since, settings):
        background_tasks.add_task(retrain_push.request, launcher)
    return _label_public(stored, since)


@router.post(
    "/{item_id}/skip",
    response_model=schemas.QueueItemPublic,
    responses={404: {"description": "No such item"}, **_CONFLICT_409},
)
def skip_item(
    item_id: deps.ItemId, principal: deps.LabelerPrincipal, store: deps.StoreDep
) -> schemas.QueueItemPublic:
    """Skip an item (role ``labeler``) and release its claim: it goes behind every pending
    item (see module doc). 409 when it is labeled or claimed by another labeler."""
    with store.connect() as con:
        try:
            queue.skip_item(con=con, item_id=item_id, labeler=principal.name, now=datetime.now(UTC))
        except LookupError:
            raise _not_found(item_id) from None
        except ClaimConflictError as exc:
            raise _conflict(exc) from None
        skipped = crud.get_queue_item(con=con, item_id=item_id)
    assert skipped is not None
    return skipped
