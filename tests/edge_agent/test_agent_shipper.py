"""Shipping against an httpx.MockTransport: deliver, spool on failure, replay in order, reject."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edge_agent.shipper import Outcome, Shipper, make_client
from edge_agent.spool import Spool
from edgeloop.wire import IngestBatch


class FakeApi:
    """Answers /api/ingest according to ``mode``; records what it stored."""

    def __init__(self) -> None:
        self.mode = "up"
        self.requests: list[httpx.Request] = []
        self.stored: list[int] = []  # frame indices, in arrival order

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.mode == "503":
            return httpx.Response(503, json={"detail": "database busy"})
        if self.mode == "401":
            return httpx.Response(401, json={"detail": "bad token"})
        if self.mode == "422":
            return httpx.Response(422, json={"detail": [{"msg": "bbox outside the frame"}]})
        frames = json.loads(request.content)["frames"]
        self.stored += [f["frame_index"] for f in frames]
        return httpx.Response(
            200, json={"accepted": len(frames), "duplicates": 0, "detections": 0, "queued": 0}
        )


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def make_shipper(tmp_path: Path, api: FakeApi, backoff_s: float = 0.0) -> Shipper:
    client = make_client("http://api.test", "s3cret", 5.0, httpx.MockTransport(api))
    return Shipper(client, Spool(tmp_path / "spool"), backoff_s=backoff_s, max_backoff_s=backoff_s)


def test_delivers_with_bearer_token_and_json(
    tmp_path: Path, api: FakeApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, api)
    assert shipper.ship(make_batch(0, 1)) is Outcome.DELIVERED
    request = api.requests[0]
    assert request.method == "POST" and request.url == "http://api.test/api/ingest"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Content-Type"] == "application/json"
    assert api.stored == [0, 1]
    assert shipper.stats.sent == 1 and shipper.stats.frames_accepted == 2
    assert shipper.spool.pending() == []


@pytest.mark.parametrize("failure", ["down", "timeout", "503", "401"])
def test_unavailable_api_spools_then_replays_in_order(
    tmp_path: Path, api: FakeApi, failure: str, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, api)
    shipper.ship(make_batch(0))
    api.mode = failure
    for i in (1, 2, 3):
        assert shipper.ship(make_batch(i)) is Outcome.RETRY
    assert len(shipper.spool.pending()) == 3
    assert shipper.stats.spooled == 3 and shipper.spool.rejected() == []
    api.mode = "up"
    assert shipper.ship(make_batch(4)) is Outcome.DELIVERED
    # Nothing lost, nothing doubled, and the spooled batches went first, oldest first.
    assert api.stored == [0, 1, 2, 3, 4]
    assert shipper.stats.replayed == 3 and shipper.stats.sent == 2
    assert shipper.spool.pending() == []


def test_spool_survives_a_restart(
    tmp_path: Path, api: FakeApi, make_batch: Callable[..., IngestBatch]
) -> None:
    api.mode = "down"
    first = make_shipper(tmp_path, api)
    first.ship(make_batch(0))
    first.ship(make_batch(1))
    first.close()
    api.mode = "up"
    second = make_shipper(tmp_path, api)  # a new agent process on the same state dir
    assert second.replay() is True
    assert api.stored == [0, 1] and second.stats.replayed == 2


def test_back_off_sends_nothing_while_waiting(
    tmp_path: Path, api: FakeApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, api, backoff_s=3600.0)
    api.mode = "down"
    shipper.ship(make_batch(0))
    calls = len(api.requests)
    api.mode = "up"
    assert shipper.ship(make_batch(1)) is Outcome.RETRY  # still backing off: straight to the spool
    assert len(api.requests) == calls
    assert shipper.replay(ignore_backoff=True) is True  # what the runner does at shutdown
    assert api.stored == [0, 1]


def test_4xx_batch_is_rejected_with_the_api_message(
    tmp_path: Path, api: FakeApi, caplog, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, api)
    api.mode = "422"
    assert shipper.ship(make_batch(7)) is Outcome.REJECTED
    [rejected] = shipper.spool.rejected()
    assert shipper.spool.load(rejected).frames[0].frame_index == 7
    reason = rejected.with_suffix(".reason.txt").read_text()
    assert "422" in reason and "bbox outside the frame" in reason
    assert "bbox outside the frame" in caplog.text
    # Not retried: later batches flow, the rejected one stays put.
    api.mode = "up"
    shipper.ship(make_batch(8))
    assert api.stored == [8] and shipper.spool.pending() == []
    assert shipper.stats.rejected == 1


def test_spooled_batch_rejected_on_replay_does_not_block_the_rest(
    tmp_path: Path, api: FakeApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, api)
    api.mode = "down"
    shipper.ship(make_batch(0))
    shipper.ship(make_batch(1))
    calls = {"n": 0}

    def reject_first(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(400, json={"detail": "unknown camera"})
        api.mode = "up"
        return api(request)

    shipper.client = make_client("http://api.test", None, 5.0, httpx.MockTransport(reject_first))
    assert shipper.replay() is True
    assert api.stored == [1] and len(shipper.spool.rejected()) == 1


def test_corrupt_spool_file_is_rejected_not_dropped(
    tmp_path: Path, api: FakeApi, make_batch: Callable[..., IngestBatch]
) -> None:
    shipper = make_shipper(tmp_path, api)
    bad = shipper.spool.put_json(b'{"frames": [trunc')
    assert shipper.replay() is True
    assert [p.name for p in shipper.spool.rejected()] == [bad.name]
    assert (
        "unreadable spool file"
        in (tmp_path / "spool/rejected" / bad.name).with_suffix(".reason.txt").read_text()
    )
