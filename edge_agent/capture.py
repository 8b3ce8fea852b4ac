"""Frame sources: a video file, a directory of images, a live stream or a camera index.

Every source yields ``Frame(frame_index, captured_at, image, source_id)`` from a generator, so
frames never pile up in memory. ``image`` is ``(H, W, 3) uint8 BGR`` (OpenCV's order), of any
size: whatever OpenCV decodes (grey, BGRA, 16-bit) is converted to it (``to_bgr8``).

* Video file: decoded in the caller's thread; ``fps=N`` keeps N frames per second of
  source time (a stride of source fps / N; skipped frames are grabbed, not decoded).
  ``frame_index`` is the frame's position in the file.
* Image directory (or one image file): files sorted by name; ``frame_index`` is the position
  in that order.
* Live stream (``rtsp://``, ``http(s)://``, a camera index): ``edge_agent.live.LiveSource``,
  a capture thread that keeps only the newest frame and reconnects with back-off when the
  stream breaks; ``fps=N`` hands out at most N frames per second. ``frame_index`` counts
  frames read from the stream since it started.

A frame or image that cannot be read or decoded (0-byte file, unreadable file, corrupt or
truncated data, a text file named .jpg) is logged with the reason, counted in ``skipped``
and ``skipped_by_reason``, and skipped; the frames after it still come. A source that
cannot be opened raises ``SourceError`` naming it, except a live one opened with
``wait_at_start``, which retries until it opens (the agent's default).

``source_id`` identifies where a frame came from, stably, for the frame's idempotency key
(see ``edge_agent.runner.frame_key``): for a file, a short hash of its name and size;
for an image in a directory, a short hash of that image's name and size; for a live
source, the UTC time the stream was opened (``s20260101T120000123Z``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_agent.frame_source import (
    SKIP_EMPTY_FILE,
    SKIP_UNDECODABLE_FRAME,
    SKIP_UNDECODABLE_IMAGE,
    SKIP_UNREADABLE_FILE,
    SKIP_UNREADABLE_VIDEO_FRAME,
    Frame,
    FrameSource,
    SourceError,
    file_source_id,
    now_utc,
    short_hash,
    to_bgr8,
)
from edge_agent.live import LiveSource, ReconnectPolicy

__all__ = [
    "Frame",
    "FrameSource",
    "ImageFilesSource",
    "LiveSource",
    "ReconnectPolicy",
    "SourceError",
    "VideoFileSource",
    "decode_image_file",
    "file_source_id",
    "open_source",
    "short_hash",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
MAX_CONSECUTIVE_READ_FAILURES = 25
"""A video file whose next this-many frames all fail to decode is treated as ended."""


class VideoFileSource(FrameSource):
    """Frames of a video file, decoded in the caller's thread.

    Args:
        path: a video file OpenCV (FFmpeg) can decode.
        fps: frames per second of source time to keep; None keeps every frame. When the
            file reports no frame rate, every frame is kept.
        replay: ``fast`` hands frames out as fast as they are asked for; ``realtime``
            not before their source time (frame index / source fps after the first one),
            as a camera delivers them; ``loop`` as ``realtime``, from the start again at
            the end, with frame indices that keep counting (so frame keys stay unique).
        start_frame: index of the first frame played (a seek).

    Raises:
        SourceError: the file is missing or OpenCV cannot open it.
    """

    def __init__(
        self,
        path: Path,
        fps: float | None = None,
        *,
        replay: str = "fast",
        start_frame: int = 0,
    ) -> None:
        import cv2

        super().__init__()
        self.name = str(path)
        if not path.is_file():
            raise SourceError(f"video source {path} does not exist or is not a file")
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(
                f"cannot open video source {path}: OpenCV could not decode it "
                "(unsupported container/codec, or not a video)"
            )
        self.source_id = file_source_id(path)
        self.source_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.replay = replay
        self.start_frame = start_frame
        self.stride = 1.0
        if fps is not None and self.source_fps > 0:
            self.stride = max(1.0, self.source_fps / fps)
        elif fps is not None:
            logger.warning(
                "%s reports no frame rate; fps=%s ignored, keeping every frame", path, fps
            )

    def frames(self) -> Iterator[Frame]:
        import cv2

        period = 1.0 / self.source_fps if self.source_fps > 0 else 0.0
        started = time.monotonic()
        first = self.start_frame
        offset = 0  # frames of earlier passes (loop)
        while True:
            if self.start_frame:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, self.start_frame)
            played = 0
            for index, image in self._pass(self.start_frame):
                if self.replay != "fast" and period:
                    due = started + (offset + index - first) * period
                    time.sleep(max(0.0, due - time.monotonic()))
                played += 1
                yield Frame(offset + index, now_utc(), image, self.source_id)
            if self.replay != "loop" or not played:
                return
            offset += max(self.frame_count, self.start_frame + played)
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.start_frame = 0

    def _pass(self, first: int) -> Iterator[tuple[int, np.ndarray]]:
        """One pass over the file from frame ``first``: ``(index, image)`` of kept frames."""
        index = first - 1
        next_keep = float(first)
        failures = 0
        while True:
            index += 1
            keep = index >= next_keep - 1e-9
            ok = self._cap.grab()
            if not ok:
                if self.frame_count and index < self.frame_count - 1:
                    failures += 1
                    if failures < MAX_CONSECUTIVE_READ_FAILURES:
                        self.skip(
                            SKIP_UNREADABLE_VIDEO_FRAME,
                            "%s: frame %d could not be read; skipped",
                            self.name,
                            index,
                        )
                        if keep:
                            next_keep += self.stride
                        continue
                return
            failures = 0
            if not keep:
                continue
            next_keep += self.stride
            image = None
            try:
                ok, raw = self._cap.retrieve()
                image = to_bgr8(raw) if ok else None
            except Exception:  # cv2.error from the decoder: this frame only
                logger.debug("%s: frame %d: retrieve raised", self.name, index, exc_info=True)
            if image is None:
                self.skip(
                    SKIP_UNDECODABLE_FRAME,
                    "%s: frame %d could not be decoded; skipped",
                    self.name,
                    index,
                )
                continue
            yield index, image

    def close(self) -> None:
        self._cap.release()


class ImageFilesSource(FrameSource):
    """Still images: the images of a directory (not recursive, sorted by name) or one image file.

    ``fps`` does not apply (images carry no source time) and is ignored with a warning.

    Raises:
        SourceError: the directory holds no image files.
    """

    def __init__(self, path: Path, fps: float | None = None) -> None:
        super().__init__()
        self.name = str(path)
        if path.is_dir():
            self.paths = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            self.paths = [path]
        if not self.paths:
            raise SourceError(
                f"image directory {path} holds no images "
                f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        if fps is not None:
            logger.warning("%s holds still images; fps=%s does not apply, ignored", path, fps)

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image, size, reason = decode_image_file(path)
            if image is None:
                self.skip(reason, "%s could not be decoded as an image (%s); skipped", path, reason)
                continue
            yield Frame(index, now_utc(), image, short_hash(f"{path.name}:{size}"))


def decode_image_file(path: Path) -> tuple[np.ndarray | None, int, str]:
    """Read and decode one image file.

    Returns:
        ``(image, size, "")`` with ``image`` (H, W, 3) uint8 BGR (grey, BGRA and 16-bit
        files converted, as ``cv2.IMREAD_COLOR`` does) and ``size`` the file's bytes; or
        ``(None, size, reason)`` with a ``SKIP_*`` reason when the file is empty, cannot be
        read or cannot be decoded. Never raises.
    """
    import cv2

    try:
        data = path.read_bytes()
    except OSError as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None, 0, SKIP_UNREADABLE_FILE
    if not data:
        return None, 0, SKIP_EMPTY_FILE
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header claiming more than CV_IO_MAX_IMAGE_PIXELS
        logger.debug("cannot decode %s: %s", path, exc)
        raw = None
    image = to_bgr8(raw)
    return image, len(data), "" if image is not None else SKIP_UNDECODABLE_IMAGE


def open_source(
    source: str | int | Path,
    fps: float | None = None,
    *,
    replay: str = "fast",
    start_frame: int = 0,
    reconnect: ReconnectPolicy | None = None,
    wait_at_start: bool = False,
) -> FrameSource:
    """Open ``source`` as the right kind of ``FrameSource``.

    Args:
        source: a video file, an image file or a directory of images; an rtsp://, rtmp://, http(s)://,
            udp:// or tcp:// URL; or a camera index (an int, or a string of digits).
        fps: frames per second of source time to keep (see the module docstring).
        replay, start_frame: how a video file plays (``VideoFileSource``); others ignore them.
        reconnect: how a live source reconnects (``LiveSource``); files ignore it.
        wait_at_start: a live source that cannot be opened now is retried until it opens
            instead of raising (``LiveSource``); files ignore it.

    Raises:
        SourceError: the source does not exist or cannot be opened (a live one only
            without ``wait_at_start``); the message names it.
    """
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return LiveSource(int(source), fps, reconnect=reconnect, wait_at_start=wait_at_start)
    text = str(source)
    if text.lower().startswith(LIVE_PREFIXES):
        return LiveSource(text, fps, reconnect=reconnect, wait_at_start=wait_at_start)
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return ImageFilesSource(path, fps)
    if path.is_file():
        return VideoFileSource(path, fps, replay=replay, start_frame=start_frame)
    raise SourceError(
        f"source {text!r} is neither an existing file or directory, a stream URL "
        f"({', '.join(LIVE_PREFIXES)}) nor a camera index"
    )
