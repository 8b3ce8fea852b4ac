"""Two model versions' detections on the same images, compared per image.

A plain, honest comparison, with no ground truth: per image, how many boxes each version
found, their mean confidence, and how many of them agree: boxes of the same class whose
IoU is at least ``MATCH_IOU`` (0.5, the PASCAL VOC / mAP50 threshold), matched greedily
in descending confidence order, each box matched at most once (the rule COCO's evaluation
uses to match detections to ground truth, here with version A's boxes in its place).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MATCH_IOU = 0.5


@dataclass(frozen=True)
class ImageComparison:
    """One image under versions A and B.

    Attributes:
        image_index: the image's index in its batch.
        count_a, count_b: detections of each version.
        matched: pairs of same-class boxes with IoU >= ``MATCH_IOU`` (each box in at most one).
        mean_confidence_a, mean_confidence_b: over each version's detections; None when it
            found none.
        mean_iou: mean IoU of the matched pairs; None when none matched.
    """

    image_index: int
    count_a: int
    count_b: int
    matched: int
    mean_confidence_a: float | None
    mean_confidence_b: float | None
    mean_iou: float | None

    @property
    def only_a(self) -> int:
        """Boxes of A that B did not find."""
        return self.count_a - self.matched

    @property
    def only_b(self) -> int:
        """Boxes of B that A did not find."""
        return self.count_b - self.matched


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (xyxy px), in [0, 1]; 0 for empty boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> list[float]:
    """The IoUs of the greedily matched pairs of ``a`` and ``b`` (detections with
    ``class_id``, ``confidence``, ``x1..y2``): A's boxes in descending confidence, each
    taking the unmatched same-class box of B with the highest IoU at least ``MATCH_IOU``."""
    free = list(range(len(b)))
    ious = []
    for det in sorted(a, key=lambda d: -float(d["confidence"])):
        box = _box(det)
        best, best_iou = None, MATCH_IOU
        for j in free:
            if b[j]["class_id"] != det["class_id"]:
                continue
            value = iou(box, _box(b[j]))
            if value >= best_iou:
                best, best_iou = j, value
        if best is not None:
            free.remove(best)
            ious.append(best_iou)
    return ious


def _box(det: Mapping[str, Any]) -> tuple[float, float, float, float]:
    return (float(det["x1"]), float(det["y1"]), float(det["x2"]), float(det["y2"]))


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def compare(
    image_indexes: Iterable[int],
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
) -> list[ImageComparison]:
    """Per image of ``image_indexes``, versions A's and B's detections (rows with
    ``image_index``, ``class_id``, ``confidence``, ``x1..y2`` px) compared."""
    by_image_a: dict[int, list[Mapping[str, Any]]] = {}
    by_image_b: dict[int, list[Mapping[str, Any]]] = {}
    for det in a:
        by_image_a.setdefault(int(det["image_index"]), []).append(det)
    for det in b:
        by_image_b.setdefault(int(det["image_index"]), []).append(det)
    rows = []
    for index in image_indexes:
        da, db = by_image_a.get(index, []), by_image_b.get(index, [])
        ious = match(da, db)
        rows.append(
            ImageComparison(
                image_index=index,
                count_a=len(da),
                count_b=len(db),
                matched=len(ious),
                mean_confidence_a=_mean(float(d["confidence"]) for d in da),
                mean_confidence_b=_mean(float(d["confidence"]) for d in db),
                mean_iou=_mean(ious),
            )
        )
    return rows
