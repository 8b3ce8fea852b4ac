"""The runner's loop with a fake detector and an httpx.MockTransport (fast unit tests)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from fake_detector import FakeDetector
from support import SAMPLES_DIR, require

from edge_agent.capture import Frame
from edge_agent.model_sync import ModelFile
from edge_agent.runner import AgentRunner, frame_key
from edge_agent.settings import AgentSettings
from edge_agent.uncertainty import uncertainty_band
from edgeloop.audit import in_audit_sample
from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW
from edgeloop.wire import Detection, parse_ingest_batch

if TYPE_CHECKING:  # the fixture's class lives in this folder's conftest.py
    from conftest import IngestApi


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


def fake_agent(tmp_path: Path, api: IngestApi, **kw: object) -> AgentRunner:
    """An ``AgentRunner`` with a ``FakeDetector`` that ships to ``api``; ``kw`` are settings."""
    return AgentRunner(
        settings(tmp_path, **kw),
        detector=FakeDetector((0.9, 0.5)),
        transport=httpx.MockTransport(api),
    )


def test_batches_keys_and_jpegs(tmp_path: Path, ingest_api: IngestApi) -> None:
    report = fake_agent(tmp_path, ingest_api, batch_frames=3).run(synthetic_frames(7))
    assert [len(b["frames"]) for b in ingest_api.batches] == [3, 3, 1]
    frames = [f for b in ingest_api.batches for f in b["frames"]]
    assert (
        [f["frame_key"] for f in frames]
        == [frame_key("cam", "src0", i) for i in range(7)]
        == [f"cam:src0:{i}" for i in range(7)]
    )
    assert [f["jpeg"] is not None for f in frames] == [i % 2 == 1 for i in range(7)]
    assert report.frames == 7 and report.uncertain_frames == 3 and report.batches_sent == 3
    assert report.stopped_by == "end of source" and report.model_version == "fake-1"
    assert report.uncertainty_source == ""  # a given detector flags detections itself


def test_frames_in_the_audit_sample_go_with_their_jpeg(
    tmp_path: Path, ingest_api: IngestApi
) -> None:
    runner = AgentRunner(
        settings(tmp_path, audit_share=0.5),
        detector=FakeDetector((0.9,)),  # confident only: no frame is uncertain
        transport=httpx.MockTransport(ingest_api),
    )
    report = runner.run(synthetic_frames(12))
    frames = [f for b in ingest_api.batches for f in b["frames"]]
    sampled = [in_audit_sample(f"cam:src0:{i}", 0.5) for i in range(12)]
    assert [f["jpeg"] is not None for f in frames] == sampled
    assert 0 < sum(sampled) < 12 and report.uncertain_frames == 0


def test_ctrl_c_flushes_the_partial_batch(tmp_path: Path, ingest_api: IngestApi) -> None:
    runner = fake_agent(tmp_path, ingest_api, batch_frames=32)
    report = runner.run(synthetic_frames(10, interrupt_at=4))
    assert report.stopped_by == "interrupted"
    assert ingest_api.stored == [0, 1, 2, 3]


def test_max_frames_stops_the_source(tmp_path: Path, ingest_api: IngestApi) -> None:
    report = fake_agent(tmp_path, ingest_api, max_frames=5).run(synthetic_frames(100))
    assert report.frames == 5 and report.stopped_by == "max_frames"
    assert len(ingest_api.stored) == 5


def test_corrupt_image_in_a_directory_is_counted_not_fatal(
    tmp_path: Path, ingest_api: IngestApi
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copyfile(require(SAMPLES_DIR / "zidane.jpg"), images / "1.jpg")
    (images / "2.jpg").write_bytes(b"garbage")
    shutil.copyfile(require(SAMPLES_DIR / "bus.jpg"), images / "3.jpg")
    report = fake_agent(tmp_path / "state", ingest_api, source=str(images)).run()
    assert report.frames == 2 and report.skipped_frames == 1
    assert ingest_api.stored == [0, 2]


def test_api_down_for_the_whole_run_keeps_everything_in_the_spool(
    tmp_path: Path, ingest_api: IngestApi
) -> None:
    ingest_api.mode = "down"
    report = fake_agent(tmp_path, ingest_api, batch_frames=2).run(synthetic_frames(5))
    assert report.batches_spooled == 3 and report.spool_pending == 3 and report.batches_sent == 0


def test_unopenable_source_is_a_clear_error(tmp_path: Path, ingest_api: IngestApi) -> None:
    from edge_agent.capture import SourceError

    with pytest.raises(SourceError, match=r"nowhere\.mp4"):
        fake_agent(tmp_path, ingest_api, source=str(tmp_path / "nowhere.mp4")).run()


def test_a_failing_spool_stops_the_agent_loudly(
    tmp_path: Path, ingest_api: IngestApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.spool import Spool

    def disk_full(self: Spool, data: bytes, **kw: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "put_body", disk_full)
    ingest_api.mode = "down"
    with pytest.raises(RuntimeError, match="No space left on device"):
        fake_agent(tmp_path, ingest_api, batch_frames=1).run(synthetic_frames(3))


def test_the_band_is_the_loop_hosts_unless_overridden_locally(tmp_path: Path) -> None:
    sent = ModelFile(tmp_path / "m.onnx", "7", "0" * 64, "api", uncertainty_band=(0.3, 0.6))
    local = ModelFile(tmp_path / "m.onnx", "local-000000000000", "0" * 64, "local")
    follow = settings(tmp_path)
    override = settings(tmp_path, uncertainty_low=0.5, uncertainty_high=0.9)
    assert vars(uncertainty_band(sent, follow)) == {"low": 0.3, "high": 0.6, "source": "loop host"}
    assert vars(uncertainty_band(sent, override)) == {
        "low": 0.5,
        "high": 0.9,
        "source": "local override",
    }
    assert vars(uncertainty_band(local, follow)) == {
        "low": UNCERTAINTY_LOW,
        "high": UNCERTAINTY_HIGH,
        "source": "default (no model info)",
    }
    assert str(uncertainty_band(local, override)) == "0.5–0.9, local override"


def test_a_full_spool_drops_the_oldest_and_the_report_says_so(
    tmp_path: Path, ingest_api: IngestApi
) -> None:
    ingest_api.mode = "down"
    runner = fake_agent(tmp_path, ingest_api, batch_frames=1, spool_max_bytes=6000)
    report = runner.run(synthetic_frames(12))  # odd frames carry a JPEG: ~4 KB batches
    assert report.batches_spooled == 12
    assert report.spool_dropped_batches > 0 and report.spool_dropped_frames > 0
    assert report.spool_pending == 12 - report.spool_dropped_batches
    spool = tmp_path / "spool" / "pending"
    files = list(spool.glob("*.msgpack"))  # wire version 3, what agents send
    assert len(files) == report.spool_pending
    assert sum(p.stat().st_size for p in files) <= 6000 + 5000
    # What is left is the newest.
    kept = sorted(parse_ingest_batch(p.read_bytes()).frames[0].frame_index for p in files)
    assert kept == list(range(12 - len(kept), 12))


class BrittleDetector(FakeDetector):
    """``FakeDetector`` that raises on frame 2 and 5, and puts a box outside frame 3."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        call = self.calls
        detections = super().detect(image)
        if call in (2, 5):
            raise RuntimeError(f"onnxruntime fell over on call {call}")
        if call == 3:  # x2 = 5000 px, past the 64 px wide frame
            return [d.model_copy(update={"bbox_xyxy": (0, 0, 5000, 10)}) for d in detections]
        return detections


def test_a_frame_that_fails_in_the_pipeline_is_skipped_and_the_next_one_goes_on(
    tmp_path: Path, ingest_api: IngestApi, caplog: pytest.LogCaptureFixture
) -> None:
    runner = AgentRunner(
        settings(tmp_path, batch_frames=2),
        detector=BrittleDetector((0.9, 0.5)),
        transport=httpx.MockTransport(ingest_api),
    )
    report = runner.run(synthetic_frames(8))
    assert ingest_api.stored == [0, 1, 4, 6, 7]
    assert report.frames == 5 and report.skipped_frames == 3
    assert report.skipped_by_reason == {
        "pipeline error: RuntimeError": 2,
        "pipeline error: ValidationError": 1,
    }
    assert report.stopped_by == "end of source"
    # The traceback once per kind of failure; the repeat is one line.
    assert caplog.text.count("Traceback") == 2
    assert (
        "frame 5 ((48, 64, 3)) skipped: RuntimeError: onnxruntime fell over on call 5"
        in caplog.text
    )
