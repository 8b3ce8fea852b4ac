"""edgeloop.datasets: split stability, YOLO label conversion, and a real DVC data repo.

The manifest, the object store and checkouts of old versions are tested in
``test_dataset_versions.py``."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from support import labeled_frames

from edgeloop.annotations import ReviewedBox
from edgeloop.datasets import (
    MANIFEST,
    DatasetRepo,
    DatasetRepoError,
    UnknownClassError,
    frame_key_of,
    image_stem,
    split_for,
    yolo_label_lines,
)

NAMES = ["Normal", "Fall"]


def test_split_is_stable_and_near_the_fraction():
    keys = [f"cam-{c}:{i}" for c in "abc" for i in range(1000)]
    first = [split_for(k, 0.2) for k in keys]
    assert first == [split_for(k, 0.2) for k in keys]  # same frame, same split, every time
    share = first.count("val") / len(keys)
    assert 0.17 < share < 0.23
    assert {split_for(k, 0.0) for k in keys} == {"train"}
    assert {split_for(k, 1.0) for k in keys} == {"val"}
    with pytest.raises(ValueError):
        split_for("x", 1.5)


def _box(bbox: list[float], name: str) -> ReviewedBox:
    return ReviewedBox(bbox_xyxy=bbox, class_id=NAMES.index(name), class_name=name)


def test_yolo_lines_are_normalised_cx_cy_w_h_by_class_name():
    lines = yolo_label_lines(
        [_box([100, 50, 300, 250], "Fall"), _box([0, 0, 40, 100], "Normal")],
        width=640,
        height=480,
        class_names=NAMES,
    )
    assert lines == [
        "1 0.312500 0.312500 0.312500 0.416667",
        "0 0.031250 0.104167 0.062500 0.208333",
    ]
    assert yolo_label_lines([], 640, 480, NAMES) == []
    # The class is mapped by name into the current model's classes, not by the stored id.
    assert yolo_label_lines([_box([0, 0, 64, 48], "Fall")], 640, 480, ["Fall", "Normal"]) == [
        "0 0.050000 0.050000 0.100000 0.100000"
    ]
    bicycle = ReviewedBox(bbox_xyxy=(0, 0, 5, 5), class_id=0, class_name="bicycle")
    with pytest.raises(UnknownClassError, match="'bicycle'"):
        yolo_label_lines([bicycle], 640, 480, NAMES)
    with pytest.raises(ValueError, match="frame size"):
        yolo_label_lines([], 0, 480, NAMES)


def test_image_stem_round_trips_frame_keys():
    for key in ["cam-a:1717243200:00001", "cam_b.2:x", "a%3Ab:c"]:
        assert frame_key_of(image_stem(key)) == key
        assert ":" not in image_stem(key)


def test_dvc_repo_versions_datasets_and_checks_out_old_ones(tmp_path):
    frames = labeled_frames(tmp_path, 14)
    repo = DatasetRepo(tmp_path / "datasets", tmp_path / "dvc-remote")
    repo.init()
    repo.init()  # idempotent

    build1 = repo.stage(frames[:10], NAMES)
    v1 = repo.commit_version(build1, message="first ten")
    assert v1.version == "v1" and v1.label_count == 10 and v1.new_frames == 10
    assert v1.dvc_md5 == build1.manifest_md5 and v1.root == repo.dataset_dir
    assert sorted(v1.train_frames + v1.val_frames) == sorted(f.frame_key for f in frames[:10])
    assert not set(v1.train_frames) & set(v1.val_frames)
    data = yaml.safe_load(v1.data_yaml.read_text())
    # No absolute path: ultralytics reads the folder data.yaml is in (a moved folder works).
    assert "path" not in data and data["names"] == {0: "Normal", 1: "Fall"}
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    negative = (
        repo.dataset_dir
        / "labels"
        / ("val" if "cam-a:0" in v1.val_frames else "train")
        / "cam-a%3A0.txt"
    )
    assert negative.read_text() == ""  # a no_object frame is an image with an empty label file
    assert (repo.dataset_dir / MANIFEST).read_text() == (repo.root / MANIFEST).read_text()

    same = repo.commit_version(repo.stage(frames[:10], NAMES), message="again")
    assert same == v1  # unchanged labels: no new version

    v2 = repo.commit_version(repo.stage(frames, NAMES), message="more")
    assert v2.version == "v2" and v2.label_count == 14 and v2.dvc_md5 != v1.dvc_md5
    assert v2.new_frames == 4
    for key in v1.val_frames:  # the held-out set only grows
        assert key in v2.val_frames
    assert [v.version for v in repo.versions()] == ["v1", "v2"]
    assert any((tmp_path / "dvc-remote").rglob("*")), "dvc push left the remote empty"
    # The remote is named relative to .dvc/ (DVC's rule), so it moves with the folder.
    assert "url = ../../dvc-remote\n" in (repo.root / ".dvc" / "config").read_text()

    old = repo.checkout("v1")
    assert old == v1
    images = list((repo.dataset_dir / "images").rglob("*.jpg"))
    assert len(images) == 10
    git = ["git", "-C", str(repo.root)]
    tags = subprocess.run([*git, "tag"], capture_output=True, text=True).stdout.split()
    assert tags == ["v1", "v2"]
    branch = subprocess.run(
        [*git, "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert branch == "main"  # a checkout materialises; it does not move the data repo
    with pytest.raises(DatasetRepoError, match="no dataset version 'v9'"):
        repo.checkout("v9")

    # an unchanged v2 build is recognised, not re-committed, and restores v2's folder
    again = repo.commit_version(repo.stage(frames, NAMES), message="x")
    assert again.version == "v2"
    assert len(list((repo.dataset_dir / "images").rglob("*.jpg"))) == 14
