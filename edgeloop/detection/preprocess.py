"""Letterboxing a frame to the model's square input and mapping boxes back.

Follows ultralytics' ``LetterBox`` (``ultralytics/data/augment.py``) with ``auto=False``,
``scaleup=True``, ``center=True``: keep the aspect ratio, resize with bilinear
interpolation, pad with grey 114 split evenly between the two sides (the odd pixel goes
to the bottom/right), and ``scale_boxes`` (``ultralytics/utils/ops.py``) for the way back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
"""Grey of the letterbox padding (ultralytics' default)."""


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was letterboxed: enough to map boxes back to the original frame.

    Attributes:
        scale: resize gain, letterbox px per original px.
        pad_left: padding added on the left, letterbox px.
        pad_top: padding added on the top, letterbox px.
        orig_width: original frame width, px.
        orig_height: original frame height, px.
        size: side of the square letterbox, px.
    """

    scale: float
    pad_left: int
    pad_top: int
    orig_width: int
    orig_height: int
    size: int

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from letterbox px to original-frame px, clipped to the frame.

        Args:
            boxes: (N, 4) float xyxy in letterbox pixels.

        Returns:
            (N, 4) float32 xyxy in pixels of the original frame, within
            ``[0, orig_width] x [0, orig_height]``.
        """
        out = np.asarray(boxes, dtype=np.float32).copy()
        xs, ys = out[:, 0::2], out[:, 1::2]  # views: (x1, x2) and (y1, y2)
        xs -= self.pad_left
        ys -= self.pad_top
        out /= self.scale
        np.clip(xs, 0, self.orig_width, out=xs)
        np.clip(ys, 0, self.orig_height, out=ys)
        return out

    def boxes_to_letterbox(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse of ``boxes_to_original`` (without clipping): (N, 4) xyxy original px → letterbox px."""
        out = np.asarray(boxes, dtype=np.float32) * self.scale
        out[:, 0::2] += self.pad_left
        out[:, 1::2] += self.pad_top
        return out


def letterbox(im: np.ndarray, size: int = 640) -> tuple[np.ndarray, Letterbox]:
    """Resize ``im`` to fit a ``size`` x ``size`` square, keeping its aspect ratio, and pad it.

    Args:
        im: (H, W, 3) uint8 BGR, any size from 1x1 up; the short side of a very thin
            frame keeps at least 1 px after resizing.
        size: side of the square output, px (the model's imgsz).

    Returns:
        (size, size, 3) uint8 BGR, and the ``Letterbox`` that maps boxes back.

    Raises:
        ValueError: ``im`` is not an (H, W, 3) uint8 image.
    """
    if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8 or im.size == 0:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {im.shape} {im.dtype}")
    h, w = im.shape[:2]
    r = min(size / h, size / w)
    # A very thin frame (1x4000, 2x20000) would round its short side to 0 px, which
    # cv2.resize refuses: keep at least one pixel row/column. Boxes still map back with
    # ``r`` and are clipped to the frame.
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (w, h) != (new_w, new_h):
        im = cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(
        im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
    )
    return out, Letterbox(r, left, top, w, h, size)


def preprocess(im: np.ndarray, size: int = 640) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a frame and make the model's input tensor.

    Args:
        im: (H, W, 3) uint8 BGR.
        size: the model's square input size, px.

    Returns:
        (1, 3, size, size) float32 RGB in [0, 1] (NCHW, contiguous), and the ``Letterbox``.
    """
    boxed, info = letterbox(im, size)
    # blobFromImage swaps BGR→RGB, scales to [0, 1] and transposes to NCHW in one C++ pass.
    blob = cv2.dnn.blobFromImage(boxed, scalefactor=1 / 255.0, swapRB=True)
    return blob, info
