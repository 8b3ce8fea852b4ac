"""The ``model_evaluation`` asset: candidate and production on the same held-out frames.

The held-out set is the val split of the candidate's dataset: frames assigned once, by a
hash of their key (``edgeloop.datasets.split_for``), never moving. Both models are scored
on it at the same image size (the agents' 640 px unless ``EvaluationConfig.imgsz`` says
otherwise), three ways:

1. ultralytics' validation, per image (``assets.yolo.validate_per_image``): mAP50,
   mAP50-95, precision, recall; per class and per camera (``assets.heldout``);
2. a paired bootstrap over the held-out images: a confidence interval for the
   candidate-minus-production difference of each gate metric (``assets.heldout``);
3. corrections learned and regressions against the reviewers' changes to production's
   proposals, at the deployment confidence (``assets.corrections``);
4. with ``EvaluationConfig.int8`` on: the candidate's int8 edge model (statically
   quantised, calibrated on training frames) against the candidate's fp32 ONNX, on the
   same held-out images with the same paired bootstrap; registered as a version of its
   own (``assets.quantize``), shipped only when ``model_promotion``'s bound allows.

Production is scored over the candidate's classes (the site's active classes when the
dataset was built): through a copy of its weights whose head lists them, by current name
(``assets.class_head.production_in_classes``), so a renamed class is scored under its new
name and a class production never had (``ModelEvaluation.new_classes``) scores 0 on the
same labels the candidate is scored on.

The numbers go on the candidate's MLflow run (``heldout_<metric>``, production's as
``production_heldout_<metric>``, the rest as metrics and ``evaluation/heldout.json``) and
on its registered version (``heldout_<metric>``, ``heldout_images``, ``heldout_gain_*``,
``corrections_learned``, ``regressions``, ...); ``model_promotion`` (``assets.registry``)
decides on them.
"""

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from assets.class_head import new_classes, production_in_classes
from assets.corrections import Box, ReviewedFrame, label_boxes, score_corrections
from assets.evaluation_report import evaluation_metadata, log_evaluation
from assets.evaluation_result import ModelEvaluation
from assets.heldout import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    class_ap,
    group_ap,
    paired_bootstrap,
)
from assets.quantize import DEFAULT_CALIBRATION_FRAMES, int8_candidate
from assets.resources import MlflowResource, StoreResource
from assets.tracking import production_files
from assets.training import CandidateModel
from assets.yolo import (
    FrameDetections,
    HeldoutMetrics,
    ImageMatches,
    label_caches_removed,
    load_yolo,
    predict_deployed,
    validate_per_image,
)
from edgeloop.bootstrap import AGENT_IMGSZ
from edgeloop.datasets import MANIFEST, DatasetRepo, DatasetVersion, frame_key_of, materialised
from edgeloop.devices import torch_device
from edgeloop.orchestration import TRAINING_OP_TAGS
from edgeloop.registry import model_files
from edgeloop.store import classes
from edgeloop.store import frames as frames_store

logger = logging.getLogger(__name__)

DEFAULT_EVAL_IMGSZ = AGENT_IMGSZ
"""Held-out evaluation at the size agents run the ONNX model (640 px)."""
DEPLOYMENT_CONF = 0.25
"""Confidence threshold of deployed detections: ultralytics' predict default, and the
agents' ``conf_threshold`` default (``edge_agent.settings``)."""
DEPLOYMENT_IOU = 0.45
"""NMS IoU of deployed detections: the agents' ``iou_threshold`` default."""
UNKNOWN_CAMERA = "unknown"
"""The camera of a held-out frame the dataset's manifest does not list."""


class EvaluationConfig(dg.Config):
    """Held-out evaluation knobs (``EDGELOOP_PIPELINES_MODEL_EVALUATION__*``)."""

    imgsz: int = Field(
        DEFAULT_EVAL_IMGSZ, ge=32, description="Evaluation image size, px (agents run 640)."
    )
    batch: int = Field(8, ge=1, description="Images per validation batch.")
    bootstrap_resamples: int = Field(
        DEFAULT_RESAMPLES, ge=1, description="Paired bootstrap resamples B of held-out images."
    )
    bootstrap_seed: int = Field(DEFAULT_SEED, description="Seed of the bootstrap's resampling.")
    confidence: float = Field(
        DEFAULT_CONFIDENCE, gt=0, lt=1, description="Coverage of the gain intervals (0.95: 95%)."
    )
    deployment_conf: float = Field(
        DEPLOYMENT_CONF, ge=0, le=1, description="Confidence threshold of deployed detections."
    )
    deployment_iou: float = Field(
        DEPLOYMENT_IOU, ge=0, le=1, description="NMS IoU of deployed detections."
    )
    int8: bool = Field(
        False,
        description="Also quantise the candidate to an int8 edge model and judge it against "
        "its fp32 ONNX (off by default: 8-45 s of calibration and two more held-out "
        "validations per retrain on 2 CPU cores; a shipped int8 model is a version of its "
        "own).",
    )
    int8_calibration_frames: int = Field(
        DEFAULT_CALIBRATION_FRAMES,
        ge=1,
        description="Training frames the int8 model's activation ranges are calibrated on.",
    )


