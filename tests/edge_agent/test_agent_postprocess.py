"""Decoding a YOLOv8 head's output: thresholds, class-aware NMS, mapping back to the frame."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.detectors import (
    ModelError,
    batched_nms,
    decode_end2end,
    decode_yolo,
    parse_ultralytics_names,
)
from edgeloop.detection.preprocess import letterbox

NC = 2


def yolo_output(
    anchors: list[tuple[float, float, float, float, int, float]], n: int = 50
) -> np.ndarray:
    """(1, 4 + NC, n) with the given anchors (cx, cy, w, h, class_id, score), the rest empty."""
    out = np.zeros((1, 4 + NC, n), np.float32)
    out[0, :4, :] = [[320.0], [320.0], [10.0], [10.0]]
    out[0, 4:, :] = 0.01
    for i, (cx, cy, w, h, k, s) in enumerate(anchors):
        out[0, :4, i] = [cx, cy, w, h]
        out[0, 4 + k, i] = s
    return out


@pytest.fixture
def vtest_box():  # a 768x576 frame letterboxed to 640: scale 5/6, 80 px of padding on top
    return letterbox(np.zeros((576, 768, 3), np.uint8), 640)[1]


def test_same_class_overlaps_are_suppressed_other_classes_kept(vtest_box) -> None:
    out = yolo_output(
        [
            (200, 200, 100, 100, 0, 0.9),
            (205, 205, 100, 100, 0, 0.8),  # IoU ~0.82 with the first, same class → dropped
            (205, 205, 100, 100, 1, 0.6),  # same place, other class → kept
            (500, 300, 50, 80, 0, 0.5),  # elsewhere → kept
            (400, 400, 50, 50, 1, 0.2),  # below the 0.25 threshold → dropped
        ]
    )
    boxes, conf, cls = decode_yolo(out, vtest_box, conf_threshold=0.25, iou_threshold=0.45)
    np.testing.assert_allclose(conf, [0.9, 0.6, 0.5], rtol=1e-6)
    assert cls.tolist() == [0, 1, 0]
    # (150, 150, 250, 250) in letterbox px → minus 80 px top padding, / (5/6).
    np.testing.assert_allclose(boxes[0], [180, 84, 300, 204], atol=1e-3)


def test_boxes_are_clipped_to_the_original_frame(vtest_box) -> None:
    out = yolo_output([(630, 100, 40, 40, 0, 0.9)])  # runs past the right edge (x2 = 650)
    boxes, _, _ = decode_yolo(out, vtest_box, conf_threshold=0.25, iou_threshold=0.45)
    assert boxes[0, 2] == pytest.approx(768.0)
    assert boxes.min() >= 0


def test_no_candidates_gives_empty_arrays(vtest_box) -> None:
    boxes, conf, cls = decode_yolo(
        yolo_output([]), vtest_box, conf_threshold=0.25, iou_threshold=0.45
    )
    assert boxes.shape == (0, 4) and conf.shape == (0,) and cls.shape == (0,)


def test_max_detections_keeps_the_most_confident(vtest_box) -> None:
    anchors = [(20 + 60 * i, 300, 30, 30, 0, 0.3 + 0.05 * i) for i in range(10)]
    _, conf, _ = decode_yolo(
        yolo_output(anchors), vtest_box, conf_threshold=0.25, iou_threshold=0.45, max_detections=3
    )
    np.testing.assert_allclose(conf, [0.75, 0.70, 0.65], rtol=1e-5)


def test_batched_nms_suppresses_within_a_class_only() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: the best box
            [0, 0, 10, 9],  # 1: IoU 0.9 with 0, same class → dropped
            [0, 0, 10, 9],  # 2: the same place, another class → kept
            [0, 0, 10, 4.5],  # 3: IoU exactly 0.45 with 0 → kept (only IoU above drops)
            [0, 0, 10, 4.6],  # 4: IoU 0.46 with 0 → dropped
            [20, 20, 30, 30],  # 5: elsewhere → kept
            [21, 21, 31, 31],  # 6: same score as 5, later index, IoU 0.68 with it → dropped
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.85, 0.7, 0.6, 0.5, 0.5], np.float32)
    class_ids = np.array([0, 0, 1, 0, 0, 0, 0])
    assert batched_nms(boxes, scores, class_ids, 0.45).tolist() == [0, 2, 3, 5]
    # All one class: box 2 now falls to box 0 as well.
    assert batched_nms(boxes, scores, np.zeros(7, np.int64), 0.45).tolist() == [0, 3, 5]
    # Only the 3 best boxes (0, 2, 1) enter NMS, as ultralytics' max_nms.
    assert batched_nms(boxes, scores, class_ids, 0.45, max_candidates=3).tolist() == [0, 2]
    assert batched_nms(boxes[:0], scores[:0], class_ids[:0], 0.45).shape == (0,)


def test_end2end_output_is_thresholded_and_mapped(vtest_box) -> None:
    out = np.array([[[150, 230, 250, 330, 0.8, 1], [0, 80, 10, 90, 0.1, 0]]], np.float32)
    boxes, conf, cls = decode_end2end(out, vtest_box, conf_threshold=0.25)
    np.testing.assert_allclose(boxes, [[180, 180, 300, 300]], atol=1e-3)
    assert cls.tolist() == [1] and conf.tolist() == pytest.approx([0.8])


def test_wrong_output_shape_is_a_clear_error(vtest_box) -> None:
    with pytest.raises(ModelError, match=r"\(1, 4 \+ nc, N\)"):
        decode_yolo(
            np.zeros((1, 3, 10), np.float32), vtest_box, conf_threshold=0.25, iou_threshold=0.45
        )


def test_ultralytics_names_metadata() -> None:
    assert parse_ultralytics_names("{0: 'Normal', 1: 'Fall'}") == ["Normal", "Fall"]
    with pytest.raises(ValueError, match="names"):
        parse_ultralytics_names("{1: 'a'}")
