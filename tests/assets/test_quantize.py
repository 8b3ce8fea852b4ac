"""``assets.quantize`` on the real seed model and real frames, and the int8 shipping rule.

The int8 model is quantised once per module from 8 vtest frames (calibration) and judged
on 8 others labelled by the seed at 1280 px (as ``test_heldout_real`` does), so the scores
are real and imperfect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from loopdata import seed_labeled_dataset, vtest_frames

from assets.heldout import GainInterval
from assets.quantize import (
    INT8,
    Int8Candidate,
    Int8Judgement,
    QuantizedModel,
    calibration_images,
    judge_int8,
    letterboxed_tensor,
    quantize_int8,
)
from assets.registry import DEFAULT_INT8_MAX_MAP_LOSS, TIE_EPS, int8_decision
from assets.yolo import HeldoutMetrics
from edgeloop.detection.preprocess import preprocess
from edgeloop.offline import configure_offline_environment, quiet_ultralytics
from edgeloop.wire.records import MODEL_PRECISION_KEY, model_precision


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 vtest frames: 8 to calibrate on (train), 8 held out (val) with seed labels."""
    configure_offline_environment(tmp_path_factory.mktemp("ultralytics"))
    quiet_ultralytics()
    root = tmp_path_factory.mktemp("int8") / "yolo"
    return seed_labeled_dataset(root, count=16, step=40, odd_to_train=True)


@pytest.fixture(scope="module")
def quantized(frames_dir: Path, seed_onnx: Path) -> QuantizedModel:
    train = sorted((frames_dir / "images" / "train").glob("*.jpg"))
    return quantize_int8(seed_onnx, frames_dir.parent / "int8" / "best.onnx", train)


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_calibration_tensor_is_the_agents_preprocessing():
    frame = vtest_frames(1)[0]
    np.testing.assert_allclose(letterboxed_tensor(frame, 640), preprocess(frame, 640)[0], atol=1e-6)


def test_calibration_images_span_the_training_set(tmp_path: Path):
    paths = [tmp_path / f"{i:03d}.jpg" for i in range(100)]
    picked = calibration_images(list(reversed(paths)), 5)
    assert [p.name for p in picked] == ["000.jpg", "025.jpg", "050.jpg", "074.jpg", "099.jpg"]
    assert calibration_images(paths[:3], 5) == paths[:3]
    with pytest.raises(ValueError, match="no training images"):
        calibration_images([], 5)


@pytest.mark.integration
def test_int8_model_keeps_the_fp32_outputs_on_a_real_frame(
    quantized: QuantizedModel, seed_onnx: Path
):
    fp32, int8 = _session(seed_onnx), _session(quantized.path)
    assert [(o.name, o.shape) for o in int8.get_outputs()] == [
        (o.name, o.shape) for o in fp32.get_outputs()
    ]
    meta = int8.get_modelmeta().custom_metadata_map
    assert meta[MODEL_PRECISION_KEY] == INT8 and meta["names"] == "{0: 'Normal', 1: 'Fall'}"
    assert model_precision(meta, int8.get_inputs()[0].type) == "int8"
    assert model_precision({}, fp32.get_inputs()[0].type) == "fp32"
    tensor = preprocess(vtest_frames(1, step=1)[0], 640)[0]  # a frame not calibrated on
    a, b = fp32.run(None, {"images": tensor})[0][0], int8.run(None, {"images": tensor})[0][0]
    score_a, score_b = a[4:].max(0), b[4:].max(0)
    kept = score_a > 0.25
    assert kept.sum() > 5  # people are detected
    assert np.abs(score_a[kept] - score_b[kept]).mean() < 0.06
    assert np.median(np.abs(a[:4, kept] - b[:4, kept])) < 4.0  # px at 640
    assert quantized.fp32_nodes > 10 and quantized.calibration_frames == 8


@pytest.mark.integration
def test_int8_judged_against_its_fp32_parent_on_held_out_frames(
    frames_dir: Path, quantized: QuantizedModel, tmp_path: Path, seed_onnx: Path
):
    from ultralytics import YOLO

    judged = judge_int8(
        YOLO, seed_onnx, quantized, frames_dir / "data.yaml", work=tmp_path, resamples=200
    )
    gain = judged.gains["mAP50-95"]
    print(f"\nfp32 {judged.fp32_metrics}\nint8 {judged.int8_metrics}\nint8 - fp32 {gain.label()}")
    assert judged.val_images == 8 and gain.n == 8
    assert 0.2 < judged.fp32_metrics.map50_95 < 0.99 and judged.int8_metrics.map50_95 > 0.1
    assert gain.low <= gain.point <= gain.high
    assert gain.point == pytest.approx(
        judged.int8_metrics.map50_95 - judged.fp32_metrics.map50_95, abs=1e-6
    )
    assert abs(gain.point) < 0.15  # quantisation costs little on this model


def _int8(low: float, n: int = 40) -> Int8Candidate:
    gain = GainInterval(
        metric="mAP50-95",
        point=low + 0.01,
        low=low,
        high=low + 0.02,
        confidence=0.95,
        resamples=1000,
        n=n,
    )
    metrics = HeldoutMetrics(0.5, 0.4, 0.6, 0.6)
    judged = Int8Judgement(
        QuantizedModel(Path("int8.onnx"), 32, 24, 1.0),
        n,
        metrics,
        metrics,
        {"mAP50-95": gain},
        1.0,
    )
    return Int8Candidate("5", "4", judged)


@pytest.mark.parametrize(
    ("low", "n", "ships"),
    [
        (-DEFAULT_INT8_MAX_MAP_LOSS + 0.001, 40, True),
        (-DEFAULT_INT8_MAX_MAP_LOSS, 40, True),  # at the bound: within it
        (-DEFAULT_INT8_MAX_MAP_LOSS - TIE_EPS / 2, 40, True),  # a tie
        (-DEFAULT_INT8_MAX_MAP_LOSS - 0.001, 40, False),
        (0.01, 10, False),  # too few held-out images to say
        (float("nan"), 40, False),
    ],
)
def test_int8_ships_only_within_its_bound(low: float, n: int, ships: bool):
    decision = int8_decision(_int8(low, n), min_heldout_images=20)
    assert decision.ship is ships, decision.reason
    assert ("fp32 ships" in decision.reason) is not ships


def test_no_int8_model_ships_nothing():
    assert not int8_decision(None).ship
