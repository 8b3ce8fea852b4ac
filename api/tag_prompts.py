"""Tags suggested from CLIP on request (``POST /api/tags/suggest``): the matching rule is
``edgeloop.tag_prompts``'; here the crops' vectors come from the app's open crop index
and the prompts are embedded once per process by the app's text embedder
(``api.search_index.TextQueryEmbedder``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from api.search_index import SearchIndex, TextQueryEmbedder
from edgeloop.settings import LoopSettings
from edgeloop.tag_prompts import (
    CLIP_NEEDED,
    PromptMatch,
    PromptTagsUnavailableError,
    best_matches,
    check_available,
)

__all__ = ["CLIP_NEEDED", "PromptMatch", "PromptTagsUnavailableError", "suggest"]

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
    ``loop.tag_prompt_min_score`` (``edgeloop.tag_prompts.best_matches``); detections not
    in the index are left out.

    Raises:
        PromptTagsUnavailableError: no OpenCLIP embedder, or the index is another embedder's.
        IndexNotPublishedError, CorruptIndexError, IndexLockedError: as ``SearchIndex.reader``.
    """
    if loop.clip_model is None:
        raise PromptTagsUnavailableError(CLIP_NEEDED)
    if not loop.tag_prompts:
        return []
    with search_index.reader() as reader:
        check_available(loop, reader.info.embedder)
        found = reader.vectors_of(detection_ids)
    return best_matches(
        loop=loop,
        text_vectors=_vectors(text_embedder, tuple(loop.tag_prompts)),
        crop_vectors=found,
    )
