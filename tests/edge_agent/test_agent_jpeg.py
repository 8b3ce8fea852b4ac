"""Frame JPEGs fitted to the wire's limits: size, longest side, aspect ratio."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.jpeg import encode_jpeg, fit_jpeg
from edgeloop.wire import MAX_JPEG_BYTES, MAX_JPEG_SIDE


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_an_ordinary_frame_is_encoded_once_at_full_size() -> None:
    frame = np.full((576, 768, 3), 120, np.uint8)
    fitted = fit_jpeg(frame, 90)
    assert (fitted.width, fitted.height, fitted.quality, fitted.downscaled) == (768, 576, 90, False)
    assert fitted.data == encode_jpeg(frame, 90)


def test_a_high_entropy_8000x6000_frame_is_downscaled_under_8_mib() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (6000, 8000, 3), dtype=np.uint8)
    assert len(encode_jpeg(noise, 95)) > MAX_JPEG_BYTES  # too large as it is
    fitted = fit_jpeg(noise, 95)
    image = _decode(fitted.data)
    assert len(fitted.data) <= MAX_JPEG_BYTES and fitted.downscaled
    assert image.shape[:2] == (fitted.height, fitted.width)
    assert fitted.width / fitted.height == pytest.approx(8000 / 6000, rel=1e-3)
    assert fitted.width > 2000  # no more shrinking than needed: ~2800 px wide


@pytest.mark.parametrize(("h", "w"), [(1, 100000), (20000, 2), (17000, 12000)])
def test_a_side_beyond_the_wire_limit_is_scaled_down_keeping_the_aspect(h: int, w: int) -> None:
    frame = np.full((h, w, 3), 60, np.uint8)
    if max(h, w) > 65500:  # beyond libjpeg: a plain encode cannot even try
        with pytest.raises(ValueError, match="could not encode"):
            encode_jpeg(frame, 90)
    fitted = fit_jpeg(frame, 90)
    image = _decode(fitted.data)
    assert max(image.shape[:2]) == MAX_JPEG_SIDE
    scale = MAX_JPEG_SIDE / max(h, w)
    assert abs(image.shape[1] - w * scale) <= 1 and abs(image.shape[0] - h * scale) <= 1


def test_quality_steps_down_before_shrinking_when_close_to_the_limit() -> None:
    frame = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    at_90 = len(encode_jpeg(frame, 90))
    fitted = fit_jpeg(frame, 90, max_bytes=int(at_90 * 0.8))
    assert not fitted.downscaled and fitted.quality < 90
    assert len(fitted.data) <= at_90 * 0.8
