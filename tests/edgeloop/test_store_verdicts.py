"""The audit sample, the verdicts and the rates from them, and each labeler's submits, on
both backends: the database's sample equals the Python rule frame for frame, and the counts
are exactly those of the inserted rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import frame_row, label_frame, verdict_row

from edgeloop.annotations import ReviewedBox
from edgeloop.audit import (
    Submit,
    audit_hash,
    audit_threshold,
    changed_pre_labels,
    in_audit_sample,
    throughput,
    wilson,
)
from edgeloop.store import AnyStore, label_work, labels, verdicts
from edgeloop.store.batches import tables_from_rows
from edgeloop.store.ingest import insert_batch

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SHARE = 0.1


def _detection(key: str, k: int, confidence: float, name: str = "Normal") -> dict[str, object]:
    return {
        "detection_id": f"{key}:{k}",
        "frame_key": key,
        "camera_id": key.split(":")[0],
        "captured_at": NOW,
        "class_id": 0 if name == "Normal" else 1,
        "class_name": name,
        "confidence": confidence,
        "x1": 10.0 + k,
        "y1": 20.0,
        "x2": 110.0 + k,
        "y2": 220.0,
        "uncertain": 0.4 < confidence < 0.7,
        "model_version": "1",
    }


def _insert(
    store: AnyStore, frames: list[dict[str, object]], dets: list[dict[str, object]]
) -> None:
    batch = tables_from_rows(frames, dets)
    with store.connect() as con:
        insert_batch(
            con=con, frames=batch.frames, detections=batch.detections, queue_items=batch.queue
        )


def _frames(n: int) -> list[dict[str, object]]:
    """``n`` frames of cam-a with a JPEG, one second apart; every third has two detections
    (0.95 and 0.55), the rest none."""
    return [
        frame_row(
            f"cam-a:{i}",
            "cam-a",
            NOW + timedelta(seconds=i),
            detection_count=2 if i % 3 == 0 else 0,
            jpeg_path=f"frames/cam-a/{i}.jpg",
        )
        for i in range(n)
    ]


def test_the_hash_rule_matches_its_threshold() -> None:
    assert audit_threshold(0.0) == "00000000"
    assert audit_threshold(0.5) == "80000000"
    assert audit_threshold(1.0) is None
    assert in_audit_sample("anything", 1.0) and not in_audit_sample("anything", 0.0)
    keys = [f"cam-a:0:{i}" for i in range(20_000)]
    share = sum(in_audit_sample(k, 0.02) for k in keys) / len(keys)
    assert 0.017 < share < 0.023  # md5 is uniform: 2 % of 20,000 keys, ± 3.5 sigma
    assert all(in_audit_sample(k, 0.02) == (audit_hash(k) < "051eb851") for k in keys[:500])
    with pytest.raises(ValueError, match="audit share"):
        audit_threshold(1.5)


def test_the_database_samples_the_frames_the_rule_samples(store: AnyStore) -> None:
    frames = _frames(300)
    dets = [
        d
        for f in frames
        if f["detection_count"]
        for d in (
            _detection(str(f["frame_key"]), 0, 0.95),
            _detection(str(f["frame_key"]), 1, 0.55),
        )
    ]
    _insert(store, frames, dets)
    empty_sampled = [
        str(f["frame_key"])
        for f in frames
        if not f["detection_count"] and in_audit_sample(str(f["frame_key"]), SHARE)
    ]
    confident_sampled = [
        str(d["detection_id"])
        for d in dets
        if d["confidence"] == 0.95 and in_audit_sample(str(d["frame_key"]), SHARE)
    ]
    assert len(empty_sampled) >= 10 and len(confident_sampled) >= 5
    with store.connect() as con:
        found = verdicts.audit_frames(
            con=con, share=SHARE, camera_id=None, labeler="ann", now=NOW, limit=500
        )
        crops = labels.review_candidates(
            con=con,
            class_name=None,
            camera_id=None,
            min_confidence=0.7,
            labeler="ann",
            now=NOW,
            limit=500,
            audit_share=SHARE,
        )
        # An audited frame leaves the sample's to-do list; so does a labeled one.
        done, labeled = empty_sampled[0], empty_sampled[1]
        verdicts.record(con=con, rows=[verdict_row(done, None, "ok", reviewed_at=NOW)])
        label_frame(con, labeled, [], labeler="bo", labeled_at=NOW)
        left = verdicts.audit_frames(
            con=con, share=SHARE, camera_id="cam-a", labeler="ann", now=NOW, limit=500
        )
    assert [f["frame_key"] for f in found] == empty_sampled  # oldest capture first
    assert sorted(c["detection_id"] for c in crops) == sorted(confident_sampled)
    assert [f["frame_key"] for f in left] == empty_sampled[2:]


def test_audit_counts_are_the_audited_rows(store: AnyStore) -> None:
    old = NOW - timedelta(days=3)
    rows = [
        verdict_row("cam-a:1:0", "Normal", "ok", reviewed_at=NOW),
        verdict_row("cam-a:2:0", "Normal", "wrong", reviewed_at=NOW),
        verdict_row("cam-a:3:0", "Normal", "wrong_class", reviewed_at=NOW, corrected_class="Fall"),
        verdict_row("cam-a:4:0", "Normal", "ok", reviewed_at=old),
        verdict_row("cam-a:5:0", "Fall", "ok", reviewed_at=NOW),
        verdict_row("cam-a:6:0", "Fall", "wrong", reviewed_at=NOW, audit=False),  # not sampled
        verdict_row("cam-a:7", None, "missed", reviewed_at=NOW),
        verdict_row("cam-a:8", None, "ok", reviewed_at=old),
    ]
    with store.connect() as con:
        verdicts.record(con=con, rows=rows)
        verdicts.record(
            con=con, rows=[verdict_row("cam-a:1:0", "Normal", "wrong", reviewed_at=NOW)]
        )
        recent = verdicts.audit_counts(con=con, since=NOW - timedelta(hours=24))
        every = verdicts.audit_counts(con=con, since=None)
        stored = verdicts.for_frames(con=con, frame_keys=["cam-a:1"])
    assert [r["verdict"] for r in stored] == ["ok"]  # the first verdict stays
    assert recent == {
        "classes": [
            {"class_name": "Fall", "audited": 1, "wrong": 0, "wrong_class": 0},
            {"class_name": "Normal", "audited": 3, "wrong": 1, "wrong_class": 1},
        ],
        "frames": {"audited": 1, "missed": 1},
    }
    assert every["classes"][1]["audited"] == 4 and every["frames"] == {"audited": 2, "missed": 1}


def test_wilson_interval_matches_its_formula() -> None:
    p = wilson(2, 4)
    assert p.rate == 0.5 and p.low == pytest.approx(0.1500, abs=1e-4)
    assert p.high == pytest.approx(0.8500, abs=1e-4)
    zero = wilson(0, 20)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.1611, abs=1e-4)
    assert wilson(0, 0).rate is None


def test_changed_pre_labels_counts_moved_reclassed_and_rejected_boxes() -> None:
    model = [((10.0, 10.0, 50.0, 50.0), "Normal")] * 2 + [((60.0, 60.0, 90.0, 90.0), "Fall")]
    assert changed_pre_labels(model, [((10.4, 10.0, 50.0, 50.9), "Normal")] * 2 + [model[2]]) == 0
    assert changed_pre_labels(model, [model[0], ((60.0, 60.0, 90.0, 90.0), "Normal")]) == 2
    assert changed_pre_labels(model, [((13.0, 10.0, 50.0, 50.0), "Normal")]) == 3


def test_throughput_times_submits_and_skips_breaks() -> None:
    t = NOW
    submits = [
        Submit(t, 1, 2, 2, 0),
        Submit(t + timedelta(seconds=10), 1, 1, 2, 1),
        Submit(t + timedelta(seconds=40), 3, 3, 3, 0),  # a grid page of 3 frames
        Submit(t + timedelta(seconds=1000), 1, 0, 1, 1),  # after a break: not timed
    ]
    got = throughput(submits)
    assert (got.items, got.boxes, got.timed_items, got.active_s) == (6, 6, 4, 40.0)
    assert got.items_per_hour == 360.0 and got.boxes_per_hour == 360.0
    assert got.median_s_per_item == 10.0  # 10, 10, 10, 10
    assert got.changed_share == pytest.approx(2 / 8)


def test_label_work_reads_each_labelers_submits(store: AnyStore) -> None:
    frames = _frames(4)  # frames 0 and 3 have two detections
    dets = [
        d
        for key in ("cam-a:0", "cam-a:3")
        for d in (_detection(key, 0, 0.95), _detection(key, 1, 0.55))
    ]
    _insert(store, frames, dets)
    kept = ReviewedBox(bbox_xyxy=(10.0, 20.0, 110.0, 220.0), class_id=0, class_name="Normal")
    moved = ReviewedBox(bbox_xyxy=(30.0, 20.0, 111.0, 220.0), class_id=0, class_name="Normal")
    plan = [("cam-a:0", [kept, moved], 0), ("cam-a:3", [kept], 30), ("cam-a:1", [], 30)]
    with store.connect() as con:
        for key, boxes, seconds in plan:
            label_frame(con, key, boxes, labeler="ann", labeled_at=NOW + timedelta(seconds=seconds))
        got = label_work.submits(con=con, since=NOW - timedelta(hours=1))
        none = label_work.submits(con=con, since=NOW + timedelta(hours=1))
    assert none == {}
    assert got == {
        "ann": [
            Submit(NOW, 1, 2, 2, 1),
            Submit(NOW + timedelta(seconds=30), 2, 1, 2, 1),
        ]
    }
