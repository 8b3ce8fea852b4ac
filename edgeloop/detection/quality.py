"""Per-frame image statistics sent with every frame and used as drift features.

Computed on the full-resolution frame, as ``edgeloop.wire.FrameQuality`` documents, so
the numbers do not depend on an agent-side setting. About 3 ms for a 768x576 frame on
one core (two colour conversions, one Laplacian, three ``meanStdDev``/``mean`` passes).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeloop.wire import FrameQuality


def frame_quality(image: np.ndarray) -> FrameQuality:
    """Brightness, contrast, sharpness and saturation of a frame.

    Args:
        image: (H, W, 3) uint8 BGR.

    Returns:
        ``FrameQuality`` with brightness = mean grey level [0, 255], contrast = std of the
        grey levels [0, ~128], sharpness = variance of the 3x3 Laplacian of the grey image
        (Pech-Pacheco et al., 2000; grows with edges and focus, 0 on a flat image),
        saturation = mean of HSV S [0, 255].

    Raises:
        ValueError: ``image`` is not (H, W, 3) uint8.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    mean, std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    saturation = cv2.mean(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))[1]
    return FrameQuality(
        brightness=min(max(float(mean[0, 0]), 0.0), 255.0),
        contrast=float(std[0, 0]),
        sharpness=float(lap_std[0, 0]) ** 2,
        saturation=min(max(float(saturation), 0.0), 255.0),
    )
