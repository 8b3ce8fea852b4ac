"""The console's review panel (``/console/api/review`` and its fragment): the audit's rates
and each labeler's throughput, checked against the rows inserted, on each store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from api_support import LABELER, detection, frame, ingest
from fastapi.testclient import TestClient
from support import label_frame, verdict_row

from api.console.live import ChangeFeed, event
from edgeloop.annotations import ReviewedBox
from edgeloop.store import AnyStore, verdicts
from edgeloop.store.changes import markers

pytestmark = pytest.mark.backends


def test_the_review_panel_reports_rates_and_throughput(client: TestClient, store: AnyStore) -> None:
    ingest(
        client,
        frame(
            "cam-1:1",
            index=1,
            detections=[
                detection(10, 10, 60, 120, 0.95),
                detection(200, 10, 260, 130, 0.9, "Fall"),
            ],
        ),
        frame("cam-1:2", index=2, detections=[detection(20, 20, 80, 140, 0.8)]),
        frame("cam-1:3", index=3),
        frame("cam-1:4", index=4, detections=[detection(5, 5, 50, 50, 0.9)]),
    )
    now = datetime.now(UTC)
    t0 = now - timedelta(hours=2)
    kept = ReviewedBox(bbox_xyxy=(10, 10, 60, 120), class_id=0, class_name="Normal")
    reclassed = ReviewedBox(bbox_xyxy=(200, 10, 260, 130), class_id=0, class_name="Normal")
    with store.connect() as con:
        # ann: 2 pre-labels, 1 changed; 1 pre-label rejected; no pre-label. bo: outside 24 h.
        label_frame(con, "cam-1:1", [kept, reclassed], labeler="ann", labeled_at=t0)
        label_frame(con, "cam-1:2", [], labeler="ann", labeled_at=t0 + timedelta(seconds=20))
        label_frame(con, "cam-1:3", [], labeler="ann", labeled_at=t0 + timedelta(seconds=50))
        label_frame(con, "cam-1:4", [], labeler="bo", labeled_at=now - timedelta(days=3))
        verdicts.record(
            con=con,
            rows=[
                verdict_row("cam-1:1:0", "Normal", "ok", reviewed_at=t0),
                verdict_row(
                    "cam-1:1:1", "Fall", "wrong_class", reviewed_at=t0, corrected_class="Normal"
                ),
                verdict_row("cam-1:2:0", "Normal", "wrong", reviewed_at=t0),
                verdict_row("cam-1:4:0", "Normal", "wrong", reviewed_at=t0, audit=False),
                verdict_row("cam-1:3", None, "ok", reviewed_at=t0),
                verdict_row("cam-1:9:0", "Normal", "ok", reviewed_at=now - timedelta(days=3)),
            ],
        )

    response = client.get("/console/api/review?window=24h", headers=LABELER)
    assert response.status_code == 200, response.text
    data = response.json()
    audit = data["audit"]
    assert {k: audit["mistakes"][k] for k in ("k", "n")} == {"k": 2, "n": 3}
    assert [
        (c["class_name"], c["wrong"], c["wrong_class"], c["mistakes"]["n"])
        for c in audit["classes"]
    ] == [
        ("Fall", 0, 1, 1),
        ("Normal", 1, 0, 2),
    ]
    assert {k: audit["misses"][k] for k in ("k", "n", "rate")} == {"k": 0, "n": 1, "rate": 0.0}
    assert data["labelers"] == [
        {
            "labeler": "ann",
            "items": 3,
            "boxes": 2,
            "timed_items": 2,
            "active_s": 50.0,
            "items_per_hour": 144.0,
            "boxes_per_hour": 0.0,
            "median_s_per_item": 25.0,
            "pre_labels": 3,
            "changed_share": 2 / 3,
        }
    ]
    every = client.get("/console/api/review?window=all", headers=LABELER).json()
    assert [r["labeler"] for r in every["labelers"]] == ["ann", "bo"]
    assert every["audit"]["mistakes"]["n"] == 4

    fragment = client.get("/console/review/fragment?window=24h", headers=LABELER)
    assert fragment.status_code == 200
    html = fragment.text
    assert "66.7 %" in html and "(2 of 3; 95 % CI 20.8 % – 93.9 %)" in html
    assert (
        'data-field="items_per_hour">144<' in html and 'data-field="changed_share">66.7 %<' in html
    )
    assert client.get("/console/api/review?window=2d", headers=LABELER).status_code == 422
    assert client.get("/console/api/review").status_code == 401


def test_a_verdict_without_a_label_redraws_the_review_panel(store: AnyStore) -> None:
    """A frame flipped to missed stores a verdict and no label: the change feed still names
    the review panel."""

    def read() -> dict[str, str]:
        with store.connect() as con:
            return markers(con=con)

    def record() -> None:
        with store.connect() as con:
            verdicts.record(
                con=con,
                rows=[verdict_row("cam-1:3", None, "missed", reviewed_at=datetime.now(UTC))],
            )

    async def scenario() -> set[str]:
        feed = ChangeFeed(read, poll_s=0.05)
        queue = feed.listen()
        await asyncio.sleep(0.2)  # the first poll: the baseline, no event
        assert queue.empty()
        await asyncio.to_thread(record)
        subjects = await asyncio.wait_for(queue.get(), timeout=30)
        feed.close(queue)
        return subjects

    subjects = asyncio.run(scenario())
    assert subjects == {"verdicts"}
    assert '"panels": ["review"]' in event(subjects)
    assert '"panels": ["queue", "retraining", "review"]' in event({"labels"})
