"""``/api/search/similar`` against a real local Qdrant index published by the same client the asset uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from edgeloop.settings import LoopSettings
from edgeloop.vector_versions import is_held_open
from edgeloop.vectors import CropPoint, VectorIndex

LABELER = {"Authorization": "Bearer labeler-token"}


def _point(i: int, vector: list[float], camera: str = "cam-1") -> CropPoint:
    v = np.asarray(vector, dtype=np.float32)
    return CropPoint(
        detection_id=f"{camera}:src:{i}:0",
        frame_key=f"{camera}:src:{i}",
        camera_id=camera,
        class_name="Normal",
        confidence=0.5,
        bbox_xyxy=(1.0, 2.0, 30.0, 60.0),
        captured_at_iso="2026-01-01T00:00:00+00:00",
        vector=v / np.linalg.norm(v),
    )


def test_similar_crops_before_any_index_is_published(client: TestClient) -> None:
    answer = client.get("/api/search/similar", params={"detection_id": "x"}, headers=LABELER)
    assert answer.status_code == 503
    assert "crop_embeddings" in answer.json()["detail"]


def test_similar_crops_rank_by_cosine_and_filter_by_camera(
    client: TestClient, loop_settings: LoopSettings
) -> None:
    index = VectorIndex.from_settings(loop_settings)
    index.publish(
        [
            _point(0, [1, 0, 0, 0]),
            _point(1, [0.9, 0.1, 0, 0]),
            _point(2, [0, 0, 1, 0]),
            _point(3, [0.95, 0.05, 0, 0], camera="cam-2"),
        ],
        embedder="test-embedder",
    )
    index.close()
    answer = client.get(
        "/api/search/similar", params={"detection_id": "cam-1:src:0:0", "limit": 3}, headers=LABELER
    )
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    assert [h["detection_id"] for h in hits] == ["cam-1:src:0:0", "cam-2:src:3:0", "cam-1:src:1:0"]
    assert hits[0]["score"] > hits[1]["score"] > hits[2]["score"]
    only_cam1 = client.get(
        "/api/search/similar",
        params={"detection_id": "cam-1:src:0:0", "camera_id": "cam-1"},
        headers=LABELER,
    ).json()["hits"]
    assert {h["camera_id"] for h in only_cam1} == {"cam-1"}
    missing = client.get("/api/search/similar", params={"detection_id": "nope"}, headers=LABELER)
    assert missing.status_code == 404


def test_text_search_without_clip_names_the_setting(
    client: TestClient, loop_settings: LoopSettings
) -> None:
    index = VectorIndex.from_settings(loop_settings)
    index.publish([_point(0, [1, 0, 0, 0])], embedder="test-embedder")
    index.close()
    answer = client.get("/api/search/similar", params={"text": "a person"}, headers=LABELER)
    assert answer.status_code == 400
    assert "EDGELOOP_CLIP_MODEL" in answer.json()["detail"]
    both = client.get(
        "/api/search/similar", params={"text": "a", "detection_id": "b"}, headers=LABELER
    )
    assert both.status_code == 400
    assert client.get("/api/search/similar", params={"text": "a"}).status_code == 401


def test_the_api_keeps_the_version_open_and_follows_the_pointer(
    client: TestClient, loop_settings: LoopSettings
) -> None:
    from api.search_index import SearchIndex

    holder = SearchIndex(loop_settings, check_interval_s=0.0)
    client.app.state.search_index = holder  # type: ignore[attr-defined]
    index = VectorIndex.from_settings(loop_settings, keep_versions=1)
    v1 = index.publish([_point(0, [1, 0, 0, 0]), _point(1, [0, 1, 0, 0])], embedder="e")
    params = {"detection_id": "cam-1:src:0:0", "limit": 5}
    first = client.get("/api/search/similar", params=params, headers=LABELER).json()
    assert first["index_version"] == "v0001" and len(first["hits"]) == 2
    assert is_held_open(Path(v1.location))  # kept open between requests

    index.publish([_point(0, [1, 0, 0, 0]), _point(7, [0.8, 0.2, 0, 0])], embedder="e")
    # v0001 is still open in the API, so the publish (keep 1) could not prune it.
    assert Path(v1.location).exists()
    second = client.get("/api/search/similar", params=params, headers=LABELER).json()
    assert second["index_version"] == "v0002"
    assert [h["detection_id"] for h in second["hits"]] == ["cam-1:src:0:0", "cam-1:src:7:0"]
    assert not is_held_open(Path(v1.location))  # the old version was closed on the swap
    index.publish([_point(0, [1, 0, 0, 0])], embedder="e")
    assert not Path(v1.location).exists()  # and the next publish pruned it


def test_a_corrupt_pointer_answers_503_naming_the_file(
    client: TestClient, loop_settings: LoopSettings
) -> None:
    loop_settings.qdrant_path.mkdir(parents=True)
    (loop_settings.qdrant_path / "PUBLISHED.json").write_text("{oops")
    answer = client.get("/api/search/similar", params={"detection_id": "x"}, headers=LABELER)
    assert answer.status_code == 503
    assert "PUBLISHED.json" in answer.json()["detail"]
    assert "crop_embeddings" in answer.json()["detail"]
