"""The ``model_promotion`` asset: the promotion policy applied to the registry's aliases.

The promotion policy, written here only. Its evidence is ``model_evaluation``'s: both
models scored on the same frozen held-out frames (n images, assigned by a hash of the
frame key), a paired-bootstrap percentile interval [low, high] for the
candidate-minus-production difference of mAP50-95 and of mAP50, and the candidate's
regression share on the frames reviewers accepted unchanged.

1. **Enough evidence**: n >= ``min_heldout_images`` (default 20). Below it the decision
   is "not enough held-out evidence (n < min)": nothing moves, production is kept, and
   the outcome says so.
2. **staging** when the mAP50-95 gain interval's lower bound is above ``min_gain``
   (default 0: the gain is positive at the interval's confidence, a one-sided test at
   (1 - confidence) / 2 = 2.5% for a 95% interval) and the candidate breaks at most
   ``max_regression_share`` (default 0.10) of what reviewers accepted unchanged: the
   worse of the frame share and the pre-label (box) share, each where it could be measured
   (with nothing accepted there is nothing to break, and the reason says so).
3. **production** as well when auto-promotion is on (default) and the mAP50 gain
   interval's lower bound is not below ``-max_map50_drop`` (default 0.02, two points): a
   candidate that localises better (mAP50-95) but plausibly misses or confuses more
   objects (mAP50) is staged, not sent to the cameras.

Otherwise no alias moves and production is kept.

4. **int8 on the cameras** (``int8_decision``; only when ``model_evaluation`` made an int8
   edge model, ``EvaluationConfig.int8``): when the candidate is auto-promoted,
   ``production`` goes to its int8 version instead (``staging`` to the fp32 candidate)
   if n >= ``min_heldout_images`` and the lower bound of the int8-minus-fp32 mAP50-95
   interval is at least ``-int8_max_map_loss`` (default 0.02: two points of mAP50-95,
   the same size as the mAP50 guard; a one-sided bound at the interval's confidence on
   what quantisation may cost). Otherwise the fp32 candidate ships and the reason says why.

**New classes** (issue 18: the site's classes are data, ``edgeloop.store.classes``): the
gate metrics are over every class of the candidate's dataset, and production is scored
on them through a head over the same classes (``assets.class_head``), so it counts 0 on
a class it never had (``ModelEvaluation.new_classes``, listed in the metadata). A
candidate that learnt a new class therefore gains that class's AP over its share of
the classes; a candidate that learnt it at the cost of the old classes has to win it
back there, and the regression bound (what reviewers accepted unchanged, nearly all on
old classes) and the mAP50 guard still apply unchanged. Why not gate on the shared
classes alone plus a minimum AP on new ones: on a site's held-out set a new class has
few boxes, a fixed AP floor on them would be noise, and mAP over the site's current
classes is what the site asked for (a model blind to a class the site needs is worse by
exactly that class's AP).

Bounds are compared with a margin of
``TIE_EPS``. Sources: the percentile interval (Efron & Tibshirani 1993, "An Introduction
to the Bootstrap", ch. 13); paired bootstrap resampling to compare two systems on one
test set (Koehn 2004, "Statistical significance tests for machine translation
evaluation"); mAP50-95 as the primary detection metric (COCO, Lin et al. 2014);
regressions as "negative flips" of a model update (Yan et al. 2021, "Positive-Congruent
Training: Towards Regression-Free Model Updates", CVPR); the minimum size, the
regression bound and the mAP50 guard are edgeloop's choices (issue 6: a 0.02 difference
on 10 held-out images decided promotions and meant nothing).

Every alias move goes through ``edgeloop.registry.move_alias`` and is recorded in
``model_deployments`` (actor ``dagster:model_promotion``, the reason, the evidence).
Rolling back is ``edgeloop.registry.rollback`` (the CLI and the API call it).
"""

import math
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from assets.corrections import Share
from assets.evaluation_report import comparison_md
from assets.evaluation_result import ModelEvaluation
from assets.heldout import GainInterval
from assets.quantize import Int8Candidate
from assets.resources import MlflowResource, StoreResource
from edgeloop.registry import PRODUCTION, STAGING, alias_version, move_alias
from edgeloop.store import retraining

