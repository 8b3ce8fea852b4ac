"""The agent's heartbeat: every few seconds, ``edgeloop.wire.AgentHeartbeat`` to the API.

``HeartbeatSender`` is a background thread: it POSTs the heartbeat JSON (bearer token) to
``{api_url}/api/agents/heartbeat`` at once, then every ``interval_s``, and one last time
when stopped, so the detection thread never waits on the network. A heartbeat that fails
(connection refused, a timeout, 404 from an API without the route, 5xx, 401) is logged,
rate-limited (the first failure, then at most one line per ``LOG_EVERY_S`` with the count),
and the next one is tried on time; it never stops the agent. What goes in a heartbeat is
the caller's ``snapshot`` function; ``RecentFrames`` keeps the recent rate and latency
figures it needs, thread-safe.
"""

from __future__ import annotations

import importlib.metadata
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

import httpx

from edge_agent.detectors import Detector, OnnxDetector
from edgeloop.wire import AgentHeartbeat, ModelPrecision, model_precision

logger = logging.getLogger(__name__)

HEARTBEAT_PATH = "/api/agents/heartbeat"
RECENT_FRAMES = 100
"""Frames whose inference times make a heartbeat's p50/p95 (see ``AgentHeartbeat``)."""
LOG_EVERY_S = 60.0
"""While heartbeats keep failing, at most one log line per this many seconds."""


def agent_version() -> str:
    """The installed ``edgeloop`` distribution's version, or ``"0+unknown"`` (a source tree)."""
    try:
        return importlib.metadata.version("edgeloop")[:64]
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class RecentFrames:
    """When the last ``RECENT_FRAMES`` frames finished and their inference times (thread-safe).

    ``add`` is called by the detection thread per frame (a lock and an append); ``rates``
    by the heartbeat thread.
    """

    def __init__(self, size: int = RECENT_FRAMES) -> None:
        self._lock = threading.Lock()
        self._frames: deque[tuple[float, float]] = deque(maxlen=size)

    def add(self, inference_ms: float, at: float | None = None) -> None:
        """One frame processed ``at`` (``time.monotonic()``, default now) in ``inference_ms`` ms."""
        with self._lock:
            self._frames.append((time.monotonic() if at is None else at, inference_ms))

    def rates(
        self, window_s: float, now: float | None = None
    ) -> tuple[float, float | None, float | None]:
        """``(frames_per_s, inference_ms_p50, inference_ms_p95)`` over the recent frames that
        finished in the last ``window_s`` seconds: 0 frames/s and None percentiles when
        none did (a stalled or reconnecting source). The rate is (n - 1) frames over the
        span from the first to the last of them (0 for a single frame)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [(t, ms) for t, ms in self._frames if t >= now - window_s]
        if not recent:
            return 0.0, None, None
        span = recent[-1][0] - recent[0][0]
        fps = (len(recent) - 1) / span if span > 0 else 0.0
        times = [ms for _, ms in recent]
        if len(times) == 1:
            return fps, times[0], times[0]
        q = statistics.quantiles(times, n=100, method="inclusive")
        return min(fps, 1e6), q[49], q[94]


class HeartbeatSender(threading.Thread):
    """Sends ``snapshot()`` to the API at once, every ``interval_s`` seconds, and on ``stop()``.

    Args:
        client: an httpx client with the API's base URL and bearer token (see
            ``edge_agent.shipper.make_client``); closed by ``stop()``.
        interval_s: seconds between heartbeats, > 0.
        snapshot: builds the heartbeat to send now (called on this thread).

    Attributes:
        sent, failed: heartbeats the API accepted (2xx) / that failed.
    """

    def __init__(
        self,
        client: httpx.Client,
        interval_s: float,
        snapshot: Callable[[], AgentHeartbeat],
    ) -> None:
        super().__init__(name="edgeloop-heartbeat", daemon=True)
        if interval_s <= 0:
            raise ValueError(f"heartbeat interval must be > 0 s, got {interval_s}")
        self.client = client
        self.interval_s = interval_s
        self.snapshot = snapshot
        self.sent = 0
        self.failed = 0
        self._stop_event = threading.Event()
        self._failing_since: float | None = None
        self._last_log = 0.0
        self._unlogged = 0

    def run(self) -> None:
        try:
            while True:
                self.beat()
                if self._stop_event.wait(self.interval_s):
                    break
            self.beat()  # the final figures, as the agent stops
        finally:
            self.client.close()

    def stop(self, timeout_s: float | None = None) -> None:
        """Send the last heartbeat and end the thread; waits up to ``timeout_s`` (None: the
        client's timeout plus one second, at most 3 s, so that a silent API never holds up
        the agent's shutdown; the daemon thread is left behind then)."""
        self._stop_event.set()
        if self.is_alive():
            if timeout_s is None:
                timeout_s = min((self.client.timeout.read or 5.0) + 1.0, 3.0)
            self.join(timeout_s)

    def beat(self) -> bool:
        """Send one heartbeat now; True when the API accepted it. Never raises."""
        try:
            body = self.snapshot().model_dump_json().encode()
            response = self.client.post(
                HEARTBEAT_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            self._failure(f"{type(exc).__name__}: {exc}")
            return False
        except Exception as exc:  # a snapshot that cannot be built must not end the thread
            logger.exception("cannot build the heartbeat")
            self._failure(f"{type(exc).__name__}: {exc}")
            return False
        if response.is_success:
            self._success()
            return True
        reason = f"HTTP {response.status_code}"
        if response.status_code == 404:
            reason += f" (the API at {self.client.base_url} has no {HEARTBEAT_PATH} route)"
        elif response.status_code in (401, 403):
            reason += " (the API refused the agent's token)"
        self._failure(reason)
        return False

    def _failure(self, reason: str) -> None:
        self.failed += 1
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            self._last_log, self._unlogged = now, 0
            logger.warning(
                "heartbeat to %s failed: %s; the agent goes on and keeps trying every %g s",
                self.client.base_url,
                reason,
                self.interval_s,
            )
        elif now - self._last_log >= LOG_EVERY_S:
            logger.warning(
                "heartbeats still failing (%d more since the last message): %s",
                self._unlogged + 1,
                reason,
            )
            self._last_log, self._unlogged = now, 0
        else:
            self._unlogged += 1

    def _success(self) -> None:
        self.sent += 1
        if self._failing_since is not None:
            logger.info(
                "heartbeats reach the API again after %.0f s",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None


def detector_precision(detector: Detector) -> ModelPrecision | None:
    """The numeric precision of the ONNX model ``detector`` runs (``fp32``, ``fp16``,
    ``int8``: ``edgeloop.wire.model_precision``), or None for other backends."""
    if not isinstance(detector, OnnxDetector):
        return None
    session = detector.session
    return model_precision(
        session.get_modelmeta().custom_metadata_map, session.get_inputs()[0].type
    )
