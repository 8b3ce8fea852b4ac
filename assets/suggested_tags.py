"""The ``suggested_tags`` asset: the loop suggests tags for new detections by itself, after
``crop_embeddings`` indexed their crops (issue 19: "suggested by the loop: the class, the
camera's scene, and, with CLIP configured, the best-matching label from a list of tag
prompts above a threshold, marked as suggested").

For the frames received since the previous run (``frames.received_at`` in
``[previous received_until - RECEIVED_OVERLAP, now)``; every stored frame on the first
run or with ``full``), it writes ``suggested`` tags (``edgeloop.store.tags``):

- each detection's class name (``normal``);
- each frame's scene, ``scene:<camera_id>``: a camera is fixed, so the scene it watches is
  named by the camera (``tags.SCENE_PREFIX``); there is no scene classifier;
- with an OpenCLIP embedder (``EDGELOOP_CLIP_MODEL``), each indexed crop's best tag prompt
  (``EDGELOOP_TAG_PROMPTS``) when its cosine score reaches
  ``EDGELOOP_TAG_PROMPT_MIN_SCORE``, with the score (``edgeloop.tag_prompts``).

A suggestion never replaces a tag already on its target (a person's or an earlier
suggestion): running it twice changes nothing, and a suggestion a person removed comes
back only if its frame is inside the overlap again.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from assets.embeddings import crop_embeddings
from assets.resources import EmbedderResource, StoreResource, VectorIndexResource
from edgeloop.settings import LoopSettings
from edgeloop.store import browse, tags
from edgeloop.store.connection import transaction
from edgeloop.tag_prompts import (
    CLIP_NEEDED,
    PromptMatch,
    PromptTagsUnavailableError,
    best_matches,
    check_available,
    record,
)

LOOP = "loop"
"""``created_by`` of the loop's suggestions (as ``POST /api/tags/suggest`` writes them)."""
RECEIVED_OVERLAP = timedelta(minutes=5)
"""How far before the previous run's ``received_until`` a run starts again: a batch whose
transaction committed after that run had begun still carries an earlier ``received_at``."""
CHUNK = 5000
"""Frames suggested for in one statement (``tags.suggest_from_detections``' key list)."""


class SuggestedTagsConfig(dg.Config):
    """Which frames get suggestions."""

    full: bool = Field(
        False,
        description="Suggest for every stored frame, not only those received since the last run.",
    )


def _previous_until(context: dg.AssetExecutionContext) -> datetime | None:
    """``received_until`` of this asset's latest materialization, or None."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    materialization = None if event is None else event.asset_materialization
    value = None if materialization is None else materialization.metadata.get("received_until")
    return None if value is None else datetime.fromisoformat(str(value.value))


def _chunks(keys: list[str]) -> list[list[str]]:
    return [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]


def prompt_matches(
    settings: LoopSettings,
    frame_keys: list[str],
    *,
    store: StoreResource,
    embedder: EmbedderResource,
    vectors: VectorIndexResource,
) -> tuple[list[PromptMatch], str | None]:
    """The best tag prompt of each indexed crop of ``frame_keys``' detections
    (``edgeloop.tag_prompts.best_matches``), and why none could be matched (None when
    they could)."""
    if not settings.tag_prompts:
        return [], "no tag prompts (EDGELOOP_TAG_PROMPTS is an empty list)"
    index = vectors.index(keep_open=True)
    try:
        published = index.published()
        if published is None:
            return [], "no crop index is published yet"
        try:
            check_available(settings, published.embedder)
        except PromptTagsUnavailableError as exc:
            return [], str(exc)
        detection_ids: list[str] = []
        with store.store().connect() as con:
            for chunk in _chunks(frame_keys):
                detection_ids += browse.with_frames(con=con, frame_keys=chunk, detection_ids=[])[1]
        crop_vectors: dict[str, np.ndarray] = {}
        for chunk in _chunks(detection_ids):  # one retrieve (server request) per chunk
            crop_vectors |= index.vectors_of(chunk)
    finally:
        index.close()
    if not crop_vectors:
        return [], None
    text_vectors = embedder.embedder().embed_text(list(settings.tag_prompts))
    return best_matches(loop=settings, text_vectors=text_vectors, crop_vectors=crop_vectors), None


@dg.asset(group_name="embeddings", deps=[crop_embeddings])
def suggested_tags(
    context: dg.AssetExecutionContext,
    config: SuggestedTagsConfig,
    store: StoreResource,
    embedder: EmbedderResource,
    vectors: VectorIndexResource,
) -> dg.MaterializeResult:
    """The loop's tag suggestions for new detections: class, camera scene and best CLIP tag prompt."""
    settings = store.loop.settings()
    until = datetime.now(UTC)
    previous = None if config.full else _previous_until(context)
    since = None if previous is None else previous - RECEIVED_OVERLAP
    with store.store().connect() as con:
        frame_keys = tags.frames_received(con=con, since=since, until=until)
        indexed = tags.frames_received(con=con, since=since, until=until, with_jpeg=True)
        class_and_scene = 0
        for chunk in _chunks(frame_keys):
            with transaction(con):
                class_and_scene += tags.suggest_from_detections(
                    con=con, frame_keys=chunk, created_by=LOOP, now=until
                )
    matches: list[PromptMatch] = []
    note: str | None = CLIP_NEEDED
    if settings.clip_model is not None:
        matches, note = prompt_matches(
            settings, indexed, store=store, embedder=embedder, vectors=vectors
        )
    prompt_tags = 0
    if matches:
        with store.store().connect() as con, transaction(con):
            prompt_tags = record(con=con, matches=matches, created_by=LOOP, now=until)
    if note:  # a warning where CLIP is configured: then prompts were expected
        log = context.log.warning if settings.clip_model else context.log.info
        log("tag prompts: %s", note)
    context.log.info(
        "%s frames received since %s: %s class and scene suggestions, %s prompt tags",
        len(frame_keys),
        since.isoformat() if since else "the first",
        class_and_scene,
        prompt_tags,
    )
    metadata: dict[str, Any] = {
        "received_since": since.isoformat() if since else "the first frame",
        "received_until": until.isoformat(),
        "frames": len(frame_keys),
        "class_and_scene_tags": class_and_scene,
        "prompt_matches": len(matches),
        "prompt_tags": prompt_tags,
        "tag_prompts": note
        or f"{len(settings.tag_prompts)} prompts, min score {settings.tag_prompt_min_score}",
    }
    return dg.MaterializeResult(metadata=metadata)
