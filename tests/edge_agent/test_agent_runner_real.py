"""The agent's loop on real video with the real seed model, against a real local HTTP server."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from support import SAMPLES_DIR, require

from edge_agent.capture import Frame, file_source_id, open_source
from edge_agent.runner import AgentRunner
from edge_agent.settings import AgentSettings
from edgeloop.detection.providers import choose_providers

if TYPE_CHECKING:  # the fixture's class lives in this folder's conftest.py
    from conftest import RecordingApi

pytestmark = pytest.mark.integration


@pytest.fixture
def vtest() -> Path:
    return require(SAMPLES_DIR / "vtest.avi")


def settings_for(api: RecordingApi, vtest: Path, state: Path, **overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "camera_id": "cam-1",
        "source": str(vtest),
        "api_url": api.url,
        "token": "t0ken",
        "state_dir": state,
        "flush_interval_s": 3600.0,
        "batch_frames": 4,
        "agent_id": "test-agent",
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]


def test_ships_vtest_with_jpegs_only_on_uncertain_frames(
    recording_api: RecordingApi, vtest: Path, seed_onnx: Path, tmp_path: Path
) -> None:
    # The agent downloads the model from the "API" and flags detections with the loop host's
    # band sent with it: a narrow one, so that some frames have an uncertain detection and
    # some don't.
    recording_api.set_model(seed_onnx, version="7", band=(0.55, 0.7))
    # No audit sample: this test checks the uncertainty rule alone.
    settings = settings_for(recording_api, vtest, tmp_path, max_frames=10, audit_share=0.0)
    report = AgentRunner(settings).run()

    frames = recording_api.frames
    source_id = file_source_id(vtest)
    assert [f["frame_key"] for f in frames] == [f"cam-1:{source_id}:{i}" for i in range(10)]
    assert [len(b["frames"]) for b in recording_api.batches] == [4, 4, 2]
    assert all(h["authorization"] == "Bearer t0ken" for h in recording_api.headers)
    assert {b["agent_id"] for b in recording_api.batches} == {"test-agent"}
    assert recording_api.model_downloads == 1
    assert {f["model_version"] for f in frames} == {"7"}
    # On the accelerator `auto` chose from this onnxruntime build (the CPU on a CPU build).
    assert report.execution_provider == choose_providers("auto", ort.get_available_providers())[0]

    with_jpeg = 0
    for f in frames:
        uncertain = any(d["uncertain"] for d in f["detections"])
        assert uncertain == (f["jpeg"] is not None), f["frame_key"]
        assert all(d["uncertain"] == (0.55 < d["confidence"] < 0.7) for d in f["detections"])
        assert (f["width"], f["height"]) == (768, 576)
        if f["jpeg"] is not None:
            with_jpeg += 1
            # pydantic writes bytes as URL-safe base64 (ser_json_bytes="base64").
            image = cv2.imdecode(
                np.frombuffer(base64.urlsafe_b64decode(f["jpeg"]), np.uint8), cv2.IMREAD_COLOR
            )
            assert image.shape == (576, 768, 3)
    assert 0 < with_jpeg < 10  # both kinds occurred, so the rule was exercised both ways

    assert report.frames == 10 and report.stopped_by == "max_frames"
    assert report.uncertain_frames == with_jpeg
    assert report.detections == sum(len(f["detections"]) for f in frames) > 10
    assert report.batches_sent == 3 and report.batches_spooled == 0 and report.spool_pending == 0
    assert 0 < report.inference_ms_p50 <= report.inference_ms_p95
    assert report.model_version == "7"
    assert (report.uncertainty_low, report.uncertainty_high) == (0.55, 0.7)
    assert report.uncertainty_source == "loop host"


def test_a_local_band_override_wins_and_is_reported(
    recording_api: RecordingApi, vtest: Path, seed_onnx: Path, tmp_path: Path, caplog
) -> None:
    recording_api.set_model(seed_onnx, version="7", band=(0.55, 0.7))
    settings = settings_for(
        recording_api, vtest, tmp_path, max_frames=3, uncertainty_low=0.3, uncertainty_high=0.5
    )
    report = AgentRunner(settings).run()
    confidences = [d["confidence"] for f in recording_api.frames for d in f["detections"]]
    flags = [d["uncertain"] for f in recording_api.frames for d in f["detections"]]
    assert flags == [0.3 < c < 0.5 for c in confidences]
    assert flags != [0.55 < c < 0.7 for c in confidences]  # the loop host's band would differ
    assert (report.uncertainty_low, report.uncertainty_high) == (0.3, 0.5)
    assert report.uncertainty_source == "local override"
    assert "override 0.3–0.5 wins over the loop host's 0.55–0.7" in caplog.text
    assert "EDGELOOP_AGENT_UNCERTAINTY_LOW" in caplog.text


def test_an_offline_restart_keeps_the_loop_hosts_band(
    recording_api: RecordingApi, vtest: Path, seed_onnx: Path, tmp_path: Path
) -> None:
    recording_api.set_model(seed_onnx, version="7", band=(0.55, 0.7))
    settings = settings_for(recording_api, vtest, tmp_path, max_frames=1)
    AgentRunner(settings).run()
    recording_api.stop()
    report = AgentRunner(settings).run()  # the model and its band come from the cache
    assert report.model_version == "7" and report.batches_spooled == 1
    assert (report.uncertainty_low, report.uncertainty_high) == (0.55, 0.7)
    assert report.uncertainty_source == "loop host"


def test_killing_the_api_mid_run_spools_and_replays_without_loss_or_duplicates(
    recording_api: RecordingApi, vtest: Path, seed_onnx: Path, tmp_path: Path
) -> None:
    settings = settings_for(
        recording_api, vtest, tmp_path, max_frames=12, batch_frames=2, model_path=seed_onnx
    )
    runner = AgentRunner(settings)

    def frames() -> Iterator[Frame]:
        with open_source(vtest) as source:
            for frame in source:
                if frame.frame_index == 3:
                    recording_api.stop()  # the API dies mid-run
                if frame.frame_index == 9:
                    deadline = time.monotonic() + 30
                    while runner.shipper.stats.spooled < 2 and time.monotonic() < deadline:  # type: ignore[union-attr]
                        time.sleep(0.05)
                    recording_api.start()  # and comes back on the same port
                yield frame

    report = runner.run(frames())

    keys = [f["frame_key"] for f in recording_api.frames]
    expected = [f"cam-1:{file_source_id(vtest)}:{i}" for i in range(12)]
    assert keys == expected  # nothing lost, nothing doubled, in order
    assert report.batches_spooled >= 2
    assert report.batches_replayed == report.batches_spooled
    assert report.batches_sent + report.batches_replayed == 6
    assert report.spool_pending == 0 and list((tmp_path / "spool" / "pending").iterdir()) == []


def test_a_restarted_agent_replays_the_spool_first_and_resends_the_same_keys(
    recording_api: RecordingApi, vtest: Path, seed_onnx: Path, tmp_path: Path
) -> None:
    url = recording_api.url
    recording_api.stop()
    down = settings_for(
        recording_api, vtest, tmp_path, max_frames=3, batch_frames=2, model_path=seed_onnx
    )
    first = AgentRunner(down).run()
    assert first.batches_spooled == 2 and first.spool_pending == 2

    recording_api.start()
    assert recording_api.url == url
    # Same file again: the new run's frames have the same keys; the API skips them as duplicates.
    second = AgentRunner(down.model_copy(update={"max_frames": 2})).run()
    keys = [f["frame_key"] for f in recording_api.frames]
    source_id = file_source_id(vtest)
    assert keys == [
        f"cam-1:{source_id}:{i}" for i in (0, 1, 2, 0, 1)
    ]  # spool first, then the new batch
    assert recording_api.stored == {f"cam-1:{source_id}:{i}" for i in range(3)}
    assert second.batches_replayed == 2 and second.batches_sent == 1 and second.spool_pending == 0


def test_hot_swaps_to_a_newly_promoted_model(
    recording_api: RecordingApi, vtest: Path, seed_onnx: Path, tmp_path: Path
) -> None:
    import onnx

    # "Version 8": the same weights with different metadata, so a different sha256.
    proto = onnx.load(str(seed_onnx))
    onnx.helper.set_model_props(
        proto, {p.key: p.value for p in proto.metadata_props} | {"description": "promoted v8"}
    )
    v8 = tmp_path / "v8.onnx"
    onnx.save(proto, str(v8))
    recording_api.set_model(seed_onnx, version="7", band=(0.55, 0.7))
    settings = settings_for(
        recording_api,
        vtest,
        tmp_path / "state",
        max_frames=6,
        batch_frames=1,
        model_check_interval_s=0.2,
    )
    runner = AgentRunner(settings)

    def frames() -> Iterator[Frame]:
        with open_source(vtest) as source:
            for frame in source:
                if frame.frame_index == 3:
                    # Promoted while the agent runs, with a new band on the loop host.
                    recording_api.set_model(v8, version="8", band=(0.3, 0.5))
                    deadline = time.monotonic() + 30
                    while runner._next_detector is None and time.monotonic() < deadline:
                        time.sleep(0.05)
                yield frame

    report = runner.run(frames())
    assert [f["model_version"] for f in recording_api.frames] == ["7", "7", "7", "8", "8", "8"]
    assert report.model_version == "8" and recording_api.model_downloads == 2
    for f in recording_api.frames:
        low, high = (0.55, 0.7) if f["model_version"] == "7" else (0.3, 0.5)
        assert all(d["uncertain"] == (low < d["confidence"] < high) for d in f["detections"])
    assert (report.uncertainty_low, report.uncertainty_high) == (0.3, 0.5)
    cached = sorted(p.name for p in (tmp_path / "state" / "models").glob("*.onnx"))
    assert cached == [f"{recording_api.model['sha256']}.onnx"]  # type: ignore[index]