@dataclass(frozen=True)
class HeldoutRun:
    """One model on the held-out images: val metrics, per-image matches, deployed boxes."""

    metrics: HeldoutMetrics
    matches: list[ImageMatches]
    deployed: list[FrameDetections]


@dg.asset(group_name="training", kinds={"pytorch", "mlflow"}, op_tags=TRAINING_OP_TAGS)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    detector_model: CandidateModel,
    training_dataset: DatasetVersion,
    mlflow: MlflowResource,
    store: StoreResource,
) -> dg.Output[ModelEvaluation]:
    """Candidate vs production on the same held-out frames: mAP with bootstrap intervals, per class/camera, corrections learned."""
    candidate, settings = detector_model, mlflow.loop.settings()
    # This data folder's copies, whatever folder the stored values name (it may have moved).
    dataset = materialised(training_dataset, DatasetRepo.from_settings(settings))
    images = held_out_images(dataset)
    yolo = load_yolo(settings)
    device = torch_device(settings.device)
    client = mlflow.client()
    production = production_files(client, settings)
    candidate_files = model_files(
        client, settings, model_name=settings.model_name, version=candidate.version
    )
    with store.store().connect() as con:
        class_map = classes.name_map(con=con)
    work = settings.runs_dir.resolve() / f"eval-{context.run_id}"
    production_pt = production_in_classes(
        yolo, production.pt_path, dataset.class_names, class_map, out=work / "production.pt"
    )
    runs = evaluate_on_heldout(
        yolo,
        {"candidate": candidate_files.pt_path, "production": production_pt},
        dataset,
        images,
        config=config,
        work=work,
        device=device,
    )
    cand, prod = runs["candidate"], runs["production"]
    t0 = time.perf_counter()
    gains = paired_bootstrap(
        cand.matches,
        prod.matches,
        resamples=config.bootstrap_resamples,
        seed=config.bootstrap_seed,
        confidence=config.confidence,
    )
    bootstrap_s = time.perf_counter() - t0
    cameras = frame_cameras(dataset)
    with store.store().connect() as con:
        proposals = frames_store.proposals(
            con=con, frame_keys=[frame_key_of(p.stem) for p in images]
        )
    reviewed = reviewed_frames(dataset, cand.deployed, proposals, class_map)
    evaluation = ModelEvaluation(
        candidate=candidate,
        production_version=production.version,
        dataset_version=dataset.version,
        val_images=len(images),
        imgsz=config.imgsz,
        candidate_metrics=cand.metrics,
        production_metrics=prod.metrics,
        gains=gains,
        class_ap=class_ap(cand.matches, prod.matches, dataset.class_names),
        new_classes=new_classes(production.class_names, dataset.class_names, class_map),
        camera_ap=group_ap(
            cand.matches,
            prod.matches,
            lambda name: cameras.get(frame_key_of(Path(name).stem), UNKNOWN_CAMERA),
        ),
        candidate_corrections=score_corrections(reviewed, deployed_boxes(cand.deployed)),
        production_corrections=score_corrections(reviewed, deployed_boxes(prod.deployed)),
        int8=int8_candidate(
            yolo,
            candidate_files,
            dataset,
            client=client,
            run_id=candidate.run_id,
            calibration_frames=config.int8_calibration_frames,
            work=settings.runs_dir.resolve() / f"int8-{context.run_id}",
            resamples=config.bootstrap_resamples,
            seed=config.bootstrap_seed,
            confidence=config.confidence,
        )
        if config.int8
        else None,
    )
    log_evaluation(client, settings.model_name, evaluation)
    primary = evaluation.gain("mAP50-95")
    context.log.info(
        "held-out v%s vs v%s: %s (B=%s, bootstrap %.1f s); corrections learned %s; regressions %s",
        candidate.version,
        evaluation.production_version,
        primary.label(),
        primary.resamples,
        bootstrap_s,
        evaluation.candidate_corrections.corrections_learned.label(),
        evaluation.candidate_corrections.regressions.label(),
    )
    metadata = evaluation_metadata(evaluation)
    metadata["bootstrap_s"] = round(bootstrap_s, 2)
    metadata["device"] = device
    return dg.Output(evaluation, metadata=metadata)


