"""Live sources reconnect with capped, jittered back-off and never end because a stream broke;
files still end. Through the capture seam (a flaky opener) and through a real HTTP server
that goes away and comes back."""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import httpx
import numpy as np
import pytest
from fake_detector import FakeDetector
from loopback import LoopbackServer

from edge_agent.capture import LiveSource, ReconnectPolicy, SourceError, open_source
from edge_agent.runner import AgentRunner
from edge_agent.settings import AgentSettings

if TYPE_CHECKING:
    from conftest import IngestApi

FAST = ReconnectPolicy(initial_s=0.01, max_s=0.04, jitter=0.5, timeout_s=2.0)


def _settings(state_dir: Path, source: str, **fields: Any) -> AgentSettings:
    """Camera ``cam`` on ``source``, no heartbeats unless ``fields`` ask for them."""
    fields.setdefault("heartbeat_interval_s", 0)
    return AgentSettings(camera_id="cam", source=source, state_dir=state_dir, **fields)


def test_backoff_doubles_is_capped_and_jittered() -> None:
    policy = ReconnectPolicy(initial_s=1.0, max_s=30.0, jitter=0.5)
    rng = random.Random(3)
    for attempt, base in [(0, 1.0), (1, 2.0), (3, 8.0), (4, 16.0), (5, 30.0), (40, 30.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > base / 4  # jitter: not all the same
    assert ReconnectPolicy(jitter=0.0).delay(2) == 4.0


class FakeCapture:
    """An opened (or refused) capture behind the seam: ``frames`` frames of ``pixel``, then
    a failed read (the stream broke); None streams for ever."""

    def __init__(self, opened: bool, frames: int | None, pixel: int = 0) -> None:
        self.opened, self.left, self.pixel = opened, frames, pixel

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left is not None:
            if self.left == 0:
                return False, None
            self.left -= 1
        time.sleep(0.002)
        return True, np.full((48, 64, 3), self.pixel, np.uint8)

    def release(self) -> None:
        self.opened = False


class FlakyCamera:
    """A camera behind the capture seam: the first connection gives ``first`` frames and
    breaks; the next ``refusals`` opens fail; after that each connection streams for ever.
    A frame's pixels are the number of the connection it came from.

    Records ``source.connected`` as seen during each reopen attempt."""

    def __init__(self, first: int = 3, refusals: int = 4) -> None:
        self.first = first
        self.refusals = refusals
        self.opens = 0
        self.connected_during_outage: list[bool] = []
        self.source: LiveSource | None = None

    def open(self, target: str | int, policy: ReconnectPolicy) -> Any:
        self.opens += 1
        if self.source is not None:
            self.connected_during_outage.append(self.source.connected)
        if self.opens == 1:
            return FakeCapture(True, self.first, self.opens)
        if self.opens <= 1 + self.refusals:
            return FakeCapture(False, None)
        return FakeCapture(True, None, self.opens)


def test_a_stream_that_breaks_reconnects_and_keeps_counting_frames() -> None:
    camera = FlakyCamera(first=3, refusals=4)
    source = LiveSource("rtsp://flaky/cam", reconnect=FAST, opener=camera.open)
    camera.source = source
    frames = []
    with source:
        for frame in source:
            frames.append(frame)
            if frame.image[0, 0, 0] == 6 and len(frames) >= 6:  # frames of the reconnection
                break
    indices = [f.frame_index for f in frames]
    assert indices == sorted(set(indices))  # unique and increasing across the break
    assert camera.opens == 6  # the first, 4 refused, 1 that worked
    assert source.failed_reopens == 4 and source.reconnects == 1
    assert camera.connected_during_outage == [False] * 5
    assert {f.source_id for f in frames} == {source.source_id}  # keys stay unique


def test_the_runner_survives_a_broken_stream_and_reports_reconnects(
    tmp_path: Path, ingest_api: IngestApi
) -> None:
    camera = FlakyCamera(first=2, refusals=3)
    source = LiveSource("rtsp://flaky/cam", reconnect=FAST, opener=camera.open)
    camera.source = source
    settings = _settings(tmp_path, "rtsp://flaky/cam", max_frames=8)
    runner = AgentRunner(
        settings, detector=FakeDetector(), transport=httpx.MockTransport(ingest_api)
    )
    report = runner.run(source)
    assert report.frames == 8 and report.stopped_by == "max_frames"
    assert report.reconnects == 1 and len(ingest_api.stored) == 8


def _short_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), (i * 10) % 256, np.uint8))
    writer.release()
    return path


