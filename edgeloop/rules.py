"""The loop's rules and their defaults, each with its source.

Pure functions and constants only: imported by the agent, the API and the pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

UNCERTAINTY_LOW = 0.4
"""Lower bound (exclusive) of the uncertainty band on detection confidence. Source: the seed."""
UNCERTAINTY_HIGH = 0.7
"""Upper bound (exclusive) of the uncertainty band on detection confidence. Source: the seed."""

RETRAIN_LABEL_COUNT = 50
"""Default of ``LoopSettings.retrain_label_count`` (``EDGELOOP_RETRAIN_LABEL_COUNT``):
reviewed labels since the last training run that trigger a retrain. Source: the seed."""
DRIFT_P_VALUE = 0.05
"""A feature drifts when its test's p-value is below this. Source: the seed."""
DRIFT_SHARE = 0.30
"""A camera drifts when more than this share of its features drift. Source: the seed."""


def is_uncertain(
    confidence: float, low: float = UNCERTAINTY_LOW, high: float = UNCERTAINTY_HIGH
) -> bool:
    """True when ``low < confidence < high`` (confidence in [0, 1]); bounds exclusive, per the seed."""
    return low < confidence < high


def check_uncertainty_band(
    low: float, high: float, *, names: tuple[str, str] = ("low", "high")
) -> None:
    """Check that the band ``(low, high)`` is not empty: an empty band flags no detection.

    Args:
        low, high: the band's exclusive bounds on confidence, in [0, 1].
        names: what the caller calls the two bounds (fields, environment variables), for
            the message.

    Raises:
        ValueError: ``low`` is not below ``high``; the message names both.
    """
    if not low < high:
        raise ValueError(
            f"uncertainty band is empty: {names[0]}={low} must be below {names[1]}={high}"
        )


def uncertainty_scores(
    confidence: npt.ArrayLike, low: float = UNCERTAINTY_LOW, high: float = UNCERTAINTY_HIGH
) -> npt.NDArray[np.float64]:
    """How unsure each detection is, in [0, 1]: 1 at the band's centre, 0 at and outside its edges.

    Least-confidence sampling restricted to the uncertainty band; it ranks the labeling
    queue at ingest (``api/ingest.py``) and when the queue is re-ranked in DuckDB
    (``edgeloop.store.queue``, which calls this very function as a vectorised UDF).

    Args:
        confidence: detector confidences in [0, 1], any shape; NaN gives NaN.
        low / high: the band's bounds (exclusive), ``low < high``.

    Returns:
        float64 array of the same shape.
    """
    centre = (low + high) / 2
    half = (high - low) / 2
    conf = np.asarray(confidence, dtype=np.float64)
    result: npt.NDArray[np.float64] = np.maximum(0.0, 1.0 - np.abs(conf - centre) / half)
    return result


def uncertainty_score(
    confidence: float, low: float = UNCERTAINTY_LOW, high: float = UNCERTAINTY_HIGH
) -> float:
    """``uncertainty_scores`` of one confidence, as a float."""
    return float(uncertainty_scores(confidence, low, high))


def camera_drifted(
    drift_share: float,
    min_p_value: float | None,
    *,
    p_threshold: float = DRIFT_P_VALUE,
    share_threshold: float = DRIFT_SHARE,
) -> bool:
    """The seed's drift rule for one camera: any feature with ``p < 0.05`` or drift share ``> 0.30``.

    Args:
        drift_share: share of monitored features that drifted, in [0, 1].
        min_p_value: smallest per-feature p-value, or None when no test gave one.
    """
    return drift_share > share_threshold or (min_p_value is not None and min_p_value < p_threshold)


@dataclass(frozen=True)
class RetrainDecision:
    """What the seed's retrain rules say now, and why, in sentences for people.

    Attributes:
        due: a retrain should run now.
        trigger: ``"label_count"`` or ``"drift"`` when due (label count wins when both hold).
        drifted_cameras: cameras whose latest drift report drifted.
        reprioritise: drifted cameras whose queue should be boosted instead of retraining
            (drift with no new labels to learn from).
        reasons: one sentence per rule.
    """

    due: bool
    trigger: str | None
    drifted_cameras: list[str] = field(default_factory=list)
    reprioritise: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def retrain_decision(
    labels_since_training: int, drifted_cameras: list[str], *, label_threshold: int
) -> RetrainDecision:
    """The seed's retrain rule, the one place it is written.

    Retrain when ``labels_since_training >= label_threshold`` reviewed labels arrived since
    the last training run, or when a camera drifted and at least one new label exists;
    a drifted camera with no new labels gets its labeling queue reprioritised instead.
    Used by the sensors (``pipelines/sensors.py``), ``/api/retraining/conditions`` and
    ``edgeloop status``.

    Args:
        labels_since_training: labeled frames since the last training run's cutoff.
        drifted_cameras: cameras whose latest drift report drifted (``camera_drifted``).
        label_threshold: ``LoopSettings.retrain_label_count`` (seed: 50).
    """
    reasons: list[str] = []
    trigger: str | None = None
    if labels_since_training >= label_threshold:
        trigger = "label_count"
        reasons.append(
            f"{labels_since_training} reviewed labels since the last training run "
            f"(threshold {label_threshold})"
        )
    else:
        reasons.append(
            f"{labels_since_training} reviewed labels since the last training run, below the "
            f"threshold of {label_threshold}"
        )
    cameras = ", ".join(drifted_cameras)
    reprioritise: list[str] = []
    if drifted_cameras and labels_since_training > 0:
        trigger = trigger or "drift"
        reasons.append(f"drift on camera(s) {cameras} and {labels_since_training} new label(s)")
    elif drifted_cameras:
        reprioritise = list(drifted_cameras)
        reasons.append(
            f"drift on camera(s) {cameras} but no new labels: reprioritise their labeling "
            "queue rather than retrain"
        )
    else:
        reasons.append("no camera drifted in its latest drift report")
    return RetrainDecision(
        due=trigger is not None,
        trigger=trigger,
        drifted_cameras=list(drifted_cameras),
        reprioritise=reprioritise,
        reasons=reasons,
    )
