"""The simulated reviewer: a stand-in for a person at the labeling page, used by ``edgeloop demo``.

It is not a labeler and never pretends to be one: its name in the API's
``reviewed_labels.labeler`` is the token name it was given, and the demo's output calls
it a simulation and names its source of truth. It goes through exactly the HTTP calls
the browser page makes: ``GET /api/labeling-queue/next``, ``GET /api/labeling-queue/{id}``,
the frame JPEG, ``POST /api/labeling-queue/{id}/label``.

Its source of truth is a **reference detector that knows more than production**, not
production's own output: by default the seed YOLOv8s run at 1280 px with test-time
augmentation (ultralytics ``augment=True``: flips and scales fused before NMS), boxes at
confidence >= 0.5. On ``vtest.avi`` it finds clearly more people per frame than
production at 640 px (measured for issue 6: about 6.9 vs 4 boxes above 0.5 on 8 frames),
at about 1.3 s a frame on 2 CPU cores.

Its policy, written down (``ReviewPolicy``), is what a careful person does with the
pre-labels on the page:
    1. a proposed box that matches a reference box (IoU >= ``match_iou``, 0.5) is kept as
       it is when it is already tight (IoU >= ``tight_iou``, 0.85) and otherwise redrawn
       on the reference box ("moved");
    2. a proposed box that matches no reference box is rejected (a false positive);
    3. a reference box no proposal matched is drawn in (a missed object);
    4. every box gets ``scene_class`` when given: on the campus video people only walk,
       so a ``Fall`` proposal is corrected to ``Normal``;
    5. a frame left with no box is labelled "no object".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

logger = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
"""(x1, y1, x2, y2) px of the original frame."""

ReferenceBoxes = Callable[[np.ndarray], list[tuple[BBox, str]]]
"""The reference detector: ``(H, W, 3) uint8 BGR`` frame -> ``[(bbox_xyxy, class_name)]``."""


@dataclass(frozen=True)
class ReviewPolicy:
    """How the simulated reviewer answers a queue item (see the module docstring)."""

    match_iou: float = 0.5
    tight_iou: float = 0.85
    scene_class: str | None = "Normal"


@dataclass
class ReviewTally:
    """What the simulated reviewer did, box by box."""

    items: int = 0
    boxes_kept: int = 0
    boxes_moved: int = 0
    boxes_rejected: int = 0
    boxes_added: int = 0
    classes_changed: int = 0
    no_object: int = 0
    label_ids: list[int] = field(default_factory=list)

    def add(self, other: ReviewTally) -> None:
        for name in (
            "items",
            "boxes_kept",
            "boxes_moved",
            "boxes_rejected",
            "boxes_added",
            "classes_changed",
            "no_object",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.label_ids.extend(other.label_ids)

    def __str__(self) -> str:
        return (
            f"{self.items} frames labelled: {self.boxes_kept} boxes accepted, "
            f"{self.boxes_moved} redrawn, {self.boxes_rejected} rejected, "
            f"{self.boxes_added} missed objects added, {self.classes_changed} classes "
            f"corrected, {self.no_object} no-object"
        )


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes (0 when either has no area)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def review_item(
    item: dict[str, Any], reference: Sequence[tuple[BBox, str]], policy: ReviewPolicy
) -> tuple[dict[str, Any], ReviewTally]:
    """Apply ``policy`` to one item from ``GET /api/labeling-queue/{id}``.

    Proposals and reference boxes are matched greedily, highest IoU first, one to one.

    Args:
        item: the API's item: ``proposed_boxes`` is a list of dicts with ``bbox_xyxy``
            (px of the original frame), ``class_name`` and ``confidence`` in [0, 1].
        reference: the reference detector's boxes on the frame, xyxy px, with classes.

    Returns:
        The body for ``POST /api/labeling-queue/{id}/label`` and a one-item tally.
    """
    tally = ReviewTally(items=1)
    proposals = [
        (tuple(p["bbox_xyxy"]), str(p["class_name"])) for p in item.get("proposed_boxes", [])
    ]
    pairs = sorted(
        (
            (iou(p_box, r_box), i, j)
            for i, (p_box, _) in enumerate(proposals)
            for j, (r_box, _) in enumerate(reference)
        ),
        reverse=True,
    )
    matched: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < policy.match_iou:
            break
        if i not in matched and j not in used:
            matched[i] = (j, overlap)
            used.add(j)

    def labelled(box: Sequence[float], proposed_class: str) -> dict[str, Any]:
        name = policy.scene_class or proposed_class
        if name != proposed_class:
            tally.classes_changed += 1
        return {"bbox_xyxy": [float(v) for v in box], "class_name": name}

    boxes: list[dict[str, Any]] = []
    for i, (p_box, p_class) in enumerate(proposals):
        if i not in matched:
            tally.boxes_rejected += 1
            continue
        j, overlap = matched[i]
        if overlap >= policy.tight_iou:
            tally.boxes_kept += 1
            boxes.append(labelled(p_box, p_class))
        else:
            tally.boxes_moved += 1
            boxes.append(labelled(reference[j][0], p_class))
    for j, (r_box, r_class) in enumerate(reference):
        if j not in used:
            tally.boxes_added += 1
            boxes.append(
                {
                    "bbox_xyxy": [float(v) for v in r_box],
                    "class_name": policy.scene_class or r_class,
                }
            )
    if not boxes:
        tally.no_object = 1
    return {"boxes": boxes, "no_object": not boxes}, tally


@dataclass(frozen=True)
class TtaReference:
    """The default source of truth: an ultralytics detector at a larger size with
    test-time augmentation (``augment=True``), boxes at ``conf`` or above.

    Args:
        weights: an ultralytics ``.pt`` (the demo: the seed ``data/seed/best.pt``).
        imgsz: inference size, px (1280: twice the agents' 640).
        conf: the lowest confidence kept as truth (0.5).
        device: the torch device (``edgeloop.devices.torch_device``).
    """

    weights: Path
    imgsz: int = 1280
    conf: float = 0.5
    device: str = "cpu"

    @property
    def name(self) -> str:
        return f"{self.weights.name} at {self.imgsz} px with test-time augmentation, conf >= {self.conf}"

    def detector(self) -> ReferenceBoxes:
        """Load the weights once; returns the per-frame function (on ``device``)."""
        from ultralytics import YOLO

        model: Any = YOLO(str(self.weights))  # ultralytics' own types are loose

        def boxes(image: np.ndarray) -> list[tuple[BBox, str]]:
            result: Any = model.predict(
                image,
                imgsz=self.imgsz,
                augment=True,
                conf=self.conf,
                device=self.device,
                verbose=False,
            )[0]
            return [
                ((float(x1), float(y1), float(x2), float(y2)), str(result.names[int(c)]))
                for (x1, y1, x2, y2), c in zip(
                    result.boxes.xyxy.tolist(), result.boxes.cls.tolist(), strict=True
                )
            ]

        return boxes


class SimulatedReviewer:
    """Labels queue items through the labeling API, as the browser page does.

    Args:
        api_url: the API's base URL, e.g. ``http://127.0.0.1:8000``.
        token: a bearer token with the ``labeler`` (or ``admin``) role.
        reference: the source of truth (``TtaReference(...).detector()``).
        policy: the written-down review policy.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        reference: ReferenceBoxes,
        policy: ReviewPolicy | None = None,
    ) -> None:
        self.policy = policy or ReviewPolicy()
        self.reference = reference
        self._client = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SimulatedReviewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frame(self, item: dict[str, Any]) -> np.ndarray:
        import cv2

        response = self._client.get(item["frame_url"])
        response.raise_for_status()
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"the JPEG of {item['frame_key']} does not decode")
        return image

    def review(self, max_items: int, *, camera_id: str | None = None) -> ReviewTally:
        """Label up to ``max_items`` items, highest priority first; stops when the queue is
        empty. Items without a frame JPEG are skipped (nothing to look at).

        Raises:
            httpx.HTTPStatusError: the API refused a call (the message carries its answer).
        """
        total = ReviewTally()
        params = {"camera_id": camera_id} if camera_id else {}
        without_jpeg: set[int] = set()
        while total.items < max_items:
            nxt = self._client.get("/api/labeling-queue/next", params=params)
            if nxt.status_code == 404:
                break
            nxt.raise_for_status()
            item = nxt.json()
            if not item.get("frame_url"):
                if item["item_id"] in without_jpeg:  # only JPEG-less items are left
                    break
                without_jpeg.add(item["item_id"])
                self._client.post(f"/api/labeling-queue/{item['item_id']}/skip").raise_for_status()
                continue
            body, tally = review_item(item, self.reference(self._frame(item)), self.policy)
            answer = self._client.post(f"/api/labeling-queue/{item['item_id']}/label", json=body)
            answer.raise_for_status()
            tally.label_ids.append(int(answer.json()["label_id"]))
            total.add(tally)
        logger.info("simulated reviewer: %s", total)
        return total
