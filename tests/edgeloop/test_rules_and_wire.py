"""The loop's rules and the wire contract: what the agent may send, what the API accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from edgeloop.rules import camera_drifted, is_uncertain, retrain_decision, uncertainty_score
from edgeloop.settings import LoopSettings
from edgeloop.wire import (
    Detection,
    FrameQuality,
    FrameRecord,
    IngestBatch,
    IngestBatchColumnar,
    decode_binary,
    encode_binary,
    encode_columnar,
    parse_ingest_batch,
)


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


def test_a_drift_retrain_needs_enough_labels_and_no_recent_retrain() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def decide(labels: int, last_h: float | None, *, cooldown_h: float = 6, drifted=("cam",)):
        last = None if last_h is None else now - timedelta(hours=last_h)
        return retrain_decision(
            labels,
            list(drifted),
            label_threshold=50,
            drift_min_labels=20,
            drift_cooldown_h=cooldown_h,
            last_retrain_at=last,
            now=now,
        )

    assert decide(20, None).trigger == "drift"
    assert decide(20, 6).trigger == "drift"  # the cooldown is over at exactly 6 h
    few = decide(19, None)
    assert (few.due, few.reprioritise, few.cooldown_until) == (False, ["cam"], None)
    assert "only 19 new reviewed label(s)" in (few.drift_held or "")
    recent = decide(30, 5.5)
    assert (recent.due, recent.reprioritise) == (False, ["cam"])
    assert recent.cooldown_until == now + timedelta(minutes=30)
    assert decide(30, 5.5, cooldown_h=0).trigger == "drift"  # 0 turns the cooldown off
    # Neither guard holds the label-count trigger back; it covers the drifted camera.
    count = decide(50, 1)
    assert (count.trigger, count.reprioritise, count.drift_held) == ("label_count", [], None)
    assert decide(50, 1, drifted=()).trigger == "label_count"


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


def test_columnar_batch_round_trips_through_json_and_is_told_apart_by_wire_version() -> None:
    frames = [
        _frame(frame_key="cam-1:a:0", jpeg=b"\xff\xd8 jpeg \xff\xd9"),
        _frame(frame_key="cam-1:a:1", detections=[]),
        _frame(frame_key="cam-1:a:2"),
    ]
    sent_at = datetime(2026, 1, 1, tzinfo=UTC)
    columnar = encode_columnar(frames, agent_id="a", sent_at=sent_at)
    v2 = columnar.model_dump_json().encode()
    v1 = IngestBatch(agent_id="a", sent_at=sent_at, frames=frames).model_dump_json().encode()

    parsed = parse_ingest_batch(v2)
    assert isinstance(parsed, IngestBatchColumnar)
    assert parsed.model_dump() == columnar.model_dump()
    assert parsed.detection_count == [1, 0, 1]
    assert parsed.jpeg == [b"\xff\xd8 jpeg \xff\xd9", None, None]
    assert parsed.arrays().boxes.tolist() == [[10, 20, 110, 220], [10, 20, 110, 220]]
    assert isinstance(parse_ingest_batch(v1), IngestBatch)
    # wire_version anywhere in the object (not only first, as pydantic writes it).
    fields = json.loads(v2)
    moved = {**{k: v for k, v in fields.items() if k != "wire_version"}, "wire_version": "2"}
    assert isinstance(parse_ingest_batch(json.dumps(moved, indent=1).encode()), IngestBatchColumnar)
    with pytest.raises(ValidationError, match="wire_version"):
        parse_ingest_batch(v2.replace(b'"wire_version":"2"', b'"wire_version":"9"'))


def test_columnar_batches_compare_by_content_in_both_wire_versions() -> None:
    frames = [_frame(frame_key="cam-1:a:0"), _frame(frame_key="cam-1:a:1", detections=[])]
    sent_at = datetime(2026, 1, 1, tzinfo=UTC)
    unchecked = encode_columnar(frames, agent_id="a", sent_at=sent_at)
    body = unchecked.model_dump_json().encode()
    checked, again = parse_ingest_batch(body), parse_ingest_batch(body)
    assert isinstance(checked, IngestBatchColumnar)
    # Checked batches hold their numpy arrays; equality compares the fields only.
    assert checked == again == unchecked
    other = encode_columnar(frames[:1], agent_id="a", sent_at=sent_at)
    assert checked != other
    assert checked != "not a batch"

    binary = encode_binary(unchecked)
    v3, v3_again = decode_binary(binary), decode_binary(binary)
    assert v3 == v3_again
    assert v3.arrays() == checked.arrays()
    assert v3 != decode_binary(encode_binary(other))


def test_columnar_batch_checks_boxes_across_arrays_naming_the_detection() -> None:
    frames = [_frame(frame_key="cam-1:a:0", detections=[]), _frame(frame_key="cam-1:a:1")]
    body = encode_columnar(frames, agent_id="a", sent_at=datetime(2026, 1, 1, tzinfo=UTC))
    wire = body.model_dump(mode="json")
    IngestBatchColumnar.model_validate(wire)
    with pytest.raises(ValidationError, match="detection 0 of frame cam-1:a:1: bbox") as outside:
        IngestBatchColumnar.model_validate({**wire, "y2": [481.5]})  # 1 px tolerance
    assert outside.value.errors()[0]["loc"] == ("y2", 0)
    IngestBatchColumnar.model_validate({**wire, "y2": [481.0]})
    with pytest.raises(ValidationError, match="x1 <= x2"):
        IngestBatchColumnar.model_validate({**wire, "x1": [111.0]})
