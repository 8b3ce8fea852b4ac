"""Frame sources: a video file, a directory of images, a live stream or a camera index.

Every source yields ``Frame(frame_index, captured_at, image, source_id)`` from a generator, so
frames never pile up in memory. ``image`` is ``(H, W, 3) uint8 BGR`` (OpenCV's order).

* Video file: decoded in the caller's thread; ``fps=N`` keeps N frames per second of
  source time (a stride of source fps / N; skipped frames are grabbed, not decoded).
  ``frame_index`` is the frame's position in the file.
* Image directory (or one image file): files sorted by name; ``frame_index`` is the position
  in that order.
* Live stream (``rtsp://``, ``http(s)://``, a camera index): a capture thread reads as
  fast as the source delivers and keeps only the newest frame, so a slow consumer drops
  frames instead of lagging behind (Frigate's approach); ``fps=N`` hands out at most N
  frames per second. ``frame_index`` counts frames read from the stream since it started.

A frame or image that cannot be decoded is logged, counted in ``skipped`` and skipped.
A source that cannot be opened raises ``SourceError`` naming it.

``source_id`` identifies where a frame came from, stably, for the frame's idempotency key
(see ``edge_agent.runner.frame_key``): for a file, a short hash of its name and size;
for an image in a directory, a short hash of that image's name and size; for a live
source, the UTC time the stream was opened (``s20260101T120000123Z``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeGuard

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
MAX_CONSECUTIVE_READ_FAILURES = 25
"""A video file whose next this-many frames all fail to decode is treated as ended."""


class SourceError(RuntimeError):
    """A frame source cannot be opened or read."""


class Frame(NamedTuple):
    """One captured frame.

    Attributes:
        frame_index: position of the frame in its source (see the module docstring), >= 0.
        captured_at: timezone-aware UTC time the frame was decoded.
        image: (H, W, 3) uint8 BGR.
        source_id: short stable identifier of the source (see the module docstring).
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


def _now() -> datetime:
    return datetime.now(UTC)


def _valid_image(image: Any) -> TypeGuard[np.ndarray]:
    return (
        isinstance(image, np.ndarray)
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] > 0
        and image.shape[1] > 0
        and image.dtype == np.uint8
    )


class FrameSource(ABC):
    """A source of frames, used as a context manager and iterated once.

    Attributes:
        name: the source as the user gave it, for messages.
        live: True for streams and cameras (frames are dropped rather than lagging).
        skipped: frames or images that could not be decoded and were skipped.
        dropped: live frames overwritten before the consumer took them (0 for files).
    """

    name: str
    live: bool = False

    def __init__(self) -> None:
        self.skipped = 0
        self.dropped = 0

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
                yield Frame(offset + index, _now(), image, self.source_id)
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
                        self.skipped += 1
                        logger.warning("%s: frame %d could not be read; skipped", self.name, index)
                        if keep:
                            next_keep += self.stride
                        continue
                return
            failures = 0
            if not keep:
                continue
            next_keep += self.stride
            ok, image = self._cap.retrieve()
            if not ok or not _valid_image(image):
                self.skipped += 1
                logger.warning("%s: frame %d could not be decoded; skipped", self.name, index)
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
        import cv2

        for index, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if not _valid_image(image):
                self.skipped += 1
                logger.warning("%s could not be decoded as an image; skipped", path)
                continue
            yield Frame(index, _now(), image, file_source_id(path))


