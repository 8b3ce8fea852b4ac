"""Training side: the promotion policy, rollback, the dataset checks, and
detector_model → model_evaluation → model_promotion on a real tiny dataset.

The dataset is real: vtest.avi frames labeled with the seed detector's own confident
boxes (conf >= 0.5), written as YOLO files by hand. The registry is a real MLflow sqlite
store in tmp where the seed is registered as production (its ONNX exported once).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import dagster as dg
import pytest
from loopdata import register_model, unversioned_dataset, vtest_frames
from support import DATASET_CHECKS, SEED_PT, require

from assets.corrections import Change, CorrectionScore, Share
from assets.evaluation import EvaluationConfig, model_evaluation
from assets.evaluation_result import ModelEvaluation
from assets.heldout import GainInterval
from assets.registry import (
    PromotionConfig,
    PromotionEvidence,
    model_promotion,
    promotion_decision,
)
from assets.training import CandidateModel, TrainingConfig, detector_model
from assets.yolo import HeldoutMetrics
from edgeloop.cli.status import EVIDENCE_TAGS
from edgeloop.datasets import DatasetVersion
from edgeloop.devices import torch_device
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import (
    MODEL_ARTIFACT_DIR,
    PRODUCTION,
    STAGING,
    ModelNotFoundError,
    alias_version,
    mlflow_client,
    rollback,
)
from edgeloop.settings import LoopSettings
from edgeloop.store import Store
from edgeloop.store import labels as labels_store
from pipelines.checks import training_dataset_checks

CLASS_NAMES = ["Normal", "Fall"]
LABEL_CUTOFF = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def yolo_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ultralytics")
    configure_offline_environment(path)
    return path


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory, yolo_config_dir: Path) -> Path:
    """8 train + 4 val vtest frames, labeled with the seed's boxes at conf >= 0.5."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("dataset") / "yolo"
    model = YOLO(str(require(SEED_PT)))
    for i, frame in enumerate(vtest_frames(12, step=60)):
        split = "val" if i % 3 == 2 else "train"
        stem = f"vtest_{i * 60:05d}"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), frame)
        boxes = model.predict(frame, conf=0.5, device="cpu", verbose=False)[0].boxes
        lines = [
            f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
            for (cx, cy, w, h), c in zip(boxes.xywhn.tolist(), boxes.cls.tolist(), strict=True)
        ]
        (root / "labels" / split / f"{stem}.txt").write_text("".join(f"{x}\n" for x in lines))
    (root / "data.yaml").write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: Normal\n  1: Fall\n"
    )
    assert sum(1 for _ in (root / "labels").rglob("*.txt")) == 12
    return root


def _dataset_version(root: Path) -> DatasetVersion:
    stems = {
        s: sorted(p.stem for p in (root / "images" / s).glob("*.jpg")) for s in ("train", "val")
    }
    return unversioned_dataset(
        root,
        CLASS_NAMES,
        train_frames=stems["train"],
        val_frames=stems["val"],
        label_cutoff_iso=LABEL_CUTOFF.isoformat(),
        label_count=12,
    )


@pytest.fixture
def tiny_dataset(tiny_dataset_dir: Path, tmp_path: Path) -> DatasetVersion:
    """A private copy of the tiny dataset (ultralytics writes label caches beside it)."""
    root = tmp_path / "yolo"
    shutil.copytree(tiny_dataset_dir, root)
    (root / "data.yaml").write_text(
        (root / "data.yaml").read_text().replace(str(tiny_dataset_dir), str(root))
    )
    return _dataset_version(root)


def register_version(settings: LoopSettings, onnx_path: Path, *, alias: str | None) -> str:
    """Register the seed's files as a new version (as ``edgeloop init`` does) and maybe alias it."""
    return register_model(
        settings,
        pt_path=require(SEED_PT),
        onnx_path=onnx_path,
        class_names=CLASS_NAMES,
        alias=alias,
        reason="seed detector",
    )


# --- the promotion policy (pure) --------------------------------------------------------


def evidence(
    low: float = 0.01,
    *,
    n: int = 30,
    map50_low: float = 0.0,
    regressions: Share = Share(1, 20),  # noqa: B008 (frozen)
    box_regressions: Share = Share(2, 50),  # noqa: B008 (frozen)
) -> PromotionEvidence:
    """Evidence whose mAP50-95 gain interval is [low, low + 0.04] and mAP50's
    [map50_low, map50_low + 0.04], on n held-out images."""
    return PromotionEvidence(
        heldout_images=n,
        map50_95=GainInterval("mAP50-95", low + 0.02, low, low + 0.04, 0.95, 1000, n),
        map50=GainInterval("mAP50", map50_low + 0.02, map50_low, map50_low + 0.04, 0.95, 1000, n),
        regressions=regressions,
        corrections_learned=Share(3, 8),
        box_regressions=box_regressions,
    )


