"""The ingest writer: group commit under concurrency, isolation of a failing batch, and the
bounded linger that keeps DuckDB open between batches, then releases the file."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

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


def other_process_can_open(path: Path) -> bool:
    """True when a separate process can open the DuckDB file (nobody else holds it)."""
    code = f"import duckdb; duckdb.connect({str(path)!r}).close()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    return result.returncode == 0


@pytest.fixture
def store(loop_settings: LoopSettings) -> Store:
    store = Store(loop_settings.duckdb_path)
    with store.connect():
        pass
    return store


def test_concurrent_batches_all_land(store: Store) -> None:
    groups: list[int] = []
    writer = IngestWriter(store, linger_s=0, observe_group=groups.append)
    results: dict[int, BatchCounts] = {}

    def post(i: int) -> None:
        results[i] = writer.write(tables_for(f"cam-{i}:1", f"cam-{i}:2"))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert all(r == BatchCounts(accepted=2, detections=6, queued=0) for r in results.values())
    assert sum(groups) == 8  # every batch written exactly once, in one group or another
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM prediction_logs").fetchone() == (48,)


def test_a_failing_batch_does_not_fail_its_group(store: Store) -> None:
    writer = IngestWriter(store, linger_s=0)
    good = tables_for("cam-1:1")
    bad = tables_for("cam-1:2")
    # Two detections with the same detection_id: the primary key refuses the batch.
    bad_detections = bad.detections.take([0, 0, 1])
    broken = IngestTables(frames=bad.frames, detections=bad_detections, queue=bad.queue)
    with pytest.raises(Exception, match=r"[Dd]uplicate key"):
        writer.write(broken)
    assert writer.write(good).accepted == 1
    writer.close()
    with store.connect() as con:  # the failed batch was rolled back whole
        assert con.execute("SELECT frame_key FROM frames").fetchall() == [("cam-1:1",)]


def test_linger_keeps_the_file_then_releases_it(store: Store) -> None:
    writer = IngestWriter(store, linger_s=30, max_hold_s=60)
    writer.write(tables_for("cam-1:1"))
    assert not other_process_can_open(store.path)  # held open between batches
    writer.close()
    assert other_process_can_open(store.path)


def test_idle_writer_releases_the_file_after_the_linger(store: Store) -> None:
    writer = IngestWriter(store, linger_s=0.1, max_hold_s=60)
    writer.write(tables_for("cam-1:1"))
    time.sleep(0.5)
    assert other_process_can_open(store.path)
    writer.write(tables_for("cam-1:2"))  # opens again
    writer.close()
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (2,)
