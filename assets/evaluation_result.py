"""``ModelEvaluation``: what ``model_evaluation`` (``assets.evaluation``) found, the one type
its report (``assets.evaluation_report``) and the promotion gate (``assets.registry``) read.

Its own module so that the evaluation and its report import it, not each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assets.corrections import CorrectionScore
    from assets.heldout import GainInterval, GroupAP
    from assets.quantize import Int8Candidate
    from assets.training import CandidateModel
    from assets.yolo import HeldoutMetrics


@dataclass(frozen=True)
class ModelEvaluation:
    """Candidate and production, evaluated on the same held-out images at the same size.

    Attributes:
        val_images: held-out images both were evaluated on (the n of every interval).
        imgsz: evaluation image size, px.
        candidate_metrics / production_metrics: ultralytics' val box metrics in [0, 1].
        gains: ``"mAP50-95"``, ``"mAP50"`` -> candidate-minus-production with its paired
            bootstrap interval.
        class_ap / camera_ap: mAP50-95 of both per class (n = boxes) and per camera
            (n = images).
        candidate_corrections / production_corrections: corrections learned and
            regressions at the deployment confidence (production's: its re-run, the
            reference; its own logged proposals score 0 by construction).
        new_classes: the candidate's classes production does not have under any name
            (``assets.class_head.new_classes``): production scores 0 on them.
        int8: the candidate's int8 edge model and its judgement against the candidate's
            fp32 ONNX (``assets.quantize``), or None when ``EvaluationConfig.int8`` is off.
    """

    candidate: CandidateModel
    production_version: str
    dataset_version: str
    val_images: int
    imgsz: int
    candidate_metrics: HeldoutMetrics
    production_metrics: HeldoutMetrics
    gains: Mapping[str, GainInterval]
    class_ap: Sequence[GroupAP]
    camera_ap: Sequence[GroupAP]
    candidate_corrections: CorrectionScore
    production_corrections: CorrectionScore
    new_classes: Sequence[str] = ()
    int8: Int8Candidate | None = None

    def gain(self, metric: str) -> GainInterval:
        """The interval of ``metric`` (``mAP50-95`` or ``mAP50``).

        Raises:
            KeyError: no interval was computed for it.
        """
        if metric not in self.gains:
            raise KeyError(f"no held-out interval for {metric!r}; have {sorted(self.gains)}")
        return self.gains[metric]

    def comparison_rows(self) -> list[tuple[str, float, float, float, str]]:
        """``(metric, candidate, production, candidate - production, interval)`` per metric;
        the interval (``[low, high]``) only for the bootstrapped gate metrics."""
        cand, prod = self.candidate_metrics.as_dict(), self.production_metrics.as_dict()
        return [
            (
                name,
                cand[name],
                prod[name],
                cand[name] - prod[name],
                f"[{self.gains[name].low:+.3f}, {self.gains[name].high:+.3f}]"
                if name in self.gains
                else "",
            )
            for name in cand
        ]
