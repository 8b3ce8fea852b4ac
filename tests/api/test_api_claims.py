"""One item, one labeler: claims on GET /next, 409 on a second label, leases that expire.

Each labeler has a token of their own (a tokens file with names), against the real app
and DuckDB file; concurrency through threads on one app, as uvicorn's thread pool runs it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_support import AGENT, batch, queued_frame
from fastapi.testclient import TestClient

from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.store import Store, labels

pytestmark = pytest.mark.backends

LABELERS = [f"labeler-{i:02d}" for i in range(20)]


def _bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-secret-token"}


@pytest.fixture
def api_settings(loop_settings: LoopSettings, tmp_path: Path) -> ApiSettings:
    """A tokens file with a named token per labeler, and the agent's."""
    tokens_file = tmp_path / "api-tokens.json"
    entries = {f"{n}-secret-token": {"role": "labeler", "name": n} for n in LABELERS}
    entries["agent-token"] = {"role": "agent", "name": "agent"}
    tokens_file.write_text(json.dumps(entries))
    return ApiSettings(loop=loop_settings, tokens_file=tokens_file, warm_registry=False)


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The app (``tests/api/conftest.py``) with 25 frames of ``cam-1`` queued."""
    frames = [queued_frame(f"cam-1:{i}", i, confidence=0.4 + i / 100) for i in range(25)]
    response = client.post("/api/ingest", json=batch(*frames), headers=AGENT)
    assert response.status_code == 200, response.text
    return client


def _box() -> dict[str, object]:
    return {"boxes": [{"bbox_xyxy": [100, 50, 180, 230], "class_name": "Normal"}]}


def test_twenty_labelers_asking_at_once_get_twenty_different_items(client: TestClient) -> None:
    def next_for(name: str) -> tuple[int, str]:
        body = client.get("/api/labeling-queue/next", headers=_bearer(name)).json()
        return body["item_id"], body["claimed_by"]

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(next_for, LABELERS))

    assert len({item for item, _ in answers}) == 20
    assert [holder for _, holder in answers] == LABELERS


def test_twenty_parallel_labels_on_one_item_store_one(client: TestClient, store: Store) -> None:
    alice = _bearer(LABELERS[0])
    item_id = client.get("/api/labeling-queue/next", headers=alice).json()["item_id"]

    def post(_: int) -> int:
        url = f"/api/labeling-queue/{item_id}/label"
        return client.post(url, json=_box(), headers=alice).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(post, range(20)))

    assert sorted(codes) == [201] + [409] * 19
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM reviewed_labels").fetchone() == (1,)
        assert labels.since_last_training(con=con) == 1


def test_a_claimed_item_is_not_handed_out_labeled_or_skipped_by_another(
    client: TestClient,
) -> None:
    alice, bob = _bearer(LABELERS[0]), _bearer(LABELERS[1])
    mine = client.get("/api/labeling-queue/next", headers=alice).json()
    assert mine["claimed_by"] == LABELERS[0]
    assert datetime.fromisoformat(mine["claimed_until"]) > datetime.now(UTC) + timedelta(
        seconds=250
    )  # EDGELOOP_API_CLAIM_LEASE_S defaults to 300 s

    theirs = client.get("/api/labeling-queue/next", headers=bob).json()
    assert theirs["item_id"] != mine["item_id"]
    url = f"/api/labeling-queue/{mine['item_id']}"
    label = client.post(f"{url}/label", json=_box(), headers=bob)
    assert label.status_code == 409 and LABELERS[0] in label.json()["detail"]
    assert client.post(f"{url}/skip", headers=bob).status_code == 409
    # The holder asking again (a page reload) gets the same item back.
    assert (
        client.get("/api/labeling-queue/next", headers=alice).json()["item_id"] == mine["item_id"]
    )
    assert client.post(f"{url}/label", json=_box(), headers=alice).status_code == 201


def test_an_expired_claim_returns_the_item_to_the_queue(client: TestClient, store: Store) -> None:
    alice, bob = _bearer(LABELERS[0]), _bearer(LABELERS[1])
    first = client.get("/api/labeling-queue/next", headers=alice).json()["item_id"]
    with store.connect() as con:  # the lease ran out
        con.execute(
            "UPDATE labeling_queue SET claimed_until = ? WHERE item_id = ?",
            [datetime.now(UTC) - timedelta(seconds=1), first],
        )
    assert client.get("/api/labeling-queue/next", headers=bob).json()["item_id"] == first
    url = f"/api/labeling-queue/{first}/label"
    assert client.post(url, json=_box(), headers=alice).status_code == 409  # bob holds it now
    assert client.post(url, json=_box(), headers=bob).status_code == 201


def test_prefetch_excludes_the_current_item_and_skip_releases_the_claim(
    client: TestClient,
) -> None:
    alice, bob = _bearer(LABELERS[0]), _bearer(LABELERS[1])
    current = client.get("/api/labeling-queue/next", headers=alice).json()["item_id"]
    prefetched = client.get(f"/api/labeling-queue/next?exclude={current}", headers=alice).json()[
        "item_id"
    ]
    assert prefetched != current
    skipped = client.post(f"/api/labeling-queue/{current}/skip", headers=alice)
    assert skipped.status_code == 200 and skipped.json()["claimed_by"] is None
    # Released: nobody holds it; it waits behind the pending items.
    assert skipped.json()["status"] == "skipped"
    assert (
        client.post(f"/api/labeling-queue/{current}/label", json=_box(), headers=bob).status_code
        == 201
    )


def test_item_ids_past_64_bits_are_a_422_not_a_500(client: TestClient) -> None:
    alice = _bearer(LABELERS[0])
    for path in (f"/api/labeling-queue/{2**64}", f"/api/labeling-queue/next?exclude={2**70}"):
        assert client.get(path, headers=alice).status_code == 422
    assert client.get(f"/api/labeling-queue?offset={2**63}", headers=alice).status_code == 422
