"""suggested_tags on each store backend, after the real crop_embeddings on real vtest
frames: the class and scene of new detections, CLIP tag prompts with a small randomly
initialised OpenCLIP model (no CLIP weights can be had offline), idempotent runs, and a
person's tag never replaced."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from loopdata import make_loop, vtest_frames

from assets.embeddings import crop_embeddings
from assets.resources import EmbedderResource, VectorIndexResource
from assets.suggested_tags import SuggestedTagsConfig, suggested_tags
from edgeloop.settings import get_settings
from edgeloop.store import tags
from edgeloop.vectors import VectorIndex

PROMPTS = ["a person walking", "a red car", "an empty corridor"]


def _run(loop, instance: dg.DagsterInstance, assets: list, full: bool = False) -> dict:
    result = dg.materialize(
        assets,
        instance=instance,
        run_config=dg.RunConfig({"suggested_tags": SuggestedTagsConfig(full=full)})
        if suggested_tags in assets
        else None,
        resources={
            "store": loop.store_resource,
            "embedder": EmbedderResource(loop=loop.loop_resource, batch_size=16),
            "vectors": VectorIndexResource(loop=loop.loop_resource),
        },
    )
    assert result.success
    events = result.asset_materializations_for_node(assets[-1].op.name)
    return {k: v.value for k, v in events[0].metadata.items()}


def _rows(loop) -> set[tuple]:
    with loop.store.connect() as con:
        return {
            (kind, target, tag, source, created_by)
            for kind, target, tag, source, created_by in con.execute(
                "SELECT target_kind, target_id, tag, source, created_by FROM tags"
            ).fetchall()
        }


def _expected(loop, keys: list[str], boxes: int, camera: str) -> set[tuple]:
    return {
        ("detection", f"{k}:{b}", "normal", "suggested", "loop") for k in keys for b in range(boxes)
    } | {("frame", k, f"scene:{camera}", "suggested", "loop") for k in keys}


def test_the_loop_suggests_class_and_scene_for_new_detections(
    tmp_path: Path, database_url: str | None
) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    images = vtest_frames(6, step=9)
    old = loop.add_frames("cam-a", images[:3], boxes_per_frame=2)
    with loop.store.connect() as con:  # a person's tag of the same text as a suggestion
        tags.add(
            con=con,
            detection_ids=[f"{old[0]}:0"],
            tag="normal",
            source="person",
            created_by="ana",
            now=datetime.now(UTC),
        )
    instance = dg.DagsterInstance.ephemeral()

    md = _run(loop, instance, [crop_embeddings, suggested_tags])
    person = ("detection", f"{old[0]}:0", "normal", "person", "ana")
    expected = (_expected(loop, old, 2, "cam-a") - {(*person[:3], "suggested", "loop")}) | {person}
    assert _rows(loop) == expected
    assert (md["frames"], md["class_and_scene_tags"], md["prompt_tags"]) == (3, 5 + 3, 0)
    assert md["received_since"] == "the first frame"
    assert "EDGELOOP_CLIP_MODEL" in md["tag_prompts"]

    # Again: only frames received since the last run (none), nothing changes.
    md = _run(loop, instance, [suggested_tags])
    assert (md["frames"], md["class_and_scene_tags"]) == (0, 0)
    assert _rows(loop) == expected

    # A suggestion a person took off an old frame stays off; new frames get theirs.
    with loop.store.connect() as con:
        tags.remove(con=con, target_kind="frame", target_id=old[1], tag="scene:cam-a")
    just_now = datetime.now(UTC) - timedelta(minutes=1)  # received since the last run
    new = loop.add_frames("cam-b", images[3:], boxes_per_frame=1, start=just_now)
    md = _run(loop, instance, [suggested_tags])
    assert (md["frames"], md["class_and_scene_tags"]) == (3, 3 + 3)
    without = expected - {("frame", old[1], "scene:cam-a", "suggested", "loop")}
    assert _rows(loop) == without | _expected(loop, new, 1, "cam-b")

    # ``full``: every stored frame again; the removed suggestion comes back, the person's
    # tag stays the person's.
    md = _run(loop, instance, [suggested_tags], full=True)
    assert (md["frames"], md["class_and_scene_tags"]) == (6, 1)
    assert _rows(loop) == expected | _expected(loop, new, 1, "cam-b")


@pytest.fixture
def clip_checkpoint(tmp_path: Path) -> Path:
    """A randomly initialised small OpenCLIP model saved as a local checkpoint."""
    import open_clip
    import torch

    model, _, _ = open_clip.create_model_and_transforms("ViT-S-32", pretrained=None)
    path = tmp_path / "vit-s-32.pt"
    torch.save(model.state_dict(), path)
    return path


def test_with_clip_the_best_tag_prompt_above_the_threshold_is_suggested(
    tmp_path: Path,
    database_url: str | None,
    clip_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgeloop.embeddings import OpenClipEmbedder

    monkeypatch.setenv("EDGELOOP_CLIP_MODEL", "ViT-S-32")
    monkeypatch.setenv("EDGELOOP_CLIP_PRETRAINED", str(clip_checkpoint))
    monkeypatch.setenv("EDGELOOP_TAG_PROMPTS", json.dumps(PROMPTS))
    get_settings.cache_clear()
    loop = make_loop(tmp_path, database_url=database_url)
    keys = loop.add_frames("cam-a", vtest_frames(4, step=9), boxes_per_frame=2)
    instance = dg.DagsterInstance.ephemeral()
    _run(loop, instance, [crop_embeddings])

    # What each crop's best prompt is, from the published vectors and the prompts' text
    # vectors; the threshold between the scores, so some crops pass and some do not.
    reference = OpenClipEmbedder("ViT-S-32", str(clip_checkpoint))
    texts = reference.embed_text(PROMPTS)
    index = VectorIndex.from_settings(loop.settings)
    best = {}
    for key in keys:
        for b in range(2):
            vector = index.vector_of(f"{key}:{b}")
            assert vector is not None
            scores = texts @ (vector / np.linalg.norm(vector))
            best[f"{key}:{b}"] = (PROMPTS[int(np.argmax(scores))], float(np.max(scores)))
    index.close()
    threshold = float(np.median([s for _, s in best.values()]))
    monkeypatch.setenv("EDGELOOP_TAG_PROMPT_MIN_SCORE", str(threshold))
    get_settings.cache_clear()

    md = _run(loop, instance, [suggested_tags])
    passing = {d: (p, s) for d, (p, s) in best.items() if s >= threshold}
    assert 0 < len(passing) < len(best)
    assert (md["prompt_matches"], md["prompt_tags"]) == (len(passing), len(passing))
    with loop.store.connect() as con:
        stored = {
            (target, tag): score
            for target, tag, score in con.execute(
                "SELECT target_id, tag, score FROM tags WHERE tag IN (?, ?, ?) "
                "AND source = 'suggested'",
                PROMPTS,
            ).fetchall()
        }
    assert set(stored) == {(d, p) for d, (p, _) in passing.items()}
    for (target, _), score in stored.items():
        assert score == pytest.approx(passing[target][1], abs=1e-4)
    assert len(_rows(loop)) == len(passing) + 8 + 4  # prompts, classes, scenes

    # Idempotent: all frames again, nothing new.
    md = _run(loop, instance, [suggested_tags], full=True)
    assert (md["class_and_scene_tags"], md["prompt_tags"]) == (0, 0)
    assert md["prompt_matches"] == len(passing)
