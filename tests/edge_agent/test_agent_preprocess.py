"""Letterbox math: shapes, padding, colour order, and the way back to frame pixels."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.detection.preprocess import PAD_VALUE, Letterbox, letterbox, preprocess


@pytest.mark.parametrize(
    ("h", "w", "scale", "pad_left", "pad_top"),
    [
        (576, 768, 640 / 768, 0, 80),  # vtest: landscape, pad top and bottom
        (1080, 810, 640 / 1080, 80, 0),  # bus.jpg: portrait, pad left and right
        (300, 641, 640 / 641, 0, 170),  # odd padding: 640 - round(300 * 640/641) = 340 → 170 + 170
        (301, 640, 1.0, 0, 169),  # odd padding 339: the extra pixel goes to the bottom
        (100, 100, 6.4, 0, 0),  # upscaled to fill the square
    ],
)
def test_letterbox_keeps_aspect_and_centres(
    h: int, w: int, scale: float, pad_left: int, pad_top: int
) -> None:
    im = np.full((h, w, 3), 200, np.uint8)
    out, info = letterbox(im, 640)
    assert out.shape == (640, 640, 3) and out.dtype == np.uint8
    assert info.scale == pytest.approx(scale)
    assert (info.pad_left, info.pad_top) == (pad_left, pad_top)
    new_h, new_w = round(h * scale), round(w * scale)
    # The resized image sits at (pad_left, pad_top); everything else is grey 114.
    inner = out[pad_top : pad_top + new_h, pad_left : pad_left + new_w]
    assert (inner == 200).all()
    mask = np.ones((640, 640), bool)
    mask[pad_top : pad_top + new_h, pad_left : pad_left + new_w] = False
    assert (out[mask] == PAD_VALUE).all()


def test_boxes_round_trip_to_original_pixels() -> None:
    _, info = letterbox(np.zeros((576, 768, 3), np.uint8), 640)
    boxes = np.array([[10.0, 20.0, 300.5, 400.0], [0.0, 0.0, 768.0, 576.0]], np.float32)
    there = info.boxes_to_letterbox(boxes)
    # 768 px wide → 640, 576 high → 480 + 80 px of padding on top.
    np.testing.assert_allclose(there[1], [0, 80, 640, 560], atol=1e-3)
    np.testing.assert_allclose(info.boxes_to_original(there), boxes, atol=1e-3)


def test_boxes_to_original_clips_to_the_frame() -> None:
    info = Letterbox(scale=0.5, pad_left=0, pad_top=10, orig_width=100, orig_height=50, size=64)
    out = info.boxes_to_original(np.array([[-5.0, 0.0, 70.0, 64.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.0, 100.0, 50.0]])


def test_preprocess_makes_nchw_rgb_unit_float() -> None:
    im = np.zeros((480, 640, 3), np.uint8)
    im[..., 0] = 255  # pure blue in BGR
    tensor, info = preprocess(im, 640)
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    centre = tensor[0, :, 320, 320]
    np.testing.assert_allclose(centre, [0.0, 0.0, 1.0])  # RGB: blue is the last channel
    np.testing.assert_allclose(tensor[0, :, 0, 0], [PAD_VALUE / 255] * 3, rtol=1e-6)
    assert info.pad_top == 80


def test_letterbox_rejects_non_bgr_images() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        letterbox(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32))


@pytest.mark.parametrize(
    ("h", "w"), [(1, 4000), (2, 20000), (20000, 2), (1, 100000), (100000, 1), (1, 1)]
)
def test_thin_and_tiny_frames_letterbox_and_map_back_inside(h: int, w: int) -> None:
    """A 1-px-high strip used to round its short side to 0 px and crash ``cv2.resize``."""
    out, info = letterbox(np.full((h, w, 3), 90, np.uint8), 640)
    assert out.shape == (640, 640, 3)
    # A box over the whole letterbox maps back inside the original frame.
    back = info.boxes_to_original(np.array([[0, 0, 640, 640]], np.float32))[0]
    assert 0 <= back[0] <= back[2] <= w and 0 <= back[1] <= back[3] <= h
    blob, _ = preprocess(np.full((h, w, 3), 90, np.uint8), 640)
    assert blob.shape == (1, 3, 640, 640)
