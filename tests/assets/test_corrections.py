"""Correction-aware metrics on constructed boxes (px of a 768x576 frame): what the reviewer
changed, what a model learnt of it, and what it broke on frames accepted unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets.corrections import (
    MOVED_IOU,
    Box,
    Change,
    ReviewedFrame,
    Share,
    iou_matrix,
    label_boxes,
    pair_boxes,
    reviewer_changes,
    score_corrections,
)


def box(x1: float, y1: float, x2: float, y2: float, class_name: str = "Normal") -> Box:
    return Box((x1, y1, x2, y2), class_name)


P1 = box(100, 100, 190, 320)  # people-sized boxes, far apart
P2 = box(400, 120, 490, 340)
P3 = box(600, 100, 690, 320)
LOOSE_P1 = box(100, 100, 190, 380)  # bottom edge 60 px low: IoU 220/280 = 0.79 with P1
FP = box(300, 400, 350, 450)

FRAMES = [
    ReviewedFrame("added", (P1,), (P1, P2)),
    ReviewedFrame("removed", (P1, FP), (P1,)),
    ReviewedFrame("class", (box(*P1.xyxy, "Fall"),), (P1,)),
    ReviewedFrame("moved", (LOOSE_P1,), (P1,)),
    ReviewedFrame("accepted", (box(600.4, 100, 690, 320.3),), (P3,)),
    ReviewedFrame("accepted-empty", (), ()),
]
GOOD = {
    "added": [P1, box(405, 120, 495, 345)],
    "removed": [P1],
    "class": [P1],
    "moved": [box(100, 100, 190, 322)],
    "accepted": [P3],
    "accepted-empty": [],
}


def test_iou_of_known_boxes():
    iou = iou_matrix([P1, LOOSE_P1], [P1, P2])
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[1, 0] == pytest.approx(220 / 280)
    assert iou[0, 1] == 0.0
    assert iou_matrix([], [P1]).shape == (0, 1)


def test_each_kind_of_reviewer_change_is_named():
    kinds = {f.frame_key: [c.change for c in reviewer_changes(f.proposal, f.truth)] for f in FRAMES}
    assert kinds == {
        "added": [Change.ADDED],
        "removed": [Change.REMOVED],
        "class": [Change.CLASS],
        "moved": [Change.MOVED],
        "accepted": [],
        "accepted-empty": [],
    }
    tight = box(100, 100, 190, 320 + 220 * (1 / MOVED_IOU - 1) * 0.9)  # IoU just above bound
    assert reviewer_changes([tight], [P1]) == []


def test_a_same_class_proposal_is_paired_before_a_better_overlapping_other_class():
    fall = box(*P1.xyxy, "Fall")  # IoU 1 but the wrong class
    pairing = pair_boxes([P1], [fall, LOOSE_P1], across_classes=True)
    assert pairing.pairs == {0: (1, pytest.approx(220 / 280))}
    assert pairing.unpaired_other() == [0]


def test_production_learns_no_correction_and_breaks_no_frame_by_construction():
    proposals = {f.frame_key: list(f.proposal) for f in FRAMES}
    score = score_corrections(FRAMES, proposals)
    assert score.corrections_learned == Share(0, 4)
    assert score.regressions == Share(0, 2)
    # P1 on "added" and "removed" and P3 on "accepted" were kept as proposed.
    assert score.box_regressions == Share(0, 3)
    assert score.frames == 6


def test_a_candidate_that_reproduces_every_correction():
    score = score_corrections(FRAMES, GOOD)
    assert score.corrections_learned == Share(4, 4)
    assert score.by_change() == {c.value: Share(1, 1) for c in Change}
    assert score.regressions == Share(0, 2)
    assert score.corrections_learned.label() == "1.00 (4/4)"


def test_half_learnt_corrections_and_broken_accepted_frames_are_counted_by_kind():
    predicted = {
        **GOOD,
        "removed": [P1, box(302, 400, 352, 452)],  # the false positive again
        "moved": [box(100, 100, 190, 360)],  # tighter but still IoU 0.85 < bound
        "accepted": [],  # misses the accepted box
        "accepted-empty": [FP],  # adds a false positive
    }
    score = score_corrections(FRAMES, predicted)
    assert score.by_change() == {
        Change.ADDED.value: Share(1, 1),
        Change.REMOVED.value: Share(0, 1),
        Change.CLASS.value: Share(1, 1),
        Change.MOVED.value: Share(0, 1),
    }
    assert score.corrections_learned == Share(2, 4)
    assert score.regressions == Share(2, 2)
    assert score.as_dict()["regressions"] == 1.0
    # Of the 3 accepted pre-labels only P3 is lost (the false positive breaks a frame,
    # not a reviewed box).
    assert score.box_regressions == Share(1, 3)


def test_removing_a_duplicate_is_learnt_by_a_model_that_keeps_only_the_true_box():
    duplicate = box(110, 130, 200, 340)  # IoU ~0.7 with P1, same class
    frame = ReviewedFrame("dup", (P1, duplicate), (P1,))
    assert [c.change for c in reviewer_changes(frame.proposal, frame.truth)] == [Change.REMOVED]
    assert score_corrections([frame], {"dup": [P1]}).corrections_learned == Share(1, 1)
    assert score_corrections([frame], {"dup": [duplicate]}).corrections_learned == Share(1, 1)
    assert score_corrections([frame], {"dup": [P1, duplicate]}).corrections_learned == Share(0, 1)


def test_shares_without_evidence_say_so():
    assert Share(0, 0).value is None and Share(0, 0).label() == "n/a (n=0)"
    score = score_corrections([], {})
    assert score.corrections_learned == Share(0, 0) and score.regressions == Share(0, 0)
    with pytest.raises(KeyError):
        score_corrections(FRAMES, {})


def test_label_boxes_reads_yolo_lines_into_pixels(tmp_path: Path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5 0.25 0.5\n\n1 0.1 0.2 0.1 0.2\n")
    boxes = label_boxes(label, width=768, height=576, class_names=["Normal", "Fall"])
    assert boxes[0] == Box((288.0, 144.0, 480.0, 432.0), "Normal")
    assert boxes[1].class_name == "Fall"
    assert boxes[1].xyxy == pytest.approx((38.4, 57.6, 115.2, 172.8))
    assert label_boxes(tmp_path / "missing.txt", width=1, height=1, class_names=["x"]) == []
    label.write_text("2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match="class id 2"):
        label_boxes(label, width=768, height=576, class_names=["Normal", "Fall"])
    label.write_text("0 0.5 0.5\n")
    with pytest.raises(ValueError, match="expected 'class cx cy w h'"):
        label_boxes(label, width=768, height=576, class_names=["Normal", "Fall"])
