"""The simulated reviewer's written-down policy."""

from __future__ import annotations

from edgeloop.cli.reviewer import ReviewPolicy, review_item


def _box(conf: float, cls: str = "Normal") -> dict[str, object]:
    return {"bbox_xyxy": [1.0, 2.0, 30.0, 60.0], "class_name": cls, "confidence": conf}


def test_policy_keeps_confident_boxes_and_corrects_the_class() -> None:
    body, tally = review_item(
        {"proposed_boxes": [_box(0.8), _box(0.5, "Fall"), _box(0.3)]}, ReviewPolicy()
    )
    assert body == {
        "boxes": [
            {"bbox_xyxy": [1.0, 2.0, 30.0, 60.0], "class_name": "Normal"},
            {"bbox_xyxy": [1.0, 2.0, 30.0, 60.0], "class_name": "Normal"},
        ],
        "no_object": False,
    }
    assert (tally.boxes_kept, tally.boxes_rejected, tally.classes_changed) == (2, 1, 1)


def test_policy_answers_no_object_when_nothing_is_kept() -> None:
    body, tally = review_item({"proposed_boxes": [_box(0.2)]}, ReviewPolicy())
    assert body == {"boxes": [], "no_object": True}
    assert tally.no_object == 1


def test_policy_without_scene_class_keeps_proposed_classes() -> None:
    body, _ = review_item({"proposed_boxes": [_box(0.6, "Fall")]}, ReviewPolicy(scene_class=None))
    assert body["boxes"][0]["class_name"] == "Fall"
