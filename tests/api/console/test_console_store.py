"""The console's store modules: ``edgeloop.store.agents`` (heartbeats) and the read-only
aggregates of ``edgeloop.store.analytics``, checked against the rows inserted."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from console_support import Fleet, add_drift, add_frames, heartbeat, label_pending

from edgeloop.store import Store, agents, analytics

pytestmark = pytest.mark.backends

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_heartbeat_upsert_keeps_the_latest_per_agent(store: Store) -> None:
    with store.connect() as con:
        agents.upsert(con=con, heartbeat=heartbeat("cam-1", frames_per_s=5.0), received_at=T0)
        agents.upsert(
            con=con,
            heartbeat=heartbeat("cam-1", frames_per_s=7.5, model_version="2"),
            received_at=T0 + timedelta(seconds=10),
        )
        agents.upsert(con=con, heartbeat=heartbeat("cam-2"), received_at=T0)
        rows = agents.latest(con=con)
    assert [(r["agent_id"], r["camera_id"]) for r in rows] == [
        ("agent-cam-1", "cam-1"),
        ("agent-cam-2", "cam-2"),
    ]
    assert rows[0]["frames_per_s"] == 7.5
    assert rows[0]["model_version"] == "2"
    assert rows[0]["execution_provider"] == "CPUExecutionProvider"
    assert rows[0]["received_at"] == T0 + timedelta(seconds=10)


def test_heartbeat_needs_an_aware_receive_time(store: Store) -> None:
    with store.connect() as con, pytest.raises(ValueError, match="timezone-aware"):
        agents.upsert(con=con, heartbeat=heartbeat("cam-1"), received_at=datetime(2026, 1, 1))


def test_window_series_histogram_and_class_mix_match_the_rows(store: Store) -> None:
    fleet = Fleet()
    confidences = [[0.9, 0.5], [], [0.45], [0.95, 0.8, 0.3], [0.65]]
    add_frames(
        store,
        fleet,
        "cam-1",
        start=T0,
        confidences=confidences,
        every=timedelta(seconds=30),
        class_names=[["Normal", "Fall"], [], ["Fall"], ["Normal"] * 3, ["Normal"]],
    )
    add_frames(store, fleet, "cam-2", start=T0, confidences=[[0.99]] * 3)
    until = T0 + timedelta(minutes=10)
    with store.connect() as con:
        window = analytics.camera_window(con=con, since=T0, until=until)
        series = analytics.detection_series(
            con=con, since=T0, until=until, bucket_s=60, camera_id="cam-1"
        )
        histogram = analytics.confidence_histogram(
            con=con, since=T0, until=until, bins=10, camera_id="cam-1"
        )
        mix = analytics.class_mix(con=con, since=T0, until=until, camera_id="cam-1")
        later = analytics.camera_window(con=con, since=T0 + timedelta(seconds=61), until=until)
    cam1 = next(r for r in window if r["camera_id"] == "cam-1")
    assert (cam1["frames"], cam1["frames_with_detection"], cam1["detections"]) == (5, 4, 7)
    assert cam1["uncertain"] == 3  # 0.5, 0.45, 0.65
    assert cam1["defect_rate"] == pytest.approx(4 / 5)
    assert cam1["uncertain_share"] == pytest.approx(3 / 7)
    # Frames at 0, 30, 60, 90, 120 s: buckets of 60 s hold 2, 2, 1 frames.
    assert [s["frames"] for s in series] == [2, 2, 1]
    assert [s["detections"] for s in series] == [2, 4, 1]
    assert [s["uncertain"] for s in series] == [1, 1, 1]
    assert series[0]["t"] == int(T0.timestamp())
    assert histogram == [0, 0, 0, 1, 1, 1, 1, 0, 1, 2]
    assert [(m["class_name"], m["detections"]) for m in mix] == [("Normal", 5), ("Fall", 2)]
    # The window's lower bound is inclusive, by capture time: frames at 90 and 120 s remain.
    assert next(r for r in later if r["camera_id"] == "cam-1")["frames"] == 2


def test_windows_at_any_second_count_exactly_what_lies_inside(store: Store) -> None:
    """On PostgreSQL whole minutes come from the per-minute rollups kept at ingest and the
    partial edge minutes from the rows (``edgeloop.store.rollups``); on the DuckDB file
    from the rows. Either way every figure equals a count of the rows inside the window,
    whatever second the window starts and ends at."""
    rng = random.Random(7)
    fleet = Fleet()
    confidences = [[rng.random() for _ in range(rng.randint(0, 3))] for _ in range(90)]
    names = [[rng.choice(["Normal", "Fall"]) for _ in c] for c in confidences]
    every = timedelta(seconds=7)
    add_frames(
        store, fleet, "cam-1", start=T0, confidences=confidences, every=every, class_names=names
    )
    add_frames(store, fleet, "cam-2", start=T0, confidences=[[0.99]] * 40, every=every)
    for since_s, until_s in [(0, 630), (13, 500), (59, 61), (61, 601), (125, 127), (1, 599)]:
        since, until = T0 + timedelta(seconds=since_s), T0 + timedelta(seconds=until_s)
        inside = [
            (confs, names[i])
            for i, confs in enumerate(confidences)
            if since <= T0 + i * every < until
        ]
        dets = [
            (c, n) for confs, frame_names in inside for c, n in zip(confs, frame_names, strict=True)
        ]
        with store.connect() as con:
            window = analytics.camera_window(con=con, since=since, until=until, camera_id="cam-1")
            series = analytics.detection_series(
                con=con, since=since, until=until, bucket_s=120, camera_id="cam-1"
            )
            histogram = analytics.confidence_histogram(
                con=con, since=since, until=until, bins=10, camera_id="cam-1"
            )
            mix = analytics.class_mix(con=con, since=since, until=until, camera_id="cam-1")
        case = f"window [{since_s} s, {until_s} s)"
        if not inside:
            assert window == [] and series == [] and histogram == [0] * 10, case
            continue
        (row,) = window
        assert (row["frames"], row["detections"]) == (len(inside), len(dets)), case
        assert row["frames_with_detection"] == sum(1 for confs, _ in inside if confs), case
        assert row["uncertain"] == sum(1 for c, _ in dets if 0.4 < c < 0.7), case
        assert sum(s["frames"] for s in series) == len(inside), case
        assert sum(s["detections"] for s in series) == len(dets), case
        assert histogram == [
            sum(1 for c, _ in dets if min(int(c * 10), 9) == b) for b in range(10)
        ], case
        expected_mix = {n: [c for c, name in dets if name == n] for n in {n for _, n in dets}}
        assert {m["class_name"]: m["detections"] for m in mix} == {
            n: len(cs) for n, cs in expected_mix.items()
        }, case
        for m in mix:
            assert m["mean_confidence"] == pytest.approx(
                sum(expected_mix[m["class_name"]]) / m["detections"]
            ), case


def test_ranges_must_be_aware_and_non_empty(store: Store) -> None:
    with store.connect() as con:
        with pytest.raises(ValueError, match="timezone-aware"):
            analytics.camera_window(con=con, since=datetime(2026, 1, 1), until=T0)
        with pytest.raises(ValueError, match="empty time range"):
            analytics.detection_series(con=con, since=T0, until=T0, bucket_s=60)


def test_queue_and_labeler_views(store: Store) -> None:
    fleet = Fleet()
    add_frames(store, fleet, "cam-1", start=T0, confidences=[[0.5]] * 4)
    add_frames(store, fleet, "cam-2", start=T0 + timedelta(hours=1), confidences=[[0.6]] * 2)
    label_pending(store, count=3, labeler="alice", at=T0 + timedelta(hours=2))
    with store.connect() as con:
        by_camera = {r["camera_id"]: r for r in analytics.queue_by_camera(con=con)}
        oldest = analytics.oldest_pending(con=con)
        throughput = analytics.labeler_throughput(con=con, since=T0)
        none_since = analytics.labeler_throughput(con=con, since=T0 + timedelta(hours=3))
    pending = sum(r["pending"] for r in by_camera.values())
    labeled = sum(r["labeled"] for r in by_camera.values())
    assert (pending, labeled) == (3, 3)
    assert by_camera["cam-2"]["medium"] + by_camera["cam-1"]["medium"] == 3  # priority 0.5
    assert oldest is not None
    assert oldest["created_at"] == min(
        r["oldest_pending_at"] for r in by_camera.values() if r["oldest_pending_at"]
    )
    assert [(t["labeler"], t["labels"]) for t in throughput] == [("alice", 3)]
    assert none_since == []


def test_drift_history_is_oldest_first_and_bounded(store: Store) -> None:
    for k in range(3):
        add_drift(
            store, "cam-1", at=T0 + timedelta(minutes=15 * k), p_values={"brightness": 0.01 * k}
        )
    with store.connect() as con:
        rows = analytics.drift_history(con=con, since=T0 + timedelta(minutes=10))
    assert [r["computed_at"] for r in rows] == [
        T0 + timedelta(minutes=15),
        T0 + timedelta(minutes=30),
    ]
    assert rows[1]["p_values"] == {"brightness": 0.02}
