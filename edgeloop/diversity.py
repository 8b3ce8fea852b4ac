"""The near-duplicate rule of the labeling queue: a frame too like one already kept is ranked down.

A fixed camera sends long runs of nearly identical frames; labeling each of them buys
little (issue 18, "a queue worth a person's time"; Lightly and FiftyOne select for
diversity on embeddings the same way). The rule, per camera and greedy in priority order:

1. the *references* are the camera's frames already labeled;
2. the queue's pending frames are visited highest priority first; a frame whose cosine
   distance to any reference of its camera is under ``threshold`` is a **near-duplicate**
   (of the nearest one); otherwise it is **kept** and becomes a reference itself.

So of a run of near-identical frames the highest-priority one is kept and the rest are
marked, and a frame like one a person labeled already is marked too. Frames of other
cameras never suppress each other (two cameras can see the same kind of scene).

A frame's vector (``frame_vector``) is the L2-normalised mean of its detection crops'
embeddings: the vectors the ``crop_embeddings`` asset already computes (one per
detection crop, ``edgeloop.embeddings``), so the rule needs no second model pass over
whole frames. On a fixed camera the mean of the crops says where the people are and
what they look like; two frames whose crops agree show the same scene.

Only numpy; callers read the vectors (the ``crop_embeddings`` cache,
``edgeloop.embeddings.EmbeddingCache``) and write the ranks
(``edgeloop.store.diversity``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

NEAR_DUPLICATE_DISTANCE = 0.02
"""Default cosine distance (1 - cosine similarity) under which a frame is a near-duplicate.

Measured on ``vtest.avi`` by ``bench/queue_diversity.py`` (300 frames sent by the agent,
MobileNetV2 crop embeddings, frame vector = mean of its crops): of frame pairs 1 frame
apart 70.6 % are under 0.02 (median 0.0156); 2–4 apart 31.2 %; 10–24 apart 3.7 %; 25–49
apart 0.3 %; 50 or more apart none (5th percentile 0.0283–0.0307). So 0.02 marks what is
next to identical and leaves frames 25 or more apart almost always alone."""


@dataclass(frozen=True)
class NearDuplicate:
    """A candidate marked as a near-duplicate.

    Attributes:
        index: the candidate's row in the candidates given to ``near_duplicates``.
        of_reference: True when its nearest kept frame is a reference (labeled), False
            when it is an earlier candidate that was kept.
        of_index: that frame's row (in the references, or in the candidates).
        distance: their cosine distance, in [0, 2).
    """

    index: int
    of_reference: bool
    of_index: int
    distance: float


def _check_rows(name: str, vectors: np.ndarray, cameras: Sequence[Hashable], dims: int) -> None:
    if vectors.ndim != 2 or (vectors.shape[0] and vectors.shape[1] != dims):
        raise ValueError(f"{name} must be (n, {dims}) float32, got shape {vectors.shape}")
    if len(cameras) != vectors.shape[0]:
        raise ValueError(f"{name}: {vectors.shape[0]} vectors but {len(cameras)} camera ids")


def near_duplicates(
    candidates: np.ndarray,
    candidate_cameras: Sequence[Hashable],
    references: np.ndarray,
    reference_cameras: Sequence[Hashable],
    *,
    threshold: float = NEAR_DUPLICATE_DISTANCE,
) -> list[NearDuplicate]:
    """Apply the rule (module docstring): which candidates are near-duplicates.

    Args:
        candidates: ``(n, d)`` float32, each row L2-normalised, **in priority order**
            (highest first): the pending frames' vectors.
        candidate_cameras: ``n`` camera ids, one per candidate.
        references: ``(m, d)`` float32, L2-normalised: frames already labeled (``(0, d)``
            or ``(0, 0)`` when none).
        reference_cameras: ``m`` camera ids.
        threshold: cosine distance; a candidate strictly closer than this to a kept frame
            of its camera is marked. 0 marks nothing. Default ``NEAR_DUPLICATE_DISTANCE``.

    Returns:
        The marked candidates, in candidate order; a candidate not listed is kept.

    Raises:
        ValueError: a threshold outside [0, 2], shapes that disagree, or a camera id count
            that differs from its vectors'.
    """
    if not 0.0 <= threshold <= 2.0:
        raise ValueError(f"threshold is a cosine distance in [0, 2], got {threshold}")
    candidates = np.asarray(candidates, dtype=np.float32)
    references = np.asarray(references, dtype=np.float32)
    dims = candidates.shape[1] if candidates.ndim == 2 else -1
    _check_rows("candidates", candidates, candidate_cameras, dims)
    _check_rows("references", references, reference_cameras, dims)
    marked: list[NearDuplicate] = []
    if threshold == 0.0 or candidates.shape[0] == 0:
        return marked
    by_camera: dict[Hashable, list[int]] = {}
    for i, camera in enumerate(candidate_cameras):
        by_camera.setdefault(camera, []).append(i)
    for camera, rows in by_camera.items():
        refs = [j for j, c in enumerate(reference_cameras) if c == camera]
        marked += _greedy(candidates, rows, references, refs, threshold)
    return sorted(marked, key=lambda m: m.index)


def _greedy(
    candidates: np.ndarray,
    rows: list[int],
    references: np.ndarray,
    refs: list[int],
    threshold: float,
) -> list[NearDuplicate]:
    """One camera: ``rows`` (candidate rows, priority order) against ``refs`` (reference
    rows) and the candidates kept before each. The distances to the references are one
    matrix product (BLAS); the kept candidates grow in a preallocated matrix, so each step
    is one matrix-vector product over what is kept so far."""
    mine = candidates[rows]
    to_refs = 1.0 - mine @ references[refs].T if refs else None
    kept = np.empty_like(mine)
    kept_rows: list[int] = []
    marked: list[NearDuplicate] = []
    for k, i in enumerate(rows):
        best: NearDuplicate | None = None
        if to_refs is not None:
            j = int(np.argmin(to_refs[k]))
            best = NearDuplicate(i, True, refs[j], float(to_refs[k, j]))
        if kept_rows:
            distances = 1.0 - kept[: len(kept_rows)] @ mine[k]
            j = int(np.argmin(distances))
            if best is None or float(distances[j]) < best.distance:
                best = NearDuplicate(i, False, kept_rows[j], float(distances[j]))
        if best is not None and best.distance < threshold:
            marked.append(best)
            continue
        kept[len(kept_rows)] = mine[k]
        kept_rows.append(i)
    return marked


def frame_vector(crop_vectors: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """A frame's vector: the L2-normalised mean of its crops' vectors.

    Args:
        crop_vectors: ``k >= 1`` vectors of one frame's detection crops, each ``(d,)``
            float32 (L2-normalised, as every ``edgeloop.embeddings.Embedder`` returns).

    Returns:
        ``(d,)`` float32 with norm 1.

    Raises:
        ValueError: no crop vectors, or they sum to zero (no direction to normalise).
    """
    stacked = np.asarray(crop_vectors, dtype=np.float32)
    if stacked.ndim != 2 or stacked.shape[0] == 0:
        raise ValueError(f"a frame vector needs (k >= 1, d) crop vectors, got {stacked.shape}")
    mean = stacked.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-12:
        raise ValueError("the crop vectors cancel out (their mean is zero)")
    return (mean / norm).astype(np.float32)
