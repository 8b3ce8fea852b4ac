"""Dataset versions as manifests over a content-addressed frame store (issue 9, item 5):
the manifest round trip, incremental versions that store only new JPEGs, checkouts of
old versions (byte for byte, also from the DVC remote alone), stable splits, the CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import cv2
import pytest
import yaml
from support import SAMPLES_DIR, require
from typer.testing import CliRunner

from edgeloop.annotations import ReviewedBox
from edgeloop.cli.app import app
from edgeloop.datasets import (
    MANIFEST,
    DatasetRepo,
    DatasetRepoError,
    LabeledFrame,
    build_manifest,
    materialised,
    md5_text,
    parse_manifest,
    verify_materialised,
)
from edgeloop.settings import LoopSettings

NAMES = ["Normal", "Fall"]


def _frames(folder: Path, count: int, *, start: int = 0, boxes: int = 1) -> list[LabeledFrame]:
    """``count`` real vtest.avi frames as JPEGs (distinct content), labeled with ``boxes``
    boxes each (every 4th a no_object frame)."""
    cap = cv2.VideoCapture(str(require(SAMPLES_DIR / "vtest.avi")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        ok, image = cap.read()
        assert ok
        path = folder / f"{i}.jpg"
        cv2.imwrite(str(path), image)
        box = ReviewedBox(bbox_xyxy=(100, 100, 200 + i, 400), class_id=0, class_name="Normal")
        frames.append(
            LabeledFrame(
                frame_key=f"cam-a:{i}",
                camera_id="cam-a" if i % 2 else "cam-b",
                jpeg_path=path,
                width=768,
                height=576,
                boxes=[] if i % 4 == 0 else [box] * boxes,
                labeled_at_iso=f"2025-06-01T12:{i // 60:02d}:{i % 60:02d}.000000Z",
                label_id=i + 1,
            )
        )
    cap.release()
    return frames


def _relabel(frame: LabeledFrame, boxes: int) -> LabeledFrame:
    box = ReviewedBox(bbox_xyxy=(10, 10, 90, 90), class_id=1, class_name="Fall")
    return LabeledFrame(**{**frame.__dict__, "boxes": [box] * boxes, "label_id": 999})


def _tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` but ``data.yaml`` (which names the folder)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "data.yaml"
    }


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_manifest_round_trips_byte_for_byte(tmp_path):
    frames = _frames(tmp_path / "src", 6, boxes=2)
    built = build_manifest(frames, NAMES, objects_root=tmp_path / "objects", pack="v1")
    text = built.manifest.to_text()
    parsed = parse_manifest(text)
    assert parsed == built.manifest and parsed.to_text() == text
    entry = parsed.entries[1]
    assert entry.sha256 == hashlib.sha256(frames[1].jpeg_path.read_bytes()).hexdigest()
    assert (tmp_path / "objects" / entry.object).read_bytes() == frames[1].jpeg_path.read_bytes()
    assert entry.object == f"v1/{entry.sha256[:2]}/{entry.sha256}.jpg"
    assert len(entry.labels) == 2 and entry.label_text.count("\n") == 2
    assert entry.label_sha256 == hashlib.sha256(entry.label_text.encode()).hexdigest()
    assert parsed.boxes_per_class() == {"Normal": 2 * 4, "Fall": 0}  # frames 1, 2, 3, 5
    # deterministic: the same labels give the same bytes (and the same version md5)
    again = build_manifest(
        frames, NAMES, objects_root=tmp_path / "objects", pack="v2", previous=parsed
    )
    assert again.manifest.to_text() == text and (again.new_objects, again.new_frames) == (0, 0)
    with pytest.raises(ValueError, match="format-2"):
        parse_manifest('{"frames": [], "class_names": []}')  # a copied-folder manifest


def test_a_new_version_stores_and_hashes_only_new_frames(tmp_path):
    frames = _frames(tmp_path / "src", 12)
    repo = DatasetRepo(tmp_path / "datasets", tmp_path / "remote")
    b1 = repo.stage(frames, NAMES)
    v1 = repo.commit_version(b1, message="v1")
    assert (b1.new_objects, b1.hashed, b1.pack) == (12, 12, "v1")
    assert b1.bytes_added == sum(f.jpeg_path.stat().st_size for f in frames)
    assert len(_files(repo.objects_dir / "v1")) == 12
    remote_v1 = len(_files(tmp_path / "remote"))
    v1_dvc = (repo.objects_dir / "v1.dvc").read_text()

    new = _frames(tmp_path / "src", 2, start=12)
    duplicate = LabeledFrame(**{**new[0].__dict__, "frame_key": "cam-c:dup", "camera_id": "cam-c"})
    b2 = repo.stage([*frames[:11], _relabel(frames[11], 1), *new, duplicate], NAMES)
    v2 = repo.commit_version(b2, message="v2")
    # only the two new JPEGs were read and stored; the duplicate content is stored once
    assert (b2.hashed, b2.new_objects, b2.new_frames, b2.pack) == (3, 2, 3, "v2")
    assert b2.bytes_added == sum(f.jpeg_path.stat().st_size for f in new)
    assert v2.new_frames == 3 and v2.bytes_added == b2.bytes_added
    assert len(_files(repo.objects_dir / "v2")) == 2
    assert len(_files(tmp_path / "remote")) == remote_v1 + 3  # 2 objects + the pack listing
    assert (repo.objects_dir / "v1.dvc").read_text() == v1_dvc  # old packs never change
    entries = {e.frame_key: e for e in b2.manifest.entries}
    assert entries["cam-c:dup"].object == entries[new[0].frame_key].object
    assert b2.linked == 3  # the working copy was updated in place: only new images linked
    assert verify_materialised(b2.manifest, repo.dataset_dir) == []
    assert v1.version == "v1" and v2.version == "v2"

    # a touched source (new mtime) is hashed again but stores nothing: same content
    os.utime(frames[0].jpeg_path, ns=(1, 1))
    b3 = repo.stage([*frames, *new], NAMES)
    assert (b3.hashed, b3.new_objects, b3.pack) == (1, 0, None)
    # without the hash cache every frame is read again, and still nothing is stored twice
    (repo.root / ".hash-cache.json").unlink()
    b4 = repo.stage([*frames, *new], NAMES)
    assert (b4.hashed, b4.new_objects) == (14, 0)
    assert repo.commit_version(b4, message="v3").new_frames == 0


def test_checkout_reproduces_an_old_version_after_newer_ones(tmp_path, loop_settings):
    repo = DatasetRepo.from_settings(loop_settings)
    frames = _frames(tmp_path / "src", 10)
    v1 = repo.commit_version(repo.stage(frames, NAMES), message="v1")
    v1_files = _tree_hashes(repo.dataset_dir)
    assert len(v1_files) == 2 * 10 + 1  # images, labels, manifest

    more = _frames(tmp_path / "src", 4, start=10)
    changed = [_relabel(frames[1], 2), _relabel(frames[2], 0)]
    repo.commit_version(repo.stage([frames[0], *changed, *frames[3:], *more], NAMES), message="v2")
    v3 = repo.commit_version(repo.stage([*frames[1:], *more], NAMES), message="v3")  # drops one
    assert _tree_hashes(repo.dataset_dir) != v1_files

    out = tmp_path / "out" / "v1"
    old = repo.checkout("v1", out, verify=True)
    assert _tree_hashes(out) == v1_files
    assert old.root == out and old.train_frames == v1.train_frames and old.dvc_md5 == v1.dvc_md5
    # data.yaml names no folder: ultralytics reads the images beside it, wherever it is.
    assert "path" not in yaml.safe_load(old.data_yaml.read_text())
    from ultralytics.data.utils import check_det_dataset

    assert check_det_dataset(str(old.data_yaml))["val"] == str(out.resolve() / "images" / "val")
    assert md5_text((out / MANIFEST).read_text()) == v1.dvc_md5

    # into the working copy that holds v3: updated in place to exactly v1
    repo.checkout("v1")
    assert _tree_hashes(repo.dataset_dir) == v1_files
    # training asks for v3: its folder is put back
    assert materialised(v3) == v3
    assert md5_text((repo.dataset_dir / MANIFEST).read_text()) == v3.dvc_md5
    assert verify_materialised(repo.manifest_at("v3"), repo.dataset_dir) == []

    # a machine with only the remote: no pack in the workspace, an empty DVC cache
    shutil.rmtree(repo.objects_dir / "v1")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    runner = CliRunner()
    result = runner.invoke(app, ["dataset", "checkout", "v1", "--verify"])
    assert result.exit_code == 0, result.output
    assert _tree_hashes(repo.root / "checkouts" / "v1") == v1_files
    listing = runner.invoke(app, ["dataset", "list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and all(f"v{i}" in listing.output for i in (1, 2, 3))
    missing = runner.invoke(app, ["dataset", "checkout", "v7"])
    assert missing.exit_code == 1 and "no dataset version 'v7'" in missing.output

    # verify catches a file that differs from the manifest
    label = next((out / "labels" / "train").glob("*.txt"))
    label.write_text("0 0.5 0.5 0.1 0.1\n")
    assert verify_materialised(repo.manifest_at("v1"), out) == [f"labels/train/{label.name}"]
    with pytest.raises(DatasetRepoError, match="no dataset version"):
        repo.checkout("v0")


def test_a_frame_keeps_its_split_across_versions(tmp_path):
    repo = DatasetRepo(tmp_path / "datasets", tmp_path / "remote")
    frames = _frames(tmp_path / "src", 40)
    v1 = repo.commit_version(repo.stage(frames[:25], NAMES), message="v1")
    v2 = repo.commit_version(repo.stage(frames, NAMES), message="v2")
    assert v1.val_frames and v1.train_frames
    assert set(v1.val_frames) <= set(v2.val_frames)  # the held-out set only grows
    assert set(v1.train_frames) <= set(v2.train_frames)
    assert not set(v2.train_frames) & set(v2.val_frames)
    split = {e.frame_key: e.split for e in repo.manifest_at("v2").entries}
    for path in (repo.dataset_dir / "images" / "val").glob("*.jpg"):
        assert split[path.stem.replace("%3A", ":")] == "val"


def test_stage_refuses_a_commit_after_another_version(tmp_path):
    repo = DatasetRepo(tmp_path / "datasets", tmp_path / "remote")
    frames = _frames(tmp_path / "src", 8)
    stale = repo.stage(frames[:6], NAMES)
    repo.commit_version(repo.stage(frames[:7], NAMES), message="v1")
    with pytest.raises(DatasetRepoError, match="stage again"):
        repo.commit_version(stale, message="late")


def test_cli_checkout_without_a_repo_says_so(tmp_path, loop_settings: LoopSettings):
    result = CliRunner().invoke(app, ["dataset", "list"])
    assert result.exit_code == 1 and "no dataset versions" in result.output


def test_versions_are_packed_once_loose_objects_pass_the_limit(tmp_path, monkeypatch):
    import edgeloop.datasets.repo as dataset_repo

    frames = _frames(tmp_path / "src", 8)
    repo = DatasetRepo(tmp_path / "datasets", tmp_path / "remote")
    repo.commit_version(repo.stage(frames[:6], NAMES), message="v1")
    loose = repo.loose_kib()
    assert loose > 0  # a small repo stays loose: under the default limit
    monkeypatch.setattr(dataset_repo, "LOOSE_LIMIT_KIB", 0)
    repo.commit_version(repo.stage(frames, NAMES), message="v2")
    # Both versions' objects are packed (git leaves an unreferenced empty blob loose).
    assert repo.loose_kib() < loose / 4
    assert len(repo.manifest_at("v1").entries) == 6
    assert len(repo.manifest_at("v2").entries) == 8


def test_a_failed_repack_does_not_fail_the_committed_version(tmp_path, monkeypatch, caplog):
    import edgeloop.datasets.repo as dataset_repo

    frames = _frames(tmp_path / "src", 4)
    repo = DatasetRepo(tmp_path / "datasets", tmp_path / "remote")
    monkeypatch.setattr(dataset_repo, "LOOSE_LIMIT_KIB", 0)
    # A file where git's pack folder should be makes the real git repack fail (as a full
    # disk would); the folder is put back after.
    pack_dir = repo.root / ".git" / "objects" / "pack"
    real_git = repo._git

    def git(*args: str) -> str:
        if args[0] != "repack":
            return real_git(*args)
        pack_dir.rename(pack_dir.with_name("pack.moved"))
        pack_dir.write_text("not a folder")
        try:
            return real_git(*args)
        finally:
            pack_dir.unlink()
            pack_dir.with_name("pack.moved").rename(pack_dir)

    monkeypatch.setattr(repo, "_git", git)
    version = repo.commit_version(repo.stage(frames, NAMES), message="v1")
    assert version.version == "v1" and repo.versions()[-1].version == "v1"
    assert "could not repack" in caplog.text
