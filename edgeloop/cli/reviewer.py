"""The simulated reviewer: a stand-in for a person at the labeling page, used by ``edgeloop demo``.

It is not a labeler and never pretends to be one: its name in the API's
``reviewed_labels.labeler`` is the token name it was given (``simulated-reviewer``
in the demo), and the demo's output says so. It goes through exactly the HTTP calls
the browser page makes: ``GET /api/labeling-queue/next``, ``GET /api/labeling-queue/{id}``,
``POST /api/labeling-queue/{id}/label`` (or ``/skip``).

Its policy, written down (``ReviewPolicy``):
    1. keep each proposed box whose confidence is at least ``keep_confidence``
       (0.45 by default); a box below it is rejected as a false positive;
    2. set every kept box's class to ``scene_class`` when given: on the campus
       video (``vtest.avi``) people only walk, so a ``Fall`` proposal is corrected to
       ``Normal``;
    3. a frame left with no box is labelled "no object".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewPolicy:
    """How the simulated reviewer answers a queue item (see the module docstring)."""

    keep_confidence: float = 0.45
    scene_class: str | None = "Normal"


@dataclass
class ReviewTally:
    """What the simulated reviewer did."""

    items: int = 0
    boxes_kept: int = 0
    boxes_rejected: int = 0
    classes_changed: int = 0
    no_object: int = 0
    label_ids: list[int] = field(default_factory=list)


def review_item(item: dict[str, Any], policy: ReviewPolicy) -> tuple[dict[str, Any], ReviewTally]:
    """Apply ``policy`` to one item from ``GET /api/labeling-queue/{id}``.

    Args:
        item: the API's item: ``proposed_boxes`` is a list of dicts with ``bbox_xyxy``
            (px of the original frame), ``class_name`` and ``confidence`` in [0, 1].

    Returns:
        The body for ``POST /api/labeling-queue/{id}/label`` and a one-item tally.
    """
    tally = ReviewTally(items=1)
    boxes: list[dict[str, Any]] = []
    for proposal in item.get("proposed_boxes", []):
        if float(proposal["confidence"]) < policy.keep_confidence:
            tally.boxes_rejected += 1
            continue
        class_name = proposal["class_name"]
        if policy.scene_class is not None and class_name != policy.scene_class:
            class_name = policy.scene_class
            tally.classes_changed += 1
        boxes.append({"bbox_xyxy": list(proposal["bbox_xyxy"]), "class_name": class_name})
        tally.boxes_kept += 1
    if not boxes:
        tally.no_object = 1
    return {"boxes": boxes, "no_object": not boxes}, tally


class SimulatedReviewer:
    """Labels queue items through the labeling API, as the browser page does.

    Args:
        api_url: the API's base URL, e.g. ``http://127.0.0.1:8000``.
        token: a bearer token with the ``labeler`` (or ``admin``) role.
        policy: the written-down review policy.
    """

    def __init__(self, api_url: str, token: str, policy: ReviewPolicy | None = None) -> None:
        self.policy = policy or ReviewPolicy()
        self._client = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SimulatedReviewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def review(self, max_items: int, *, camera_id: str | None = None) -> ReviewTally:
        """Label up to ``max_items`` items, highest priority first; stops when the queue is empty.

        Raises:
            httpx.HTTPStatusError: the API refused a call (the message carries its answer).
        """
        total = ReviewTally()
        params = {"camera_id": camera_id} if camera_id else {}
        while total.items < max_items:
            nxt = self._client.get("/api/labeling-queue/next", params=params)
            if nxt.status_code == 404:
                break
            nxt.raise_for_status()
            item_id = nxt.json()["item_id"]
            item = self._client.get(f"/api/labeling-queue/{item_id}")
            item.raise_for_status()
            body, tally = review_item(item.json(), self.policy)
            answer = self._client.post(f"/api/labeling-queue/{item_id}/label", json=body)
            answer.raise_for_status()
            total.items += 1
            total.boxes_kept += tally.boxes_kept
            total.boxes_rejected += tally.boxes_rejected
            total.classes_changed += tally.classes_changed
            total.no_object += tally.no_object
            label_id = answer.json().get("label_id")
            if label_id is not None:
                total.label_ids.append(int(label_id))
        logger.info(
            "simulated reviewer labelled %s items (%s boxes kept, %s rejected, %s classes changed)",
            total.items,
            total.boxes_kept,
            total.boxes_rejected,
            total.classes_changed,
        )
        return total
