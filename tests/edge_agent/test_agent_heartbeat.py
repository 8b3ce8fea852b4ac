"""The agent's heartbeat, against a real local HTTP server that validates each body with
``AgentHeartbeat.model_validate_json``; failures never stop the agent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_detector import FakeDetector
from loopback import JsonHandler, LoopbackServer
from pydantic import ValidationError

from edge_agent.capture import Frame
from edge_agent.heartbeat import HEARTBEAT_PATH, HeartbeatSender, RecentFrames, agent_version
from edge_agent.runner import AgentRunner
from edge_agent.settings import AgentSettings
from edge_agent.shipper import make_client
from edgeloop.wire import AgentHeartbeat, parse_ingest_batch


class HeartbeatApi:
    """A real HTTP server with ``POST /api/agents/heartbeat`` (and ``/api/ingest``).

    ``status`` is what the heartbeat route answers (200, or 404/500 to fail); every valid
    heartbeat is kept in ``beats``, every invalid body in ``invalid``."""

    def __init__(self) -> None:
        self.status = 200
        self.beats: list[AgentHeartbeat] = []
        self.auth: list[str | None] = []
        self.invalid: list[str] = []
        self.lock = threading.Lock()
        api = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/api/ingest":
                    frames = parse_ingest_batch(body).frame_count
                    self.send_json(
                        200, {"accepted": frames, "duplicates": 0, "detections": 0, "queued": 0}
                    )
                    return
                if self.path != HEARTBEAT_PATH or api.status != 200:
                    self.send_json(
                        404 if self.path != HEARTBEAT_PATH else api.status, {"detail": "no"}
                    )
                    return
                try:
                    beat = AgentHeartbeat.model_validate_json(body)
                except ValidationError as exc:
                    with api.lock:
                        api.invalid.append(str(exc))
                    self.send_json(422, {"detail": str(exc)})
                    return
                with api.lock:
                    api.beats.append(beat)
                    api.auth.append(self.headers.get("Authorization"))
                self.send_json(200, {"ok": True})

        self.server = LoopbackServer(Handler)
        self.server.start()
        self.url = self.server.url

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def heartbeat_api() -> Iterator[HeartbeatApi]:
    api = HeartbeatApi()
    yield api
    api.close()


def frames(n: int, *, bad: tuple[int, ...] = ()) -> Iterator[Frame]:
    for i in range(n):
        image = np.zeros((0, 0, 3), np.uint8) if i in bad else np.full((48, 64, 3), 90, np.uint8)
        yield Frame(i, datetime.now(UTC), image, "src")


def runner_for(url: str, tmp_path: Path, **overrides: object) -> AgentRunner:
    values: dict[str, object] = {
        "camera_id": "gate-3",
        "source": "memory",
        "api_url": url,
        "state_dir": tmp_path,
        "agent_id": "host-a",
        "heartbeat_interval_s": 0.2,
        "flush_interval_s": 3600,
        "batch_frames": 10,
    }
    values.update(overrides)
    settings = AgentSettings(**values)  # type: ignore[arg-type]
    return AgentRunner(settings, detector=FakeDetector(delay_s=0.02, version="fake-2"))


def test_the_agent_sends_valid_heartbeats_from_a_background_thread(
    heartbeat_api: HeartbeatApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELOOP_AGENT_TOKEN", "hb-t0ken")
    runner = runner_for(heartbeat_api.url, tmp_path)
    started = time.monotonic()
    report = runner.run(frames(40, bad=(7,)))  # ~0.8 s of frames, one that fails
    elapsed = time.monotonic() - started
    assert report.frames == 39 and report.skipped_frames == 1

    beats = heartbeat_api.beats
    assert not heartbeat_api.invalid
    assert len(beats) >= 3  # at start, every 0.2 s, and the last one at the end
    assert set(heartbeat_api.auth) == {"Bearer hb-t0ken"}
    first, last = beats[0], beats[-1]
    assert (last.agent_id, last.camera_id, last.model_version) == ("host-a", "gate-3", "fake-2")
    assert last.agent_version == agent_version() != "0+unknown"
    assert last.host and last.source_connected and last.reconnects == 0
    assert last.started_at == first.started_at <= first.sent_at <= last.sent_at
    processed = [b.frames_processed for b in beats]
    assert processed == sorted(processed) and processed[-1] == 39  # the final figures
    assert last.frames_skipped == 1
    # 20 ms a frame: the recent rate is near 50 frames/s; inference times are the detector's.
    middle = [b for b in beats if 0 < b.frames_processed < 39 and b.frames_per_s > 0]
    assert middle and all(20 < b.frames_per_s < 60 for b in middle), [
        b.frames_per_s for b in middle
    ]
    assert all(b.inference_ms_p50 is not None and b.inference_ms_p50 >= 19 for b in middle)
    assert last.spool_batches == 0 and last.spool_dropped_batches == 0
    assert last.execution_provider is None  # a stand-in detector: no ONNX Runtime session
    assert elapsed < 5  # the heartbeat never held the detection thread up


@pytest.mark.parametrize("status", [404, 500])
def test_a_failing_heartbeat_route_never_stops_the_agent(
    heartbeat_api: HeartbeatApi, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    heartbeat_api.status = status
    report = runner_for(heartbeat_api.url, tmp_path, heartbeat_interval_s=0.05).run(frames(30))
    assert report.frames == 30 and report.batches_sent == 3
    failures = [r for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(failures) == 1  # rate-limited: one line, not one per 50 ms
    assert f"HTTP {status}" in failures[0].getMessage()


def test_an_unreachable_api_costs_the_agent_nothing(tmp_path: Path) -> None:
    runner = runner_for("http://127.0.0.1:9", tmp_path, heartbeat_interval_s=0.05)
    started = time.monotonic()
    report = runner.run(frames(20))
    assert report.frames == 20 and report.batches_spooled == 2
    assert time.monotonic() - started < 5
    assert runner.heartbeats is not None and runner.heartbeats.failed >= 2
    assert runner.heartbeats.sent == 0


def test_the_sender_recovers_and_says_so(
    heartbeat_api: HeartbeatApi, caplog: pytest.LogCaptureFixture
) -> None:
    def snapshot() -> AgentHeartbeat:
        now = datetime.now(UTC)
        return AgentHeartbeat(
            agent_id="a", camera_id="c", host="h", agent_version="1", sent_at=now,
            started_at=now, source_connected=False, reconnects=2, frames_processed=0,
            frames_skipped=0, frames_per_s=0.0, spool_batches=0, spool_bytes=0,
            spool_dropped_batches=0,
        )  # fmt: skip

    caplog.set_level(logging.INFO, logger="edge_agent.heartbeat")
    sender = HeartbeatSender(make_client(heartbeat_api.url, None, 2.0), 60.0, snapshot)
    heartbeat_api.status = 500
    assert not sender.beat() and not sender.beat()
    heartbeat_api.status = 200
    assert sender.beat()
    assert "heartbeats reach the API again" in caplog.text
    assert heartbeat_api.beats[-1].reconnects == 2 and not heartbeat_api.beats[-1].source_connected
    sender.client.close()


def test_recent_frames_rate_and_percentiles() -> None:
    recent = RecentFrames(size=100)
    for i in range(200):  # 10 frames/s for 20 s, inference 1..200 ms
        recent.add(float(i + 1), at=100.0 + i / 10)
    fps, p50, p95 = recent.rates(window_s=5.0, now=100.0 + 19.9)
    assert fps == pytest.approx(10.0)
    # The last 5 s: 51 frames with inference 150..200 ms.
    assert p50 == pytest.approx(175.0) and p95 == pytest.approx(197.5)
    assert recent.rates(window_s=5.0, now=200.0) == (0.0, None, None)  # stalled: nothing recent


def test_the_heartbeat_client_is_separate_and_has_a_short_timeout(tmp_path: Path) -> None:
    runner = runner_for("http://127.0.0.1:9", tmp_path, heartbeat_interval_s=2.0)
    sender = runner._start_heartbeat()
    assert sender is not None
    try:
        assert isinstance(sender.client, httpx.Client) and sender.client.timeout.read == 2.0
    finally:
        sender.stop(timeout_s=3.0)
    assert runner_for("http://x:1", tmp_path, heartbeat_interval_s=0)._start_heartbeat() is None