def test_policy_promotes_a_candidate_whose_gain_interval_is_above_zero():
    decision = promotion_decision(evidence(0.012))
    assert (decision.staging, decision.production) == (True, True)
    assert decision.verdict == "auto-promoted"
    assert "Δ mAP50-95 +0.032 [+0.012, +0.052] (95%, n=30 images)" in decision.reason
    assert "regressions 0.05 (1/20) of accepted frames <= 0.10" in decision.reason


def test_policy_gates_on_the_worse_of_frame_and_pre_label_regressions():
    # No frame was accepted unchanged, but 6 of 40 accepted pre-labels are broken: 0.15.
    decision = promotion_decision(
        evidence(0.012, regressions=Share(0, 0), box_regressions=Share(6, 40))
    )
    assert (decision.staging, decision.production) == (False, False)
    assert "breaks 0.15 (6/40) of the pre-labels reviewers accepted unchanged" in decision.reason
    within = promotion_decision(
        evidence(0.012, regressions=Share(0, 0), box_regressions=Share(3, 40))
    )
    assert within.production and "0.07 (3/40) of accepted pre-labels <= 0.10" in within.reason
    nothing = promotion_decision(
        evidence(0.012, regressions=Share(0, 0), box_regressions=Share(0, 0))
    )
    assert nothing.production and "nothing was accepted unchanged" in nothing.reason


def test_policy_says_when_the_held_out_set_is_too_small_to_decide():
    decision = promotion_decision(evidence(0.2, n=19))
    assert (decision.staging, decision.production) == (False, False)
    assert decision.verdict == "not enough held-out evidence (n=19 < 20)"
    assert "production kept" in decision.reason and "n=19 images" in decision.reason
    assert promotion_decision(evidence(0.2, n=20)).production
    assert not promotion_decision(evidence(0.2, n=20), min_heldout_images=21).staging


def test_policy_keeps_production_when_the_interval_reaches_zero():
    for low in (0.0, -0.01, 0.00005):  # identical models give [0, 0]; a float tie
        decision = promotion_decision(evidence(low))
        assert (decision.staging, decision.production) == (False, False)
        assert decision.verdict == "no mAP50-95 gain at 95%"
        assert "is not above 0.0000; production kept" in decision.reason


def test_policy_min_gain_applies_to_the_lower_bound_strictly():
    assert not promotion_decision(evidence(0.05), min_gain=0.05).staging
    assert promotion_decision(evidence(0.052), min_gain=0.05).staging


def test_policy_refuses_a_candidate_that_breaks_accepted_frames():
    decision = promotion_decision(evidence(0.05, regressions=Share(3, 20)))
    assert (decision.staging, decision.production) == (False, False)
    assert decision.verdict == "regressions 0.15 > 0.10"
    assert "breaks 0.15 (3/20) of the frames reviewers accepted unchanged" in decision.reason
    assert promotion_decision(evidence(0.05, regressions=Share(2, 20))).staging  # 0.10 <= 0.10
    assert promotion_decision(
        evidence(0.05, regressions=Share(3, 20)), max_regression_share=0.2
    ).staging
    # No frame accepted unchanged: the accepted pre-labels (2/50 broken) are gated on.
    none_accepted = promotion_decision(evidence(0.05, regressions=Share(0, 0)))
    assert none_accepted.production
    assert "regressions 0.04 (2/50) of accepted pre-labels" in none_accepted.reason


def test_policy_stages_but_does_not_promote_when_map50_may_drop():
    decision = promotion_decision(evidence(0.05, map50_low=-0.03), max_map50_drop=0.02)
    assert (decision.staging, decision.production) == (True, False)
    assert decision.verdict == "staged; mAP50 may drop more than 0.02"
    assert "Δ mAP50 -0.010 [-0.030, +0.010]" in decision.reason
    assert promotion_decision(evidence(0.05, map50_low=-0.015), max_map50_drop=0.02).production


