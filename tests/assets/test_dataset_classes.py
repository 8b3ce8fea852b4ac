"""A class rename, add, merge and retire reach the next dataset version, not the stored labels
nor the versions committed before (``training_dataset`` with a real DuckDB file, MLflow
registry and DVC data repo)."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import dagster as dg
from loopdata import T0, make_loop, register_model, vtest_frames

from assets.datasets import check_known_classes, training_dataset
from assets.resources import DatasetRepoResource, MlflowResource
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import PRODUCTION
from edgeloop.store import classes, labels

SMALL = {"min_train_images": 4, "min_val_images": 1}
BOXES = [
    {"bbox_xyxy": [100.0, 120.0, 190.0, 340.0], "class_name": "Normal", "class_id": 0},
    {"bbox_xyxy": [600.0, 300.0, 690.0, 500.0], "class_name": "Fall", "class_id": 1},
]


def _register_production(loop, tmp_path) -> None:
    configure_offline_environment(loop.settings.yolo_config_dir)
    (tmp_path / "best.pt").write_bytes(b"weights")
    (tmp_path / "best.onnx").write_bytes(b"onnx")
    register_model(
        loop.settings,
        pt_path=tmp_path / "best.pt",
        onnx_path=tmp_path / "best.onnx",
        class_names=["Normal", "Fall"],
        alias=PRODUCTION,
    )


def _label_all(loop, keys: list[str], minute: int) -> None:
    for i, key in enumerate(keys):
        loop.label(key, [] if i % 5 == 0 else BOXES, at=T0 + timedelta(minutes=minute, seconds=i))


def _materialize(loop, **config):
    result = dg.materialize(
        [training_dataset],
        resources={
            "store": loop.store_resource,
            "mlflow": MlflowResource(loop=loop.loop_resource),
            "dataset_repo": DatasetRepoResource(loop=loop.loop_resource),
        },
        run_config={"ops": {"training_dataset": {"config": config}}},
    )
    assert result.success
    md = result.asset_materializations_for_node("training_dataset")[0].metadata
    return result.output_for_node("training_dataset"), md


def _summary_at(repo_root, tag: str) -> dict:
    text = subprocess.run(
        ["git", "-C", str(repo_root), "show", f"{tag}:dataset.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(text))


def test_class_changes_show_in_the_next_version_only(tmp_path):
    loop = make_loop(tmp_path)
    keys = loop.add_frames("cam-a", vtest_frames(12, step=13))
    _label_all(loop, keys, minute=10)  # every 5th frame empty, others one Normal + one Fall
    _register_production(loop, tmp_path)
    v1, md1 = _materialize(loop, **SMALL)
    assert v1.class_names == ["Normal", "Fall"]  # seeded from the production model
    boxes = md1["boxes/Fall"].value
    assert boxes == md1["boxes/Normal"].value > 0

    with loop.settings.store().connect() as con:
        classes.rename(con=con, ref="Fall", new_name="fallen", actor="ana", reason="clearer")
        classes.add(con=con, name="forklift", actor="ana", reason="new dock")
    v2, md2 = _materialize(loop, **SMALL)
    assert v2.version == "v2" and v2.class_names == ["Normal", "fallen", "forklift"]
    assert (md2["boxes/fallen"].value, md2["boxes/forklift"].value) == (boxes, 0)
    assert check_known_classes(v2)[0]
    yaml_text = v2.data_yaml.read_text()
    assert "fallen" in yaml_text and "forklift" in yaml_text

    with loop.settings.store().connect() as con:
        classes.merge(con=con, ref="fallen", into="Normal", actor="bo", reason="one person class")
        classes.retire(con=con, ref="forklift", actor="bo", reason="no dock after all")
    forklift = {"bbox_xyxy": [300.0, 300.0, 400.0, 400.0], "class_name": "forklift", "class_id": 2}
    loop.label(keys[3], [*BOXES, forklift], at=T0 + timedelta(minutes=50))
    v3, md3 = _materialize(loop, **SMALL)
    assert v3.class_names == ["Normal"]
    assert md3["boxes/Normal"].value == 2 * boxes  # Fall's boxes count as Normal now
    assert md3["retired_boxes_left_out"].value == 1  # the forklift box
    assert check_known_classes(v3)[0]

    # History is intact: the stored labels keep the class they were given, and the
    # committed versions keep their names.
    with loop.settings.store().connect() as con:
        stored = labels.latest_for_frame(con=con, frame_key=keys[2])
    assert stored is not None and [b.class_name for b in stored["boxes"]] == ["Normal", "Fall"]
    repo_root = v1.repo_root
    assert _summary_at(repo_root, "v1")["class_names"] == ["Normal", "Fall"]
    assert _summary_at(repo_root, "v2")["class_names"] == ["Normal", "fallen", "forklift"]