DEFAULT_MIN_HELDOUT_IMAGES = 20
"""Fewer held-out images than this carry no decision (edgeloop's choice: with a handful
of images a bootstrap interval is too coarse and optimistic to act on)."""
DEFAULT_MIN_GAIN = 0.0
"""staging needs the mAP50-95 gain interval's lower bound above this (0: a positive gain)."""
DEFAULT_MAX_REGRESSION_SHARE = 0.10
"""staging refuses a candidate that breaks more than this share of accepted-unchanged frames."""
DEFAULT_MAX_MAP50_DROP = 0.02
"""Auto-promotion refuses a candidate whose mAP50 gain interval reaches below -0.02."""
DEFAULT_INT8_MAX_MAP_LOSS = 0.02
"""The int8 model ships only when its mAP50-95 loss against its fp32 parent is bounded by
0.02 at the interval's confidence (edgeloop's choice, as ``DEFAULT_MAX_MAP50_DROP``)."""
ACTOR = "dagster:model_promotion"
TIE_EPS = 1e-4
"""Bounds within this of a threshold are ties: below the 4 decimals metrics are shown
with, and within run-to-run noise of ultralytics' float32 evaluation."""


@dataclass(frozen=True)
class PromotionEvidence:
    """What the policy decides on, from one ``ModelEvaluation``.

    Attributes:
        heldout_images: n, the held-out images both models were scored on.
        map50_95 / map50: candidate-minus-production with its paired-bootstrap interval.
        regressions: accepted-unchanged frames the candidate breaks, of how many.
        box_regressions: accepted-unchanged proposed boxes it breaks, of how many.
        corrections_learned: reviewer corrections the candidate gets right (shown, not gated).
    """

    heldout_images: int
    map50_95: GainInterval
    map50: GainInterval
    regressions: Share
    corrections_learned: Share
    box_regressions: Share

    @classmethod
    def of(cls, evaluation: ModelEvaluation) -> "PromotionEvidence":
        corrections = evaluation.candidate_corrections
        return cls(
            heldout_images=evaluation.val_images,
            map50_95=evaluation.gain("mAP50-95"),
            map50=evaluation.gain("mAP50"),
            regressions=corrections.regressions,
            corrections_learned=corrections.corrections_learned,
            box_regressions=corrections.box_regressions,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "heldout_images": self.heldout_images,
            "gain_mAP50-95": self.map50_95.as_dict(),
            "gain_mAP50": self.map50.as_dict(),
            "regressions": asdict(self.regressions),
            "box_regressions": asdict(self.box_regressions),
            "corrections_learned": asdict(self.corrections_learned),
        }


@dataclass(frozen=True)
class PromotionDecision:
    """Which aliases the candidate gets; ``verdict`` in a few words, ``reason`` with the numbers."""

    staging: bool
    production: bool
    verdict: str
    reason: str


def promotion_decision(
    evidence: PromotionEvidence,
    *,
    min_heldout_images: int = DEFAULT_MIN_HELDOUT_IMAGES,
    min_gain: float = DEFAULT_MIN_GAIN,
    max_regression_share: float = DEFAULT_MAX_REGRESSION_SHARE,
    auto_promote: bool = True,
    max_map50_drop: float = DEFAULT_MAX_MAP50_DROP,
) -> PromotionDecision:
    """Apply the promotion policy (module docstring) to one evaluation's evidence.

    Args:
        evidence: n, the gain intervals (differences in [-1, 1]) and the regression share.
        min_heldout_images: the smallest n that carries a decision.
        min_gain: the mAP50-95 gain interval's lower bound must exceed it (strictly).
        max_regression_share: largest share of accepted frames the candidate may break.
        auto_promote: whether passing the policy also moves ``production``.
        max_map50_drop: the mAP50 gain interval's lower bound may not be below its negative.
    """
    n, primary, guard = evidence.heldout_images, evidence.map50_95, evidence.map50
    # The worse of the two regression shares that could be measured is gated on.
    measured_shares = [s for s in (evidence.regressions, evidence.box_regressions) if s.n]
    regressions = max(measured_shares, key=lambda s: s.value or 0.0, default=evidence.regressions)
    unit = "pre-labels" if regressions is evidence.box_regressions else "frames"
    measured = (
        f"{primary.label()}; regressions {evidence.regressions.label()} of frames, "
        f"{evidence.box_regressions.label()} of pre-labels"
    )
    if n < min_heldout_images:
        verdict = f"not enough held-out evidence (n={n} < {min_heldout_images})"
        return PromotionDecision(
            False,
            False,
            verdict,
            f"{verdict}: production kept; label more frames (a fixed share of reviewed frames "
            f"is held out) or lower min_heldout_images. Measured: {measured}",
        )
    bounds = (primary.point, primary.low, primary.high, guard.point, guard.low, guard.high)
    if not all(math.isfinite(v) for v in bounds):
        verdict = "held-out intervals are not finite"
        return PromotionDecision(False, False, verdict, f"{verdict}; nothing moved ({measured})")
    if not primary.low > min_gain + TIE_EPS:
        verdict = f"no mAP50-95 gain at {primary.confidence:.0%}"
        return PromotionDecision(
            False,
            False,
            verdict,
            f"{primary.label()}: lower bound {primary.low:+.4f} is not above {min_gain:.4f}; "
            "production kept",
        )
    share = regressions.value
    if share is not None and share > max_regression_share + TIE_EPS:
        verdict = f"regressions {share:.2f} > {max_regression_share:.2f}"
        return PromotionDecision(
            False,
            False,
            verdict,
            f"{primary.label()} is a gain, but the candidate breaks {regressions.label()} of "
            f"the {unit} reviewers accepted unchanged (> {max_regression_share:.2f}); "
            "production kept",
        )
    regression_text = (
        f"regressions {regressions.label()} of accepted {unit} <= {max_regression_share:.2f}"
        if share is not None
        else "nothing was accepted unchanged (no regression to measure)"
    )
    beats = f"{primary.label()} lower bound > {min_gain:.4f}; {regression_text}"
    if not auto_promote:
        return PromotionDecision(True, False, "staged; auto-promotion is off", f"{beats}; staged")
    if guard.low < -max_map50_drop - TIE_EPS:
        return PromotionDecision(
            True,
            False,
            f"staged; mAP50 may drop more than {max_map50_drop:.2f}",
            f"{beats}; but {guard.label()} reaches below -{max_map50_drop:.4f}: staged, not "
            "auto-promoted",
        )
    return PromotionDecision(
        True,
        True,
        "auto-promoted",
        f"{beats}; {guard.label()} lower bound >= -{max_map50_drop:.4f}: auto-promoted",
    )


