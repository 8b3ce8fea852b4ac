"""``/api/labeling-queue``: frames with uncertain detections, labeled by people.

Order: pending items by priority (max uncertainty score of the frame's detections),
highest first. A skipped item goes to the back: it comes back from ``/next`` only when
no item is pending (least-skipped first, then the one skipped longest ago). Labeling an
already-labeled item stores a new label that replaces the earlier one
(``edgeloop.store.latest_labels`` picks the newest).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from api import crud
from api.deps import CurrentPrincipal, LabelerPrincipal, RegistryDep, StoreDep
from api.model_registry import ModelRegistry
from api.models import (
    LabelCreate,
    LabelPublic,
    QueueItemDetailPublic,
    QueueItemPublic,
    QueueItemsPublic,
    QueueStatus,
    StoredLabelBox,
)
from edgeloop.registry import PRODUCTION, ModelNotFoundError
from edgeloop.store import labels_since_last_training

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/labeling-queue", tags=["labeling-queue"])


def _production_class_names(registry: ModelRegistry) -> list[str] | None:
    """The production model's class names, or None when none is registered or MLflow fails."""
    try:
        return registry.files(PRODUCTION).class_names
    except ModelNotFoundError:
        return None
    except Exception:
        logger.exception("could not read the production model's class names from MLflow")
        return None


def _class_names(con: duckdb.DuckDBPyConnection, production: list[str] | None) -> list[str]:
    """The production model's class names, else those seen in the detections."""
    return production if production is not None else crud.detection_class_names(con=con)


def _not_found(item_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no labeling-queue item {item_id}")


def _label_public(row: dict[str, Any], labels_since_training: int) -> LabelPublic:
    return LabelPublic(
        label_id=row["label_id"],
        item_id=row["item_id"],
        frame_key=row["frame_key"],
        camera_id=row["camera_id"],
        boxes=[StoredLabelBox(**b) for b in row["boxes"]],
        box_count=row["box_count"],
        labeler=row["labeler"],
        labeled_at=row["labeled_at"],
        labels_since_training=labels_since_training,
    )


def _detail(
    con: duckdb.DuckDBPyConnection, item: QueueItemPublic, class_names: list[str]
) -> QueueItemDetailPublic:
    frame = crud.get_frame(con=con, frame_key=item.frame_key)
    if frame is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"queue item {item.item_id} points at frame {item.frame_key}, which is not stored",
        )
    labels = labels_since_last_training(con)
    label = crud.latest_label(con=con, frame_key=item.frame_key)
    return QueueItemDetailPublic(
        **item.model_dump(),
        frame_index=frame["frame_index"],
        captured_at=frame["captured_at"],
        width=frame["width"],
        height=frame["height"],
        frame_url=crud.frame_url(item.frame_key) if frame["jpeg_path"] else None,
        proposed_boxes=crud.frame_detections(con=con, frame_key=item.frame_key),
        class_names=class_names,
        latest_label=_label_public(label, labels) if label else None,
        labels_since_training=labels,
    )


@router.get("", response_model=QueueItemsPublic)
def read_queue(
    _principal: CurrentPrincipal,
    store: StoreDep,
    camera_id: str | None = None,
    status_: Annotated[QueueStatus, Query(alias="status")] = "pending",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> QueueItemsPublic:
    """Queue items with a status (``pending`` by default), highest priority first."""
    with store.connect() as con:
        data, count = crud.list_queue_items(
            con=con, status=status_, camera_id=camera_id, limit=limit, offset=offset
        )
    return QueueItemsPublic(data=data, count=count)


@router.get(
    "/next",
    response_model=QueueItemDetailPublic,
    responses={404: {"description": "Nothing left to label"}},
)
def read_next_item(
    _principal: CurrentPrincipal,
    store: StoreDep,
    registry: RegistryDep,
    camera_id: str | None = None,
) -> QueueItemDetailPublic:
    """The item to label next, with its frame, proposed boxes and class names."""
    names = _production_class_names(registry)
    with store.connect() as con:
        item = crud.next_queue_item(con=con, camera_id=camera_id)
        if item is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail="the labeling queue is empty"
                + (f" for camera {camera_id}" if camera_id else ""),
            )
        return _detail(con, item, _class_names(con, names))


