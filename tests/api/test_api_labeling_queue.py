"""The labeling queue: order, next item, item detail, labels (validated), no object, skip."""

from __future__ import annotations

import pytest
from api_support import AGENT, LABELER, detection, frame, ingest, jpeg_bytes, queued_frame
from fastapi.testclient import TestClient

from edgeloop.store import AnyStore, labels, queue

pytestmark = pytest.mark.backends


def _fill(client: TestClient) -> None:
    """Three queued frames: confidence 0.55 (centre of the band), 0.45 and 0.65."""
    ingest(
        client,
        queued_frame("cam-1:1", 1, confidence=0.45),
        queued_frame("cam-1:2", 2, confidence=0.55),
        queued_frame("cam-2:3", 3, confidence=0.65, camera_id="cam-2"),
    )


def test_queue_lists_pending_items_by_priority(client: TestClient) -> None:
    _fill(client)
    body = client.get("/api/labeling-queue", headers=LABELER).json()
    assert body["count"] == 3
    assert body["data"][0]["frame_key"] == "cam-1:2"
    priorities = [item["priority"] for item in body["data"]]
    assert priorities == sorted(priorities, reverse=True)
    page = client.get("/api/labeling-queue?limit=1&offset=1&camera_id=cam-1", headers=LABELER)
    assert page.json()["count"] == 2
    assert [i["frame_key"] for i in page.json()["data"]] == ["cam-1:1"]


def test_next_item_has_frame_boxes_and_class_names(client: TestClient) -> None:
    _fill(client)
    item = client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert item["frame_key"] == "cam-1:2"
    assert item["priority"] > 0.99
    assert item["frame_url"] == "/api/frames/cam-1:2.jpg"
    assert (item["width"], item["height"]) == (640, 480)
    assert item["frame_index"] == 2
    assert [b["bbox_xyxy"] for b in item["proposed_boxes"]] == [
        [100, 50, 180, 230],
        [300, 100, 380, 300],
    ]
    assert [b["class_name"] for b in item["proposed_boxes"]] == ["Normal", "Fall"]
    assert item["proposed_boxes"][0]["confidence"] == 0.55
    # No production model registered: the class names seen in the detections, by class_id.
    assert item["class_names"] == ["Normal", "Fall"]
    assert item["latest_label"] is None
    assert client.get(item["frame_url"], headers=LABELER).status_code == 200

    by_camera = client.get("/api/labeling-queue/next?camera_id=cam-2", headers=LABELER).json()
    assert by_camera["frame_key"] == "cam-2:3"


def test_next_is_404_when_the_queue_is_empty(client: TestClient) -> None:
    response = client.get("/api/labeling-queue/next", headers=LABELER)
    assert response.status_code == 404
    assert response.json()["detail"] == "the labeling queue is empty"
    assert client.get("/api/labeling-queue/999", headers=LABELER).status_code == 404


def test_label_is_stored_and_the_item_leaves_the_queue(client: TestClient, store: AnyStore) -> None:
    _fill(client)
    item = client.get("/api/labeling-queue/next", headers=LABELER).json()
    response = client.post(
        f"/api/labeling-queue/{item['item_id']}/label",
        json={
            "boxes": [
                {"bbox_xyxy": [100, 50, 180, 230], "class_name": "Fall"},
                {"bbox_xyxy": [10.5, 20, 60, 120], "class_name": "Normal"},
            ]
        },
        headers=LABELER,
    )
    assert response.status_code == 201, response.text
    label = response.json()
    assert label["labeler"] == "labeler"
    assert label["box_count"] == 2
    assert label["labels_since_training"] == 1
    assert label["boxes"][0] == {
        "bbox_xyxy": [100, 50, 180, 230],
        "class_id": 1,
        "class_name": "Fall",
    }

    with store.connect() as con:
        stored_item = queue.get_item(con=con, item_id=item["item_id"])
        stored = labels.latest_for_frame(con=con, frame_key="cam-1:2")
    assert stored_item is not None and stored_item["status"] == "labeled"
    assert stored is not None and stored["boxes"][1].bbox_xyxy == (10.5, 20, 60, 120)
    assert (stored["labeler"], stored["frame_key"]) == ("labeler", "cam-1:2")

    following = client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert following["item_id"] != item["item_id"]
    assert client.get("/api/labeling-queue", headers=LABELER).json()["count"] == 2


def test_relabel_is_a_409_unless_it_is_an_explicit_edit(
    client: TestClient, store: AnyStore
) -> None:
    _fill(client)
    item_id = client.get("/api/labeling-queue/next", headers=LABELER).json()["item_id"]
    url = f"/api/labeling-queue/{item_id}/label"
    box = {"bbox_xyxy": [100, 50, 180, 230], "class_name": "Normal"}
    first = client.post(url, json={"boxes": [box]}, headers=LABELER)
    assert first.status_code == 201
    again = client.post(url, json={"boxes": [], "no_object": True}, headers=LABELER)
    assert again.status_code == 409 and "edit" in again.json()["detail"]
    edit = client.post(url, json={"no_object": True, "edit": True}, headers=LABELER)
    assert edit.status_code == 201
    assert edit.json()["replaces_label_id"] == first.json()["label_id"]
    with store.connect() as con:
        rows = labels.latest_with_frames(con=con)
        assert con.execute("SELECT count(*) FROM reviewed_labels").fetchone() == (2,)
    assert len(rows) == 1 and rows[0]["boxes"] == []
    detail = client.get(f"/api/labeling-queue/{item_id}", headers=LABELER).json()
    assert detail["status"] == "labeled"
    assert detail["latest_label"]["box_count"] == 0


