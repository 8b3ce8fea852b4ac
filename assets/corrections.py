"""Correction-aware metrics: what the reviewers changed, and whether a model learnt it.

Reviewed labels are mostly production's own proposals accepted as they are, so plain
mAP on them favours production (it reproduces its own boxes). What labeling bought is in
the frames where the reviewer *changed* the proposal. Per held-out frame, the proposal
(the detections the agent logged, shown as pre-labels) is paired with the reviewed label,
one to one, greedily by IoU (``pair_boxes``), and each difference is a correction:

- **added box**: a reviewed box with no proposal at IoU >= ``MATCH_IOU``;
- **removed false positive**: a proposal with no reviewed box at IoU >= ``MATCH_IOU``;
- **class corrected**: paired at IoU >= ``MATCH_IOU``, with another class;
- **moved box**: paired, same class, ``MATCH_IOU`` <= IoU < ``MOVED_IOU``.

A frame without corrections was **accepted unchanged**. A model's predictions at the
deployment confidence are then scored (``score_corrections``):

- **corrections learned**: added, class and moved: the model's prediction paired with the
  reviewed box has its class, at IoU >= ``MATCH_IOU`` (added, class) or >= ``MOVED_IOU``
  (moved); removed: none of the model's predictions that is not paired with a reviewed box
  has the removed box's class at IoU >= ``MATCH_IOU`` with it.
- **box regressions**: proposed boxes the reviewer kept as they were, on any frame, that
  the model no longer reproduces (no same-class box at IoU >= ``MATCH_IOU``);
- **regressions**: accepted frames the model breaks: a reviewed box without a same-class
  prediction at IoU >= ``MATCH_IOU``, or a prediction without a reviewed box (one to one).

Production's proposals, scored as predictions, learn 0 corrections and break 0 frames by
construction: the pairing that defined each correction is the one that scores it.
Boxes are (x1, y1, x2, y2) px of the original frame, origin top-left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

import numpy as np

MATCH_IOU = 0.5
"""A box matches another at IoU >= 0.5: the PASCAL VOC criterion (Everingham et al. 2010,
"The PASCAL Visual Object Classes (VOC) Challenge", IJCV) and COCO's mAP50."""
MOVED_IOU = 0.85
"""Below this IoU a same-class pair was moved or resized by the reviewer (edgeloop's
choice): moving one side of a box inward by 15% of its width gives IoU 0.85, while an
accepted box differs only by rounding (IoU > 0.99)."""


class Box(NamedTuple):
    """A detection or a reviewed box: ``xyxy`` px of the original frame and its class."""

    xyxy: tuple[float, float, float, float]
    class_name: str


class Change(StrEnum):
    """The kinds of correction a reviewer makes to a proposal."""

    ADDED = "added box"
    REMOVED = "removed false positive"
    CLASS = "class corrected"
    MOVED = "moved box"


