"""The dataset browser's API on stored rows, on each store backend: batch fetch by id,
filters that combine, tags (people's and suggested), thumbnails stored once and cached,
"more like this" under the same filters, and hand-picked frames sent to the queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from api_support import ADMIN, AGENT, LABELER, detection, frame, ingest, jpeg_bytes
from fastapi.testclient import TestClient

from api.browse_models import MAX_IDS
from api.jpegs import jpeg_key
from edgeloop.settings import LoopSettings
from edgeloop.store import SCHEMA_VERSION, AnyStore, dataset_frames, migrate
from edgeloop.vectors import CropPoint, VectorIndex

pytestmark = pytest.mark.backends

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fleet(client: TestClient) -> None:
    """cam-1:0..3 with a JPEG (each: one uncertain Normal, one confident Fall), cam-2:0
    without detections or JPEG; cam-1:3 by model version 2."""
    frames = []
    for i in range(4):
        record = frame(
            f"cam-1:{i}",
            index=i,
            jpeg=jpeg_bytes(seed=i),
            detections=[
                detection(100, 50, 180, 230, 0.55, "Normal"),
                detection(300, 100, 380, 300, 0.9, "Fall"),
            ],
        )
        if i == 3:
            record["model_version"] = "2"
        frames.append(record)
    frames.append(frame("cam-2:0", camera_id="cam-2", index=9))
    ingest(client, *frames)


def _page(client: TestClient, **params: str | float) -> dict:
    answer = client.get("/api/browse/detections", params=params, headers=LABELER)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_detections_stored_before_migration_17_get_their_index(
    client: TestClient, store: AnyStore
) -> None:
    """Migration 17 fills ``detection_index`` from ``detection_id`` for the rows stored
    before it; the batch fetch, which builds ids from it, then names them as stored."""
    _fleet(client)
    with store.connect() as con:
        con.execute("UPDATE prediction_logs SET detection_index = NULL")
        con.execute("DELETE FROM schema_version WHERE version >= 17")
        assert migrate(con) == SCHEMA_VERSION
        rows = con.execute("SELECT detection_id, detection_index FROM prediction_logs").fetchall()
    assert len(rows) == 8
    assert all(detection_id == f"{detection_id[:7]}:{index}" for detection_id, index in rows)
    got = client.get("/api/browse/items", params={"ids": "cam-1:3"}, headers=LABELER).json()
    [item] = got["items"]
    assert [d["detection_id"] for d in item["detections"]] == ["cam-1:3:0", "cam-1:3:1"]
    assert {d["model_version"] for d in item["detections"]} == {"2"}


def test_batch_fetch_by_frame_keys_and_detection_ids(client: TestClient) -> None:
    _fleet(client)
    ids = ["cam-1:1", "cam-1:2:1", "cam-2:0", "nope:0"]
    got = client.get("/api/browse/items", params={"ids": ",".join(ids)}, headers=LABELER)
    assert got.status_code == 200, got.text
    body = got.json()
    assert [i["id"] for i in body["items"]] == ["cam-1:1", "cam-1:2:1", "cam-2:0"]
    assert body["missing"] == ["nope:0"]
    frame_item, det_item, empty = body["items"]
    assert frame_item["kind"] == "frame" and frame_item["camera_id"] == "cam-1"
    assert [d["class_name"] for d in frame_item["detections"]] == ["Normal", "Fall"]
    assert frame_item["detections"][0]["bbox_xyxy"] == [100, 50, 180, 230]
    assert frame_item["state"] == "queued"  # the uncertain detection queued it
    assert frame_item["thumbnail_url"] == "/api/thumbnails/frames/cam-1%3A1.jpg?size=256"
    assert det_item["kind"] == "detection"
    assert [d["detection_id"] for d in det_item["detections"]] == ["cam-1:2:1"]
    assert det_item["detections"][0]["confidence"] == pytest.approx(0.9)
    assert det_item["detections"][0]["crop_url"].startswith("/api/thumbnails/detections/")
    assert empty["thumbnail_url"] is None and empty["detections"] == []
    assert empty["state"] == "unlabeled"
    posted = client.post("/api/browse/items", json={"ids": ids}, headers=LABELER)
    assert posted.json() == body
    # Every returned URL answers.
    assert client.get(frame_item["thumbnail_url"], headers=LABELER).status_code == 200


def test_batch_fetch_refuses_too_many_or_malformed_ids(client: TestClient) -> None:
    too_many = ",".join(f"cam-1:{i}" for i in range(MAX_IDS + 1))
    answer = client.get("/api/browse/items", params={"ids": too_many}, headers=LABELER)
    assert answer.status_code == 422 and f"got {MAX_IDS + 1}" in answer.json()["detail"]
    for bad in ("../etc/passwd", "a b", "x" * 300, "", "é"):
        answer = client.get("/api/browse/items", params={"ids": bad}, headers=LABELER)
        assert answer.status_code == 422, bad
        answer = client.post("/api/browse/items", json={"ids": [bad]}, headers=LABELER)
        assert answer.status_code == 422, bad
    answer = client.post("/api/browse/items", json={"ids": ["a"] * (MAX_IDS + 1)}, headers=LABELER)
    assert answer.status_code == 422
    assert client.get("/api/browse/items", params={"ids": "a"}).status_code == 401


def test_filters_combine_and_count(client: TestClient) -> None:
    _fleet(client)
    assert _page(client)["count"] == 8
    fall = _page(client, class_name="Fall")
    assert fall["count"] == 4 and {r["detection"]["class_name"] for r in fall["data"]} == {"Fall"}
    assert _page(client, class_name="Fall", model_version="2")["count"] == 1
    assert _page(client, uncertain="true")["count"] == 4
    assert _page(client, min_confidence=0.6, max_confidence=0.95)["count"] == 4
    assert _page(client, camera_id="cam-2")["count"] == 0
    assert _page(client, state="queued")["count"] == 8
    assert _page(client, state="labeled")["count"] == 0
    window = _page(
        client,
        since=(T0 + timedelta(seconds=1)).isoformat(),
        until=(T0 + timedelta(seconds=3)).isoformat(),
    )
    assert window["count"] == 4
    assert {r["frame_key"] for r in window["data"]} == {"cam-1:1", "cam-1:2"}
    paged = _page(client, limit=3, offset=3)
    assert paged["count"] == 8 and len(paged["data"]) == 3
    newest = _page(client, limit=1)["data"][0]
    assert newest["frame_key"] == "cam-1:3" and newest["detection"]["box_pct"][0] == pytest.approx(
        100 * 100 / 640
    )
    assert (
        client.get(
            "/api/browse/detections", params={"since": "2026-01-01T00:00:00"}, headers=LABELER
        ).status_code
        == 422
    )
    assert (
        client.get("/api/browse/detections", params={"tag": "<b>"}, headers=LABELER).status_code
        == 422
    )
    # A frame of confident detections only is never queued: unlabeled.
    assert _page(client, state="unlabeled")["count"] == 0
    confident = [detection(10, 10, 90, 90, 0.95, "Fall"), detection(5, 5, 50, 50, 0.9)]
    ingest(client, frame("cam-2:1", camera_id="cam-2", index=10, detections=confident))
    unlabeled = _page(client, state="unlabeled")
    assert unlabeled["count"] == 2
    assert {r["detection"]["detection_id"] for r in unlabeled["data"]} == {"cam-2:1:0", "cam-2:1:1"}
    assert {r["state"] for r in unlabeled["data"]} == {"unlabeled"}
    assert _page(client, state="unlabeled", class_name="Fall")["count"] == 1
    assert _page(client, state="queued")["count"] == 8


def test_people_tag_the_loop_suggests_and_tags_filter(client: TestClient) -> None:
    _fleet(client)
    added = client.post(
        "/api/tags",
        json={
            "tag": "  Near  Door ",
            "frame_keys": ["cam-1:0"],
            "detection_ids": ["cam-1:1:0", "zz:0"],
        },
        headers=LABELER,
    )
    assert added.status_code == 201, added.text
    assert added.json() == {"tag": "near door", "tagged": 2}
    assert (
        client.post(
            "/api/tags", json={"tag": "x", "frame_keys": ["cam-1:0"]}, headers=AGENT
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/tags", json={"tag": "bad,tag", "frame_keys": ["cam-1:0"]}, headers=LABELER
        ).status_code
        == 422
    )
    tagged = _page(client, tag="near door")
    # The frame's two detections (tag on the frame) and the one tagged detection.
    assert sorted(r["detection"]["detection_id"] for r in tagged["data"]) == [
        "cam-1:0:0",
        "cam-1:0:1",
        "cam-1:1:0",
    ]
    suggested = client.post(
        "/api/tags/suggest", json={"frame_keys": ["cam-1:0", "cam-1:1"]}, headers=LABELER
    )
    assert suggested.status_code == 200, suggested.text
    body = suggested.json()
    assert body["suggested"] == 4 + 2  # a class per detection, a scene per frame
    assert "EDGELOOP_CLIP_MODEL" in body["prompts"]
    item = client.get("/api/browse/items", params={"ids": "cam-1:1:0"}, headers=LABELER).json()[
        "items"
    ][0]
    assert {(t["tag"], t["source"]) for t in item["detections"][0]["tags"]} == {
        ("near door", "person"),
        ("normal", "suggested"),
    }
    assert item["tags"] == [{"tag": "scene:cam-1", "source": "suggested", "score": None}]
    # A person's tag replaces a suggestion of the same text; a suggestion never replaces it.
    client.post("/api/tags", json={"tag": "normal", "detection_ids": ["cam-1:1:0"]}, headers=ADMIN)
    client.post("/api/tags/suggest", json={"detection_ids": ["cam-1:1:0"]}, headers=LABELER)
    item = client.get("/api/browse/items", params={"ids": "cam-1:1:0"}, headers=LABELER).json()[
        "items"
    ][0]
    assert ("normal", "person") in {(t["tag"], t["source"]) for t in item["detections"][0]["tags"]}
    counts = {r["tag"]: r for r in client.get("/api/tags", headers=AGENT).json()}
    assert counts["scene:cam-1"] == {
        "tag": "scene:cam-1",
        "frames": 2,
        "detections": 0,
        "suggested": 2,
    }
    assert [
        r["tag"] for r in client.get("/api/tags", params={"prefix": "ne"}, headers=LABELER).json()
    ] == ["near door"]
    removed = client.delete(
        "/api/tags",
        params={"target_kind": "frame", "target_id": "cam-1:0", "tag": "near door"},
        headers=LABELER,
    )
    assert removed.status_code == 200
    assert _page(client, tag="near door")["count"] == 1
    again = client.delete(
        "/api/tags",
        params={"target_kind": "frame", "target_id": "cam-1:0", "tag": "near door"},
        headers=LABELER,
    )
    assert again.status_code == 404


def test_thumbnails_are_made_once_content_addressed_and_cached(
    client: TestClient, loop_settings: LoopSettings, store: AnyStore
) -> None:
    _fleet(client)
    url = "/api/thumbnails/frames/cam-1:0.jpg?size=128"
    first = client.get(url, headers=LABELER)
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = first.headers["etag"]
    import cv2

    image = cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[:2] == (96, 128)  # 640 x 480 shrunk to 128 px wide
    objects = loop_settings.objects()
    keys = list(objects.keys("thumbnails/"))
    assert len(keys) == 1 and etag.strip('"') in keys[0]
    again = client.get(url, headers=LABELER)
    assert again.content == first.content and again.headers["etag"] == etag
    assert list(objects.keys("thumbnails/")) == keys  # not made again
    cached = client.get(url, headers={**LABELER, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    crop = client.get("/api/thumbnails/detections/cam-1:0:0.jpg", headers=LABELER)
    assert crop.status_code == 200
    cropped = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)
    assert cropped is not None
    h, w = cropped.shape[:2]
    assert max(h, w) <= 128 and h > w  # a standing box: taller than wide
    assert len(list(objects.keys("thumbnails/"))) == 2
    assert client.get(url.replace("128", "100"), headers=LABELER).status_code == 422
    assert client.get("/api/thumbnails/frames/nope.jpg", headers=LABELER).status_code == 404
    assert client.get("/api/thumbnails/frames/cam-2:0.jpg", headers=LABELER).status_code == 404
    # A corrupt stored JPEG: a clear 422, no thumbnail stored, no 500.
    objects.put(jpeg_key("cam-1", "cam-1:2"), b"\xff\xd8 not really a jpeg")
    broken = client.get("/api/thumbnails/frames/cam-1:2.jpg", headers=LABELER)
    assert broken.status_code == 422 and "cannot be decoded" in broken.json()["detail"]
    # A JPEG whose header claims 60000 x 60000 px (a decompression bomb): refused, no 500.
    bomb = bytearray(jpeg_bytes(seed=3))
    at = bomb.find(b"\xff\xc0") + 5
    bomb[at : at + 4] = (60000).to_bytes(2, "big") * 2
    objects.put(jpeg_key("cam-1", "cam-1:3"), bytes(bomb))
    refused = client.get("/api/thumbnails/detections/cam-1:3:0.jpg", headers=LABELER)
    assert refused.status_code == 422 and "OpenCV refused" in refused.json()["detail"]
    assert len(list(objects.keys("thumbnails/"))) == 2


def test_send_to_queue_with_priority(client: TestClient, store: AnyStore) -> None:
    _fleet(client)
    answer = client.post(
        "/api/browse/queue",
        json={"frame_keys": ["cam-2:0", "cam-1:0", "zz"], "priority": 5},
        headers=LABELER,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "queued": ["cam-2:0"],
        "raised": ["cam-1:0"],
        "labeled": [],
        "unknown": ["zz"],
    }
    with store.connect() as con:
        rows = dict(
            con.execute(
                "SELECT frame_key, priority FROM labeling_queue WHERE frame_key IN ('cam-2:0', 'cam-1:0')"
            ).fetchall()
        )
    assert rows == {"cam-2:0": 5.0, "cam-1:0": 5.0}
    assert _page(client, state="unlabeled")["count"] == 0
    refused = client.post(
        "/api/browse/queue", json={"frame_keys": ["cam-1:0"], "priority": -1}, headers=LABELER
    )
    assert refused.status_code == 422
    assert (
        client.post(
            "/api/browse/queue", json={"frame_keys": ["cam-1:0"]}, headers=AGENT
        ).status_code
        == 403
    )


def test_dataset_version_filter_and_facets(client: TestClient, store: AnyStore) -> None:
    _fleet(client)
    with store.connect() as con:  # what training_dataset records when it commits versions
        for version, train, val in (
            ("v1", ["cam-1:0", "cam-1:1"], ["cam-1:2"]),
            ("v2", ["cam-1:0", "cam-1:1", "cam-1:3"], ["cam-1:2", "cam-2:0"]),
        ):
            dataset_frames.record(
                con=con, version=version, train_frames=train, val_frames=val, recorded_at=T0
            )
    facets = client.get("/api/browse/facets", headers=LABELER).json()
    assert facets["dataset_versions"] == ["v2", "v1"]
    v1 = _page(client, dataset_version="v1")
    assert v1["count"] == 6  # three frames of two detections
    assert {r["frame_key"] for r in v1["data"]} == {"cam-1:0", "cam-1:1", "cam-1:2"}
    assert _page(client, dataset_version="v2")["count"] == 8  # cam-2:0 has no detections
    fall_v2 = _page(client, dataset_version="v2", class_name="Fall", model_version="2")
    assert [r["detection"]["detection_id"] for r in fall_v2["data"]] == ["cam-1:3:1"]
    assert _page(client, dataset_version="v9")["count"] == 0
    assert _page(client, dataset_version="")["count"] == 8  # an empty value is left out
    for bad in ("1", "v0", "latest", "v1;drop"):
        answer = client.get(
            "/api/browse/detections", params={"dataset_version": bad}, headers=LABELER
        )
        assert answer.status_code == 422, bad
        assert "v1, v2" in answer.text
    panel = client.get("/console/browse/fragment?dataset_version=v1", headers=LABELER)
    assert panel.status_code == 200 and "cam-1:2" in panel.text and "cam-1:3" not in panel.text


def test_more_like_this_keeps_the_filters(client: TestClient, loop_settings: LoopSettings) -> None:
    _fleet(client)
    rng = np.random.default_rng(0)
    base = rng.normal(size=16)
    points = []
    for i in range(4):
        for j, class_name in enumerate(("Normal", "Fall")):
            v = base + 0.1 * (i + 1) * rng.normal(size=16) if j == 0 else rng.normal(size=16)
            points.append(
                CropPoint(
                    detection_id=f"cam-1:{i}:{j}",
                    frame_key=f"cam-1:{i}",
                    camera_id="cam-1",
                    class_name=class_name,
                    confidence=0.5,
                    bbox_xyxy=(1.0, 2.0, 30.0, 60.0),
                    captured_at_iso="2026-01-01T00:00:00+00:00",
                    vector=(v / np.linalg.norm(v)).astype(np.float32),
                )
            )
    index = VectorIndex.from_settings(loop_settings)
    index.publish(points, embedder="test-embedder")
    index.close()
    answer = client.get(
        "/api/browse/similar",
        params={"detection_id": "cam-1:0:0", "class_name": "Normal"},
        headers=LABELER,
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["data"]
    assert rows[0]["detection"]["detection_id"] == "cam-1:0:0"
    assert {r["detection"]["class_name"] for r in rows} == {"Normal"} and len(rows) == 4
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    text = client.get(
        "/api/browse/similar", params={"text": "a person carrying a box"}, headers=LABELER
    )
    assert text.status_code == 400 and "EDGELOOP_CLIP_MODEL" in text.json()["detail"]


def test_counts_stop_past_the_cap(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.store import browse

    _fleet(client)
    monkeypatch.setattr(browse, "COUNT_CAP", 2)
    first = _page(client, limit=3)
    assert (first["count"], first["count_capped"], len(first["data"])) == (5, True, 3)
    last = _page(client, limit=3, offset=3)
    assert (last["count"], last["count_capped"]) == (8, False)