def test_policy_without_auto_promotion_only_stages():
    decision = promotion_decision(evidence(0.05), auto_promote=False)
    assert (decision.staging, decision.production) == (True, False)
    assert decision.verdict == "staged; auto-promotion is off"


def test_policy_refuses_nan_intervals():
    decision = promotion_decision(evidence(float("nan")))
    assert not decision.staging and not decision.production
    assert decision.verdict == "held-out intervals are not finite"


# --- rollback and promotion on a real registry (no training) ----------------------------


@pytest.mark.integration
def test_rollback_walks_back_the_production_history(seed_onnx, loop):
    settings, _ = loop
    client, store, name = mlflow_client(settings), Store(settings.duckdb_path), settings.model_name
    v1 = register_version(settings, seed_onnx, alias=PRODUCTION)
    v2 = register_version(settings, seed_onnx, alias=PRODUCTION)
    v3 = register_version(settings, seed_onnx, alias=PRODUCTION)

    assert rollback(client, store, model_name=name, actor="cli", reason="bad boxes") == v2
    assert str(alias_version(client, name, PRODUCTION).version) == v2
    assert rollback(client, store, model_name=name, actor="cli", reason="still bad") == v1
    with pytest.raises(ModelNotFoundError, match="no earlier production version"):
        rollback(client, store, model_name=name, actor="cli", reason="again")
    assert (
        rollback(client, store, model_name=name, to_version=v3, actor="cli", reason="fixed") == v3
    )
    with pytest.raises(ValueError, match="already is production"):
        rollback(client, store, model_name=name, to_version=v3, actor="cli", reason="noop")
    with pytest.raises(ModelNotFoundError, match="no version 99"):
        rollback(client, store, model_name=name, to_version="99", actor="cli", reason="typo")

    with store.connect() as con:
        rows = con.execute(
            "SELECT version, previous_version, action, actor, reason FROM model_deployments "
            "WHERE action = 'rollback' ORDER BY deployment_id"
        ).fetchall()
    assert rows == [
        (v2, v3, "rollback", "cli", "bad boxes"),
        (v1, v2, "rollback", "cli", "still bad"),
        (v3, v1, "rollback", "cli", "fixed"),
    ]


def _evaluation(candidate_version: str, production_version: str, ev: PromotionEvidence):
    """A ``ModelEvaluation`` carrying ``ev`` (the rest is what the policy does not read)."""
    kinds = [c.value for c in Change]
    corrections = ev.corrections_learned
    return ModelEvaluation(
        candidate=CandidateModel(
            version=candidate_version,
            run_id="unused",
            pt_path=Path("unused.pt"),
            onnx_path=Path("unused.onnx"),
            dataset_version="v1",
            base_version=production_version,
        ),
        production_version=production_version,
        dataset_version="v1",
        val_images=ev.heldout_images,
        imgsz=640,
        candidate_metrics=m(0.82, 0.55),
        production_metrics=m(0.80, 0.50),
        gains={"mAP50-95": ev.map50_95, "mAP50": ev.map50},
        class_ap=[],
        camera_ap=[],
        candidate_corrections=CorrectionScore(
            corrections={k: corrections.n if k == kinds[0] else 0 for k in kinds},
            learned={k: corrections.count if k == kinds[0] else 0 for k in kinds},
            accepted=ev.regressions.n,
            broken=ev.regressions.count,
            frames=ev.heldout_images,
        ),
        production_corrections=CorrectionScore(
            dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0), 0, 0, ev.heldout_images
        ),
    )