def test_no_object_label(client: TestClient, store: AnyStore) -> None:
    _fill(client)
    item_id = client.get("/api/labeling-queue/next", headers=LABELER).json()["item_id"]
    response = client.post(
        f"/api/labeling-queue/{item_id}/label", json={"no_object": True}, headers=LABELER
    )
    assert response.status_code == 201
    assert response.json()["boxes"] == []
    with store.connect() as con:
        stored = labels.get(con=con, label_id=response.json()["label_id"])
    assert stored is not None and (stored["box_count"], stored["boxes"]) == (0, [])


def test_label_validation(client: TestClient, store: AnyStore) -> None:
    _fill(client)
    url = f"/api/labeling-queue/{client.get('/api/labeling-queue/next', headers=LABELER).json()['item_id']}/label"

    outside = client.post(
        url,
        json={"boxes": [{"bbox_xyxy": [600, 10, 700, 100], "class_name": "Normal"}]},
        headers=LABELER,
    )
    assert outside.status_code == 422
    assert outside.json()["detail"][0]["loc"] == ["body", "boxes", 0, "bbox_xyxy"]
    assert "outside the 640x480 px frame" in outside.json()["detail"][0]["msg"]

    unknown = client.post(
        url, json={"boxes": [{"bbox_xyxy": [1, 1, 50, 50], "class_name": "Cat"}]}, headers=LABELER
    )
    assert unknown.status_code == 422
    assert "unknown class 'Cat'" in unknown.json()["detail"][0]["msg"]
    assert "Normal" in unknown.json()["detail"][0]["msg"]

    flat = client.post(
        url,
        json={"boxes": [{"bbox_xyxy": [10, 10, 10.5, 50], "class_name": "Normal"}]},
        headers=LABELER,
    )
    assert flat.status_code == 422
    assert "narrower or shorter than 1 px" in flat.text

    both = client.post(
        url,
        json={"boxes": [{"bbox_xyxy": [1, 1, 50, 50], "class_name": "Normal"}], "no_object": True},
        headers=LABELER,
    )
    assert both.status_code == 422
    assert "no_object is true but boxes were sent" in both.text

    nothing = client.post(url, json={"boxes": []}, headers=LABELER)
    assert nothing.status_code == 422
    assert '"no_object": true' in nothing.json()["detail"][0]["msg"]

    negative = client.post(
        url,
        json={"boxes": [{"bbox_xyxy": [-5, 1, 50, 50], "class_name": "Normal"}]},
        headers=LABELER,
    )
    assert negative.status_code == 422
    assert ">= 0 px" in negative.text

    extra = client.post(url, json={"boxes": [], "no_object": True, "colour": 1}, headers=LABELER)
    assert extra.status_code == 422

    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM reviewed_labels").fetchone() == (0,)
    assert (
        client.post(
            "/api/labeling-queue/999/label", json={"no_object": True}, headers=LABELER
        ).status_code
        == 404
    )


def test_skipped_items_come_back_after_the_pending_ones(client: TestClient) -> None:
    _fill(client)
    first = client.get("/api/labeling-queue/next", headers=LABELER).json()
    skipped = client.post(f"/api/labeling-queue/{first['item_id']}/skip", headers=LABELER)
    assert skipped.status_code == 200
    assert skipped.json()["status"] == "skipped"
    assert skipped.json()["skip_count"] == 1

    seen = []
    for _ in range(2):
        item = client.get("/api/labeling-queue/next", headers=LABELER).json()
        seen.append(item["frame_key"])
        client.post(
            f"/api/labeling-queue/{item['item_id']}/label",
            json={"no_object": True},
            headers=LABELER,
        )
    assert first["frame_key"] not in seen
    # Nothing pending any more: the skipped item comes back.
    again = client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert again["item_id"] == first["item_id"]
    assert again["skip_count"] == 1
    skipped_list = client.get("/api/labeling-queue?status=skipped", headers=LABELER).json()
    assert [i["item_id"] for i in skipped_list["data"]] == [first["item_id"]]


def test_a_labeled_item_cannot_be_skipped(client: TestClient) -> None:
    _fill(client)
    item_id = client.get("/api/labeling-queue/next", headers=LABELER).json()["item_id"]
    client.post(f"/api/labeling-queue/{item_id}/label", json={"no_object": True}, headers=LABELER)
    response = client.post(f"/api/labeling-queue/{item_id}/skip", headers=LABELER)
    assert response.status_code == 409
    assert "already labeled" in response.json()["detail"]


def test_agent_cannot_skip(client: TestClient) -> None:
    _fill(client)
    assert client.post("/api/labeling-queue/1/skip", headers=AGENT).status_code == 403


def test_class_names_fall_back_to_every_class_seen(client: TestClient) -> None:
    ingest(
        client,
        frame("cam-1:1", detections=[detection(1, 1, 50, 50, 0.5)], jpeg=jpeg_bytes()),
    )
    item = client.get("/api/labeling-queue/next", headers=LABELER).json()
    assert item["class_names"] == ["Normal"]
