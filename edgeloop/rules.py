"""The loop's rules and their defaults, each with its source.

Pure functions and constants only: imported by the agent, the API and the pipelines.
"""

from __future__ import annotations

UNCERTAINTY_LOW = 0.4
"""Lower bound (exclusive) of the uncertainty band on detection confidence. Source: the seed."""
UNCERTAINTY_HIGH = 0.7
"""Upper bound (exclusive) of the uncertainty band on detection confidence. Source: the seed."""

RETRAIN_LABEL_COUNT = 50
"""Reviewed labels since the last training run that trigger a retrain. Source: the seed."""
DRIFT_P_VALUE = 0.05
"""A feature drifts when its test's p-value is below this. Source: the seed."""
DRIFT_SHARE = 0.30
"""A camera drifts when more than this share of its features drift. Source: the seed."""


def is_uncertain(
    confidence: float, low: float = UNCERTAINTY_LOW, high: float = UNCERTAINTY_HIGH
) -> bool:
    """True when ``low < confidence < high`` (confidence in [0, 1]); bounds exclusive, per the seed."""
    return low < confidence < high


def uncertainty_score(
    confidence: float, low: float = UNCERTAINTY_LOW, high: float = UNCERTAINTY_HIGH
) -> float:
    """How unsure a detection is, in [0, 1]: 1 at the band's centre, 0 at and outside its edges.

    Used to rank the labeling queue (least-confidence sampling restricted to the band).
    """
    centre = (low + high) / 2
    half = (high - low) / 2
    return max(0.0, 1.0 - abs(confidence - centre) / half)


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
