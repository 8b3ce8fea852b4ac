"""A class the production model never had, end to end (issue 18): an admin adds it through
the API, a labeler labels frames with it through the API, the loop builds a dataset
version, fine-tunes the seed (small epochs, CPU) into a model with the new head,
evaluates it against production on the held-out frames, and ships the class names with
the model to the agents.

What it proves, plainly: the class list, the labels, the dataset's ``names``, the new head
(ultralytics transfers the rest of the seed's weights), the per-class AP with production
at 0 on the new class, and the names in the ONNX model an agent loads. The new class
("walker") is labeled on the seed's own confident person boxes of vtest.avi, a pragmatic
stand-in for a new object: an object the backbone already sees, so a few CPU epochs learn
its head row. It does not show that a truly novel object is learnt from 36 frames.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from fastapi.testclient import TestClient
from loopdata import make_loop, register_model, vtest_frames

from api.main import create_app
from api.settings import ApiSettings
from assets.datasets import TrainingDatasetConfig, training_dataset
from assets.evaluation import EvaluationConfig, model_evaluation
from assets.resources import DatasetRepoResource, MlflowResource
from assets.training import TrainingConfig, detector_model
from assets.yolo import load_yolo
from edge_agent.detectors import OnnxDetector
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import PRODUCTION, mlflow_client, model_files

ADMIN = {"Authorization": "Bearer admin-token"}
LABELER = {"Authorization": "Bearer labeler-token"}
NEW = "walker"
FRAMES = 40
IMGSZ = 320
CONF = 0.1
"""Confidence floor of "predicts the class" (ultralytics val keeps >= 0.001; agents 0.25)."""


def _seed_boxes(yolo, seed_pt: Path, images: list[np.ndarray]) -> list[list[list[float]]]:
    """The seed's confident boxes (conf >= 0.5) on each image, xyxy px."""
    model = yolo(str(seed_pt))
    return [
        [[round(v, 1) for v in box] for box in result.boxes.xyxy.tolist()]
        for result in (model.predict(im, conf=0.5, device="cpu", verbose=False)[0] for im in images)
    ]


@pytest.mark.integration
def test_a_new_class_is_labeled_trained_evaluated_and_shipped(seed_pt: Path, tmp_path: Path):
    loop = make_loop(tmp_path)
    configure_offline_environment(loop.settings.yolo_config_dir)
    yolo = load_yolo(loop.settings)
    onnx = tmp_path / "seed.onnx"
    onnx.write_bytes(b"not read: training and evaluation use best.pt")
    register_model(
        loop.settings,
        pt_path=seed_pt,
        onnx_path=onnx,
        class_names=["Normal", "Fall"],
        alias=PRODUCTION,
    )
    images = vtest_frames(FRAMES, step=19)
    keys = loop.add_frames("cam-a", images)
    loop.queue(keys)
    boxes = dict(zip(keys, _seed_boxes(yolo, seed_pt, images), strict=True))

    settings = ApiSettings(
        loop=loop.settings,
        tokens={"admin-token": "admin", "labeler-token": "labeler"},
        warm_registry=False,
        push_retrain=False,
    )
    with TestClient(create_app(settings)) as api:
        added = api.post(
            "/api/classes", json={"name": NEW, "reason": "count walkers"}, headers=ADMIN
        )
        assert added.status_code == 201, added.text
        labeled = 0
        while (item := api.get("/api/labeling-queue/next", headers=LABELER)).status_code == 200:
            body = item.json()
            assert body["class_names"] == ["Normal", "Fall", NEW]  # seeded from production + added
            sent = [{"bbox_xyxy": b, "class_name": NEW} for b in boxes[body["frame_key"]]]
            response = api.post(
                f"/api/labeling-queue/{body['item_id']}/label",
                json={"boxes": sent},
                headers=LABELER,
            )
            assert response.status_code == 201, response.text
            labeled += 1
    assert labeled == FRAMES

    result = dg.materialize(
        [training_dataset, detector_model, model_evaluation],
        resources={
            "store": loop.store_resource,
            "mlflow": MlflowResource(loop=loop.loop_resource),
            "dataset_repo": DatasetRepoResource(loop=loop.loop_resource),
        },
        run_config=dg.RunConfig(
            ops={
                "training_dataset": TrainingDatasetConfig(min_train_images=8, min_val_images=2),
                "detector_model": TrainingConfig(
                    epochs=10, imgsz=IMGSZ, batch=4, lr0=3e-3, freeze=10, patience=10
                ),
                "model_evaluation": EvaluationConfig(imgsz=IMGSZ, batch=4, bootstrap_resamples=200),
            }
        ),
    )
    assert result.success
    dataset = result.output_for_node("training_dataset")
    assert dataset.class_names == ["Normal", "Fall", NEW]
    candidate = result.output_for_node("detector_model")
    evaluation = result.output_for_node("model_evaluation")
    assert list(evaluation.new_classes) == [NEW]
    (walker,) = [row for row in evaluation.class_ap if row.group == NEW]
    print(
        f"held-out {NEW}: candidate AP50-95 {walker.candidate:.3f}, production {walker.production:.3f}, n={walker.n} boxes on {evaluation.val_images} images"
    )
    assert walker.production == 0.0 and walker.n > 0
    assert walker.candidate > 0.05

    # The candidate predicts the new class on the held-out frames.
    held_out = sorted((dataset.root / "images" / "val").glob("*.jpg"))
    predictions = yolo(str(candidate.pt_path)).predict(
        [str(p) for p in held_out], imgsz=IMGSZ, conf=CONF, device="cpu", verbose=False
    )
    found = sum(r.names[int(c)] == NEW for r in predictions for c in r.boxes.cls.tolist())
    assert found > 0, "the candidate never predicts the new class on held-out frames"

    print(f"{NEW} predicted {found} times on {len(held_out)} held-out frames at conf >= {CONF}")

    # Agents receive the new names with the model: model.json (what the API hands agents
    # as the production model's class names) and the ONNX metadata the agent reads.
    files = model_files(
        mlflow_client(loop.settings),
        loop.settings,
        model_name=loop.settings.model_name,
        version=candidate.version,
    )
    assert files.class_names == ["Normal", "Fall", NEW]
    detector = OnnxDetector(candidate.onnx_path)
    assert detector.class_names == ["Normal", "Fall", NEW]