def m(map50: float, map50_95: float) -> HeldoutMetrics:
    return HeldoutMetrics(map50=map50, map50_95=map50_95, precision=0.5, recall=0.5)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("ev", "config", "staging", "production", "verdict"),
    [
        (evidence(0.01), PromotionConfig(), True, True, "auto-promoted"),
        (evidence(0.01, map50_low=-0.05), PromotionConfig(), True, False, "mAP50 may drop"),
        (evidence(0.01), PromotionConfig(auto_promote=False), True, False, "auto-promotion"),
        (evidence(-0.01), PromotionConfig(), False, False, "no mAP50-95 gain"),
        (evidence(0.01, regressions=Share(5, 20)), PromotionConfig(), False, False, "0.25"),
        (evidence(0.3, n=12), PromotionConfig(), False, False, "not enough held-out evidence"),
    ],
)
def test_model_promotion_moves_aliases_per_policy(
    seed_onnx, loop, ev, config, staging, production, verdict
):
    settings, resources = loop
    v1 = register_version(settings, seed_onnx, alias=PRODUCTION)
    v2 = register_version(settings, seed_onnx, alias=None)
    evaluation = _evaluation(v2, v1, ev)

    result = model_promotion(
        dg.build_asset_context(), config=config, model_evaluation=evaluation, **resources
    )

    client = mlflow_client(settings)
    assert str(alias_version(client, settings.model_name, PRODUCTION).version) == (
        v2 if production else v1
    )
    staged = alias_version(client, settings.model_name, STAGING)
    assert (staged is not None and str(staged.version) == v2) == staging
    with Store(settings.duckdb_path).connect() as con:
        moves = con.execute(
            "SELECT alias, version, previous_version, actor, metrics FROM model_deployments "
            "WHERE actor = 'dagster:model_promotion' ORDER BY deployment_id"
        ).fetchall()
    expected = [a for a, wanted in ((STAGING, staging), (PRODUCTION, production)) if wanted]
    assert [row[0] for row in moves] == expected
    for _, version, _previous, _, metrics in moves:
        assert version == v2
        recorded = json.loads(metrics)
        assert recorded["evidence"]["gain_mAP50-95"]["low"] == ev.map50_95.low
        assert recorded["evidence"]["heldout_images"] == ev.heldout_images
        assert verdict in recorded["verdict"]
    assert all(row[2] == v1 for row in moves if row[0] == PRODUCTION)
    md = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    if production:
        assert md["outcome"] == f"promoted v{v2} to production (was v{v1})"
    else:
        assert f"kept production v{v1}: " in md["outcome"] and verdict in md["outcome"]
    assert verdict in md["verdict"]
    assert md["gain/mAP50-95"] == ev.map50_95.label()
    assert md["heldout_images"] == ev.heldout_images


@pytest.mark.integration
def test_model_promotion_refuses_a_stale_comparison(seed_onnx, loop):
    settings, resources = loop
    v1 = register_version(settings, seed_onnx, alias=PRODUCTION)
    v2 = register_version(settings, seed_onnx, alias=None)
    register_version(settings, seed_onnx, alias=PRODUCTION)  # v3 promoted meanwhile
    evaluation = _evaluation(v2, v1, evidence(0.3))
    with pytest.raises(dg.Failure, match="materialize model_evaluation again"):
        model_promotion(
            dg.build_asset_context(),
            config=PromotionConfig(),
            model_evaluation=evaluation,
            **resources,
        )


# --- dataset checks ---------------------------------------------------------------------


def _dataset_asset(version: DatasetVersion) -> dg.AssetsDefinition:
    @dg.asset(name="training_dataset")
    def training_dataset() -> DatasetVersion:
        return version

    return training_dataset


def test_dataset_checks_pass_on_a_clean_dataset(tiny_dataset):
    result = dg.materialize([_dataset_asset(tiny_dataset), *training_dataset_checks])
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == DATASET_CHECKS
    assert all(e.passed for e in evaluations)


def test_a_failed_blocking_check_stops_training(tiny_dataset):
    label = next((tiny_dataset.root / "labels" / "train").glob("*.txt"))
    label.write_text("0 0.95 0.5 0.3 0.2\n")  # box sticks out of the right edge
    leaked = tiny_dataset.val_frames[0]
    shutil.copyfile(
        tiny_dataset.root / "images" / "val" / f"{leaked}.jpg",
        tiny_dataset.root / "images" / "train" / f"{leaked}.jpg",
    )
    trained: list[str] = []

    @dg.asset(deps=["training_dataset"])
    def detector_model() -> None:  # stands in for training: must not run
        trained.append("ran")

    result = dg.materialize(
        [_dataset_asset(tiny_dataset), detector_model, *training_dataset_checks],
        raise_on_error=False,
    )
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"boxes_inside_images", "no_train_val_leak"}
    assert not result.success
    assert trained == []


# --- training, evaluation, promotion on a real tiny dataset -----------------------------


