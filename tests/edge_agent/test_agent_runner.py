"""The runner's loop with a fake detector and an httpx.MockTransport (fast unit tests)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from support import SAMPLES_DIR, require

from edge_agent.capture import Frame
from edge_agent.detectors import Detector
from edge_agent.runner import AgentRunner, frame_key
from edge_agent.settings import AgentSettings
from edgeloop.wire import Detection


class FakeDetector(Detector):
    """One detection per frame; uncertain on odd frames (confidence 0.5), confident on even (0.9)."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def class_names(self) -> list[str]:
        return ["person"]

    @property
    def version(self) -> str:
        return "fake-1"

    def detect(self, image: np.ndarray) -> list[Detection]:
        conf = 0.5 if self.calls % 2 else 0.9
        self.calls += 1
        return [
            Detection(
                bbox_xyxy=(1, 2, 30, 40),
                class_id=0,
                class_name="person",
                confidence=conf,
                uncertain=0.4 < conf < 0.7,
            )
        ]


class Sink:
    def __init__(self) -> None:
        self.batches: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        self.batches.append(batch)
        n = len(batch["frames"])
        return httpx.Response(
            200, json={"accepted": n, "duplicates": 0, "detections": n, "queued": 0}
        )


def synthetic_frames(n: int, interrupt_at: int | None = None) -> Iterator[Frame]:
    rng = np.random.default_rng(0)
    for i in range(n):
        if i == interrupt_at:
            raise KeyboardInterrupt
        yield Frame(i, datetime.now(UTC), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "src0")


def settings(tmp_path: Path, **kw: object) -> AgentSettings:
    values: dict[str, object] = {
        "camera_id": "cam",
        "source": "memory",
        "state_dir": tmp_path,
        "flush_interval_s": 3600,
    }
    values.update(kw)
    return AgentSettings(**values)  # type: ignore[arg-type]


def test_batches_keys_and_jpegs(tmp_path: Path) -> None:
    sink = Sink()
    report = AgentRunner(
        settings(tmp_path, batch_frames=3),
        detector=FakeDetector(),
        transport=httpx.MockTransport(sink),
    ).run(synthetic_frames(7))
    assert [len(b["frames"]) for b in sink.batches] == [3, 3, 1]
    frames = [f for b in sink.batches for f in b["frames"]]
    assert (
        [f["frame_key"] for f in frames]
        == [frame_key("cam", "src0", i) for i in range(7)]
        == [f"cam:src0:{i}" for i in range(7)]
    )
    assert [f["jpeg"] is not None for f in frames] == [i % 2 == 1 for i in range(7)]
    assert report.frames == 7 and report.uncertain_frames == 3 and report.batches_sent == 3
    assert report.stopped_by == "end of source" and report.model_version == "fake-1"


def test_ctrl_c_flushes_the_partial_batch(tmp_path: Path) -> None:
    sink = Sink()
    runner = AgentRunner(
        settings(tmp_path, batch_frames=32),
        detector=FakeDetector(),
        transport=httpx.MockTransport(sink),
    )
    report = runner.run(synthetic_frames(10, interrupt_at=4))
    assert report.stopped_by == "interrupted"
    assert [f["frame_index"] for b in sink.batches for f in b["frames"]] == [0, 1, 2, 3]


def test_max_frames_stops_the_source(tmp_path: Path) -> None:
    sink = Sink()
    report = AgentRunner(
        settings(tmp_path, max_frames=5),
        detector=FakeDetector(),
        transport=httpx.MockTransport(sink),
    ).run(synthetic_frames(100))
    assert report.frames == 5 and report.stopped_by == "max_frames"
    assert sum(len(b["frames"]) for b in sink.batches) == 5


def test_corrupt_image_in_a_directory_is_counted_not_fatal(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copyfile(require(SAMPLES_DIR / "zidane.jpg"), images / "1.jpg")
    (images / "2.jpg").write_bytes(b"garbage")
    shutil.copyfile(require(SAMPLES_DIR / "bus.jpg"), images / "3.jpg")
    sink = Sink()
    s = settings(tmp_path / "state", source=str(images))
    report = AgentRunner(s, detector=FakeDetector(), transport=httpx.MockTransport(sink)).run()
    assert report.frames == 2 and report.skipped_frames == 1
    assert [f["frame_index"] for b in sink.batches for f in b["frames"]] == [0, 2]


def test_api_down_for_the_whole_run_keeps_everything_in_the_spool(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    report = AgentRunner(
        settings(tmp_path, batch_frames=2),
        detector=FakeDetector(),
        transport=httpx.MockTransport(down),
    ).run(synthetic_frames(5))
    assert report.batches_spooled == 3 and report.spool_pending == 3 and report.batches_sent == 0


def test_unopenable_source_is_a_clear_error(tmp_path: Path) -> None:
    from edge_agent.capture import SourceError

    with pytest.raises(SourceError, match=r"nowhere\.mp4"):
        AgentRunner(
            settings(tmp_path, source=str(tmp_path / "nowhere.mp4")), detector=FakeDetector()
        ).run()


def test_a_failing_spool_stops_the_agent_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.spool import Spool

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def disk_full(self: Spool, data: bytes) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "put_json", disk_full)
    runner = AgentRunner(
        settings(tmp_path, batch_frames=1),
        detector=FakeDetector(),
        transport=httpx.MockTransport(down),
    )
    with pytest.raises(RuntimeError, match="No space left on device"):
        runner.run(synthetic_frames(3))
