"""Shipping against an httpx.MockTransport: deliver, spool on failure, replay in order, reject."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from edge_agent.shipper import Outcome, Shipper, make_client
from edge_agent.spool import Spool
from edgeloop.wire import IngestBatch

if TYPE_CHECKING:  # the fixture's class lives in this folder's conftest.py
    from conftest import IngestApi


def make_shipper(tmp_path: Path, ingest_api: IngestApi, backoff_s: float = 0.0) -> Shipper:
    client = make_client("http://api.test", "s3cret", 5.0, httpx.MockTransport(ingest_api))
    return Shipper(client, Spool(tmp_path / "spool"), backoff_s=backoff_s, max_backoff_s=backoff_s)


def test_delivers_with_bearer_token_and_json(
    tmp_path: Path, ingest_api: IngestApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, ingest_api)
    assert shipper.ship(make_batch(0, 1)) is Outcome.DELIVERED
    request = ingest_api.requests[0]
    assert request.method == "POST" and request.url == "http://api.test/api/ingest"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Content-Type"] == "application/json"
    assert ingest_api.stored == [0, 1]
    assert shipper.stats.sent == 1 and shipper.stats.frames_accepted == 2
    assert shipper.spool.pending() == []


@pytest.mark.parametrize("failure", ["down", "timeout", "503", "401"])
def test_unavailable_api_spools_then_replays_in_order(
    tmp_path: Path, ingest_api: IngestApi, failure: str, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, ingest_api)
    shipper.ship(make_batch(0))
    ingest_api.mode = failure
    for i in (1, 2, 3):
        assert shipper.ship(make_batch(i)) is Outcome.RETRY
    assert len(shipper.spool.pending()) == 3
    assert shipper.stats.spooled == 3 and shipper.spool.rejected() == []
    ingest_api.mode = "up"
    assert shipper.ship(make_batch(4)) is Outcome.DELIVERED
    # Nothing lost, nothing doubled, and the spooled batches went first, oldest first.
    assert ingest_api.stored == [0, 1, 2, 3, 4]
    assert shipper.stats.replayed == 3 and shipper.stats.sent == 2
    assert shipper.spool.pending() == []


def test_spool_survives_a_restart(
    tmp_path: Path, ingest_api: IngestApi, make_batch: Callable[..., IngestBatch]
) -> None:
    ingest_api.mode = "down"
    first = make_shipper(tmp_path, ingest_api)
    first.ship(make_batch(0))
    first.ship(make_batch(1))
    first.close()
    ingest_api.mode = "up"
    second = make_shipper(tmp_path, ingest_api)  # a new agent process on the same state dir
    assert second.replay() is True
    assert ingest_api.stored == [0, 1] and second.stats.replayed == 2


def test_back_off_sends_nothing_while_waiting(
    tmp_path: Path, ingest_api: IngestApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, ingest_api, backoff_s=3600.0)
    ingest_api.mode = "down"
    shipper.ship(make_batch(0))
    calls = len(ingest_api.requests)
    ingest_api.mode = "up"
    assert shipper.ship(make_batch(1)) is Outcome.RETRY  # still backing off: straight to the spool
    assert len(ingest_api.requests) == calls
    assert shipper.replay(ignore_backoff=True) is True  # what the runner does at shutdown
    assert ingest_api.stored == [0, 1]


def test_4xx_batch_is_rejected_with_the_api_message(
    tmp_path: Path, ingest_api: IngestApi, caplog, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, ingest_api)
    ingest_api.mode = "422"
    assert shipper.ship(make_batch(7)) is Outcome.REJECTED
    [rejected] = shipper.spool.rejected()
    assert shipper.spool.load(rejected).frames[0].frame_index == 7
    reason = rejected.with_suffix(".reason.txt").read_text()
    assert "422" in reason and "bbox outside the frame" in reason
    assert "bbox outside the frame" in caplog.text
    # Not retried: later batches flow, the rejected one stays put.
    ingest_api.mode = "up"
    shipper.ship(make_batch(8))
    assert ingest_api.stored == [8] and shipper.spool.pending() == []
    assert shipper.stats.rejected == 1


def test_spooled_batch_rejected_on_replay_does_not_block_the_rest(
    tmp_path: Path, ingest_api: IngestApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, ingest_api)
    ingest_api.mode = "down"
    shipper.ship(make_batch(0))
    shipper.ship(make_batch(1))
    calls = {"n": 0}

    def reject_first(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(400, json={"detail": "unknown camera"})
        ingest_api.mode = "up"
        return ingest_api(request)

    shipper.client = make_client("http://api.test", None, 5.0, httpx.MockTransport(reject_first))
    assert shipper.replay() is True
    assert ingest_api.stored == [1] and len(shipper.spool.rejected()) == 1


def test_corrupt_spool_file_is_rejected_not_dropped(
    tmp_path: Path, ingest_api: IngestApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, ingest_api)
    bad = shipper.spool.put_body(b'{"frames": [trunc')
    assert shipper.replay() is True
    assert [p.name for p in shipper.spool.rejected()] == [bad.name]
    assert (
        "unreadable spool file"
        in (tmp_path / "spool/rejected" / bad.name).with_suffix(".reason.txt").read_text()
    )
