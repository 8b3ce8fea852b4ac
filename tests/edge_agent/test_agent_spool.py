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
