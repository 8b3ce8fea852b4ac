"""The loop's rules and their defaults, each with its source.

Pure functions and constants only: imported by the agent, the API and the pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

UNCERTAINTY_LOW = 0.4
"""Lower bound (exclusive) of the uncertainty band on detection confidence. Source: the seed."""
UNCERTAINTY_HIGH = 0.7
"""Upper bound (exclusive) of the uncertainty band on detection confidence. Source: the seed."""

RETRAIN_LABEL_COUNT = 50
"""Default of ``LoopSettings.retrain_label_count`` (``EDGELOOP_RETRAIN_LABEL_COUNT``):
reviewed labels since the last training run that trigger a retrain. Source: the seed."""
DRIFT_RETRAIN_MIN_LABELS = 20
"""Default of ``LoopSettings.drift_retrain_min_labels`` (``EDGELOOP_DRIFT_RETRAIN_MIN_LABELS``):
the fewest reviewed labels since the last training run for which drift on a camera
launches a retrain; below it the drifted camera's queue is boosted instead, so its frames
are labeled first. Source: issue 20 (five labels on a drifted camera launched a full
retrain, which learns nothing from five frames); 20 is the fewest held-out images the
promotion policy judges on (``assets/registry.py``), and 40 % of the label-count threshold."""
DRIFT_RETRAIN_COOLDOWN_H = 6.0
"""Default of ``LoopSettings.drift_retrain_cooldown_h`` (``EDGELOOP_DRIFT_RETRAIN_COOLDOWN_H``):
no drift-triggered retrain starts within this many hours of the last retrain (of any
trigger), so a camera that stays drifted does not relaunch one on every drift report (one
every 15 minutes by default, ``EDGELOOP_PIPELINES_DRIFT_CRON``). The label-count trigger and
a manual trigger are not held back. 0 turns the cooldown off. Source: issue 20; 6 h lets a
drifted camera get at most four drift retrains a day while its labels come in."""
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
    queue at ingest (``api/ingest.py``); the queue is re-ranked in the database with the
    same arithmetic as SQL (``uncertainty_score_sql``).

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


def uncertainty_score_sql(column: str, low: float, high: float) -> str:
    """``uncertainty_scores`` as a SQL expression over the confidence column ``column``
    (DuckDB and PostgreSQL alike), for re-ranking the queue inside the database
    (``edgeloop.store.queue``); the same arithmetic, so both rank alike (a test compares
    them). NULL gives NULL.

    Raises:
        ValueError: an empty band (``low >= high``).
    """
    check_uncertainty_band(low, high)
    centre = (low + high) / 2
    half = (high - low) / 2
    return f"greatest(0.0, 1.0 - abs({column} - {centre!r}) / {half!r})"


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
        reprioritise: drifted cameras whose queue should be boosted instead of retraining:
            too few new labels to learn from, or within the cooldown.
        drift_held: why drift on ``reprioritise`` launches no retrain (a phrase for people:
            "no new reviewed labels since the last training", ...); None otherwise.
        cooldown_until: while drift retrains are held back by the cooldown, when it ends
            (UTC); None when no cooldown applies.
        reasons: one sentence per rule.
    """

    due: bool
    trigger: str | None
    drifted_cameras: list[str] = field(default_factory=list)
    reprioritise: list[str] = field(default_factory=list)
    drift_held: str | None = None
    cooldown_until: datetime | None = None
    reasons: list[str] = field(default_factory=list)


def drift_cooldown_until(
    last_retrain_at: datetime | None, cooldown_h: float, now: datetime
) -> datetime | None:
    """When the drift-retrain cooldown that ``last_retrain_at`` started ends, or None when
    it is over (or there was no retrain, or ``cooldown_h`` is 0). Times timezone-aware."""
    if last_retrain_at is None or cooldown_h <= 0:
        return None
    until = last_retrain_at + timedelta(hours=cooldown_h)
    return until if now < until else None


def _drift_held(
    labels_since_training: int,
    drift_min_labels: int,
    cooldown_h: float,
    cooldown_until: datetime | None,
) -> str | None:
    """Why drift launches no retrain now, or None when it may."""
    if labels_since_training == 0:
        return "no new reviewed labels since the last training"
    if labels_since_training < drift_min_labels:
        return (
            f"only {labels_since_training} new reviewed label(s) since the last training, "
            f"below the {drift_min_labels} a drift retrain needs"
        )
    if cooldown_until is not None:
        return (
            f"the last retrain started less than {cooldown_h:g} h ago (the drift-retrain "
            f"cooldown): none before {cooldown_until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
    return None


def retrain_decision(
    labels_since_training: int,
    drifted_cameras: list[str],
    *,
    label_threshold: int,
    drift_min_labels: int = DRIFT_RETRAIN_MIN_LABELS,
    drift_cooldown_h: float = DRIFT_RETRAIN_COOLDOWN_H,
    last_retrain_at: datetime | None = None,
    now: datetime | None = None,
) -> RetrainDecision:
    """The seed's retrain rule, the one place it is written.

    Retrain when ``labels_since_training >= label_threshold`` reviewed labels arrived since
    the last training run; or when a camera drifted, at least ``drift_min_labels`` new
    labels exist, and the last retrain started at least ``drift_cooldown_h`` hours ago. A
    drifted camera that launches no retrain (too few new labels, or within the cooldown)
    gets its labeling queue reprioritised instead. Used by the sensors
    (``pipelines/sensors.py``), ``/api/retraining/conditions``, the console and
    ``edgeloop status``.

    Args:
        labels_since_training: labeled frames since the last training run's cutoff.
        drifted_cameras: cameras whose latest drift report drifted (``camera_drifted``).
        label_threshold: ``LoopSettings.retrain_label_count`` (seed: 50).
        drift_min_labels: ``LoopSettings.drift_retrain_min_labels`` (``DRIFT_RETRAIN_MIN_LABELS``).
        drift_cooldown_h: ``LoopSettings.drift_retrain_cooldown_h``, hours
            (``DRIFT_RETRAIN_COOLDOWN_H``; 0: no cooldown).
        last_retrain_at: when the last retrain started (any trigger; timezone-aware), or
            None when none did (``edgeloop.store.retraining.last_retrain_at``).
        now: the time to judge the cooldown at (default: now, UTC).
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
    held: str | None = None
    cooldown = drift_cooldown_until(last_retrain_at, drift_cooldown_h, now or datetime.now(UTC))
    if drifted_cameras and trigger == "label_count":  # the retrain due learns from them
        reasons.append(f"drift on camera(s) {cameras} and {labels_since_training} new label(s)")
    elif drifted_cameras:
        held = _drift_held(labels_since_training, drift_min_labels, drift_cooldown_h, cooldown)
        if held is None:
            trigger = "drift"
            reasons.append(
                f"drift on camera(s) {cameras} and {labels_since_training} new label(s), at "
                f"least the {drift_min_labels} a drift retrain needs"
            )
        else:
            reprioritise = list(drifted_cameras)
            reasons.append(
                f"drift on camera(s) {cameras}, but {held}; reprioritise their labeling "
                "queue rather than retrain"
            )
    else:
        reasons.append("no camera drifted in its latest drift report")
    return RetrainDecision(
        due=trigger is not None,
        trigger=trigger,
        drifted_cameras=list(drifted_cameras),
        reprioritise=reprioritise,
        drift_held=held,
        cooldown_until=cooldown,
        reasons=reasons,
    )
