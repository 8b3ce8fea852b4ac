"""What every frame source shares: ``Frame``, the ``FrameSource`` base, ``SourceError``, the
skip reasons, and ``to_bgr8``, which turns whatever OpenCV decoded into the agent's one
image format, ``(H, W, 3) uint8 BGR``.

Split from ``edge_agent.capture`` (files and directories) and ``edge_agent.live`` (streams
and cameras) so that both build on it; ``edge_agent.capture`` re-exports these names.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

# Why a frame was skipped: the keys of ``FrameSource.skipped_by_reason`` and of the run
# report's ``skipped_by_reason`` (the runner adds ``pipeline error: <ExceptionType>``).
SKIP_EMPTY_FILE = "empty file"
"""An image file of 0 bytes."""
SKIP_UNREADABLE_FILE = "unreadable file"
"""An image file the operating system would not read (permissions, I/O error, vanished)."""
SKIP_UNDECODABLE_IMAGE = "undecodable image"
"""An image file OpenCV cannot decode (truncated, corrupt, not an image)."""
SKIP_UNREADABLE_VIDEO_FRAME = "unreadable video frame"
"""A video frame FFmpeg could not read (``grab()`` failed inside the file)."""
SKIP_UNDECODABLE_FRAME = "undecodable frame"
"""A video or stream frame that decoded to no usable image."""


class SourceError(RuntimeError):
    """A frame source cannot be opened or read."""


class Frame(NamedTuple):
    """One captured frame.

    Attributes:
        frame_index: position of the frame in its source (see ``edge_agent.capture``), >= 0.
        captured_at: timezone-aware UTC time the frame was decoded.
        image: (H, W, 3) uint8 BGR, any size (1x1 to OpenCV's 2^20 px a side).
        source_id: short stable identifier of the source (see ``edge_agent.capture``).
    """

    frame_index: int
    captured_at: datetime
    image: np.ndarray
    source_id: str


def short_hash(text: str, length: int = 10) -> str:
    """First ``length`` hex digits of the sha1 of ``text`` (an identifier, not a security hash)."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:length]


def file_source_id(path: Path) -> str:
    """Short hash of a file's base name and size in bytes: stable across runs and moves."""
    return short_hash(f"{path.name}:{path.stat().st_size}")


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_bgr8(image: Any) -> np.ndarray | None:
    """Whatever OpenCV decoded, as ``(H, W, 3) uint8 BGR``; None when it is no image at all.

    Grey ``(H, W)`` or ``(H, W, 1)`` is expanded to three channels, BGRA drops its alpha,
    16-bit is scaled to 8-bit (the high byte, as ``cv2.imread``'s ``IMREAD_COLOR`` does),
    float in [0, 1] is scaled by 255 and clipped. ``None``, an empty array, or any other
    shape or channel count gives None.
    """
    import cv2

    if not isinstance(image, np.ndarray) or image.size == 0 or image.ndim not in (2, 3):
        return None
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(np.nan_to_num(image) * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


class FrameSource(ABC):
    """A source of frames, used as a context manager and iterated once.

    Attributes:
        name: the source as the user gave it, for messages.
        live: True for streams and cameras (frames are dropped rather than lagging).
        skipped: frames or images that could not be decoded or read, and were skipped.
        skipped_by_reason: the same, by reason (``SKIP_*`` above).
        dropped: live frames overwritten before the consumer took them (0 for files).
        connected: False while a live source is reconnecting (always True for files).
        reconnects: times a live source was reopened after it broke (0 for files).
    """

    name: str
    live: bool = False

    def __init__(self) -> None:
        self.skipped = 0
        self.skipped_by_reason: Counter[str] = Counter()
        self.dropped = 0
        self.connected = True
        self.reconnects = 0

    def skip(self, reason: str, message: str, *args: object) -> None:
        """Count one skipped frame under ``reason`` and log ``message % args`` as a warning."""
        self.skipped += 1
        self.skipped_by_reason[reason] += 1
        logger.warning(message, *args)

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends (files) or ``close()`` is called (live)."""

    def close(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Release the source; idempotent."""

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