@dataclass(frozen=True)
class Int8Decision:
    """Whether the int8 edge model goes to the cameras instead of its fp32 parent."""

    ship: bool
    reason: str


def int8_decision(
    int8: Int8Candidate | None,
    *,
    min_heldout_images: int = DEFAULT_MIN_HELDOUT_IMAGES,
    max_map_loss: float = DEFAULT_INT8_MAX_MAP_LOSS,
) -> Int8Decision:
    """Rule 4 of the module docstring: ship int8 only when the lower bound of its
    int8-minus-fp32 mAP50-95 interval (paired bootstrap on n held-out images) is at least
    ``-max_map_loss`` (a tie within ``TIE_EPS`` passes) and n >= ``min_heldout_images``.

    Args:
        int8: the int8 version and its judgement, or None (no int8 model was made).
        max_map_loss: the largest mAP50-95 loss, in [0, 1], quantisation may cost.
    """
    if int8 is None:
        return Int8Decision(False, "no int8 model (model_evaluation's int8 is off)")
    judged = int8.judgement
    gain, n = judged.gains["mAP50-95"], judged.val_images
    what = f"int8 v{int8.version} vs fp32 v{int8.parent_version}: mAP50-95 {gain.label()}"
    if n < min_heldout_images:
        return Int8Decision(False, f"{what}; n={n} < {min_heldout_images}: fp32 ships")
    if not (math.isfinite(gain.low) and gain.low >= -max_map_loss - TIE_EPS):
        return Int8Decision(
            False, f"{what}; lower bound {gain.low:+.4f} < -{max_map_loss:.4f}: fp32 ships"
        )
    return Int8Decision(True, f"{what}; lower bound {gain.low:+.4f} >= -{max_map_loss:.4f}")


class PromotionConfig(dg.Config):
    """The promotion policy's knobs (``EDGELOOP_PIPELINES_MODEL_PROMOTION__*`` set retrain_job's)."""

    min_heldout_images: int = Field(
        DEFAULT_MIN_HELDOUT_IMAGES,
        ge=1,
        description="Fewer held-out images than this: 'not enough held-out evidence', "
        "production kept.",
    )
    min_gain: float = Field(
        DEFAULT_MIN_GAIN,
        ge=0,
        description="staging when the mAP50-95 gain interval's lower bound is above this.",
    )
    max_regression_share: float = Field(
        DEFAULT_MAX_REGRESSION_SHARE,
        ge=0,
        le=1,
        description="staging refuses a candidate breaking more than this share of the "
        "held-out frames reviewers accepted unchanged.",
    )
    auto_promote: bool = Field(True, description="Also move production when the policy passes.")
    max_map50_drop: float = Field(
        DEFAULT_MAX_MAP50_DROP,
        ge=0,
        description="Auto-promotion refuses a mAP50 gain interval reaching below minus this.",
    )

    int8_max_map_loss: float = Field(
        DEFAULT_INT8_MAX_MAP_LOSS,
        ge=0,
        le=1,
        description="An int8 edge model replaces its fp32 parent on the cameras only when "
        "its int8-minus-fp32 mAP50-95 interval's lower bound is at least minus this.",
    )

    def decide(self, evaluation: ModelEvaluation) -> PromotionDecision:
        """``promotion_decision`` on ``evaluation``'s evidence with these knobs."""
        knobs = self.model_dump(exclude={"int8_max_map_loss"})
        return promotion_decision(PromotionEvidence.of(evaluation), **knobs)

    def decide_int8(self, evaluation: ModelEvaluation) -> Int8Decision:
        """``int8_decision`` on ``evaluation``'s int8 model with these knobs."""
        return int8_decision(
            evaluation.int8,
            min_heldout_images=self.min_heldout_images,
            max_map_loss=self.int8_max_map_loss,
        )


