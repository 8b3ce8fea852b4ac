"""``/api/search/similar`` against a real local Qdrant index published by the same client the asset uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_support import NoModelRegistry
from fastapi.testclient import TestClient

from api.deps import get_registry
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
from edgeloop.vectors import CropPoint, VectorIndex
from edgeloop.vectors.versions import is_held_open

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


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised small OpenCLIP model saved as a local checkpoint: no CLIP
    weights can be had offline, and a user's checkpoint takes the same loading path."""
    import open_clip
    import torch

    model, _, _ = open_clip.create_model_and_transforms("ViT-S-32", pretrained=None)
    checkpoint = tmp_path_factory.mktemp("clip") / "vit-s-32.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint


def clip_client(api_settings: ApiSettings, checkpoint: Path) -> TestClient:
    loop = api_settings.loop.model_copy(
        update={"clip_model": "ViT-S-32", "clip_pretrained": str(checkpoint)}
    )
    app = create_app(api_settings.model_copy(update={"loop": loop}))
    app.dependency_overrides[get_registry] = NoModelRegistry
    return TestClient(app)


def test_text_search_builds_the_embedder_once_and_ranks_by_the_text(
    api_settings: ApiSettings, clip_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeloop.embeddings as embeddings

    texts = ["a person walking", "a red car", "an empty corridor"]
    reference = embeddings.OpenClipEmbedder("ViT-S-32", str(clip_checkpoint))
    vectors = reference.embed_text(texts)
    index = VectorIndex.from_settings(api_settings.loop)
    index.publish([_point(i, list(v)) for i, v in enumerate(vectors)], embedder=reference.name)
    index.close()
    builds: list[str] = []

    def counted(settings: LoopSettings, **kwargs: Any) -> embeddings.Embedder:
        builds.append(str(settings.clip_model))
        return real_build(settings, **kwargs)

    real_build = embeddings.build_embedder
    monkeypatch.setattr(embeddings, "build_embedder", counted)
    with clip_client(api_settings, clip_checkpoint) as client:
        for i, text in enumerate(texts):
            answer = client.get("/api/search/similar", params={"text": text}, headers=LABELER)
            assert answer.status_code == 200, answer.text
            top = answer.json()["hits"][0]
            assert top["detection_id"] == f"cam-1:src:{i}:0"
            assert top["score"] == pytest.approx(1.0, abs=1e-3)
    assert builds == ["ViT-S-32"]  # the first text query built it, the others reused it


def test_text_search_with_unloadable_weights_is_a_503_not_a_crash(
    api_settings: ApiSettings, tmp_path: Path
) -> None:
    from edgeloop.embeddings import openclip_name

    missing = tmp_path / "no-such-checkpoint.pt"
    index = VectorIndex.from_settings(api_settings.loop)
    index.publish([_point(0, [1, 0, 0, 0])], embedder=openclip_name("ViT-S-32", str(missing)))
    index.close()
    with clip_client(api_settings, missing) as client:
        for _ in range(2):  # a failed build is not kept: each query tries again
            answer = client.get("/api/search/similar", params={"text": "a"}, headers=LABELER)
            assert answer.status_code == 503, answer.text
            assert "EDGELOOP_CLIP_PRETRAINED" in answer.json()["detail"]
        by_image = client.get(
            "/api/search/similar", params={"detection_id": "cam-1:src:0:0"}, headers=LABELER
        )
        assert by_image.status_code == 200  # image-to-image still answers
