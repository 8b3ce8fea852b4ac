"""Tags the loop suggests from CLIP: each crop gets the tag prompt
(``LoopSettings.tag_prompts``) its embedding matches best, when the cosine score reaches
``LoopSettings.tag_prompt_min_score``.

The crops' vectors are the crop index's (the ``crop_embeddings`` asset computed them;
nothing is embedded again); the prompts are embedded by the same OpenCLIP model's text
side. Only an OpenCLIP index has text and image vectors in one space: with the offline
MobileNetV2 default there is nothing to match (``PromptTagsUnavailableError`` says which
settings enable it). Used by ``POST /api/tags/suggest`` (``api.tag_prompts``) and by the
``suggested_tags`` asset, which suggests them for new detections by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from edgeloop.settings import LoopSettings
from edgeloop.store import tags
from edgeloop.store.connection import Connection

CLIP_NEEDED = (
    "tag prompts need an OpenCLIP embedder: set EDGELOOP_CLIP_MODEL and "
    "EDGELOOP_CLIP_PRETRAINED, then rematerialize crop_embeddings"
)


class PromptTagsUnavailableError(RuntimeError):
    """No OpenCLIP embedder is configured, or the published index was built by another."""


@dataclass(frozen=True)
class PromptMatch:
    """A crop's best prompt: ``detection_id``, the prompt as a tag, its cosine ``score``
    ([-1, 1])."""

    detection_id: str
    tag: str
    score: float


def check_available(loop: LoopSettings, index_embedder: str) -> None:
    """Raise unless prompts can be matched against an index built by ``index_embedder``.

    Raises:
        PromptTagsUnavailableError: no OpenCLIP embedder configured (``CLIP_NEEDED``), or
            the index was built by another embedder than the configured one.
    """
    from edgeloop.embeddings import embedder_name

    if loop.clip_model is None:
        raise PromptTagsUnavailableError(CLIP_NEEDED)
    if index_embedder != embedder_name(loop):
        raise PromptTagsUnavailableError(
            f"the published index was built with {index_embedder}, the configured "
            f"embedder is {embedder_name(loop)}; rematerialize crop_embeddings"
        )


def best_matches(
    *,
    loop: LoopSettings,
    text_vectors: np.ndarray,
    crop_vectors: Mapping[str, np.ndarray | None],
) -> list[PromptMatch]:
    """Each crop's best prompt whose cosine score reaches ``loop.tag_prompt_min_score``.

    Args:
        loop: its ``tag_prompts`` (each must make a valid tag, ``tags.normalise``) and
            ``tag_prompt_min_score``.
        text_vectors: ``(len(loop.tag_prompts), dims)`` float32, L2-normalised, row i the
            text embedding of prompt i.
        crop_vectors: ``detection_id -> (dims,)`` crop vector from the index (normalised
            here); None (a detection not in the index) is left out.

    Raises:
        ValueError: a prompt that is not a valid tag, or ``text_vectors`` of another length.
    """
    names = [tags.normalise(p) for p in loop.tag_prompts]
    if len(names) != len(text_vectors):
        raise ValueError(f"{len(text_vectors)} text vectors for {len(names)} tag prompts")
    matches = []
    for detection_id, vector in crop_vectors.items():
        if vector is None or not names:
            continue
        scores = text_vectors @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
        best = int(np.argmax(scores))
        if float(scores[best]) >= loop.tag_prompt_min_score:
            matches.append(PromptMatch(detection_id, names[best], float(scores[best])))
    return matches


def record(
    *, con: Connection, matches: Sequence[PromptMatch], created_by: str, now: datetime
) -> int:
    """Store ``matches`` as ``suggested`` tags with their scores (a tag already on the
    detection, a person's or a suggestion, is kept as it is); returns the rows inserted."""
    return sum(
        tags.add(
            con=con,
            detection_ids=[match.detection_id],
            tag=match.tag,
            source="suggested",
            created_by=created_by,
            now=now,
            score=match.score,
        )
        for match in matches
    )