@dg.asset(group_name="registry", kinds={"mlflow"})
def model_promotion(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    model_evaluation: ModelEvaluation,
    mlflow: MlflowResource,
    store: StoreResource,
) -> dg.MaterializeResult:
    """Registry aliases after the promotion policy: staging/production moved to the candidate, or kept."""
    evaluation = model_evaluation
    settings = mlflow.loop.settings()
    client = mlflow.client()
    name = settings.model_name
    candidate = evaluation.candidate
    current = alias_version(client, name, PRODUCTION)
    current_version = str(current.version) if current is not None else None
    int8 = config.decide_int8(evaluation)
    int8_version = evaluation.int8.version if evaluation.int8 is not None else None
    if current_version not in (evaluation.production_version, candidate.version, int8_version):
        raise dg.Failure(
            description=(
                f"production moved to v{current_version} after the evaluation compared "
                f"v{candidate.version} with v{evaluation.production_version}; "
                "materialize model_evaluation again"
            )
        )
    evidence = PromotionEvidence.of(evaluation)
    decision = config.decide(evaluation)
    # What production moves to: the int8 model when it is within its bound (rule 4).
    shipped = int8_version if int8.ship and int8_version is not None else candidate.version
    metrics = {
        "candidate_version": candidate.version,
        "production_version": evaluation.production_version,
        "dataset_version": evaluation.dataset_version,
        "val_images": evaluation.val_images,
        "imgsz": evaluation.imgsz,
        "candidate": evaluation.candidate_metrics.as_dict(),
        "production": evaluation.production_metrics.as_dict(),
        "evidence": evidence.as_dict(),
        "verdict": decision.verdict,
        "policy": config.model_dump(),
        "int8": int8.reason,
    }
    moved: list[str] = []
    if current_version in (candidate.version, int8_version):
        outcome = f"v{current_version} already is production; nothing moved"
    else:
        targets = [
            (STAGING, decision.staging, candidate.version),
            (PRODUCTION, decision.production, shipped),
        ]
        for alias, wanted, version in targets:
            if not wanted:
                continue
            move_alias(
                client,
                store.store(),
                model_name=name,
                alias=alias,
                version=version,
                actor=ACTOR,
                reason=decision.reason
                + (f"; {int8.reason}" if alias == PRODUCTION and evaluation.int8 else ""),
                action="promote",
                metrics=metrics,
            )
            moved.append(alias)
        if PRODUCTION in moved and shipped != candidate.version:
            outcome = (
                f"promoted v{candidate.version} to production as its int8 edge model "
                f"v{shipped} (was v{current_version})"
            )
        elif PRODUCTION in moved:
            outcome = f"promoted v{candidate.version} to production (was v{current_version})"
        elif STAGING in moved:
            outcome = (
                f"v{candidate.version} is staging; kept production v{current_version}: "
                f"{decision.verdict}"
            )
        else:
            outcome = f"kept production v{current_version}: {decision.verdict}"
    client.set_model_version_tag(name, candidate.version, "promotion", outcome)
    with store.store().connect() as con:
        retraining.record_run(
            con=con,
            dagster_run_id=context.run_id,
            run_status="succeeded",
            candidate_version=candidate.version,
            outcome=outcome,
        )
    staging_now = alias_version(client, name, STAGING)
    production_now = alias_version(client, name, PRODUCTION)
    context.log.info("%s; reason: %s", outcome, decision.reason)
    metadata: dict[str, Any] = {
        "outcome": outcome,
        "reason": decision.reason,
        "verdict": decision.verdict,
        "aliases_moved": ", ".join(moved) or "none",
        "candidate_version": candidate.version,
        "production_version": str(production_now.version) if production_now else "",
        "staging_version": str(staging_now.version) if staging_now else "",
        "heldout_images": evaluation.val_images,
        "new_classes": ", ".join(evaluation.new_classes) or "none",
        "gain/mAP50-95": evidence.map50_95.label(),
        "gain/mAP50": evidence.map50.label(),
        "regressions": evidence.regressions.label(),
        "corrections_learned": evidence.corrections_learned.label(),
        "evidence": dg.MetadataValue.json(evidence.as_dict()),
        "policy": dg.MetadataValue.json(config.model_dump()),
        "comparison": dg.MetadataValue.md(comparison_md(evaluation)),
        "int8": int8.reason,
        "int8_shipped": PRODUCTION in moved and shipped != candidate.version,
    }
    return dg.MaterializeResult(metadata=metadata)
