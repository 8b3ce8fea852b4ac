"""training_dataset on a real DuckDB file, a real MLflow registry and a real DVC data repo
(manifests over a content-addressed frame store), and the dataset checks' logic on what it
materialised; on each store backend, the versions it records in the store
(``edgeloop.store.dataset_frames``) and the browser's dataset-version filter on them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from loopdata import T0, make_loop, vtest_frames

from assets.datasets import (
    TrainingDatasetConfig,
    check_boxes_inside_images,
    check_known_classes,
    check_minimum_size,
    check_no_train_val_leak,
    training_dataset,
)
from assets.resources import DatasetRepoResource, MlflowResource
from edgeloop.datasets import DatasetVersion, image_stem
from edgeloop.offline import configure_offline_environment
from edgeloop.registry import (
    PRODUCTION,
    ensure_experiment,
    mlflow_client,
    register_model_version,
    write_model_dir,
)
from edgeloop.store import browse, dataset_frames, tags
from edgeloop.store.browse import BrowseFilter

CLASSES = ["Normal", "Fall"]


def _register_production(loop, tmp_path: Path) -> None:
    """A production model in the tmp MLflow registry (the dataset reads its class names)."""
    configure_offline_environment(loop.settings.yolo_config_dir)
    client = mlflow_client(loop.settings)
    run = client.create_run(ensure_experiment(client, loop.settings))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "best.pt").write_bytes(b"weights")
    (tmp_path / "w" / "best.onnx").write_bytes(b"onnx")
    model_dir = write_model_dir(
        tmp_path / "model",
        pt_path=tmp_path / "w" / "best.pt",
        onnx_path=tmp_path / "w" / "best.onnx",
        class_names=CLASSES,
        imgsz=640,
    )
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    version = register_model_version(
        client, model_name=loop.settings.model_name, run_id=run.info.run_id, description="test seed"
    )
    client.set_registered_model_alias(loop.settings.model_name, PRODUCTION, version.version)


def _resources(loop) -> dict:
    return {
        "store": loop.store_resource,
        "mlflow": MlflowResource(loop=loop.loop_resource),
        "dataset_repo": DatasetRepoResource(loop=loop.loop_resource),
    }


def _materialize(loop, **config) -> tuple[DatasetVersion, dict]:
    result = dg.materialize(
        [training_dataset],
        resources=_resources(loop),
        run_config={"ops": {"training_dataset": {"config": config}}},
    )
    assert result.success
    md = result.asset_materializations_for_node("training_dataset")[0].metadata
    return result.output_for_node("training_dataset"), md


def _label_all(loop, keys: list[str], minute: int) -> None:
    for i, key in enumerate(keys):
        boxes = (
            []  # no_object
            if i % 5 == 0
            else [
                {"bbox_xyxy": [100.0, 120.0, 190.0, 340.0], "class_name": "Normal", "class_id": 0},
                {"bbox_xyxy": [600.0, 300.0, 690.0, 500.0], "class_name": "Fall", "class_id": 1},
            ]
        )
        loop.label(key, boxes, at=T0 + timedelta(minutes=minute, seconds=i))


def _fail(loop, match: str, **config) -> None:
    with pytest.raises(dg.Failure, match=match):
        training_dataset(
            dg.build_asset_context(), config=TrainingDatasetConfig(**config), **_resources(loop)
        )


def test_training_dataset_versions_reviewed_labels(tmp_path):
    loop = make_loop(tmp_path)
    images = vtest_frames(20, step=11)
    keys = loop.add_frames("cam-a", images[:10]) + loop.add_frames(
        "cam-b", images[10:16], start=T0 + timedelta(minutes=1)
    )
    _fail(loop, "no reviewed labels yet")
    _label_all(loop, keys, minute=30)
    _fail(loop, "edgeloop init")  # labels, but no production model to take classes from
    _register_production(loop, tmp_path)
    _fail(loop, "too few labeled images", min_train_images=100)

    v1, md = _materialize(loop, min_train_images=4, min_val_images=1)
    assert v1.version == "v1" and md["version"].value == "v1"
    assert v1.class_names == CLASSES and v1.label_count == 16
    assert len(v1.train_frames) + len(v1.val_frames) == 16
    assert md["train_images"].value == len(v1.train_frames) >= 4
    assert md["val_images"].value == len(v1.val_frames) >= 1
    assert md["boxes/Normal"].value == md["boxes/Fall"].value == 16 - 4  # 4 no_object frames
    assert md["label_cutoff"].value == "2025-06-01T12:30:15.000000Z"
    assert md["dvc_md5"].value == v1.dvc_md5

    # the manifest figures: every frame is new in v1, its JPEG stored once
    def sizes(frame_keys: list[str]) -> int:
        paths = {f["frame_key"]: Path(f["jpeg_path"]) for f in loop.frames}
        return sum(paths[k].stat().st_size for k in frame_keys)

    assert (md["frames"].value, md["new_frames"].value, md["frames_hashed"].value) == (16, 16, 16)
    assert md["bytes_added"].value == sizes(keys)
    neg = image_stem(keys[0])
    split = "val" if keys[0] in v1.val_frames else "train"
    assert (v1.root / "labels" / split / f"{neg}.txt").read_text() == ""
    assert (v1.root / "images" / split / f"{neg}.jpg").read_bytes() == Path(
        loop.frames[0]["jpeg_path"]
    ).read_bytes()

    for check in (check_boxes_inside_images, check_known_classes, check_no_train_val_leak):
        passed, details = check(v1)
        assert passed, (check.__name__, details)
    assert check_minimum_size(v1, 4, 1)[0]
    assert not check_minimum_size(v1, 100, 1)[0]

    # the same labels again: same version, nothing committed
    again, md_again = _materialize(loop, min_train_images=4, min_val_images=1)
    assert again.version == "v1" and md_again["unchanged"].value is True
    assert (md_again["new_frames"].value, md_again["bytes_added"].value) == (0, 0)
    assert md_again["frames_hashed"].value == 0  # unchanged JPEGs are not read again

    # more labels, and a re-label (the latest label of a frame wins)
    more = loop.add_frames("cam-b", images[16:20], start=T0 + timedelta(minutes=2))
    _label_all(loop, more, minute=40)
    loop.label(keys[1], [], at=T0 + timedelta(minutes=50))
    with loop.store.connect() as con:  # tags travel with the version, as each frame's metadata
        tags.add(con=con, frame_keys=more[:2], tag="night", source="person", created_by="t", now=T0)
    v2, md2 = _materialize(loop, min_train_images=4, min_val_images=1)
    repo = DatasetRepoResource(loop=loop.loop_resource).repo()
    tagged = {e.frame_key: e.tags for e in repo.manifest_at("v2").entries if e.tags}
    assert tagged == {key: ("night",) for key in more[:2]}
    assert not any(e.tags for e in repo.manifest_at("v1").entries)
    assert v2.version == "v2" and v2.label_count == 20
    assert set(v1.val_frames) <= set(v2.val_frames) and set(v1.train_frames) <= set(v2.train_frames)
    assert md2["label_cutoff"].value == "2025-06-01T12:50:00.000000Z"
    assert (md2["new_frames"].value, md2["frames_hashed"].value) == (4, 4)
    assert md2["bytes_added"].value == sizes(more)
    for check in (check_boxes_inside_images, check_known_classes, check_no_train_val_leak):
        assert check(v2)[0], check.__name__
    relabeled = "val" if keys[1] in v2.val_frames else "train"
    assert (v2.root / "labels" / relabeled / f"{image_stem(keys[1])}.txt").read_text() == ""
    assert [v.version for v in DatasetRepoResource(loop=loop.loop_resource).repo().versions()] == [
        "v1",
        "v2",
    ]


def test_checks_catch_broken_datasets(tmp_path):
    loop = make_loop(tmp_path)
    keys = loop.add_frames("cam-a", vtest_frames(12, step=13))
    _label_all(loop, keys, minute=10)
    _register_production(loop, tmp_path)
    version, _ = _materialize(loop, min_train_images=2, min_val_images=1)
    train_labels = sorted((version.root / "labels" / "train").glob("*.txt"))
    labeled = next(p for p in train_labels if p.read_text())

    labeled.write_text("0 0.95 0.5 0.2 0.2\n")  # sticks out of the right edge
    passed, details = check_boxes_inside_images(version)
    assert not passed and details["bad_boxes"] == 1

    labeled.write_text("7 0.5 0.5 0.2 0.2\n")  # no class 7 in a 2-class model
    passed, details = check_known_classes(version)
    assert not passed and details["unknown"] == 1

    train_image = next((version.root / "images" / "train").glob("*.jpg"))
    shutil.copyfile(train_image, version.root / "images" / "val" / "copy-of-a-train-frame.jpg")
    passed, details = check_no_train_val_leak(version)
    assert not passed and details["identical_images"]
    leaked = DatasetVersion(
        **{**version.__dict__, "val_frames": [*version.val_frames, version.train_frames[0]]}
    )
    passed, details = check_no_train_val_leak(leaked)
    assert not passed and details["in_both_lists"] == [version.train_frames[0]]


def _materialize_small(loop) -> tuple[str, str]:
    result = dg.materialize(
        [training_dataset],
        resources=_resources(loop),
        run_config={
            "ops": {"training_dataset": {"config": {"min_train_images": 2, "min_val_images": 1}}}
        },
    )
    assert result.success
    md = result.asset_materializations_for_node("training_dataset")[0].metadata
    return md["version"].value, md["recorded_in_store"].value


def _members(loop) -> dict[str, dict[str, str]]:
    with loop.store.connect() as con:
        rows = con.execute(
            "SELECT dataset_version, frame_key, split FROM dataset_frames"
        ).fetchall()
    found: dict[str, dict[str, str]] = {}
    for version, key, split in rows:
        found.setdefault(version, {})[key] = split
    return found


def test_dataset_versions_are_recorded_and_filter_the_browser(
    tmp_path: Path, database_url: str | None
) -> None:
    loop = make_loop(tmp_path, database_url=database_url)
    images = vtest_frames(14, step=11)
    keys = loop.add_frames("cam-a", images[:10], boxes_per_frame=2)
    _label_all(loop, keys, minute=30)
    _register_production(loop, tmp_path)

    assert _materialize_small(loop) == ("v1", "v1")
    repo = _resources(loop)["dataset_repo"].repo()
    v1 = repo.manifest_at("v1")
    assert _members(loop) == {"v1": {e.frame_key: e.split for e in v1.entries}}
    assert set(_members(loop)["v1"]) == set(keys)

    # the same labels: the same version, nothing new recorded
    assert _materialize_small(loop) == ("v1", "none new")

    more = loop.add_frames("cam-b", images[10:], start=T0 + timedelta(minutes=2))
    _label_all(loop, more, minute=40)
    assert _materialize_small(loop) == ("v2", "v2")
    v2 = repo.manifest_at("v2")
    members = _members(loop)
    assert members["v2"] == {e.frame_key: e.split for e in v2.entries}
    assert set(members["v2"]) == set(keys + more) and set(members["v1"]) == set(keys)

    with loop.store.connect() as con:
        listed = dataset_frames.versions(con=con)
        assert [(v["dataset_version"], v["frames"]) for v in listed] == [("v2", 14), ("v1", 10)]
        assert listed[0]["train_frames"] + listed[0]["val_frames"] == 14
        assert browse.facets(con=con)["dataset_versions"] == ["v2", "v1"]
        # The filter: every detection of the version's frames, none of the others.
        rows, count, capped = browse.page(
            con=con, where=BrowseFilter(dataset_version="v1"), limit=100, offset=0
        )
        assert (count, capped) == (20, False)  # 10 frames, 2 detections each
        assert {r["frame_key"] for r in rows} == set(keys)
        _, count_v2, _ = browse.page(
            con=con, where=BrowseFilter(dataset_version="v2"), limit=100, offset=0
        )
        assert count_v2 == 20 + 4 * 3  # cam-b's frames have the default 3 boxes
        val_v1 = [k for k, s in members["v1"].items() if s == "val"]
        rows, count, _ = browse.page(
            con=con,
            where=BrowseFilter(dataset_version="v1", split="val", camera_id="cam-a"),
            limit=100,
            offset=0,
        )
        assert count == 2 * len(val_v1) and {r["frame_key"] for r in rows} == set(val_v1)
        assert browse.page(con=con, where=BrowseFilter(dataset_version="v9"), limit=10, offset=0)[
            1:
        ] == (0, False)
        # A version built before the store kept them: recorded from its manifest next run.
        con.execute("DELETE FROM dataset_frames WHERE dataset_version = 'v1'")
        con.execute("DELETE FROM dataset_versions WHERE dataset_version = 'v1'")
    assert _materialize_small(loop) == ("v2", "v1")
    assert _members(loop) == members

    with loop.store.connect() as con:
        # Recording a version again changes nothing; bad input changes nothing either.
        now = datetime.now(UTC)
        assert not dataset_frames.record(
            con=con, version="v1", train_frames=["x"], val_frames=[], recorded_at=now
        )
        with pytest.raises(ValueError, match="v1, v2"):
            dataset_frames.record(
                con=con, version="latest", train_frames=["x"], val_frames=[], recorded_at=now
            )
        with pytest.raises(ValueError, match="both splits"):
            dataset_frames.record(
                con=con, version="v7", train_frames=["x"], val_frames=["x"], recorded_at=now
            )
    assert _members(loop) == members
