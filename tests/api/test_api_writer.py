"""The ingest writer: group commit under concurrency, isolation of a failing batch (the
store's linger between batches is tested in tests/edgeloop/test_store.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from api_support import batch, detection, frame

from api.ingest import IngestTables, build_tables, unique_frames
from api.writer import IngestWriter
from edgeloop.settings import LoopSettings
from edgeloop.store import Store
from edgeloop.store.frames import BatchCounts
from edgeloop.wire import IngestBatch


def tables_for(*keys: str, detections: int = 3) -> IngestTables:
    parsed = IngestBatch.model_validate(
        batch(
            *(
                frame(k, detections=[detection(1, 1, 20 + i, 40, 0.9) for i in range(detections)])
                for k in keys
            )
        )
    )
    frames, _ = unique_frames(parsed)
    return build_tables(
        frames,
        agent_id="test",
        received_at=datetime.now(UTC),
        jpeg_paths={},
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
