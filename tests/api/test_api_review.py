"""The grid review (``/api/review/grid``) and the labeling page's look-backs
(``/api/labeling-queue/mine/previous``, ``/{item_id}/previous-label``), on each store."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import AGENT, LABELER, detection, frame, ingest, jpeg_bytes, queued_frame
from fastapi.testclient import TestClient

from edgeloop.store import AnyStore, labels, queue

pytestmark = pytest.mark.backends

OTHER = {"Authorization": "Bearer admin-token"}  # another person (admins may label)


def _confident(
    key: str, index: int, *detections: dict[str, Any], camera_id: str = "cam-1"
) -> dict[str, Any]:
    """A frame of confident detections only (never queued) with its JPEG."""
    return frame(
        key,
        index=index,
        camera_id=camera_id,
        detections=list(detections),
        jpeg=jpeg_bytes(seed=index),
    )


def _grid(client: TestClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/api/review/grid{query}", headers=LABELER)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_grid_lists_unlabeled_detections_of_a_class_least_confident_first(
    client: TestClient,
) -> None:
    ingest(
        client,
        _confident(
            "cam-1:1", 1, detection(10, 10, 60, 120, 0.95), detection(5, 5, 9, 9, 0.8, "Fall")
        ),
        _confident("cam-1:2", 2, detection(20, 20, 80, 140, 0.75)),
        frame("cam-1:3", index=3, detections=[detection(1, 1, 50, 50, 0.72)]),  # no JPEG
        _confident("cam-2:4", 4, detection(30, 30, 90, 150, 0.85), camera_id="cam-2"),
    )
    grid = _grid(client, "?class_name=Normal")
    assert [c["detection_id"] for c in grid["crops"]] == ["cam-1:2:0", "cam-2:4:0", "cam-1:1:0"]
    first = grid["crops"][0]
    assert first["bbox_xyxy"] == [20, 20, 80, 140]
    assert (first["frame_url"], first["width"], first["confidence"]) == (
        "/api/frames/cam-1:2.jpg",
        640,
        0.75,
    )
    assert grid["class_names"] == ["Normal", "Fall"]
    by_camera = _grid(client, "?camera_id=cam-1&min_confidence=0.78&limit=5")
    assert [c["detection_id"] for c in by_camera["crops"]] == ["cam-1:1:1", "cam-1:1:0"]


def test_a_grid_submit_stores_one_label_per_frame(client: TestClient, store: AnyStore) -> None:
    ingest(
        client,
        _confident(
            "cam-1:1",
            1,
            detection(10, 10, 60, 120, 0.95),
            detection(200, 10, 260, 130, 0.9, "Fall"),
        ),
        _confident("cam-1:2", 2, detection(20, 20, 80, 140, 0.75)),
        _confident("cam-1:3", 3, detection(30, 30, 90, 150, 0.8)),
        queued_frame("cam-1:4", 4),  # a queued frame: its item is labeled, not a new one
    )
    reviews = [
        {"frame_key": "cam-1:1", "detection_id": "cam-1:1:0", "verdict": "ok"},
        {"frame_key": "cam-1:2", "detection_id": "cam-1:2:0", "verdict": "wrong"},
        {
            "frame_key": "cam-1:3",
            "detection_id": "cam-1:3:0",
            "verdict": "wrong_class",
            "class_name": "Fall",
        },
        {"frame_key": "cam-1:4", "detection_id": "cam-1:4:0", "verdict": "wrong"},
    ]
    response = client.post("/api/review/grid", json={"reviews": reviews}, headers=LABELER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["refused"] == []
    assert [(r["frame_key"], r["box_count"]) for r in body["labeled"]] == [
        ("cam-1:1", 2),
        ("cam-1:2", 0),
        ("cam-1:3", 1),
        ("cam-1:4", 1),
    ]
    assert body["labels_since_training"] == 4
    with store.connect() as con:
        stored = {
            k: labels.latest_for_frame(con=con, frame_key=k)
            for k in ("cam-1:1", "cam-1:2", "cam-1:3", "cam-1:4")
        }
        queued = queue.item_for_frame(con=con, frame_key="cam-1:4")
        items = queue.status_counts(con=con)
    boxes = {k: [(b.bbox_xyxy, b.class_name) for b in v["boxes"]] for k, v in stored.items() if v}
    assert boxes == {
        "cam-1:1": [((10, 10, 60, 120), "Normal"), ((200, 10, 260, 130), "Fall")],
        "cam-1:2": [],
        "cam-1:3": [((30, 30, 90, 150), "Fall")],
        "cam-1:4": [((300, 100, 380, 300), "Fall")],
    }
    assert {v["labeler"] for v in stored.values() if v} == {"labeler"}
    assert queued is not None and queued["item_id"] == body["labeled"][3]["item_id"]
    assert items == {"pending": 0, "skipped": 0, "labeled": 4}
    assert _grid(client)["crops"] == []  # reviewed frames leave the grid


def test_a_frame_labeled_meanwhile_is_refused_not_overwritten(
    client: TestClient, store: AnyStore
) -> None:
    ingest(client, _confident("cam-1:1", 1, detection(10, 10, 60, 120, 0.95)))
    review = {"frame_key": "cam-1:1", "detection_id": "cam-1:1:0", "verdict": "wrong"}
    first = client.post("/api/review/grid", json={"reviews": [review]}, headers=OTHER)
    assert first.status_code == 200 and len(first.json()["labeled"]) == 1
    again = client.post("/api/review/grid", json={"reviews": [review]}, headers=LABELER)
    assert again.status_code == 200
    assert again.json()["labeled"] == []
    [refused] = again.json()["refused"]
    assert refused["frame_key"] == "cam-1:1" and "already labeled" in refused["detail"]
    with store.connect() as con:
        assert labels.count(con=con) == 1


@pytest.mark.parametrize(
    ("review", "message"),
    [
        ({"frame_key": "cam-9:9", "detection_id": "cam-9:9:0"}, "is not stored"),
        ({"frame_key": "cam-1:1", "detection_id": "cam-1:2:0"}, "is not a detection of"),
        (
            {"frame_key": "cam-1:1", "detection_id": "cam-1:1:0", "verdict": "wrong_class"},
            "needs the right class_name",
        ),
        (
            {
                "frame_key": "cam-1:1",
                "detection_id": "cam-1:1:0",
                "verdict": "wrong_class",
                "class_name": "Forklift",
            },
            "unknown class 'Forklift'",
        ),
        ({"frame_key": "cam-1:1", "detection_id": "cam-1:1:0", "verdict": "maybe"}, "verdict"),
    ],
)
def test_bad_grid_reviews_are_a_422_that_stores_nothing(
    client: TestClient, store: AnyStore, review: dict[str, Any], message: str
) -> None:
    ingest(client, _confident("cam-1:1", 1, detection(10, 10, 60, 120, 0.95)))
    good = {"frame_key": "cam-1:1", "detection_id": "cam-1:1:0"}
    reviews = [review] if review["detection_id"] == good["detection_id"] else [good, review]
    response = client.post("/api/review/grid", json={"reviews": reviews}, headers=LABELER)
    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])
    with store.connect() as con:
        assert labels.count(con=con) == 0


def test_grid_roles_and_bounds(client: TestClient) -> None:
    assert client.get("/api/review/grid").status_code == 401
    assert client.get("/api/review/grid", headers=AGENT).status_code == 403
    body = {"reviews": [{"frame_key": "k", "detection_id": "k:0"}]}
    assert client.post("/api/review/grid", json=body, headers=AGENT).status_code == 403
    for query in ("limit=0", "limit=201", "min_confidence=1.5", "class_name="):
        assert client.get(f"/api/review/grid?{query}", headers=LABELER).status_code == 422
    assert client.post("/api/review/grid", json={"reviews": []}, headers=LABELER).status_code == 422
    twice = {"reviews": body["reviews"] * 2}
    response = client.post("/api/review/grid", json=twice, headers=LABELER)
    assert response.status_code == 422 and "reviewed twice" in response.text


# --- the labeling page's look-backs -------------------------------------------------------


def _label(client: TestClient, item_id: int, class_name: str, headers: dict[str, str]) -> int:
    box = {"bbox_xyxy": [100, 50, 180, 230], "class_name": class_name}
    response = client.post(
        f"/api/labeling-queue/{item_id}/label", json={"boxes": [box]}, headers=headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["label_id"])


def test_my_previous_item_walks_back_through_my_labels(client: TestClient) -> None:
    ingest(client, *(queued_frame(f"cam-1:{i}", i, confidence=0.45 + 0.01 * i) for i in range(4)))
    items = [client.get("/api/labeling-queue/next", headers=LABELER).json() for _ in range(1)]
    assert client.get("/api/labeling-queue/mine/previous", headers=LABELER).status_code == 404
    mine = []
    for _ in range(3):
        item = client.get("/api/labeling-queue/next", headers=LABELER).json()
        mine.append((item["item_id"], _label(client, item["item_id"], "Normal", LABELER)))
    other = client.get("/api/labeling-queue/next", headers=OTHER).json()
    _label(client, other["item_id"], "Fall", OTHER)
    # An edit of the first item makes it my latest again.
    edit = {"boxes": [{"bbox_xyxy": [1, 1, 50, 50], "class_name": "Fall"}], "edit": True}
    response = client.post(f"/api/labeling-queue/{mine[0][0]}/label", json=edit, headers=LABELER)
    assert response.status_code == 201

    seen = []
    cursor = ""
    while True:
        answer = client.get(f"/api/labeling-queue/mine/previous{cursor}", headers=LABELER)
        if answer.status_code == 404:
            break
        body = answer.json()
        seen.append(body["item_id"])
        cursor = f"?before={body['latest_label']['label_id']}"
    assert seen == [mine[0][0], mine[2][0], mine[1][0]]
    first = client.get("/api/labeling-queue/mine/previous", headers=LABELER).json()
    assert first["latest_label"]["boxes"][0]["bbox_xyxy"] == [1, 1, 50, 50]
    assert items  # the first /next claimed an item for the labeler: not labeled, not listed
    assert client.get("/api/labeling-queue/mine/previous", headers=AGENT).status_code == 403
    bad = client.get("/api/labeling-queue/mine/previous?before=0", headers=LABELER)
    assert bad.status_code == 422


def test_the_previous_frame_label_is_the_cameras_latest_before_this_frame(
    client: TestClient,
) -> None:
    ingest(
        client,
        *(queued_frame(f"cam-1:{i}", i) for i in (1, 2, 5)),
        queued_frame("cam-2:3", 3, camera_id="cam-2"),
    )
    ids = {
        item["frame_key"]: item["item_id"]
        for item in client.get("/api/labeling-queue", headers=LABELER).json()["data"]
    }
    url = "/api/labeling-queue/{}/previous-label"
    assert client.get(url.format(ids["cam-1:5"]), headers=LABELER).status_code == 404
    _label(client, ids["cam-1:1"], "Fall", LABELER)
    _label(client, ids["cam-2:3"], "Normal", LABELER)  # another camera: never copied
    answer = client.get(url.format(ids["cam-1:5"]), headers=LABELER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["frame_key"] == "cam-1:1"
    _label(client, ids["cam-1:2"], "Normal", OTHER)  # by anyone
    assert client.get(url.format(ids["cam-1:5"]), headers=LABELER).json()["frame_key"] == "cam-1:2"
    assert client.get(url.format(ids["cam-1:1"]), headers=LABELER).status_code == 404
    assert client.get(url.format(999), headers=LABELER).status_code == 404
