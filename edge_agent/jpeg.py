"""Frame JPEGs for labeling, fitted to the wire's limits.

The detector always sees the full-resolution frame and every box stays in its pixels
(``FrameRecord.width/height`` are the original frame's). Only the JPEG sent with an
uncertain frame is made to fit ``edgeloop.wire.MAX_JPEG_SIDE`` (longest side, px) and
``MAX_JPEG_BYTES``: downscaled keeping the aspect ratio (``cv2.INTER_AREA``) and, if still
too large, re-encoded at lower quality and then downscaled further. The labeling page and
the dataset builder normalise boxes by the frame's width/height, so an aspect-preserving
smaller JPEG shows the boxes in the right place.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgeloop.wire import MAX_JPEG_BYTES, MAX_JPEG_SIDE

logger = logging.getLogger(__name__)

QUALITY_STEPS = (75, 60, 45)
"""Lower JPEG qualities (OpenCV's 1-100 scale) tried, in order, before downscaling further."""
MAX_QUALITY_STEP_RATIO = 3.0
"""Step the quality down only while the JPEG is at most this many times the byte limit;
a larger one (an 8000x6000 noise photo at quality 95 is 54 MiB) is downscaled at once."""
SHRINK_MARGIN = 0.9
"""A downscale aims at this share of the byte limit's side ratio, so one step usually fits."""


@dataclass(frozen=True, slots=True)
class FittedJpeg:
    """A frame's JPEG within the wire's limits.

    Attributes:
        data: the JPEG bytes, at most ``max_bytes``.
        width, height: the JPEG's size, px (the original frame's unless downscaled).
        quality: the JPEG quality used (OpenCV's 1-100 scale).
        downscaled: True when the JPEG is smaller than the frame it shows.
    """

    data: bytes
    width: int
    height: int
    quality: int
    downscaled: bool


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 BGR → JPEG bytes at ``quality`` (1-100, OpenCV's scale).

    Raises:
        ValueError: OpenCV could not encode the image (e.g. a side above libjpeg's 65,500 px).
    """
    try:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:
        raise ValueError(f"cv2.imencode could not encode a {image.shape} image: {exc}") from exc
    if not ok:
        raise ValueError(f"cv2.imencode could not encode a {image.shape} image as JPEG")
    return buf.tobytes()


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def fit_jpeg(
    image: np.ndarray,
    quality: int,
    *,
    max_bytes: int = MAX_JPEG_BYTES,
    max_side: int = MAX_JPEG_SIDE,
) -> FittedJpeg:
    """The frame as a JPEG of at most ``max_bytes`` bytes and ``max_side`` px a side.

    Steps: downscale so the longest side is at most ``max_side`` (keeping the aspect
    ratio; a side of a very thin frame keeps at least 1 px); encode at ``quality``; while
    too large, step the quality down through ``QUALITY_STEPS`` (when within
    ``MAX_QUALITY_STEP_RATIO`` of the limit), else downscale by
    ``SHRINK_MARGIN * sqrt(max_bytes / size)`` (JPEG size grows about with the pixel count).

    Args:
        image: (H, W, 3) uint8 BGR, any size.
        quality: the preferred JPEG quality, 1-100 (``AgentSettings.jpeg_quality``).
        max_bytes, max_side: the limits (default the wire's).

    Returns:
        The ``FittedJpeg``; most frames come back at full size and ``quality`` after one
        encode.

    Raises:
        ValueError: OpenCV could not encode the image at all.
    """
    h, w = image.shape[:2]
    scaled = image
    if max(h, w) > max_side:
        scaled = _resize(image, max_side / max(h, w))
    steps = [q for q in QUALITY_STEPS if q < quality]
    q = quality
    for _ in range(64):  # each round lowers the quality or shrinks by >= 10 %: ends early
        data = encode_jpeg(scaled, q)
        if len(data) <= max_bytes:
            sh, sw = scaled.shape[:2]
            fitted = FittedJpeg(data, sw, sh, q, (sw, sh) != (w, h))
            if fitted.downscaled or q != quality:
                logger.debug(
                    "frame JPEG fitted: %dx%d → %dx%d at quality %d, %d bytes",
                    w,
                    h,
                    sw,
                    sh,
                    q,
                    len(data),
                )
            return fitted
        if steps and len(data) <= MAX_QUALITY_STEP_RATIO * max_bytes:
            q = steps.pop(0)
        else:
            scaled = _resize(scaled, SHRINK_MARGIN * math.sqrt(max_bytes / len(data)))
    raise ValueError(f"could not fit a {w}x{h} frame's JPEG into {max_bytes} bytes")
