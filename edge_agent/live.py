"""Live sources (``rtsp://``, ``http(s)://``, ... streams and camera indices) that never give up.

A capture thread reads as fast as the source delivers and keeps only the newest frame, so
a slow consumer drops frames instead of lagging behind (Frigate's approach). When the
stream breaks (a read fails, FFmpeg's read timeout fires because the camera stopped
sending, or a reopen fails) the thread closes it and reopens it after an exponential
back-off with jitter, capped, for as long as the agent runs ("Exponential Backoff And
Jitter", AWS Architecture Blog, 2015). ``frame_index`` keeps counting across reconnects,
so frame keys stay unique; ``reconnects`` counts the successful reopenings and
``connected`` is False in between.

The one seam is ``opener``: a function that opens the target and returns an object with
OpenCV ``VideoCapture``'s ``read()``, ``isOpened()`` and ``release()``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.frame_source import (
    SKIP_UNDECODABLE_FRAME,
    Frame,
    FrameSource,
    SourceError,
    now_utc,
    to_bgr8,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a live source reconnects, and how long it waits on a silent stream.

    Attributes:
        initial_s: wait before the first reopen attempt after a break, s.
        max_s: largest wait between attempts, s (the doubling stops there).
        jitter: the share of each wait drawn at random, [0, 1]: a wait is
            ``d * (1 - jitter * U[0, 1))`` with ``d = min(max_s, initial_s * 2**attempt)``,
            so cameras that broke together do not reconnect in lockstep.
        timeout_s: FFmpeg's open and read timeout for stream URLs, s: a stream that stops
            sending counts as broken after this long (camera indices: the backend's own).
    """

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter: float = 0.5
    timeout_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before reopen attempt ``attempt`` (0 for the first after a break), s."""
        base = min(self.max_s, self.initial_s * 2.0 ** min(attempt, 64))
        return base * (1.0 - self.jitter * (rng or random).random())


class Capture(Protocol):
    """What the live source needs of an OpenCV ``VideoCapture``."""

    def read(self) -> tuple[bool, Any]: ...

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def release(self) -> None: ...


Opener = Callable[[str | int, ReconnectPolicy], Capture]


def open_capture(target: str | int, policy: ReconnectPolicy) -> Capture:
    """``cv2.VideoCapture(target)``; a URL gets FFmpeg's open and read timeouts from ``policy``
    (camera backends refuse unknown parameters, so an index gets none)."""
    import cv2

    if isinstance(target, int):
        return cv2.VideoCapture(target)
    ms = max(1, round(policy.timeout_s * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(target, cv2.CAP_ANY, params)


class LiveSource(FrameSource):
    """A live stream or camera, read by its own thread; the newest frame wins.

    Args:
        target: a stream URL (rtsp://, http(s)://, ...) or a camera index.
        fps: hand out at most this many frames per second; None hands out every frame the
            consumer is fast enough to take.
        reconnect: back-off and timeouts (see ``ReconnectPolicy``).
        opener: opens the target (default ``open_capture``; tests pass a flaky one).
        wait_at_start: a target that cannot be opened at the start is logged as an error
            and then retried like a broken stream, with the same back-off, until it opens
            or ``close()`` (``connected`` is False meanwhile): a camera that boots after
            its agent's host. False (default) raises instead.

    Attributes (besides ``FrameSource``'s):
        failed_reopens: open attempts that failed after the first one (reopens after a
            break, and with ``wait_at_start`` the retries at the start).
        policy: the ``ReconnectPolicy`` in use.

    Raises:
        SourceError: the stream or camera cannot be opened at the start and
            ``wait_at_start`` is False (a wrong URL or index is a configuration error,
            said at once); once it has been open, or with ``wait_at_start``, the source
            retries until ``close()`` and never raises.
    """

    live = True

    def __init__(
        self,
        target: str | int,
        fps: float | None = None,
        *,
        reconnect: ReconnectPolicy | None = None,
        opener: Opener | None = None,
        wait_at_start: bool = False,
    ) -> None:
        super().__init__()
        self.name = str(target)
        self._target = target
        self._min_interval = 1.0 / fps if fps else 0.0
        self.policy = reconnect or ReconnectPolicy()
        self._opener = opener or open_capture
        self.failed_reopens = 0
        self._rng = random.Random()
        self._opened_once = True
        try:
            self._cap: Capture | None = self._open()
        except SourceError as exc:
            if not wait_at_start:
                raise
            logger.error(
                "%s; retrying with back-off (up to %g s between attempts) until it opens",
                exc,
                self.policy.max_s,
            )
            self._cap = None
            self._opened_once = False
            self.connected = False
        opened = now_utc()
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

    def _open(self) -> Capture:
        cap = self._opener(self._target, self.policy)
        if not cap.isOpened():
            cap.release()
            kind = "camera" if isinstance(self._target, int) else "stream"
            raise SourceError(
                f"cannot open {kind} source {self._target!r}: OpenCV could not open it"
            )
        return cap

    def _read(self) -> tuple[bool, Any]:
        assert self._cap is not None
        try:
            return self._cap.read()
        except Exception as exc:  # cv2.error from a backend: the stream is broken
            logger.warning("stream %s: read raised %s: %s", self.name, type(exc).__name__, exc)
            return False, None

    def _disconnect(self) -> None:
        self.connected = False
        if self._cap is not None:
            try:
                self._cap.release()
            except Exception:  # releasing a broken capture must not stop the thread
                logger.debug("stream %s: release failed", self.name, exc_info=True)
        self._cap = None

    def _reconnect(self) -> bool:
        """Reopen with back-off until it works (True) or ``close()`` (False)."""
        attempt = 0
        down_since = time.monotonic()
        while True:
            delay = self.policy.delay(attempt, self._rng)
            if attempt == 0 or attempt % 10 == 0:
                logger.warning(
                    "stream %s is down; reopen attempt %d in %.1f s",
                    self.name,
                    attempt + 1,
                    delay,
                )
            if self._stop.wait(delay):
                return False
            try:
                self._cap = self._open()
            except Exception as exc:  # SourceError, or an opener that raised
                logger.debug("stream %s: reopen attempt %d failed: %s", self.name, attempt + 1, exc)
                self.failed_reopens += 1
                attempt += 1
                continue
            self.connected = True
            if not self._opened_once:
                self._opened_once = True
                logger.info(
                    "stream %s opened after %.1f s and %d attempts",
                    self.name,
                    time.monotonic() - down_since,
                    attempt + 1,
                )
                return True
            self.reconnects += 1
            logger.info(
                "stream %s reconnected after %.1f s and %d attempts (%d reconnects so far)",
                self.name,
                time.monotonic() - down_since,
                attempt + 1,
                self.reconnects,
            )
            return True

    def _read_loop(self) -> None:
        index = -1
        while not self._stop.is_set():
            if self._cap is None and not self._reconnect():
                break
            ok, raw = self._read()
            if not ok:
                if self._stop.is_set():
                    break
                logger.warning("stream %s broke (no frame read); reconnecting", self.name)
                self._disconnect()
                continue
            index += 1
            image = to_bgr8(raw)
            if image is None:
                self.skip(
                    SKIP_UNDECODABLE_FRAME,
                    "stream %s: frame %d could not be decoded; skipped",
                    self.name,
                    index,
                )
                continue
            self._publish(Frame(index, now_utc(), image, self.source_id))
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._latest is not None and self._latest.frame_index > self._taken_index:
                self.dropped += 1
            self._latest = frame
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
        if not self._thread.is_alive():
            self._disconnect()
