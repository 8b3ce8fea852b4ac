"""Tags the loop suggests from CLIP: each crop gets the tag prompt
(``LoopSettings.tag_prompts``) its embedding matches best, when the cosine score reaches
``LoopSettings.tag_prompt_min_score``.

The crops' vectors come from the published crop index (the ``crop_embeddings`` asset
computed them; nothing is embedded again here); the prompts are embedded once per
process by the app's text embedder (``api.search_index.TextQueryEmbedder``). Only an
OpenCLIP index has text and image vectors in one space: with the offline MobileNetV2
default there is nothing to match, and ``suggest`` says which settings enable it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from api.search_index import SearchIndex, TextQueryEmbedder
from edgeloop.settings import LoopSettings
from edgeloop.store import tags

CLIP_NEEDED = (
    "tag prompts need an OpenCLIP embedder: set EDGELOOP_CLIP_MODEL and "
    "EDGELOOP_CLIP_PRETRAINED, then rematerialize crop_embeddings"
)


class PromptTagsUnavailableError(RuntimeError):
    """No OpenCLIP embedder is configured, or the published index was built by another."""


@dataclass(frozen=True)
class PromptMatch:
    """A crop's best prompt: ``detection_id``, the prompt as a tag, its cosine ``score``."""

    detection_id: str
    tag: str
    score: float


_prompt_vectors: dict[tuple[str, ...], np.ndarray] = {}
_prompt_lock = threading.Lock()


def _vectors(embedder: TextQueryEmbedder, prompts: tuple[str, ...]) -> np.ndarray:
    """``(len(prompts), dims)`` L2-normalised text vectors, computed once per prompt list."""
    with _prompt_lock:
        if prompts not in _prompt_vectors:
            _prompt_vectors[prompts] = np.stack([embedder.embed(p) for p in prompts])
        return _prompt_vectors[prompts]


def suggest(
    *,
    loop: LoopSettings,
    search_index: SearchIndex,
    text_embedder: TextQueryEmbedder,
    detection_ids: Sequence[str],
) -> list[PromptMatch]:
    """The best prompt of each indexed detection of ``detection_ids`` whose score reaches
    ``loop.tag_prompt_min_score``; detections not in the index are left out.

    Raises:
        PromptTagsUnavailableError: no OpenCLIP embedder, or the index is another embedder's.
        IndexNotPublishedError, CorruptIndexError, IndexLockedError: as ``SearchIndex.reader``.
    """
    from edgeloop.embeddings import embedder_name

    prompts = [(p, tags.normalise(p)) for p in loop.tag_prompts]
    if loop.clip_model is None:
        raise PromptTagsUnavailableError(CLIP_NEEDED)
    if not prompts:
        return []
    with search_index.reader() as reader:
        if reader.info.embedder != embedder_name(loop):
            raise PromptTagsUnavailableError(
                f"the published index was built with {reader.info.embedder}, the configured "
                f"embedder is {embedder_name(loop)}; rematerialize crop_embeddings"
            )
        found = {d: reader.vector_of(d) for d in dict.fromkeys(detection_ids)}
    texts = _vectors(text_embedder, tuple(p for p, _ in prompts))
    matches = []
    for detection_id, vector in found.items():
        if vector is None:
            continue
        scores = texts @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
        best = int(np.argmax(scores))
        if float(scores[best]) >= loop.tag_prompt_min_score:
            matches.append(PromptMatch(detection_id, prompts[best][1], float(scores[best])))
    return matches