@dataclass(frozen=True)
class Correction:
    """One reviewer change: its kind, the reviewed box (index; None for a removed
    proposal) and the proposal (index; None for an added box)."""

    change: Change
    truth: int | None
    proposal: int | None


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """(len(a), len(b)) IoU of every pair of boxes, in [0, 1]."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    x = np.asarray([box.xyxy for box in a], dtype=float)[:, None, :]
    y = np.asarray([box.xyxy for box in b], dtype=float)[None, :, :]
    wh = np.clip(np.minimum(x[..., 2:], y[..., 2:]) - np.maximum(x[..., :2], y[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_x = (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    area_y = (y[..., 2] - y[..., 0]) * (y[..., 3] - y[..., 1])
    union = area_x + area_y - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass(frozen=True)
class Pairing:
    """One-to-one pairs of reviewed boxes (``truth``) and other boxes, each with its IoU."""

    pairs: dict[int, tuple[int, float]] = field(default_factory=dict)
    """truth index -> (other index, IoU)."""
    truth_count: int = 0
    other_count: int = 0

    def unpaired_truth(self) -> list[int]:
        return [i for i in range(self.truth_count) if i not in self.pairs]

    def unpaired_other(self) -> list[int]:
        paired = {j for j, _ in self.pairs.values()}
        return [j for j in range(self.other_count) if j not in paired]


def pair_boxes(truth: Sequence[Box], other: Sequence[Box], *, across_classes: bool) -> Pairing:
    """Pair boxes one to one at IoU >= ``MATCH_IOU``, greedily by IoU (highest first, ties
    by index): same-class pairs first, then (``across_classes``) the rest across classes."""
    iou = iou_matrix(truth, other)
    pairs: dict[int, tuple[int, float]] = {}
    stages = [True, False] if across_classes else [True]
    for same_class in stages:
        used = {j for j, _ in pairs.values()}
        candidates = [
            (-iou[i, j], i, j)
            for i in range(len(truth))
            for j in range(len(other))
            if iou[i, j] >= MATCH_IOU
            and (truth[i].class_name == other[j].class_name or not same_class)
        ]
        for _, i, j in sorted(candidates):
            if i not in pairs and j not in used:
                pairs[i] = (j, float(iou[i, j]))
                used.add(j)
    return Pairing(pairs, len(truth), len(other))


def reviewer_changes(proposal: Sequence[Box], truth: Sequence[Box]) -> list[Correction]:
    """What the reviewer changed from ``proposal`` to ``truth`` (module docstring); empty
    when the proposal was accepted unchanged."""
    pairing = pair_boxes(truth, proposal, across_classes=True)
    changes = [Correction(Change.ADDED, i, None) for i in pairing.unpaired_truth()]
    for i, (j, iou) in sorted(pairing.pairs.items()):
        if truth[i].class_name != proposal[j].class_name:
            changes.append(Correction(Change.CLASS, i, j))
        elif iou < MOVED_IOU:
            changes.append(Correction(Change.MOVED, i, j))
    changes.extend(Correction(Change.REMOVED, None, j) for j in pairing.unpaired_other())
    return changes


def learned(
    correction: Correction,
    proposal: Sequence[Box],
    truth: Sequence[Box],
    predicted: Sequence[Box],
) -> bool:
    """Whether ``predicted`` (a model's boxes at the deployment confidence) gets one
    correction right (module docstring)."""
    pairing = pair_boxes(truth, predicted, across_classes=True)
    if correction.change is Change.REMOVED:
        assert correction.proposal is not None
        removed = proposal[correction.proposal]
        loose = [predicted[j] for j in pairing.unpaired_other()]
        ious = iou_matrix([removed], loose)[0]
        return not any(
            box.class_name == removed.class_name and iou >= MATCH_IOU
            for box, iou in zip(loose, ious, strict=True)
        )
    assert correction.truth is not None
    paired = pairing.pairs.get(correction.truth)
    if paired is None or predicted[paired[0]].class_name != truth[correction.truth].class_name:
        return False
    bound = MOVED_IOU if correction.change is Change.MOVED else MATCH_IOU
    return paired[1] >= bound


def breaks(truth: Sequence[Box], predicted: Sequence[Box]) -> bool:
    """Whether ``predicted`` misses a reviewed box or adds a false positive (same class,
    one to one, IoU >= ``MATCH_IOU``): a regression on an accepted frame."""
    pairing = pair_boxes(truth, predicted, across_classes=False)
    return bool(pairing.unpaired_truth() or pairing.unpaired_other())


@dataclass(frozen=True)
class Share:
    """``count`` of ``n``: a share with its evidence (``value`` None when n = 0)."""

    count: int
    n: int

    @property
    def value(self) -> float | None:
        return self.count / self.n if self.n else None

    def label(self) -> str:
        """e.g. ``0.30 (3/10)``, or ``n/a (n=0)``."""
        return f"{self.count / self.n:.2f} ({self.count}/{self.n})" if self.n else "n/a (n=0)"


@dataclass(frozen=True)
class ReviewedFrame:
    """A held-out frame with production's proposal and the reviewed label (boxes in px)."""

    frame_key: str
    proposal: tuple[Box, ...]
    truth: tuple[Box, ...]


@dataclass(frozen=True)
class CorrectionScore:
    """One model's corrections learned and regressions on the held-out frames.

    Attributes:
        corrections / learned: per ``Change`` value, the reviewer's corrections and those
            the model gets right.
        accepted: frames accepted unchanged; broken: those the model breaks.
        frames: held-out frames with a stored proposal (the ones scored).
        accepted_boxes: proposed boxes the reviewer kept as they were (same class, IoU >=
            ``MOVED_IOU``), on any frame; broken_boxes: those the model no longer
            reproduces (no same-class box at IoU >= ``MATCH_IOU``). Reviewers who fix
            something on nearly every frame leave few accepted frames; the accepted boxes
            still say what the candidate must not lose.
    """

    corrections: dict[str, int]
    learned: dict[str, int]
    accepted: int
    broken: int
    frames: int
    accepted_boxes: int = 0
    broken_boxes: int = 0

    @property
    def corrections_learned(self) -> Share:
        return Share(sum(self.learned.values()), sum(self.corrections.values()))

    @property
    def regressions(self) -> Share:
        return Share(self.broken, self.accepted)

    @property
    def box_regressions(self) -> Share:
        """Accepted pre-labels the model breaks, of how many."""
        return Share(self.broken_boxes, self.accepted_boxes)

    def by_change(self) -> dict[str, Share]:
        """Corrections learned per kind of change."""
        return {c: Share(self.learned[c], self.corrections[c]) for c in self.corrections}

    def as_dict(self) -> dict[str, object]:
        learned, regressions = self.corrections_learned, self.regressions
        return {
            "frames": self.frames,
            "corrections_learned": learned.value,
            "corrections": learned.n,
            "regressions": regressions.value,
            "accepted_frames": regressions.n,
            "broken_frames": self.broken,
            "box_regressions": self.box_regressions.value,
            "accepted_boxes": self.accepted_boxes,
            "broken_boxes": self.broken_boxes,
            "by_change": {c: {"learned": s.count, "n": s.n} for c, s in self.by_change().items()},
        }


def score_corrections(
    frames: Sequence[ReviewedFrame], predicted: Mapping[str, Sequence[Box]]
) -> CorrectionScore:
    """Corrections learned and regressions of a model's ``predicted`` boxes (frame_key ->
    boxes at the deployment confidence) on ``frames``.

    Raises:
        KeyError: a frame has no entry in ``predicted``.
    """
    corrections = dict.fromkeys((c.value for c in Change), 0)
    got = dict.fromkeys((c.value for c in Change), 0)
    accepted = broken = accepted_boxes = broken_boxes = 0
    for frame in frames:
        boxes = predicted[frame.frame_key]
        changes = reviewer_changes(frame.proposal, frame.truth)
        if not changes:
            accepted += 1
            broken += breaks(frame.truth, boxes)
        changed = {c.truth for c in changes if c.truth is not None}
        kept = [i for i in range(len(frame.truth)) if i not in changed]
        reproduced = pair_boxes(frame.truth, boxes, across_classes=False).pairs
        accepted_boxes += len(kept)
        broken_boxes += sum(i not in reproduced for i in kept)
        for correction in changes:
            corrections[correction.change.value] += 1
            got[correction.change.value] += learned(correction, frame.proposal, frame.truth, boxes)
    return CorrectionScore(
        corrections, got, accepted, broken, len(frames), accepted_boxes, broken_boxes
    )


def label_boxes(
    label_path: Path, *, width: int, height: int, class_names: Sequence[str]
) -> list[Box]:
    """The boxes of a YOLO label file (``class cx cy w h``, normalised to [0, 1]) in px of
    the original ``width`` x ``height`` image; a missing or empty file has none.

    Raises:
        ValueError: a line is not 5 numbers, or names a class id outside ``class_names``.
    """
    boxes: list[Box] = []
    text = label_path.read_text() if label_path.is_file() else ""
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"{label_path}:{number}: expected 'class cx cy w h', got {line!r}")
        class_id = int(fields[0])
        if not 0 <= class_id < len(class_names):
            raise ValueError(
                f"{label_path}:{number}: class id {class_id} is not one of {list(class_names)}"
            )
        cx, cy, w, h = (float(v) for v in fields[1:])
        xyxy = (
            (cx - w / 2) * width,
            (cy - h / 2) * height,
            (cx + w / 2) * width,
            (cy + h / 2) * height,
        )
        boxes.append(Box(xyxy, class_names[class_id]))
    return boxes