class FlakyHttpServer(LoopbackServer):
    """A real HTTP server for a folder that can go away and come back on the same port."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
        super().__init__(handler)


@pytest.fixture
def flaky_http(tmp_path: Path) -> Iterator[FlakyHttpServer]:
    _short_video(tmp_path / "cam.avi", 12)
    server = FlakyHttpServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_real_http_stream_that_goes_away_comes_back(flaky_http: FlakyHttpServer) -> None:
    """The stream ends (the camera's server dies), reopening fails while it is down, and
    frames flow again once it is back; the source never ends on its own."""
    source = open_source(f"http://127.0.0.1:{flaky_http.port}/cam.avi", reconnect=FAST)
    assert isinstance(source, LiveSource)
    frames = []
    with source:
        iterator = iter(source)
        frames.append(next(iterator))
        flaky_http.stop()
        deadline = time.monotonic() + 20
        while source.failed_reopens < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert source.failed_reopens >= 3 and not source.connected
        flaky_http.start()
        deadline = time.monotonic() + 20
        for frame in iterator:
            frames.append(frame)
            if source.reconnects >= 1 and frame.frame_index >= 12:
                break
            assert time.monotonic() < deadline, "no frames after the server came back"
    assert source.reconnects >= 1 and frames[-1].frame_index >= 12
    assert [f.frame_index for f in frames] == sorted({f.frame_index for f in frames})


def test_a_video_file_still_ends(tmp_path: Path) -> None:
    with open_source(_short_video(tmp_path / "clip.avi", 5)) as source:
        assert [f.frame_index for f in source] == [0, 1, 2, 3, 4]
    assert source.reconnects == 0


def test_a_stream_that_stops_sending_times_out_and_reconnects(tmp_path: Path) -> None:
    """The camera's server keeps the connection open but stops sending mid-stream: FFmpeg's
    read timeout (``stream_timeout_s``) breaks the read and the source reconnects."""
    from http.server import BaseHTTPRequestHandler

    video = _short_video(tmp_path / "cam.avi", 40).read_bytes()
    release = threading.Event()
    connections: list[int] = []

    class Stalling(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            connections.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(video)))
            self.end_headers()
            if len(connections) == 1:  # the first connection stalls half way
                self.wfile.write(video[: len(video) // 2])
                self.wfile.flush()
                release.wait(30)
                return
            self.wfile.write(video)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    policy = ReconnectPolicy(initial_s=0.05, max_s=0.2, timeout_s=1.0)
    started = time.monotonic()
    try:
        source = open_source(
            f"http://127.0.0.1:{server.server_address[1]}/cam.avi", reconnect=policy
        )
        with source:
            for _frame in source:
                if source.reconnects >= 1:
                    break
        assert source.reconnects >= 1 and len(connections) >= 2
        # Within the 1 s timeout and back-off, not OpenCV's default 30 s read timeout.
        assert time.monotonic() - started < 15
    finally:
        release.set()
        server.shutdown()
        server.server_close()


class LateCamera:
    """A camera behind the capture seam that refuses the first ``refusals`` opens (it is
    still booting), then streams for ever."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.opens = 0

    def open(self, target: str | int, policy: ReconnectPolicy) -> Any:
        self.opens += 1
        return FakeCapture(opened=self.opens > self.refusals, frames=None)


def test_a_stream_that_cannot_be_opened_yet_is_waited_for() -> None:
    camera = LateCamera(refusals=3)
    source = LiveSource("rtsp://late/cam", reconnect=FAST, opener=camera.open, wait_at_start=True)
    with source:
        first = next(iter(source))
        assert first.frame_index == 0 and source.connected
    assert camera.opens == 4  # the first, 2 refused retries, 1 that worked
    assert source.failed_reopens == 2
    assert source.reconnects == 0  # opening late is not a reconnect


def test_without_waiting_a_stream_that_cannot_be_opened_is_an_error() -> None:
    with pytest.raises(SourceError, match="rtsp://late/cam"):
        LiveSource("rtsp://late/cam", reconnect=FAST, opener=LateCamera(refusals=1).open)


def test_the_agent_waits_for_a_camera_that_comes_up_after_it(
    tmp_path: Path, ingest_api: IngestApi
) -> None:
    """A real HTTP camera that is down when the agent starts: the agent keeps running,
    reports the source disconnected in its heartbeat, and detects once the camera is up.

    The clip lasts 10 s at its 25 frames/s: with 12 frames (0.5 s) a loaded machine let the
    stream reach its end before the agent had taken 5 frames, and the reopening after that
    end counted as a reconnect."""
    _short_video(tmp_path / "cam.avi", 250)
    camera = FlakyHttpServer(tmp_path)
    camera.start()  # take a free port, then go down before the agent starts
    camera.stop()
    settings = _settings(
        tmp_path / "state",
        f"http://127.0.0.1:{camera.port}/cam.avi",
        max_frames=5,
        heartbeat_interval_s=0.1,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    runner = AgentRunner(
        settings, detector=FakeDetector(), transport=httpx.MockTransport(ingest_api)
    )
    result: list[Any] = []
    agent = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    agent.start()
    deadline = time.monotonic() + 20
    while not _heartbeats(ingest_api) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent.is_alive(), "the agent ended while its camera was down"
    assert _heartbeats(ingest_api)[0]["source_connected"] is False
    camera.start()
    try:
        agent.join(timeout=30)
    finally:
        camera.stop()
    assert not agent.is_alive() and result, "no frames after the camera came up"
    assert result[0].frames == 5 and result[0].stopped_by == "max_frames"
    assert len(ingest_api.stored) == 5 and result[0].reconnects == 0


def test_the_agent_can_still_end_at_once_on_a_stream_it_cannot_open(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "rtsp://127.0.0.1:9/cam", stream_wait_at_start=False)
    with pytest.raises(SourceError, match=r"rtsp://127\.0\.0\.1:9/cam"):
        AgentRunner(settings, detector=FakeDetector()).run()


def _heartbeats(api: IngestApi) -> list[dict[str, Any]]:
    return [
        json.loads(r.content) for r in list(api.requests) if r.url.path == "/api/agents/heartbeat"
    ]