@router.get("/{item_id}", response_model=QueueItemDetailPublic)
def read_item(
    item_id: int, _principal: CurrentPrincipal, store: StoreDep, registry: RegistryDep
) -> QueueItemDetailPublic:
    """One item with its frame URL, size (px), proposed boxes (xyxy px) and class names."""
    names = _production_class_names(registry)
    with store.connect() as con:
        item = crud.get_queue_item(con=con, item_id=item_id)
        if item is None:
            raise _not_found(item_id)
        return _detail(con, item, _class_names(con, names))


def _validate_boxes(
    label: LabelCreate, *, width: int, height: int, class_names: list[str]
) -> list[dict[str, Any]]:
    """Boxes checked against the frame (px) and the class names; 422 listing every problem."""
    errors: list[dict[str, Any]] = []
    boxes: list[dict[str, Any]] = []
    for i, box in enumerate(label.boxes):
        x1, y1, x2, y2 = box.bbox_xyxy
        loc = ("body", "boxes", i)
        if x2 > width or y2 > height:
            errors.append(
                {
                    "type": "value_error",
                    "loc": (*loc, "bbox_xyxy"),
                    "msg": f"box {list(box.bbox_xyxy)} lies outside the {width}x{height} px frame",
                }
            )
        elif x2 - x1 < 1 or y2 - y1 < 1:
            errors.append(
                {
                    "type": "value_error",
                    "loc": (*loc, "bbox_xyxy"),
                    "msg": f"box {list(box.bbox_xyxy)} is narrower or shorter than 1 px",
                }
            )
        if box.class_name not in class_names:
            errors.append(
                {
                    "type": "value_error",
                    "loc": (*loc, "class_name"),
                    "msg": f"unknown class {box.class_name!r}; known classes: {class_names}",
                }
            )
        else:
            boxes.append(
                {
                    "bbox_xyxy": [x1, y1, x2, y2],
                    "class_id": class_names.index(box.class_name),
                    "class_name": box.class_name,
                }
            )
    if errors:
        raise RequestValidationError(errors)
    return boxes


@router.post(
    "/{item_id}/label",
    response_model=LabelPublic,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No such item"}, 422: {"description": "Invalid boxes"}},
)
def label_item(
    item_id: int,
    label: LabelCreate,
    principal: LabelerPrincipal,
    store: StoreDep,
    registry: RegistryDep,
) -> LabelPublic:
    """Store the reviewed boxes of an item (role ``labeler``) and mark it ``labeled``.

    Boxes are xyxy px of the original frame, inside it, with a class of the production
    model; ``no_object: true`` with no boxes says the frame holds nothing. The labeler
    recorded is the token's name.
    """
    names = _production_class_names(registry)
    with store.connect() as con:
        item = crud.get_queue_item(con=con, item_id=item_id)
        if item is None:
            raise _not_found(item_id)
        frame = crud.get_frame(con=con, frame_key=item.frame_key)
        if frame is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"frame {item.frame_key} is not stored"
            )
        boxes = _validate_boxes(
            label,
            width=frame["width"],
            height=frame["height"],
            class_names=_class_names(con, names),
        )
        label_id = crud.create_label(
            con=con,
            item=item,
            boxes=boxes,
            labeler=principal.name,
            labeled_at=datetime.now(UTC),
        )
        stored = crud.get_label(con=con, label_id=label_id)
        labels = labels_since_last_training(con)
    assert stored is not None
    logger.info(
        "item %s (%s) labeled by %s: %s boxes", item_id, item.frame_key, principal.name, len(boxes)
    )
    return _label_public(stored, labels)


@router.post(
    "/{item_id}/skip",
    response_model=QueueItemPublic,
    responses={404: {"description": "No such item"}, 409: {"description": "Already labeled"}},
)
def skip_item(item_id: int, _principal: LabelerPrincipal, store: StoreDep) -> QueueItemPublic:
    """Skip an item (role ``labeler``): it goes behind every pending item (see module doc)."""
    with store.connect() as con:
        item = crud.get_queue_item(con=con, item_id=item_id)
        if item is None:
            raise _not_found(item_id)
        if item.status == "labeled":
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"item {item_id} is already labeled; label it again to change its label",
            )
        crud.skip_queue_item(con=con, item_id=item_id, now=datetime.now(UTC))
        skipped = crud.get_queue_item(con=con, item_id=item_id)
    assert skipped is not None
    return skipped
