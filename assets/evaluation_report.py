"""How a ``ModelEvaluation`` is shown: Dagster metadata (markdown tables) and MLflow.

Every comparison carries its n: the gate metrics their paired-bootstrap interval and the
held-out image count, per-class AP its boxes, per-camera AP its images, corrections
learned and regressions their counts.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import dagster as dg

from assets._markdown import md_table
from assets.corrections import Change, CorrectionScore
from assets.heldout import GroupAP
from assets.tracking import log_metrics
from edgeloop.registry import COMPARED_WITH_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from assets.evaluation_result import ModelEvaluation


def _versions(evaluation: ModelEvaluation) -> list[str]:
    return [
        f"candidate v{evaluation.candidate.version}",
        f"production v{evaluation.production_version}",
    ]


def comparison_md(evaluation: ModelEvaluation) -> str:
    """Both models' held-out metrics, the difference with its interval, and n, as markdown."""
    confidence = next(iter(evaluation.gains.values())).confidence if evaluation.gains else 0.95
    rows = [
        (name, cand, prod, f"{delta:+.3f} {interval}".strip(), f"{evaluation.val_images} images")
        for name, cand, prod, delta, interval in evaluation.comparison_rows()
    ]
    return md_table(["metric", *_versions(evaluation), f"Δ [{confidence:.0%} interval]", "n"], rows)


def _group_md(column: str, rows: list[GroupAP], evaluation: ModelEvaluation, n: str) -> str:
    return md_table(
        [column, *_versions(evaluation), "Δ", "n"],
        [
            (r.group, r.candidate, r.production, f"{r.candidate - r.production:+.3f}", f"{r.n} {n}")
            for r in rows
        ],
    )


def corrections_md(evaluation: ModelEvaluation) -> str:
    """Corrections learned (overall and per kind) and regressions of both models, with n."""
    cand, prod = evaluation.candidate_corrections, evaluation.production_corrections
    rows = [
        ("corrections learned", cand.corrections_learned.label(), prod.corrections_learned.label())
    ]
    rows += [
        (
            f"· {change.value}",
            cand.by_change()[change.value].label(),
            prod.by_change()[change.value].label(),
        )
        for change in Change
    ]
    rows.append(
        ("regressions (accepted frames broken)", cand.regressions.label(), prod.regressions.label())
    )
    rows.append(
        (
            "regressions (accepted pre-labels broken)",
            cand.box_regressions.label(),
            prod.box_regressions.label(),
        )
    )
    versions = _versions(evaluation)
    return md_table(["", versions[0], f"{versions[1]} (re-run)"], rows) + (
        f"\n\n{cand.frames} held-out frames with a stored proposal; production's own logged "
        "proposals score 0 corrections learned and 0 regressions by construction."
    )


def _marked_new(evaluation: ModelEvaluation) -> list[GroupAP]:
    """The per-class rows, a class production does not have marked "(new)"."""
    new = set(evaluation.new_classes)
    return [
        replace(r, group=f"{r.group} (new)") if r.group in new else r for r in evaluation.class_ap
    ]


def evaluation_metadata(evaluation: ModelEvaluation) -> dict[str, Any]:
    """``model_evaluation``'s Dagster metadata: the tables (comparison, per class, per
    camera, corrections), both versions, ``candidate/<metric>``, ``production/<metric>``,
    ``delta/<metric>``, ``gain/<metric>`` (with ``/low``, ``/high``), corrections learned
    and regressions with their n."""
    cand = evaluation.candidate_corrections
    metadata: dict[str, Any] = {
        "comparison": dg.MetadataValue.md(comparison_md(evaluation)),
        "per_class": dg.MetadataValue.md(
            _group_md("class", _marked_new(evaluation), evaluation, "boxes")
        ),
        "new_classes": ", ".join(evaluation.new_classes) or "none",
        "per_camera": dg.MetadataValue.md(
            _group_md("camera", list(evaluation.camera_ap), evaluation, "images")
        ),
        "corrections": dg.MetadataValue.md(corrections_md(evaluation)),
        "candidate_version": evaluation.candidate.version,
        "production_version": evaluation.production_version,
        "dataset_version": evaluation.dataset_version,
        "val_images": evaluation.val_images,
        "imgsz": evaluation.imgsz,
        "corrections_learned": cand.corrections_learned.label(),
        "corrections_n": cand.corrections_learned.n,
        "regressions": cand.regressions.label(),
        "regressions_n": cand.regressions.n,
        "box_regressions": cand.box_regressions.label(),
        "box_regressions_n": cand.box_regressions.n,
    }
    for name, cand_value, prod_value, delta, _ in evaluation.comparison_rows():
        metadata[f"candidate/{name}"] = cand_value
        metadata[f"production/{name}"] = prod_value
        metadata[f"delta/{name}"] = delta
    for name, gain in evaluation.gains.items():
        metadata[f"gain/{name}"] = gain.label()
        metadata[f"gain/{name}/low"] = gain.low
        metadata[f"gain/{name}/high"] = gain.high
    if evaluation.int8 is not None:
        metadata |= int8_metadata(evaluation)
    return metadata