class LiveSource(FrameSource):
    """A live stream or camera, read by its own thread; the newest frame wins.

    Args:
        target: a stream URL (rtsp://, http(s)://, ...) or a camera index.
        fps: hand out at most this many frames per second; None hands out every frame the
            consumer is fast enough to take.
        reconnect_s: after the stream breaks, wait this long (doubling up to 30 s)
            before reopening; the thread keeps trying until ``close()``.
        max_reconnects: give up (end the stream) after this many failed reopen attempts
            in a row; None retries until ``close()``.

    Raises:
        SourceError: the stream or camera cannot be opened.
    """

    live = True

    def __init__(
        self,
        target: str | int,
        fps: float | None = None,
        *,
        reconnect_s: float = 1.0,
        max_reconnects: int | None = None,
    ) -> None:
        super().__init__()
        self.name = str(target)
        self._target = target
        self._min_interval = 1.0 / fps if fps else 0.0
        self._reconnect_s = reconnect_s
        self._max_reconnects = max_reconnects
        self._cap = self._open()
        opened = _now()
        self.source_id = (
            "s" + opened.strftime("%Y%m%dT%H%M%S") + f"{opened.microsecond // 1000:03d}Z"
        )
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken_index = -1
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read_loop, name=f"capture-{self.name}", daemon=True
        )
        self._thread.start()

    def _open(self) -> Any:
        import cv2

        cap = cv2.VideoCapture(self._target)
        if not cap.isOpened():
            cap.release()
            kind = "camera" if isinstance(self._target, int) else "stream"
            raise SourceError(
                f"cannot open {kind} source {self._target!r}: OpenCV could not open it"
            )
        return cap

    def _read_loop(self) -> None:
        index = -1
        attempts = 0
        delay = self._reconnect_s
        while not self._stop.is_set():
            ok, image = self._cap.read()
            if not ok:
                if self._stop.is_set():
                    break
                logger.warning("stream %s broke; reopening in %.1f s", self.name, delay)
                self._cap.release()
                if self._stop.wait(delay):
                    break
                try:
                    self._cap = self._open()
                except SourceError:
                    attempts += 1
                    delay = min(delay * 2, 30.0)
                    if self._max_reconnects is not None and attempts >= self._max_reconnects:
                        logger.error(
                            "stream %s: gave up after %d reopen attempts", self.name, attempts
                        )
                        break
                else:
                    attempts = 0
                    delay = self._reconnect_s
                continue
            index += 1
            if not _valid_image(image):
                self.skipped += 1
                logger.warning(
                    "stream %s: frame %d could not be decoded; skipped", self.name, index
                )
                continue
            with self._cond:
                if self._latest is not None and self._latest.frame_index > self._taken_index:
                    self.dropped += 1
                self._latest = Frame(index, _now(), image, self.source_id)
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def frames(self) -> Iterator[Frame]:
        next_due = 0.0
        while True:
            if self._min_interval:
                wait = next_due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
            with self._cond:
                while (
                    self._latest is None or self._latest.frame_index <= self._taken_index
                ) and not (self._ended or self._stop.is_set()):
                    self._cond.wait(0.5)
                latest = self._latest
                if latest is None or latest.frame_index <= self._taken_index:
                    return
                self._taken_index = latest.frame_index
            next_due = time.monotonic() + self._min_interval
            yield latest

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        self._cap.release()


def open_source(
    source: str | int | Path,
    fps: float | None = None,
    *,
    replay: str = "fast",
    start_frame: int = 0,
) -> FrameSource:
    """Open ``source`` as the right kind of ``FrameSource``.

    Args:
        source: a video file, an image file or a directory of images; an rtsp://, rtmp://, http(s)://,
            udp:// or tcp:// URL; or a camera index (an int, or a string of digits).
        fps: frames per second of source time to keep (see the module docstring).
        replay, start_frame: how a video file plays (``VideoFileSource``); others ignore them.

    Raises:
        SourceError: the source does not exist or cannot be opened; the message names it.
    """
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return LiveSource(int(source), fps)
    text = str(source)
    if text.lower().startswith(LIVE_PREFIXES):
        return LiveSource(text, fps)
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return ImageFilesSource(path, fps)
    if path.is_file():
        return VideoFileSource(path, fps, replay=replay, start_frame=start_frame)
    raise SourceError(
        f"source {text!r} is neither an existing file or directory, a stream URL "
        f"({', '.join(LIVE_PREFIXES)}) nor a camera index"
    )
