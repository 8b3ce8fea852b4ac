"""Held-out statistics from per-image matches: aggregate, per class, per camera, bootstrap.

Input: one ``assets.yolo.ImageMatches`` per held-out image, recorded from ultralytics' own
validation (``validate_per_image``): which predictions are true positives at each IoU
threshold 0.50:0.05:0.95, decided by ``DetectionValidator.match_predictions``. Feeding
any set of images, concatenated, to ultralytics' ``ap_per_class`` gives that set's AP the
way ``val`` computes it; on all images it is val's mAP50 / mAP50-95 (same arrays, same
function: ``tests/assets/test_heldout_real.py`` checks it on real frames). As in
ultralytics, mAP averages over the classes that have ground truth in the set.

- ``heldout_scores``: mAP50, mAP50-95, precision, recall of a set of images.
- ``class_ap`` / ``group_ap``: mAP50-95 per class and per group of images (camera).
- ``paired_bootstrap``: candidate-minus-production intervals over resampled images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from assets.yolo import IOU_THRESHOLD_COUNT, HeldoutMetrics, ImageMatches

GATE_METRICS = ("mAP50-95", "mAP50")
"""The metrics the promotion gate compares, primary first (COCO's primary is mAP50-95)."""
DEFAULT_RESAMPLES = 1000
"""Bootstrap resamples B: Efron & Tibshirani (1993) advise about 1000 or more for
percentile intervals (25-200 suffice for a standard error)."""
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0


@dataclass(frozen=True)
class _Stacked:
    """Images concatenated once, with each row's image index, for fast resampling."""

    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    pred_img: np.ndarray
    target_cls: np.ndarray
    target_img: np.ndarray

    @classmethod
    def of(cls, images: Sequence[ImageMatches]) -> _Stacked:
        if not images:
            raise ValueError("no held-out images to score")
        return cls(
            tp=np.concatenate([i.tp.reshape(-1, IOU_THRESHOLD_COUNT) for i in images]),
            conf=np.concatenate([i.conf for i in images]),
            pred_cls=np.concatenate([i.pred_cls for i in images]),
            pred_img=np.repeat(np.arange(len(images)), [len(i.conf) for i in images]),
            target_cls=np.concatenate([i.target_cls for i in images]),
            target_img=np.repeat(np.arange(len(images)), [len(i.target_cls) for i in images]),
        )

    def ap(self, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, tuple]:
        """``(ap (C, 10), classes (C,), (p, r))`` over the images, image i taken
        ``counts[i]`` times (all once when None); C = classes with ground truth."""
        from ultralytics.utils.metrics import ap_per_class

        if counts is None:
            tp, conf, pred_cls, target_cls = self.tp, self.conf, self.pred_cls, self.target_cls
        else:
            rows = np.repeat(np.arange(len(self.conf)), counts[self.pred_img])
            targets = np.repeat(np.arange(len(self.target_cls)), counts[self.target_img])
            tp, conf, pred_cls = self.tp[rows], self.conf[rows], self.pred_cls[rows]
            target_cls = self.target_cls[targets]
        _, _, p, r, _, ap, classes, *_ = ap_per_class(tp, conf, pred_cls, target_cls)
        return ap, classes, (p, r)


def _means(ap: np.ndarray) -> dict[str, float]:
    """``{"mAP50", "mAP50-95"}`` of an (C, 10) AP array (0 with no class, as ultralytics)."""
    if not len(ap):
        return {"mAP50": 0.0, "mAP50-95": 0.0}
    return {"mAP50": float(ap[:, 0].mean()), "mAP50-95": float(ap.mean())}


def heldout_scores(images: Sequence[ImageMatches]) -> HeldoutMetrics:
    """mAP50, mAP50-95, and precision/recall at the max-F1 confidence (class means), each
    in [0, 1], of a set of images: what ultralytics' ``val`` reports for them.

    Raises:
        ValueError: ``images`` is empty.
    """
    ap, _, (p, r) = _Stacked.of(images).ap()
    means = _means(ap)
    return HeldoutMetrics(
        map50=means["mAP50"],
        map50_95=means["mAP50-95"],
        precision=float(p.mean()) if len(p) else 0.0,
        recall=float(r.mean()) if len(r) else 0.0,
    )


@dataclass(frozen=True)
class GroupAP:
    """mAP50-95 of both models on one part of the held-out set.

    Attributes:
        group: a class name (``class_ap``) or a camera id (``group_ap``).
        n: ground-truth boxes of the class, or images of the camera.
        candidate / production: mAP50-95 in [0, 1].
    """

    group: str
    n: int
    candidate: float
    production: float


def class_ap(
    candidate: Sequence[ImageMatches],
    production: Sequence[ImageMatches],
    class_names: Sequence[str],
) -> list[GroupAP]:
    """mAP50-95 per class (AP averaged over IoU 0.50:0.95) for each class with ground truth
    in the held-out set (AP is undefined without positives), ``n`` = its boxes; by class id.
    The two lists are paired by image name."""
    stacked = _Stacked.of(candidate)
    cand_ap, classes, _ = stacked.ap()
    prod_ap, _, _ = _Stacked.of(_paired(candidate, production)).ap()
    counts = np.bincount(stacked.target_cls, minlength=len(class_names))
    return [
        GroupAP(class_names[c], int(counts[c]), float(cand), float(prod))
        for c, cand, prod in zip(classes, cand_ap.mean(1), prod_ap.mean(1), strict=True)
    ]


def group_ap(
    candidate: Sequence[ImageMatches],
    production: Sequence[ImageMatches],
    group_of: Callable[[str], str],
) -> list[GroupAP]:
    """mAP50-95 of each group of images (``group_of(image name)``, e.g. its camera), ``n``
    = the group's images; groups sorted by name. The two lists are paired by image name."""
    production = _paired(candidate, production)
    groups: dict[str, list[int]] = {}
    for index, image in enumerate(candidate):
        groups.setdefault(group_of(image.name), []).append(index)
    return [
        GroupAP(
            group,
            len(indices),
            heldout_scores([candidate[i] for i in indices]).map50_95,
            heldout_scores([production[i] for i in indices]).map50_95,
        )
        for group, indices in sorted(groups.items())
    ]


@dataclass(frozen=True)
class GainInterval:
    """Candidate minus production on one metric, with a paired-bootstrap percentile interval.

    Attributes:
        metric: ``mAP50-95`` or ``mAP50``.
        point: the difference on all ``n`` held-out images, in [-1, 1].
        low / high: the percentile interval's bounds at ``confidence``.
        confidence: the interval's coverage, e.g. 0.95.
        resamples: bootstrap resamples B.
        n: held-out images resampled.
    """

    metric: str
    point: float
    low: float
    high: float
    confidence: float
    resamples: int
    n: int

    def label(self) -> str:
        """e.g. ``Δ mAP50-95 +0.041 [+0.012, +0.070] (95%, n=42 images)``."""
        return (
            f"Δ {self.metric} {self.point:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
            f"({self.confidence:.0%}, n={self.n} images)"
        )

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "metric": self.metric,
            "point": self.point,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "n": self.n,
        }


