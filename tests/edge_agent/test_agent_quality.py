"""Frame quality features on synthetic images with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeloop.detection.quality import frame_quality


def test_flat_grey_image() -> None:
    q = frame_quality(np.full((120, 160, 3), 90, np.uint8))
    assert q.brightness == pytest.approx(90)
    assert q.contrast == pytest.approx(0, abs=1e-3)
    assert q.sharpness == pytest.approx(0, abs=1e-3)
    assert q.saturation == pytest.approx(0, abs=1e-3)


def test_half_black_half_white_contrast() -> None:
    im = np.zeros((100, 100, 3), np.uint8)
    im[:, 50:] = 255
    q = frame_quality(im)
    assert q.brightness == pytest.approx(127.5)
    assert q.contrast == pytest.approx(127.5)


def test_blur_lowers_sharpness() -> None:
    rng = np.random.default_rng(0)
    im = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    sharp = frame_quality(im).sharpness
    blurred = frame_quality(cv2.GaussianBlur(im, (9, 9), 3)).sharpness
    assert sharp > 10 * blurred > 0


def test_saturated_colour() -> None:
    red = np.zeros((50, 50, 3), np.uint8)
    red[..., 2] = 255  # BGR red
    q = frame_quality(red)
    assert q.saturation == pytest.approx(255)
    assert q.brightness == pytest.approx(76, abs=1)  # 0.299 * 255


def test_rejects_grey_input() -> None:
    with pytest.raises(ValueError, match="BGR"):
        frame_quality(np.zeros((10, 10), np.uint8))
