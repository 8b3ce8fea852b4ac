"""The on-disk spool: atomic writes, oldest-first replay order, rejected batches kept."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.spool import Spool
from edgeloop.wire import IngestBatch

MakeBatch = Callable[..., IngestBatch]


def test_put_then_pending_oldest_first_and_ack(tmp_path: Path, make_batch: MakeBatch) -> None:
    spool = Spool(tmp_path / "spool")
    paths = [spool.put(make_batch(i)) for i in range(5)]
    assert spool.pending() == paths
    assert [spool.load(p).frames[0].frame_index for p in spool.pending()] == [0, 1, 2, 3, 4]
    spool.ack(paths[0])
    assert spool.pending() == paths[1:]
    # A new Spool on the same folder (an agent restart) sees the same queue.
    assert Spool(tmp_path / "spool").pending() == paths[1:]


def test_round_trip_keeps_jpeg_bytes(tmp_path: Path, make_batch: MakeBatch) -> None:
    spool = Spool(tmp_path)
    batch = make_batch(1, jpeg=b"\xff\xd8\xff\xe0binary\x00")
    assert spool.load(spool.put(batch)) == batch


def test_reject_moves_the_batch_with_its_reason(tmp_path: Path, make_batch: MakeBatch) -> None:
    spool = Spool(tmp_path)
    path = spool.put(make_batch(1))
    target = spool.reject(path, "HTTP 422: bbox outside the frame")
    assert spool.pending() == []
    assert spool.rejected() == [target]
    assert spool.load(target).frames[0].frame_index == 1
    assert target.with_suffix(".reason.txt").read_text() == "HTTP 422: bbox outside the frame"


def test_interrupted_write_leaves_no_pending_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_batch: MakeBatch
) -> None:
    spool = Spool(tmp_path)
    spool.put(make_batch(0))

    def crash(src: object, dst: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power lost"):
        spool.put(make_batch(1))
    monkeypatch.undo()
    # Only the complete batch is pending; the half-written file is not.
    assert [spool.load(p).frames[0].frame_index for p in spool.pending()] == [0]
    # A power cut mid-write leaves edgeloop.files.atomic_write_bytes' temporary file behind
    # (.<name>.<random>.tmp): never pending, and removed when the agent restarts.
    leftover = tmp_path / "pending" / ".00000000000000000001-00000001-abc123.json.k2x9.tmp"
    leftover.write_bytes(b'{"agent_id": "a", "fra')
    assert [spool.load(p).frames[0].frame_index for p in spool.pending()] == [0]
    Spool(tmp_path)
    assert [p.name for p in (tmp_path / "pending").iterdir()] == [spool.pending()[0].name]


def test_the_disk_cap_drops_the_oldest_batches_first(
    tmp_path: Path, make_batch: MakeBatch, caplog: pytest.LogCaptureFixture
) -> None:
    jpeg = b"\xff\xd8" + os.urandom(3000)  # ~4 KB of base64 per frame
    size = len(make_batch(0, 1, jpeg=jpeg).model_dump_json())
    spool = Spool(tmp_path, max_bytes=3 * size + size // 2)  # room for 3 two-frame batches
    for i in range(5):
        spool.put(make_batch(2 * i, 2 * i + 1, jpeg=jpeg))
    kept = [spool.load(p).frames[0].frame_index for p in spool.pending()]
    assert kept == [4, 6, 8]  # the two oldest went, the newest stayed
    assert (spool.dropped_batches, spool.dropped_frames) == (2, 4)
    assert spool.dropped_bytes == 2 * size
    assert spool.usage() == (3, 3 * size)
    assert sum(p.stat().st_size for p in spool.pending()) <= spool.max_bytes  # type: ignore[operator]
    assert "dropped the 1 oldest batches (2 frames" in caplog.text
    # A restarted agent measures what is already on disk.
    again = Spool(tmp_path, max_bytes=3 * size + size // 2)
    assert again.usage() == (3, 3 * size)
    again.put(make_batch(10, 11, jpeg=jpeg))
    assert [again.load(p).frames[0].frame_index for p in again.pending()] == [6, 8, 10]


def test_acked_and_rejected_batches_leave_the_usage(tmp_path: Path, make_batch: MakeBatch) -> None:
    spool = Spool(tmp_path)
    a, b, c = (spool.put(make_batch(i)) for i in range(3))
    spool.ack(a)
    spool.reject(b, "HTTP 422")
    assert spool.usage() == (1, c.stat().st_size)


def test_a_batch_larger_than_the_cap_is_still_kept(tmp_path: Path, make_batch: MakeBatch) -> None:
    spool = Spool(tmp_path, max_bytes=10)
    spool.put(make_batch(0))
    spool.put(make_batch(1))
    assert [spool.load(p).frames[0].frame_index for p in spool.pending()] == [1]
    assert spool.dropped_batches == 1


def test_an_older_agents_spool_file_is_counted_when_dropped(
    tmp_path: Path, make_batch: MakeBatch
) -> None:
    old = tmp_path / "pending" / "00000000000000000001-00000000-abcdef.json"  # no frame count
    old.parent.mkdir(parents=True)
    old.write_bytes(make_batch(0, 1, 2).model_dump_json().encode())
    spool = Spool(tmp_path, max_bytes=old.stat().st_size + 10)
    spool.put(make_batch(3))
    assert (spool.dropped_batches, spool.dropped_frames) == (1, 3)