def _paired(
    candidate: Sequence[ImageMatches], production: Sequence[ImageMatches]
) -> list[ImageMatches]:
    """``production`` in ``candidate``'s image order.

    Raises:
        ValueError: the two were not scored on the same images.
    """
    by_name = {image.name: image for image in production}
    names = [image.name for image in candidate]
    if len(by_name) != len(production) or sorted(by_name) != sorted(names):
        raise ValueError(
            "candidate and production were not scored on the same held-out images "
            f"({len(candidate)} vs {len(production)}); a paired comparison needs both on each"
        )
    return [by_name[name] for name in names]


def paired_bootstrap(
    candidate: Sequence[ImageMatches],
    production: Sequence[ImageMatches],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, GainInterval]:
    """Percentile confidence intervals for candidate-minus-production mAP50-95 and mAP50.

    The paired bootstrap: draw n held-out images with replacement (image indices, the same
    draw for both models), score both models on the draw with ultralytics' ``ap_per_class``
    and take the difference; repeat ``resamples`` times; the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the differences
    (the percentile interval, Efron & Tibshirani 1993, "An Introduction to the Bootstrap",
    ch. 13). Resampling whole images keeps each image's boxes together (mAP is a
    dataset-level metric, not a mean of per-image scores), and resampling both systems'
    outputs on the same draw is the paired bootstrap resampling of Koehn 2004,
    "Statistical significance tests for machine translation evaluation" (EMNLP).

    Args:
        candidate / production: one entry per held-out image each, same image names.
        resamples: B, at least 1.
        seed: of numpy's ``default_rng``: the same inputs give the same interval.
        confidence: the interval's coverage, in (0, 1).

    Returns:
        ``GATE_METRICS`` -> ``GainInterval``; ``point`` is the difference on all images.

    Raises:
        ValueError: no images, different images, ``resamples < 1`` or ``confidence``
            outside (0, 1).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cand, prod = _Stacked.of(candidate), _Stacked.of(_paired(candidate, production))
    n = len(candidate)
    point = _difference(cand, prod, None)
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, len(GATE_METRICS)))
    for b in range(resamples):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        diff = _difference(cand, prod, counts)
        draws[b] = [diff[metric] for metric in GATE_METRICS]
    tails = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    intervals: dict[str, GainInterval] = {}
    for column, metric in enumerate(GATE_METRICS):
        low, high = np.percentile(draws[:, column], tails)
        intervals[metric] = GainInterval(
            metric, point[metric], float(low), float(high), confidence, resamples, n
        )
    return intervals


def _difference(cand: _Stacked, prod: _Stacked, counts: np.ndarray | None) -> Mapping[str, float]:
    a, b = _means(cand.ap(counts)[0]), _means(prod.ap(counts)[0])
    return {metric: a[metric] - b[metric] for metric in GATE_METRICS}
