"""The simulated reviewer's written-down policy, and its real source of truth."""

from __future__ import annotations

import cv2
import pytest
from support import SAMPLES_DIR, SEED_PT, require

from edgeloop.cli.reviewer import ReviewPolicy, TtaReference, iou, review_item

PERSON = (100.0, 50.0, 160.0, 230.0)


def _proposal(box: tuple[float, ...], conf: float = 0.6, cls: str = "Normal") -> dict[str, object]:
    return {"bbox_xyxy": list(box), "class_name": cls, "confidence": conf}


def test_iou_of_boxes() -> None:
    assert iou(PERSON, PERSON) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_policy_accepts_tight_redraws_loose_rejects_extra_and_adds_missed() -> None:
    loose = (90.0, 40.0, 170.0, 240.0)  # IoU with PERSON 0.68: matched, not tight
    tight = (301.0, 50.0, 360.0, 230.0)  # IoU with the reference ~0.98
    item = {
        "proposed_boxes": [
            _proposal(loose, cls="Fall"),
            _proposal(tight),
            _proposal((600.0, 300.0, 640.0, 380.0), conf=0.45),  # nothing there
        ]
    }
    reference = [
        (PERSON, "Normal"),
        ((300.0, 50.0, 360.0, 230.0), "Normal"),
        ((500, 60, 540, 200), "Normal"),
    ]
    body, tally = review_item(item, reference, ReviewPolicy())
    assert body == {
        "boxes": [
            {"bbox_xyxy": list(PERSON), "class_name": "Normal"},  # redrawn, class corrected
            {"bbox_xyxy": list(tight), "class_name": "Normal"},  # accepted as it was
            {"bbox_xyxy": [500.0, 60.0, 540.0, 200.0], "class_name": "Normal"},  # missed, added
        ],
        "no_object": False,
    }
    counts = (
        tally.boxes_kept,
        tally.boxes_moved,
        tally.boxes_rejected,
        tally.boxes_added,
        tally.classes_changed,
    )
    assert counts == (1, 1, 1, 1, 1)


def test_policy_answers_no_object_when_the_reference_sees_nothing() -> None:
    body, tally = review_item({"proposed_boxes": [_proposal(PERSON)]}, [], ReviewPolicy())
    assert body == {"boxes": [], "no_object": True}
    assert (tally.boxes_rejected, tally.no_object) == (1, 1)


def test_one_proposal_matches_one_reference_box() -> None:
    twins = [(PERSON, "Normal"), (PERSON, "Normal")]
    body, tally = review_item({"proposed_boxes": [_proposal(PERSON)]}, twins, ReviewPolicy())
    assert len(body["boxes"]) == 2 and (tally.boxes_kept, tally.boxes_added) == (1, 1)


def test_without_scene_class_the_proposed_class_stays() -> None:
    body, tally = review_item(
        {"proposed_boxes": [_proposal(PERSON, cls="Fall")]},
        [(PERSON, "Normal")],
        ReviewPolicy(scene_class=None),
    )
    assert body["boxes"][0]["class_name"] == "Fall" and tally.classes_changed == 0


@pytest.mark.integration
def test_the_tta_reference_finds_people_in_real_frames() -> None:
    """The default truth on real vtest.avi frames: people-sized boxes inside the frame."""
    require(SEED_PT)
    capture = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = capture.read()
    capture.release()
    assert ok
    boxes = TtaReference(SEED_PT).detector()(frame)
    assert len(boxes) >= 3  # a busy campus walkway
    height, width = frame.shape[:2]
    for (x1, y1, x2, y2), name in boxes:
        assert 0 <= x1 < x2 <= width + 1 and 0 <= y1 < y2 <= height + 1
        assert name in {"Normal", "Fall"}
