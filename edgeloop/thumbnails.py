"""Thumbnails and crops of stored frame JPEGs, made once and named by their content.

A thumbnail's name is the sha256 of the source JPEG's bytes, the crop box and the size
(``content_hash``), so the same pixels asked for twice are one object, made once, in the
object store the settings name (``LoopSettings.objects()``: the data folder or S3), under
``thumbnails/<sha[:2]>/<sha>.jpg`` (``put_new``: create-exclusive, two replicas making the
same thumbnail at once store it once). ``edgeloop.store.thumbnails`` remembers which
object holds which thumbnail of which JPEG. Images are resized and encoded by OpenCV
(``cv2.resize`` with ``INTER_AREA``, the interpolation OpenCV's docs advise for shrinking;
``cv2.imencode``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgeloop.embeddings import crop_bgr
from edgeloop.objects import ObjectStore

SIZES = (64, 128, 256, 512)
"""Longest side of a thumbnail, px: the sizes one may ask for (each is one object)."""
JPEG_QUALITY = 85
CROP_PAD = 0.1
"""Margin around a detection's box in its crop, a fraction of the box's width / height
(the crop embeddings' margin, ``edgeloop.embeddings.crop_bgr``)."""
OBJECT_PREFIX = "thumbnails/"


class UnreadableImageError(ValueError):
    """The stored JPEG cannot be decoded, or the box lies outside it."""


@dataclass(frozen=True)
class ThumbnailSpec:
    """What to cut from a frame's JPEG.

    Attributes:
        size: longest side of the result, px (one of ``SIZES``); a smaller source is kept
            at its own size (never enlarged).
        box: a detection's box (xyxy px of the original frame) to crop, with ``CROP_PAD``;
            None: the whole frame.
        frame_size: ``(width, height)`` of the original frame, px (the box's frame).
    """

    size: int
    box: tuple[float, float, float, float] | None = None
    frame_size: tuple[int, int] | None = None

    @property
    def text(self) -> str:
        """The spec as text, part of the content hash: ``frame@256`` or
        ``crop:x1,y1,x2,y2@128`` (box to 0.01 px)."""
        if self.box is None:
            return f"frame@{self.size}"
        return "crop:" + ",".join(f"{v:.2f}" for v in self.box) + f"@{self.size}"


def content_hash(jpeg: bytes, spec: ThumbnailSpec) -> str:
    """Hex sha256 of the source JPEG's bytes and the spec's text: the thumbnail's name."""
    digest = hashlib.sha256(jpeg)
    digest.update(b"|" + spec.text.encode())
    return digest.hexdigest()


def object_key(sha256: str) -> str:
    """The object key of the thumbnail named ``sha256``."""
    return f"{OBJECT_PREFIX}{sha256[:2]}/{sha256}.jpg"


def render(jpeg: bytes, spec: ThumbnailSpec) -> bytes:
    """The thumbnail's JPEG bytes.

    Args:
        jpeg: the source frame's JPEG.

    Raises:
        UnreadableImageError: the bytes are not a decodable image, or the box is outside it.
    """
    import cv2

    try:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. more pixels than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        raise UnreadableImageError(f"OpenCV refused the stored JPEG: {exc.msg}") from exc
    if image is None:
        raise UnreadableImageError("the stored JPEG cannot be decoded (corrupt or not a JPEG)")
    if spec.box is not None:
        image = crop_bgr(image, spec.box, frame_size=spec.frame_size, pad=CROP_PAD, min_px=2)
        if image is None:
            raise UnreadableImageError(f"the box {spec.box} lies outside the stored JPEG")
    h, w = image.shape[:2]
    scale = spec.size / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any decoded BGR image
        raise UnreadableImageError("OpenCV could not encode the thumbnail")
    return bytes(buffer.tobytes())


@dataclass(frozen=True)
class Thumbnail:
    """A made thumbnail: its content hash, object key and JPEG bytes."""

    sha256: str
    object_key: str
    data: bytes


def make(objects: ObjectStore, jpeg: bytes, spec: ThumbnailSpec) -> Thumbnail:
    """Render the thumbnail ``spec`` of ``jpeg`` and store it under its content hash
    (create-exclusive: an object already there is left as it is).

    Raises:
        UnreadableImageError: see ``render``.
        edgeloop.objects.ObjectStoreUnavailableError: the object store could not be written.
    """
    sha = content_hash(jpeg, spec)
    data = render(jpeg, spec)
    key = object_key(sha)
    objects.put_new(key, data)
    return Thumbnail(sha256=sha, object_key=key, data=data)
