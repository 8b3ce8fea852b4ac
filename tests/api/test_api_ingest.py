"""POST /api/ingest: rows land in DuckDB (Arrow inserts), idempotency, JPEGs, and refusals."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.jpegs import jpeg_key
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.rules import uncertainty_score
from edgeloop.settings import LoopSettings
from edgeloop.store import Store

pytestmark = pytest.mark.backends


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
    assert ack == {"accepted": 3, "duplicates": 0, "detections": 4, "queued": 1, "conflicts": 0}

    with store.connect() as con:
        frames = {
            row[0]: row[1:]
            for row in con.execute(
                "SELECT frame_key, detection_count, mean_confidence, jpeg_path, agent_id FROM frames"
            ).fetchall()
        }
        detections = con.execute(
            "SELECT detection_id, class_name, confidence, x1, y1, x2, y2, uncertain, "
            "detection_index FROM prediction_logs ORDER BY detection_id"
        ).fetchall()
        queue = con.execute(
            "SELECT frame_key, camera_id, priority, uncertain_count, status FROM labeling_queue"
        ).fetchall()

    assert frames["cam-1:000001"][0] == 3
    assert frames["cam-1:000001"][1] == pytest.approx((0.55 + 0.45 + 0.91) / 3)
    assert frames["cam-2:000001"][:2] == (0, None)
    assert frames["cam-1:000002"][2] is None  # no JPEG sent
    # Stored relative to the data folder, so a copied or moved folder finds its own JPEGs.
    assert frames["cam-1:000001"][2] == "frames/cam-1/cam-1~000001.jpg"
    stored_jpeg = loop_settings.data_path(frames["cam-1:000001"][2])
    assert stored_jpeg == loop_settings.data_dir / jpeg_key("cam-1", "cam-1:000001")
    assert stored_jpeg.read_bytes() == jpeg
    assert ":" not in stored_jpeg.name
    assert frames["cam-1:000001"][3] == "agent-1"

    assert detections[0] == ("cam-1:000001:0", "Normal", 0.55, 10.0, 20.0, 110.0, 220.0, True, 0)
    assert [d[0] for d in detections] == [
        "cam-1:000001:0",
        "cam-1:000001:1",
        "cam-1:000001:2",
        "cam-1:000002:0",
    ]
    assert [d[-1] for d in detections] == [0, 1, 2, 0]
    assert len(queue) == 1
    key, camera, priority, uncertain_count, status = queue[0]
    assert (key, camera, uncertain_count, status) == ("cam-1:000001", "cam-1", 2, "pending")
    assert priority == pytest.approx(max(uncertainty_score(0.55), uncertainty_score(0.45)))


def test_replayed_frames_are_skipped_as_duplicates(client: TestClient, store: Store) -> None:
    first = [queued_frame("cam-1:1", 1), queued_frame("cam-1:2", 2)]
    assert ingest(client, *first)["accepted"] == 2
    # The agent retries the same batch plus one new frame.
    ack = ingest(client, *first, queued_frame("cam-1:3", 3))
    assert ack == {"accepted": 1, "duplicates": 2, "detections": 2, "queued": 1, "conflicts": 0}
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM frames").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM prediction_logs").fetchone() == (6,)
        assert con.execute("SELECT count(*) FROM labeling_queue").fetchone() == (3,)


def test_a_frame_repeated_within_a_batch_is_stored_once(client: TestClient, store: Store) -> None:
    ack = ingest(client, queued_frame("cam-1:1", 1), queued_frame("cam-1:1", 1))
    assert ack == {"accepted": 1, "duplicates": 1, "detections": 2, "queued": 1, "conflicts": 0}


def test_a_replayed_video_is_stored_but_each_jpeg_queued_once(
    client: TestClient, store: Store
) -> None:
    """A camera replaying its video (or idling on an empty scene) sends byte-identical
    frames under new keys: all are stored, but a JPEG already queued or labeled is never
    queued again, so the labeler does not get the same picture back to back."""
    scene, other = jpeg_bytes(seed=1), jpeg_bytes(seed=2)
    ack = ingest(
        client,
        queued_frame("cam-1:1", 1) | {"jpeg": base64.b64encode(scene).decode()},
        queued_frame("cam-1:2", 2) | {"jpeg": base64.b64encode(scene).decode()},
        queued_frame("cam-1:3", 3) | {"jpeg": base64.b64encode(other).decode()},
    )
    assert ack == {"accepted": 3, "duplicates": 0, "detections": 6, "queued": 2, "conflicts": 0}
    # The next loop of the video, one frame per batch.
    replay = ingest(client, queued_frame("cam-1:4", 4) | {"jpeg": base64.b64encode(scene).decode()})
    assert (replay["accepted"], replay["queued"]) == (1, 0)

    queue = client.get("/api/labeling-queue", headers=LABELER).json()
    assert sorted(item["frame_key"] for item in queue["data"]) == ["cam-1:1", "cam-1:3"]
    first = client.get("/api/labeling-queue/next", headers=LABELER).json()
    labeled = client.post(
        f"/api/labeling-queue/{first['item_id']}/label",
        json={"boxes": [], "no_object": True},
        headers=LABELER,
    )
    assert labeled.status_code == 201, labeled.text
    # Labeled, its content still counts: the same picture again is stored, not queued.
    again = ingest(
        client,
        queued_frame("cam-1:5", 5) | {"jpeg": base64.b64encode(scene).decode()},
        queued_frame("cam-1:6", 6) | {"jpeg": base64.b64encode(other).decode()},
    )
    assert (again["accepted"], again["queued"]) == (2, 0)
    with store.connect() as con:
        stored = con.execute(
            "SELECT frame_key, jpeg_path IS NOT NULL, detection_count FROM frames ORDER BY 1"
        ).fetchall()
        assert con.execute("SELECT count(*) FROM labeling_queue").fetchone() == (2,)
    assert stored == [(f"cam-1:{i}", True, 2) for i in range(1, 7)]
    for key in ("cam-1:2", "cam-1:4", "cam-1:5"):
        served = client.get(f"/api/frames/{key}.jpg", headers=LABELER)
        assert served.status_code == 200 and served.content == scene


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


def test_a_replayed_key_with_another_jpeg_changes_nothing_stored(
    client: TestClient, store: Store, loop_settings: LoopSettings
) -> None:
    original = queued_frame("cam-1:7", 7)
    assert ingest(client, original)["accepted"] == 1
    path = loop_settings.data_dir / jpeg_key("cam-1", "cam-1:7")
    before = path.read_bytes()
    forged = queued_frame("cam-1:7", 7, confidence=0.41)
    forged["jpeg"] = base64.b64encode(jpeg_bytes(seed=99)).decode()

    ack = ingest(client, forged, queued_frame("cam-1:8", 8))

    assert ack == {"accepted": 1, "duplicates": 0, "detections": 2, "queued": 1, "conflicts": 1}
    assert path.read_bytes() == before  # the labels made on it still describe this image
    with store.connect() as con:
        confidences = con.execute(
            "SELECT confidence FROM prediction_logs WHERE frame_key = 'cam-1:7' ORDER BY 1"
        ).fetchall()
    assert confidences == [(0.55,), (0.92,)]


def test_a_frame_key_is_bound_to_the_camera_that_sent_it(
    client: TestClient, store: Store, loop_settings: LoopSettings
) -> None:
    assert ingest(client, queued_frame("shared:1", 1))["accepted"] == 1
    other = queued_frame("shared:1", 1, camera_id="cam-2")

    ack = ingest(client, other)

    assert ack["conflicts"] == 1 and ack["accepted"] == 0 and ack["duplicates"] == 0
    with store.connect() as con:
        assert con.execute(
            "SELECT camera_id FROM frames WHERE frame_key = 'shared:1'"
        ).fetchall() == [("cam-1",)]
    # No orphan JPEG is left under the other camera's folder.
    assert not (loop_settings.data_dir / jpeg_key("cam-2", "shared:1")).exists()


def test_a_replay_that_adds_a_jpeg_leaves_no_orphan_file(
    client: TestClient, loop_settings: LoopSettings
) -> None:
    assert ingest(client, frame("cam-1:9", index=9))["accepted"] == 1  # no JPEG
    replay = frame("cam-1:9", index=9, jpeg=jpeg_bytes(seed=9))

    assert ingest(client, replay) == {
        "accepted": 0,
        "duplicates": 1,
        "detections": 0,
        "queued": 0,
        "conflicts": 0,
    }
    assert not (loop_settings.data_dir / jpeg_key("cam-1", "cam-1:9")).exists()


def test_parallel_batches_with_one_key_and_two_jpegs_store_one_of_them(
    app: FastAPI, store: Store, loop_settings: LoopSettings
) -> None:
    bodies = []
    for seed in range(8):
        record = queued_frame("cam-1:race", 1)
        record["jpeg"] = base64.b64encode(jpeg_bytes(seed=100 + seed)).decode()
        bodies.append(batch(record))

    def post(body: dict[str, Any]) -> dict[str, Any]:
        with TestClient(app) as c:
            response = c.post("/api/ingest", json=body, headers=AGENT)
            assert response.status_code == 200, response.text
            return dict(response.json())

    with ThreadPoolExecutor(8) as pool:
        acks = list(pool.map(post, bodies))

    assert sum(a["accepted"] for a in acks) == 1
    assert sum(a["accepted"] + a["duplicates"] + a["conflicts"] for a in acks) == 8
    with store.connect() as con:
        (stored_path,) = con.execute(
            "SELECT jpeg_path FROM frames WHERE frame_key = 'cam-1:race'"
        ).fetchone() or (None,)
    winner = next(i for i, a in enumerate(acks) if a["accepted"])
    assert loop_settings.data_path(stored_path).read_bytes() == base64.b64decode(
        bodies[winner]["frames"][0]["jpeg"]
    )


def test_an_agent_token_scoped_to_cameras_may_send_only_theirs(
    gate_agent: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    scoped, headers = gate_agent
    ok = scoped.post("/api/ingest", json=batch(queued_frame("cam-1:1", 1)), headers=headers)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    mixed = batch(queued_frame("cam-1:2", 2), queued_frame("cam-9:1", 1, camera_id="cam-9"))
    refused = scoped.post("/api/ingest", json=mixed, headers=headers)
    assert refused.status_code == 403 and "cam-9" in refused.json()["detail"]
    with store.connect() as con:  # nothing of the refused batch is stored
        assert con.execute("SELECT frame_key FROM frames").fetchall() == [("cam-1:1",)]