def int8_md(evaluation: ModelEvaluation) -> str:
    """The int8 edge model against the fp32 ONNX it came from, with intervals and n."""
    if evaluation.int8 is None:
        return ""
    int8, judged = evaluation.int8, evaluation.int8.judgement
    fp32, q = judged.fp32_metrics.as_dict(), judged.int8_metrics.as_dict()
    confidence = next(iter(judged.gains.values())).confidence if judged.gains else 0.95
    return md_table(
        [
            "metric",
            f"fp32 ONNX v{int8.parent_version}",
            f"int8 v{int8.version}",
            f"Δ [{confidence:.0%} interval]",
            "n",
        ],
        [
            (
                name,
                fp32[name],
                q[name],
                judged.gains[name].label()
                if name in judged.gains
                else f"{q[name] - fp32[name]:+.3f}",
                f"{judged.val_images} images",
            )
            for name in fp32
        ],
    )


def int8_metadata(evaluation: ModelEvaluation) -> dict[str, Any]:
    """``int8/...`` metadata: the version, the table, each gain with its bounds, timings."""
    if evaluation.int8 is None:
        return {}
    judged = evaluation.int8.judgement
    metadata: dict[str, Any] = {
        "int8": dg.MetadataValue.md(int8_md(evaluation)),
        "int8/version": evaluation.int8.version,
        "int8/calibration_frames": judged.quantized.calibration_frames,
        "int8/quantize_s": round(judged.quantized.quantize_s, 1),
        "int8/eval_s": round(judged.eval_s, 1),
    }
    for name, gain in judged.gains.items():
        metadata |= {
            f"int8/gain/{name}": gain.label(),
            f"int8/gain/{name}/low": gain.low,
            f"int8/gain/{name}/high": gain.high,
        }
    return metadata


def _shares(prefix: str, score: CorrectionScore) -> dict[str, float]:
    learned, regressions = score.corrections_learned, score.regressions
    values = {
        f"{prefix}corrections_n": float(learned.n),
        f"{prefix}regressions_n": float(regressions.n),
    }
    if learned.value is not None:
        values[f"{prefix}corrections_learned"] = learned.value
    if regressions.value is not None:
        values[f"{prefix}regressions"] = regressions.value
    return values


def evaluation_record(evaluation: ModelEvaluation) -> dict[str, Any]:
    """Everything the evaluation measured, JSON-ready (``evaluation/heldout.json``)."""
    return {
        "candidate_version": evaluation.candidate.version,
        "production_version": evaluation.production_version,
        "dataset_version": evaluation.dataset_version,
        "heldout_images": evaluation.val_images,
        "imgsz": evaluation.imgsz,
        "candidate": evaluation.candidate_metrics.as_dict(),
        "production": evaluation.production_metrics.as_dict(),
        "gains": {name: gain.as_dict() for name, gain in evaluation.gains.items()},
        "per_class": [asdict(row) for row in evaluation.class_ap],
        "new_classes": list(evaluation.new_classes),
        "per_camera": [asdict(row) for row in evaluation.camera_ap],
        "candidate_corrections": evaluation.candidate_corrections.as_dict(),
        "production_corrections": evaluation.production_corrections.as_dict(),
        "int8": None
        if evaluation.int8 is None
        else {
            "version": evaluation.int8.version,
            "quantized_from": evaluation.int8.parent_version,
            "fp32_onnx": evaluation.int8.judgement.fp32_metrics.as_dict(),
            "int8": evaluation.int8.judgement.int8_metrics.as_dict(),
            "gains": {n: g.as_dict() for n, g in evaluation.int8.judgement.gains.items()},
            "calibration_frames": evaluation.int8.judgement.quantized.calibration_frames,
        },
    }


def log_evaluation(client: MlflowClient, model_name: str, evaluation: ModelEvaluation) -> None:
    """Put the comparison on the candidate's MLflow run (metrics, ``evaluation/heldout.json``)
    and on its registered version (tags)."""
    candidate = evaluation.candidate
    heldout = {f"heldout_{k}": v for k, v in evaluation.candidate_metrics.as_dict().items()}
    production = {
        f"production_heldout_{k}": v for k, v in evaluation.production_metrics.as_dict().items()
    }
    gains: dict[str, float] = {}
    for name, gain in evaluation.gains.items():
        gains |= {
            f"heldout_gain_{name}": gain.point,
            f"heldout_gain_{name}_low": gain.low,
            f"heldout_gain_{name}_high": gain.high,
        }
    log_metrics(
        client,
        candidate.run_id,
        {
            **heldout,
            **production,
            **gains,
            "heldout_images": float(evaluation.val_images),
            **_shares("", evaluation.candidate_corrections),
            **_shares("production_", evaluation.production_corrections),
        },
    )
    client.log_dict(candidate.run_id, evaluation_record(evaluation), "evaluation/heldout.json")
    client.set_tag(candidate.run_id, "heldout_compared_with", f"v{evaluation.production_version}")
    version_tags = {
        **{key: f"{value:.6f}" for key, value in heldout.items()},
        COMPARED_WITH_TAG: evaluation.production_version,
        "heldout_imgsz": str(evaluation.imgsz),
        "heldout_images": str(evaluation.val_images),
        **{
            f"heldout_gain_{name}": f"{gain.point:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}]"
            for name, gain in evaluation.gains.items()
        },
        "corrections_learned": evaluation.candidate_corrections.corrections_learned.label(),
        "regressions": evaluation.candidate_corrections.regressions.label(),
        "box_regressions": evaluation.candidate_corrections.box_regressions.label(),
    }
    if evaluation.int8 is not None:
        version_tags["int8_version"] = evaluation.int8.version
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, candidate.version, key, value)
