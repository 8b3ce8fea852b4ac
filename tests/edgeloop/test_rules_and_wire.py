"""The loop's rules and the wire contract: what the agent may send, what the API accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from edgeloop.rules import camera_drifted, is_uncertain, uncertainty_score
from edgeloop.settings import LoopSettings
from edgeloop.wire import Detection, FrameQuality, FrameRecord, IngestBatch


def test_uncertainty_band_is_exclusive_at_both_ends() -> None:
    assert not is_uncertain(0.4)
    assert is_uncertain(0.41)
    assert is_uncertain(0.69)
    assert not is_uncertain(0.7)
    assert is_uncertain(0.5, low=0.45, high=0.55)
    assert not is_uncertain(0.6, low=0.45, high=0.55)


def test_uncertainty_score_peaks_at_band_centre() -> None:
    assert uncertainty_score(0.55) == pytest.approx(1.0)
    assert uncertainty_score(0.4) == 0.0
    assert uncertainty_score(0.9) == 0.0
    assert uncertainty_score(0.5) > uncertainty_score(0.45) > 0


def test_drift_rule_from_the_seed() -> None:
    assert camera_drifted(0.31, None)
    assert not camera_drifted(0.30, 0.2)
    assert camera_drifted(0.0, 0.049)
    assert not camera_drifted(0.0, 0.05)


def test_empty_uncertainty_band_is_refused() -> None:
    with pytest.raises(ValidationError, match="uncertainty band is empty"):
        LoopSettings(uncertainty_low=0.7, uncertainty_high=0.4)


def _frame(**overrides: object) -> FrameRecord:
    fields: dict[str, object] = {
        "frame_key": "cam-1:abc:0",
        "camera_id": "cam-1",
        "frame_index": 0,
        "captured_at": datetime(2026, 1, 1, tzinfo=UTC),
        "width": 640,
        "height": 480,
        "quality": FrameQuality(brightness=100, contrast=20, sharpness=50, saturation=30),
        "inference_ms": 12.5,
        "model_version": "1",
        "detections": [
            Detection(
                bbox_xyxy=(10, 20, 110, 220),
                class_id=0,
                class_name="Normal",
                confidence=0.55,
                uncertain=True,
            )
        ],
    }
    fields.update(overrides)
    return FrameRecord.model_validate(fields)


def test_frame_with_jpeg_round_trips_through_json_as_base64() -> None:
    frame = _frame(jpeg=b"\xff\xd8 jpeg bytes \xff\xd9")
    wire = frame.model_dump_json()
    assert "jpeg bytes" not in wire  # base64 on the wire
    assert FrameRecord.model_validate_json(wire) == frame


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"captured_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"camera_id": "bad camera/../id"}, "camera_id"),
        ({"width": 0}, "width"),
        (
            {
                "detections": [
                    {
                        "bbox_xyxy": (10, 20, 900, 220),
                        "class_id": 0,
                        "class_name": "Normal",
                        "confidence": 0.5,
                        "uncertain": True,
                    }
                ]
            },
            "outside",
        ),
        (
            {
                "detections": [
                    {
                        "bbox_xyxy": (50, 20, 10, 220),
                        "class_id": 0,
                        "class_name": "Normal",
                        "confidence": 0.5,
                        "uncertain": True,
                    }
                ]
            },
            "x1 <= x2",
        ),
        (
            {
                "detections": [
                    {
                        "bbox_xyxy": (1, 2, 3, 4),
                        "class_id": 0,
                        "class_name": "Normal",
                        "confidence": 1.5,
                        "uncertain": False,
                    }
                ]
            },
            "confidence",
        ),
    ],
)
def test_malformed_frames_are_refused_with_the_reason(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _frame(**overrides)


def test_batch_refuses_unknown_fields_and_other_wire_versions() -> None:
    frame = _frame()
    base = {"agent_id": "a", "sent_at": datetime(2026, 1, 1, tzinfo=UTC), "frames": [frame]}
    IngestBatch.model_validate(base)
    with pytest.raises(ValidationError, match="Extra inputs"):
        IngestBatch.model_validate({**base, "surprise": 1})
    with pytest.raises(ValidationError, match="wire_version"):
        IngestBatch.model_validate({**base, "wire_version": "2"})
    with pytest.raises(ValidationError, match="at least 1"):
        IngestBatch.model_validate({**base, "frames": []})
