"""POST /api/ingest: rows land in DuckDB (Arrow inserts), idempotency, JPEGs, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_support import (
    AGENT,
    HEIGHT,
    LABELER,
    WIDTH,
    batch,
    detection,
    frame,
    ingest,
    jpeg_bytes,
    queued_frame,
)
from fastapi.testclient import TestClient

from api.ingest import jpeg_path
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.rules import uncertainty_score
from edgeloop.settings import LoopSettings
from edgeloop.store import Store


def test_batch_lands_in_frames_detections_and_queue(
    client: TestClient, store: Store, loop_settings: LoopSettings
) -> None:
    jpeg = jpeg_bytes()
    ack = ingest(
        client,
        frame(
            "cam-1:000001",
            index=1,
            detections=[
                detection(10, 20, 110, 220, 0.55),  # uncertain
                detection(200, 40, 260, 200, 0.45, "Fall"),  # uncertain
                detection(300, 50, 400, 250, 0.91),
            ],
            jpeg=jpeg,
        ),
        frame("cam-1:000002", index=2, detections=[detection(5, 5, 50, 90, 0.95)]),
        frame("cam-2:000001", camera_id="cam-2", index=1),
    )
    assert ack == {"accepted": 3, "duplicates": 0, "detections": 4, "queued": 1}

    with store.connect() as con:
        frames = {
            row[0]: row[1:]
            for row in con.execute(
                "SELECT frame_key, detection_count, mean_confidence, jpeg_path, agent_id FROM frames"
            ).fetchall()
        }
        detections = con.execute(
            "SELECT detection_id, class_name, confidence, x1, y1, x2, y2, uncertain "
            "FROM prediction_logs ORDER BY detection_id"
        ).fetchall()
        queue = con.execute(
            "SELECT frame_key, camera_id, priority, uncertain_count, status FROM labeling_queue"
        ).fetchall()

    assert frames["cam-1:000001"][0] == 3
    assert frames["cam-1:000001"][1] == pytest.approx((0.55 + 0.45 + 0.91) / 3)
    assert frames["cam-2:000001"][:2] == (0, None)
    assert frames["cam-1:000002"][2] is None  # no JPEG sent
    stored_jpeg = Path(frames["cam-1:000001"][2])
    assert stored_jpeg == jpeg_path(loop_settings.frames_dir, "cam-1", "cam-1:000001").resolve()
    assert stored_jpeg.read_bytes() == jpeg
    assert ":" not in stored_jpeg.name
    assert frames["cam-1:000001"][3] == "agent-1"

    assert detections[0] == ("cam-1:000001:0", "Normal", 0.55, 10.0, 20.0, 110.0, 220.0, True)
    assert [d[0] for d in detections] == [
        "cam-1:000001:0",
        "cam-1:000001:1",
        "cam-1:000001:2",
        "cam-1:000002:0",
    ]
    assert len(queue) == 1
    key, camera, priority, uncertain_count, status = queue[0]
    assert (key, camera, uncertain_count, status) == ("cam-1:000001", "cam-1", 2, "pending")
    assert priority == pytest.approx(max(uncertainty_score(0.55), uncertainty_score(0.45)))


def test_replayed_frames_are_skipped_as_duplicates(client: TestClient, store: Store) -> None:
    first = [queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2)]
    assert ingest(client, *first)["accepted"] == 2
    # The agent retries the same batch plus one new frame.
    ack = ingest(client, *first, queued_frame("cam-1:3", 3))
    assert ack == {"accepted": 1, "duplicates": 2, "detections": 2, "queued": 1}
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM prediction_logs").fetchone() == (6,)
        assert con.execute("SELECT count(*) FROM labeling_queue").fetchone() == (3,)


def test_a_frame_repeated_within_a_batch_is_stored_once(client: TestClient, store: Store) -> None:
    ack = ingest(client, queued_frame("cam-1:1", 1), queued_frame("cam-1:1", 1))
    assert ack == {"accepted": 1, "duplicates": 1, "detections": 2, "queued": 1}


def test_uncertain_frame_without_jpeg_is_not_queued(client: TestClient) -> None:
    ack = ingest(client, frame("cam-1:1", detections=[detection(1, 1, 50, 50, 0.5)]))
    assert ack["queued"] == 0
    assert ack["detections"] == 1


def test_malformed_batch_gets_pydantic_messages(client: TestClient, store: Store) -> None:
    bad = batch(
        frame("cam-1:1", detections=[detection(600, 10, 700, 100, 0.5)]),  # x2 > width 640
    )
    del bad["agent_id"]
    response = client.post("/api/ingest", json=bad, headers=AGENT)
    assert response.status_code == 422
    errors = response.json()["detail"]
    locations = [tuple(e["loc"]) for e in errors]
    assert ("body", "agent_id") in locations
    messages = " ".join(e["msg"] for e in errors)
    assert "lies outside the 640x480 frame cam-1:1" in messages
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def test_invalid_json_is_422_and_does_not_echo_the_body(client: TestClient) -> None:
    body = b'{"agent_id": "a", "frames": [' + b"x" * 10_000
    response = client.post(
        "/api/ingest", content=body, headers={**AGENT, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert len(response.content) < 1000


def test_unordered_bbox_names_the_rule(client: TestClient) -> None:
    response = client.post(
        "/api/ingest",
        json=batch(frame("cam-1:1", detections=[detection(50, 10, 20, 100, 0.5)])),
        headers=AGENT,
    )
    assert response.status_code == 422
    assert "x1 <= x2" in response.text


def test_oversized_body_is_413_before_parsing(api_settings: ApiSettings, store: Store) -> None:
    settings = api_settings.model_copy(update={"max_body_bytes": 10_000})
    with TestClient(create_app(settings)) as client:
        big = batch(*(queued_frame(f"cam-1:{i}", i) for i in range(3)))
        response = client.post("/api/ingest", json=big, headers=AGENT)
        assert response.status_code == 413
        assert "exceeds the limit of 10000 bytes" in response.json()["detail"]
        assert "EDGELOOP_API_MAX_BODY_BYTES" in response.json()["detail"]
        # Chunked upload (no Content-Length) is cut off too.
        payload = json.dumps(big).encode()
        chunks = (payload[i : i + 4096] for i in range(0, len(payload), 4096))
        response = client.post("/api/ingest", content=chunks, headers=AGENT)
        assert response.status_code == 413
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def test_corrupt_jpeg_is_422_naming_the_frame(client: TestClient, store: Store) -> None:
    truncated = jpeg_bytes()[:-200]
    response = client.post(
        "/api/ingest",
        json=batch(
            queued_frame("cam-1:1", 1),
            frame("cam-1:2", detections=[detection(1, 1, 50, 50, 0.5)], jpeg=truncated),
        ),
        headers=AGENT,
    )
    assert response.status_code == 422
    assert "cam-1:2" in response.json()["detail"]
    assert "truncated" in response.json()["detail"]
    not_jpeg = client.post(
        "/api/ingest",
        json=batch(frame("cam-1:3", jpeg=b"GIF89a not a jpeg")),
        headers=AGENT,
    )
    assert not_jpeg.status_code == 422
    assert "SOI" in not_jpeg.json()["detail"]
    with store.connect() as con:  # the whole batch was refused
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (0,)


def test_frame_jpeg_is_served(client: TestClient) -> None:
    jpeg = jpeg_bytes(seed=3)
    ingest(client, frame("cam-1:7", jpeg=jpeg), frame("cam-1:8"))
    response = client.get("/api/frames/cam-1:7.jpg", headers=LABELER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == jpeg
    missing = client.get("/api/frames/cam-1:8.jpg", headers=LABELER)
    assert missing.status_code == 404
    assert "no stored JPEG" in missing.json()["detail"]
    assert client.get("/api/frames/nope.jpg", headers=LABELER).status_code == 404
    assert client.get("/api/frames/cam-1:7.jpg").status_code == 401


def test_ingest_counters_in_prometheus(client: TestClient) -> None:
    ingest(client, queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2))
    ingest(client, queued_frame("cam-1:1", 1))
    text = client.get("/metrics", headers=AGENT).text
    assert 'edgeloop_ingest_frames_total{result="accepted"} 2.0' in text
    assert 'edgeloop_ingest_frames_total{result="duplicate"} 1.0' in text
    assert "edgeloop_ingest_detections_total 4.0" in text
    assert (
        'edgeloop_http_request_duration_seconds_count{method="POST",route="/api/ingest",status="200"} 2.0'
        in text
    )


def test_width_height_of_frames_are_kept(client: TestClient, store: Store) -> None:
    ingest(client, frame("cam-1:1", width=WIDTH, height=HEIGHT))
    with store.connect() as con:
        assert con.execute("SELECT width, height FROM frames").fetchone() == (WIDTH, HEIGHT)
