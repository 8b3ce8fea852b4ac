"""The ``model_promotion`` asset: the promotion policy applied to the registry's aliases.

Policy (from the seed: "a new model gets staging when it beats production on the
held-out set, and production per the promotion policy"), on the held-out split, both
models evaluated at the same image size:

1. **staging** when the candidate's mAP50-95 beats production's by more than
   ``min_gain`` (default 0.0: strictly better; differences within 1e-4 are ties).
2. **production** as well when auto-promotion is on (default on) and, besides 1., the
   candidate's mAP50 is not more than ``max_map50_drop`` (default 0.02, two points)
   below production's. mAP50-95 is COCO's primary metric and rewards tighter boxes;
   the mAP50 guard stops a candidate that localises better but misses or confuses
   more objects from reaching the cameras.

Otherwise no alias moves and production is kept. Every alias move goes through
``edgeloop.registry.move_alias`` and is recorded in ``model_deployments`` (actor
``dagster:model_promotion``, the reason, both models' metrics). Rolling back is
``edgeloop.registry.rollback`` (the CLI and the API call it).
"""

import math
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from assets.evaluation import ModelEvaluation
from assets.resources import MlflowResource, StoreResource
from assets.yolo import HeldoutMetrics
from edgeloop.registry import PRODUCTION, STAGING, alias_version, move_alias

DEFAULT_MIN_GAIN = 0.0
"""staging needs held-out mAP50-95 above production's by more than this (0: strictly better)."""
DEFAULT_MAX_MAP50_DROP = 0.02
"""Auto-promotion refuses a candidate whose held-out mAP50 is more than this below production's."""
ACTOR = "dagster:model_promotion"
TIE_EPS = 1e-4
"""Metric differences within this are ties: below the 4 decimals metrics are shown with,
and within run-to-run noise of ultralytics' float32 evaluation."""


@dataclass(frozen=True)
class PromotionDecision:
    """Which aliases the candidate gets, and why (one sentence for people)."""

    staging: bool
    production: bool
    reason: str


def promotion_decision(
    candidate: HeldoutMetrics,
    production: HeldoutMetrics,
    *,
    min_gain: float = DEFAULT_MIN_GAIN,
    auto_promote: bool = True,
    max_map50_drop: float = DEFAULT_MAX_MAP50_DROP,
) -> PromotionDecision:
    """Apply the promotion policy (module docstring) to two models' held-out metrics.

    Args:
        candidate / production: held-out metrics in [0, 1], same images, same size.
        min_gain: mAP50-95 margin the candidate must exceed (strictly).
        auto_promote: whether passing the policy also moves ``production``.
        max_map50_drop: largest mAP50 loss (absolute) auto-promotion accepts.
    """
    values = (candidate.map50_95, production.map50_95, candidate.map50, production.map50)
    if not all(math.isfinite(v) for v in values):
        return PromotionDecision(False, False, "held-out metrics are not finite; nothing moved")
    gain = candidate.map50_95 - production.map50_95
    map50_drop = production.map50 - candidate.map50
    if not gain > min_gain + TIE_EPS:
        return PromotionDecision(
            False,
            False,
            f"held-out mAP50-95 {candidate.map50_95:.4f} does not beat production's "
            f"{production.map50_95:.4f} by more than {min_gain:.4f} (gain {gain:+.4f})",
        )
    beats = (
        f"held-out mAP50-95 {candidate.map50_95:.4f} beats production's "
        f"{production.map50_95:.4f} (gain {gain:+.4f} > {min_gain:.4f})"
    )
    if not auto_promote:
        return PromotionDecision(True, False, f"{beats}; auto-promotion is off")
    if map50_drop > max_map50_drop + TIE_EPS:
        return PromotionDecision(
            True,
            False,
            f"{beats}, but mAP50 drops {map50_drop:.4f} > {max_map50_drop:.4f} "
            f"({candidate.map50:.4f} vs {production.map50:.4f}); not auto-promoted",
        )
    return PromotionDecision(
        True,
        True,
        f"{beats} and mAP50 {candidate.map50:.4f} vs {production.map50:.4f} "
        f"is within {max_map50_drop:.4f}; auto-promoted",
    )


class PromotionConfig(dg.Config):
    """The promotion policy's knobs (``EDGELOOP_PIPELINES_*`` set retrain_job's defaults)."""

    min_gain: float = Field(
        DEFAULT_MIN_GAIN,
        ge=0,
        description="staging when held-out mAP50-95 beats production's by more than this.",
    )
    auto_promote: bool = Field(True, description="Also move production when the policy passes.")
    max_map50_drop: float = Field(
        DEFAULT_MAX_MAP50_DROP,
        ge=0,
        description="Auto-promotion refuses a held-out mAP50 drop larger than this.",
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
    if current_version not in (evaluation.production_version, candidate.version):
        raise dg.Failure(
            description=(
                f"production moved to v{current_version} after the evaluation compared "
                f"v{candidate.version} with v{evaluation.production_version}; "
                "materialize model_evaluation again"
            )
        )
    decision = promotion_decision(
        evaluation.candidate_metrics,
        evaluation.production_metrics,
        min_gain=config.min_gain,
        auto_promote=config.auto_promote,
        max_map50_drop=config.max_map50_drop,
    )
    metrics = {
        "candidate_version": candidate.version,
        "production_version": evaluation.production_version,
        "dataset_version": evaluation.dataset_version,
        "val_images": evaluation.val_images,
        "imgsz": evaluation.imgsz,
        "candidate": evaluation.candidate_metrics.as_dict(),
        "production": evaluation.production_metrics.as_dict(),
        "policy": config.model_dump(),
    }
    moved: list[str] = []
    if current_version == candidate.version:
        outcome = f"v{candidate.version} already is production; nothing moved"
    else:
        for alias, wanted in ((STAGING, decision.staging), (PRODUCTION, decision.production)):
            if not wanted:
                continue
            move_alias(
                client,
                store.store(),
                model_name=name,
                alias=alias,
                version=candidate.version,
                actor=ACTOR,
                reason=decision.reason,
                action="promote",
                metrics=metrics,
            )
            moved.append(alias)
        if PRODUCTION in moved:
            outcome = f"promoted v{candidate.version} to production (was v{current_version})"
        elif STAGING in moved:
            outcome = f"v{candidate.version} is staging; kept production v{current_version}"
        else:
            outcome = f"kept production v{current_version}"
    client.set_model_version_tag(name, candidate.version, "promotion", outcome)
    staging_now = alias_version(client, name, STAGING)
    production_now = alias_version(client, name, PRODUCTION)
    context.log.info("%s: %s", outcome, decision.reason)
    metadata: dict[str, Any] = {
        "outcome": outcome,
        "reason": decision.reason,
        "aliases_moved": ", ".join(moved) or "none",
        "candidate_version": candidate.version,
        "production_version": str(production_now.version) if production_now else "",
        "staging_version": str(staging_now.version) if staging_now else "",
        "policy": dg.MetadataValue.json(config.model_dump()),
        "comparison": dg.MetadataValue.md(evaluation.comparison_md()),
    }
    return dg.MaterializeResult(metadata=metadata)
