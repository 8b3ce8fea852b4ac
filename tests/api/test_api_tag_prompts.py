"""Tags suggested from CLIP: each indexed crop gets its best tag prompt when the cosine
score reaches the threshold, with a small randomly initialised OpenCLIP model (no CLIP
weights can be had offline; a user's checkpoint takes the same loading path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from api_support import LABELER, detection, frame, ingest
from test_api_search import clip_checkpoint, clip_client  # noqa: F401 (a fixture)

from api.settings import ApiSettings
from edgeloop.vectors import CropPoint, VectorIndex


def _point(detection_id: str, vector: np.ndarray) -> CropPoint:
    return CropPoint(
        detection_id=detection_id,
        frame_key=detection_id.rpartition(":")[0],
        camera_id="cam-1",
        class_name="Normal",
        confidence=0.5,
        bbox_xyxy=(1.0, 2.0, 30.0, 60.0),
        captured_at_iso="2026-01-01T00:00:00+00:00",
        vector=(vector / np.linalg.norm(vector)).astype(np.float32),
    )


def test_clip_suggests_each_crops_best_prompt_above_the_threshold(
    api_settings: ApiSettings,
    clip_checkpoint: Path,  # noqa: F811 (the fixture imported above)
) -> None:
    import edgeloop.embeddings as embeddings

    prompts = ["a person walking", "a red car", "an empty corridor"]
    reference = embeddings.OpenClipEmbedder("ViT-S-32", str(clip_checkpoint))
    vectors = reference.embed_text(prompts)
    loop = api_settings.loop.model_copy(
        update={"tag_prompts": prompts, "tag_prompt_min_score": 0.9}
    )
    with clip_client(api_settings.model_copy(update={"loop": loop}), clip_checkpoint) as client:
        ingest(
            client,
            frame(
                "cam-1:0", detections=[detection(1, 2, 30, 60, 0.5), detection(40, 2, 90, 60, 0.9)]
            ),
            frame("cam-1:1", index=1, detections=[detection(1, 2, 30, 60, 0.5)]),
        )
        index = VectorIndex.from_settings(loop)
        index.publish(
            [
                _point("cam-1:0:0", vectors[1]),
                _point("cam-1:0:1", np.random.default_rng(0).normal(size=(vectors.shape[1],))),
                _point("cam-1:1:0", vectors[2]),
            ],
            embedder=reference.name,
        )
        index.close()
        answer = client.post(
            "/api/tags/suggest", json={"frame_keys": ["cam-1:0", "cam-1:1"]}, headers=LABELER
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["prompt_matches"] == 2 and answer.json()["prompts"] is None
        items = client.get(
            "/api/browse/items", params={"ids": "cam-1:0:0,cam-1:0:1,cam-1:1:0"}, headers=LABELER
        ).json()["items"]
    tags = {i["id"]: {t["tag"]: t for t in i["detections"][0]["tags"]} for i in items}
    assert tags["cam-1:0:0"]["a red car"]["source"] == "suggested"
    assert tags["cam-1:0:0"]["a red car"]["score"] > 0.99
    assert set(tags["cam-1:0:1"]) == {"normal"}  # a random crop: no prompt reaches 0.9
    assert "an empty corridor" in tags["cam-1:1:0"]
