"""The ingest writer: group commit under concurrency, isolation of a failing batch (the
store's linger between batches is tested in tests/edgeloop/test_store.py)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_support import batch, detection, frame

from api.ingest import build_tables, unique_frames
from api.writer import IngestWriter
from edgeloop.settings import LoopSettings
from edgeloop.store import Store
from edgeloop.store.batches import IngestTables
from edgeloop.store.ingest import BatchCounts
from edgeloop.wire import IngestBatch


def tables_for(*keys: str, detections: int = 3, queued: bool = False) -> IngestTables:
    """A batch of ``keys``; ``queued``: its detections are uncertain and its frames carry
    a JPEG, so each frame gets a labeling-queue row."""
    confidence = 0.55 if queued else 0.9
    parsed = IngestBatch.model_validate(
        batch(
            *(
                frame(
                    k,
                    detections=[detection(1, 1, 20 + i, 40, confidence) for i in range(detections)],
                )
                for k in keys
            )
        )
    )
    frames, _ = unique_frames(parsed)
    return build_tables(
        frames,
        agent_id="test",
        received_at=datetime.now(UTC),
        jpeg_paths={k: Path(f"/frames/{k}.jpg") for k in keys} if queued else {},
        uncertainty_low=0.4,
        uncertainty_high=0.7,
    )


@pytest.fixture
def store(loop_settings: LoopSettings) -> Store:
    store = Store(loop_settings.duckdb_path)
    with store.connect():
        pass
    return store


def test_concurrent_batches_all_land(store: Store) -> None:
    groups: list[int] = []
    writer = IngestWriter(store, observe_group=groups.append)
    results: dict[int, BatchCounts] = {}

    def post(i: int) -> None:
        results[i] = writer.write(tables_for(f"cam-{i}:1", f"cam-{i}:2"))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == BatchCounts(accepted=2, detections=6, queued=0) for r in results.values())
    assert sum(groups) == 8  # every batch written exactly once, in one group or another
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM prediction_logs").fetchone() == (48,)


def test_a_failing_batch_does_not_fail_its_group(store: Store) -> None:
    writer = IngestWriter(store)
    good = tables_for("cam-1:1")
    bad = tables_for("cam-1:2")
    # Two detections with the same detection_id: the primary key refuses the batch.
    bad_detections = bad.detections.take([0, 0, 1])
    broken = IngestTables(frames=bad.frames, detections=bad_detections, queue=bad.queue)
    with pytest.raises(Exception, match=r"[Dd]uplicate key"):
        writer.write(broken)
    assert writer.write(good).accepted == 1
    with store.connect() as con:  # the failed batch was rolled back whole
        assert con.execute("SELECT frame_key FROM frames").fetchall() == [("cam-1:1",)]


def grouped_writes(
    store: Store, batches: list[IngestTables]
) -> tuple[list[int], list[BatchCounts | BaseException]]:
    """Write ``batches`` from one thread each while the writer's gate is held, so that
    they all wait and are written as one group; returns the group sizes and each batch's
    result (or error)."""
    gate = threading.Semaphore(1)
    groups: list[int] = []
    writer = IngestWriter(store, observe_group=groups.append, gate=gate)
    results: list[BatchCounts | BaseException] = [RuntimeError("not run")] * len(batches)

    def post(i: int) -> None:
        try:
            results[i] = writer.write(batches[i])
        except Exception as exc:
            results[i] = exc

    gate.acquire()
    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while writer.pending < len(batches) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writer.pending == len(batches)
    gate.release()
    for t in threads:
        t.join()
    return groups, results


def stored_keys(store: Store) -> list[str]:
    with store.connect() as con:
        return [r[0] for r in con.execute("SELECT frame_key FROM frames ORDER BY 1").fetchall()]


def test_new_batches_waiting_together_are_one_group(store: Store) -> None:
    groups, results = grouped_writes(
        store,
        [tables_for(f"cam-{i}:1", f"cam-{i}:2", detections=2, queued=i == 1) for i in range(3)],
    )
    assert groups == [3]
    assert results == [
        BatchCounts(accepted=2, detections=4, queued=0),
        BatchCounts(accepted=2, detections=4, queued=2),
        BatchCounts(accepted=2, detections=4, queued=0),
    ]
    assert stored_keys(store) == [f"cam-{i}:{j}" for i in range(3) for j in (1, 2)]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM prediction_logs").fetchone() == (12,)
        queued = con.execute("SELECT frame_key FROM labeling_queue ORDER BY 1").fetchall()
        assert queued == [("cam-1:1",), ("cam-1:2",)]


def test_a_group_with_a_repeated_or_stored_key_is_written_batch_by_batch(store: Store) -> None:
    IngestWriter(store).write(tables_for("cam-1:stored"))
    # cam-1:twice is in two batches of the group; cam-1:stored is stored already.
    groups, results = grouped_writes(
        store,
        [
            tables_for("cam-1:twice", "cam-1:a"),
            tables_for("cam-1:twice", "cam-1:b"),
            tables_for("cam-1:stored", "cam-1:c"),
        ],
    )
    assert groups == [3]
    counts = [r for r in results if isinstance(r, BatchCounts)]
    assert len(counts) == 3
    assert sum(c.accepted for c in counts) == 4  # twice (once), a, b, c
    assert sorted(k for c in counts for k in c.skipped) == ["cam-1:stored", "cam-1:twice"]
    assert stored_keys(store) == ["cam-1:a", "cam-1:b", "cam-1:c", "cam-1:stored", "cam-1:twice"]
    with store.connect() as con:  # 3 detections per stored frame, none twice
        assert con.execute("SELECT count(*) FROM prediction_logs").fetchone() == (15,)


def test_a_failing_batch_in_a_group_fails_alone(store: Store) -> None:
    bad = tables_for("cam-2:bad")
    broken = IngestTables(
        frames=bad.frames, detections=bad.detections.take([0, 0, 1]), queue=bad.queue
    )
    groups, results = grouped_writes(store, [tables_for("cam-2:1"), broken, tables_for("cam-2:2")])
    assert groups == [3]
    assert isinstance(results[1], Exception)
    assert "uplicate key" in str(results[1])
    assert results[0] == results[2] == BatchCounts(accepted=1, detections=3, queued=0)
    assert stored_keys(store) == ["cam-2:1", "cam-2:2"]