@pytest.mark.integration
def test_retrain_registers_evaluates_and_promotes(seed_onnx, tiny_dataset, loop):
    settings, resources = loop
    v1 = register_version(settings, seed_onnx, alias=PRODUCTION)
    store = Store(settings.duckdb_path)
    with store.connect() as con:  # 3 frames labeled before the dataset's cutoff, 1 after
        for minutes in (-30, -20, -10, 5):
            con.execute(
                "INSERT INTO reviewed_labels (item_id, frame_key, camera_id, boxes, box_count, "
                "labeler, labeled_at) VALUES (0, ?, 'cam', '[]', 0, 'tester', ?)",
                [f"frame{minutes}", LABEL_CUTOFF + timedelta(minutes=minutes)],
            )
        assert labels_store.since_last_training(con=con) == 4

    result = dg.materialize(
        [_dataset_asset(tiny_dataset), detector_model, model_evaluation, model_promotion],
        resources=resources,
        run_config=dg.RunConfig(
            ops={
                "detector_model": TrainingConfig(epochs=2, imgsz=160, batch=4),
                "model_evaluation": EvaluationConfig(batch=4),  # at 640, as agents run
            }
        ),
    )
    assert result.success

    candidate = result.output_for_node("detector_model")
    assert candidate.version == str(int(v1) + 1) and candidate.base_version == v1
    client = mlflow_client(settings)
    version = client.get_model_version(settings.model_name, candidate.version)
    assert version.run_id == candidate.run_id
    artifacts = {
        Path(a.path).name for a in client.list_artifacts(candidate.run_id, MODEL_ARTIFACT_DIR)
    }
    assert {"best.pt", "best.onnx", "model.json"} <= artifacts

    import onnxruntime as ort

    session = ort.InferenceSession(str(candidate.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 640, 640]

    assert set(version.tags) == {
        "kind",
        "base_version",
        "dataset_version",
        "dataset_md5",
        "dagster_run_id",
        "pt_sha256",
        "onnx_sha256",
        "heldout_mAP50",
        "heldout_mAP50-95",
        "heldout_precision",
        "heldout_recall",
        "heldout_production_version",
        "heldout_imgsz",
        *EVIDENCE_TAGS,  # the evidence `edgeloop status` shows: every one is set
        "promotion",
    }
    run = client.get_run(candidate.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"retrain-v1-from-v{v1}"
    assert run.data.tags["model_version"] == candidate.version
    trained_md = result.asset_materializations_for_node("detector_model")[0].metadata
    assert trained_md["epochs_run"].value == 2
    assert {"mlflow_run", "s_per_epoch", "onnx_sha256", "epochs", "final/mAP50-95"} <= set(
        trained_md
    )
    assert run.data.params["epochs"] == "2" and run.data.params["dataset_version"] == "v1"
    assert run.data.params["label_count"] == "12" and run.data.params["base_version"] == v1
    # Trained where EDGELOOP_DEVICE (auto) says, and both MLflow and Dagster say where.
    assert run.data.params["device"] == trained_md["device"].value == torch_device("auto")
    assert run.data.tags["dataset_version"] == "v1"
    assert run.data.tags["dagster_run_id"] == result.run_id
    for key in ("mAP50-95", "mAP50", "precision", "recall", "train/box_loss"):
        history = client.get_metric_history(candidate.run_id, key)
        assert sorted(point.step for point in history) == [0, 1], key

    with store.connect() as con:
        rows = con.execute(
            "SELECT mlflow_run_id, label_cutoff, label_count, dataset_version, model_version, "
            "dagster_run_id FROM training_runs"
        ).fetchall()
        assert labels_store.since_last_training(con=con) == 1  # the training reset the count
    assert len(rows) == 1
    run_id, cutoff, count, dataset_version, model_version, dagster_run_id = rows[0]
    assert (run_id, count, dataset_version, model_version, dagster_run_id) == (
        candidate.run_id,
        12,
        "v1",
        candidate.version,
        result.run_id,
    )
    assert cutoff == LABEL_CUTOFF

    evaluation = result.output_for_node("model_evaluation")
    assert evaluation.production_version == v1 and evaluation.val_images == 4
    for metrics in (evaluation.candidate_metrics, evaluation.production_metrics):
        assert all(0.0 <= v <= 1.0 for v in metrics.as_dict().values())
    # The val labels are production's own confident boxes: it must score high on them.
    assert evaluation.production_metrics.map50 > 0.8
    logged = client.get_run(candidate.run_id).data.metrics
    assert logged["heldout_mAP50-95"] == pytest.approx(evaluation.candidate_metrics.map50_95)
    assert (
        client.get_model_version(settings.model_name, candidate.version).tags[
            "heldout_production_version"
        ]
        == v1
    )

    # 4 held-out images carry no decision: the gate says so and keeps production.
    gain = evaluation.gain("mAP50-95")
    assert (gain.n, gain.resamples) == (4, 1000) and gain.low <= gain.point <= gain.high
    assert evaluation.candidate_corrections.frames == 0  # no stored proposal for these frames
    decision = PromotionConfig().decide(evaluation)
    assert decision.verdict == "not enough held-out evidence (n=4 < 20)"
    assert str(alias_version(client, settings.model_name, PRODUCTION).version) == v1
    assert alias_version(client, settings.model_name, STAGING) is None
    promotion_md = result.asset_materializations_for_node("model_promotion")[0].metadata
    assert promotion_md["reason"].value == decision.reason
    assert promotion_md["outcome"].value == f"kept production v{v1}: {decision.verdict}"
    evaluation_md = result.asset_materializations_for_node("model_evaluation")[0].metadata
    assert "| mAP50-95 |" in evaluation_md["comparison"].value
    assert evaluation_md["gain/mAP50-95"].value == gain.label()

    # Scratch space is cleaned and the DVC-tracked dataset folder is left as it was built.
    assert not list((tiny_dataset.root / "labels").glob("*.cache"))
    assert not settings.runs_dir.exists() or not any(settings.runs_dir.iterdir())


@pytest.mark.integration
def test_detector_model_fails_loudly_without_production(tiny_dataset, loop):
    _, resources = loop
    with pytest.raises(dg.Failure, match="edgeloop init"):
        detector_model(
            dg.build_asset_context(),
            config=TrainingConfig(epochs=1, imgsz=160),
            training_dataset=replace(tiny_dataset),
            **resources,
        )


@pytest.mark.integration
def test_an_int8_model_within_the_bound_ships_to_the_cameras(seed_onnx, tiny_dataset, loop):
    """The int8 path through the assets: model_evaluation quantises the candidate, judges
    it on the held-out set and registers it as a version of its own; model_promotion then
    moves production to it in its fp32 parent's place (staging keeps the parent).

    A 1-epoch candidate on 4 held-out images cannot earn a promotion, so model_promotion
    gets the real evaluation's int8 judgement with a stated fp32 evidence that passes
    (``evidence(0.01)``) and a policy that accepts 4 held-out images and any int8 loss
    (``int8_max_map_loss=1``): this checks the mechanism, not a model's quality
    (tests/assets/test_quantize.py judges a real int8 model against the real bound)."""
    from assets.quantize import INT8
    from edgeloop.registry import PRECISION_TAG, model_files
    from edgeloop.wire import model_precision

    settings, resources = loop
    v1 = register_version(settings, seed_onnx, alias=PRODUCTION)
    result = dg.materialize(
        [_dataset_asset(tiny_dataset), detector_model, model_evaluation],
        resources=resources,
        run_config=dg.RunConfig(
            ops={
                "detector_model": TrainingConfig(epochs=1, imgsz=160, batch=4),
                "model_evaluation": EvaluationConfig(batch=4, int8=True, int8_calibration_frames=4),
            }
        ),
    )
    assert result.success
    candidate = result.output_for_node("detector_model")
    int8 = result.output_for_node("model_evaluation").int8
    assert int8 is not None and int8.judgement.val_images == 4
    assert (int8.parent_version, int8.version) == (
        candidate.version,
        str(int(candidate.version) + 1),
    )
    client = mlflow_client(settings)
    tags = client.get_model_version(settings.model_name, int8.version).tags
    assert tags[PRECISION_TAG] == INT8 and "int8_gain_mAP50-95" in tags

    evaluation = replace(_evaluation(candidate.version, v1, evidence(0.01)), int8=int8)
    config = PromotionConfig(min_heldout_images=4, int8_max_map_loss=1.0)
    outcome = model_promotion(
        dg.build_asset_context(), config=config, model_evaluation=evaluation, **resources
    )
    assert str(alias_version(client, settings.model_name, PRODUCTION).version) == int8.version
    assert str(alias_version(client, settings.model_name, STAGING).version) == candidate.version
    assert f"v{int8.version}" in str(outcome.metadata["outcome"])
    # What a camera downloads: the int8 ONNX, its metadata naming the precision, and its
    # parent's class names.
    files = model_files(client, settings, model_name=settings.model_name, version=int8.version)
    parent = model_files(
        client, settings, model_name=settings.model_name, version=candidate.version
    )
    assert files.precision == INT8 and files.class_names == parent.class_names
    import onnxruntime as ort

    session = ort.InferenceSession(str(files.onnx_path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert model_precision(metadata, session.get_inputs()[0].type) == INT8