def held_out_images(dataset: DatasetVersion) -> list[Path]:
    """The files in the dataset's ``images/val`` folder, by name.

    Raises:
        dg.Failure: the folder is missing or empty (nothing to compare the models on).
    """
    val_dir = dataset.root / "images" / "val"
    images = sorted(p for p in val_dir.glob("*") if p.is_file()) if val_dir.is_dir() else []
    if not images:
        raise dg.Failure(
            description=f"dataset {dataset.version} has no held-out images in {val_dir}"
        )
    return images


def evaluate_on_heldout(
    yolo: Any,
    weights: Mapping[str, Path],
    dataset: DatasetVersion,
    images: Sequence[Path],
    *,
    config: EvaluationConfig,
    work: Path,
    device: str = "cpu",
) -> dict[str, HeldoutRun]:
    """Score each of ``weights`` (role -> ``.pt``) on the dataset's val split: ultralytics'
    validation at ``config.imgsz`` px, per image, and deployed detections on ``images``
    (``config.deployment_conf`` / ``deployment_iou``). ultralytics' scratch under ``work``
    and its label caches are removed afterwards, also when it raises.

    Raises:
        dg.Failure: validation did not score every held-out image.
    """
    runs: dict[str, HeldoutRun] = {}
    try:
        with label_caches_removed(dataset):
            for role, pt_path in weights.items():
                metrics, matches = validate_per_image(
                    yolo,
                    pt_path,
                    dataset.data_yaml,
                    imgsz=config.imgsz,
                    batch=config.batch,
                    save_dir=work / role,
                    device=device,
                )
                if sorted(m.name for m in matches) != sorted(p.name for p in images):
                    raise dg.Failure(
                        description=f"validation of the {role} scored {len(matches)} of the "
                        f"{len(images)} held-out images in {dataset.root / 'images' / 'val'}"
                    )
                deployed = predict_deployed(
                    yolo,
                    pt_path,
                    images,
                    imgsz=config.imgsz,
                    conf=config.deployment_conf,
                    iou=config.deployment_iou,
                    device=device,
                )
                runs[role] = HeldoutRun(metrics, matches, deployed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return runs


def frame_cameras(dataset: DatasetVersion) -> dict[str, str]:
    """frame_key -> camera_id from the dataset's ``manifest.json`` (empty, with a warning,
    for a dataset without one: its frames count as camera ``UNKNOWN_CAMERA``)."""
    manifest = dataset.root / MANIFEST
    if not manifest.is_file():
        logger.warning("%s has no %s: per-camera AP has no cameras", dataset.root, MANIFEST)
        return {}
    entries = json.loads(manifest.read_text()).get("frames", [])
    return {str(e["frame_key"]): str(e.get("camera_id") or UNKNOWN_CAMERA) for e in entries}


def reviewed_frames(
    dataset: DatasetVersion,
    detections: Sequence[FrameDetections],
    proposals: Mapping[str, Sequence[Mapping[str, Any]]],
    class_map: Mapping[str, str | None] | None = None,
) -> list[ReviewedFrame]:
    """Held-out frames with a stored proposal, paired with their reviewed label (the
    dataset's label file, in px of the image sizes in ``detections``); frames the store
    does not hold are left out (no proposal to compare with). A proposal's class is named
    by its current name (``class_map``, ``edgeloop.store.classes.name_map``), as the labels
    are: a rename is not a reviewer's change."""
    class_map = class_map or {}
    frames: list[ReviewedFrame] = []
    for image in detections:
        stem = Path(image.name).stem
        key = frame_key_of(stem)
        if key not in proposals:
            continue
        truth = label_boxes(
            dataset.root / "labels" / "val" / f"{stem}.txt",
            width=image.width,
            height=image.height,
            class_names=dataset.class_names,
        )
        proposal = tuple(
            Box(p["bbox_xyxy"], class_map.get(p["class_name"]) or p["class_name"])
            for p in proposals[key]
        )
        frames.append(ReviewedFrame(key, proposal, tuple(truth)))
    return frames


def deployed_boxes(detections: Sequence[FrameDetections]) -> dict[str, list[Box]]:
    """frame_key -> a model's deployed detections as ``Box`` (xyxy px)."""
    return {
        frame_key_of(Path(d.name).stem): [
            Box((x1, y1, x2, y2), name)
            for (x1, y1, x2, y2), name in zip(d.xyxy.tolist(), d.class_names, strict=True)
        ]
        for d in detections
    }
