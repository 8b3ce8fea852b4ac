"""The working copy of a dataset version: the folder ultralytics reads, materialised from
a manifest with hardlinks into the content-addressed object store.

Its layout: ``images/{train,val}/<stem>.jpg`` (hardlinks into ``objects/``),
``labels/{train,val}/<stem>.txt`` (YOLO label lines), ``data.yaml`` and ``manifest.json``.
``materialise`` writes it (only what changed when it holds another version), and
``verify_materialised`` checks it against the manifest by sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from edgeloop.datasets.frames import MANIFEST
from edgeloop.datasets.manifest import Manifest, ManifestEntry, parse_manifest


def _link_or_copy(source: Path, target: Path) -> None:
    """Hardlink ``target`` to ``source``; a copy where links are impossible (another
    filesystem, a link limit). An existing ``target`` is unlinked first, never written
    through: it may be a hardlink into the object store."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _current_manifest(target: Path, known: Sequence[Manifest]) -> Manifest | None:
    """The manifest a folder was materialised from (one of ``known`` when its text matches,
    which saves parsing it), if the folder's file counts still match it."""
    try:
        text = (target / MANIFEST).read_text()
        current = next((m for m in known if m.to_text() == text), None) or parse_manifest(text)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for split in ("train", "val"):
        expected = sum(e.split == split for e in current.entries)
        for kind in ("images", "labels"):
            folder = target / kind / split
            if not folder.is_dir() or sum(1 for _ in os.scandir(folder)) != expected:
                return None
    return current


def write_data_yaml(folder: Path, class_names: Sequence[str]) -> Path:
    """Write ``folder/data.yaml``: ``train``/``val`` image folders and class ``names``, and
    no ``path``: ultralytics then takes the folder the file is in as the dataset root
    (``ultralytics.data.utils.check_det_dataset``), so a copied or moved folder trains on
    its own images and writes its label caches beside them, never in the original."""
    import yaml

    data_yaml = {
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(class_names)),
    }
    path = folder / "data.yaml"
    path.write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    return path


def names_another_folder(data_yaml: Path) -> bool:
    """Whether ``data_yaml`` (written by an older edgeloop) sets ``path`` to a folder other
    than its own: the dataset root of a data folder that was copied or moved since."""
    import yaml

    try:
        root = yaml.safe_load(data_yaml.read_text()).get("path")
    except (OSError, AttributeError, yaml.YAMLError):
        return False
    return root is not None and Path(root).resolve() != data_yaml.parent.resolve()


def materialise(
    manifest: Manifest, objects_root: Path, target: Path, *, known: Sequence[Manifest] = ()
) -> int:
    """Write ``target`` as ultralytics reads it: ``images/{split}/<stem>.jpg`` hardlinked
    to the object store (copies across filesystems), ``labels/{split}/<stem>.txt``,
    ``data.yaml`` (``write_data_yaml``) and ``manifest.json``.

    When ``target`` holds another manifest's intact folder (same file counts), only the
    frames that differ are unlinked and relinked, and ``manifest.json`` is removed first
    and written last, so an interrupted update is never mistaken for a finished one.
    Otherwise the folder is built beside ``target`` and swapped in.

    Args:
        known: manifests the caller holds (e.g. the previous version's), matched by text
            against the folder's instead of parsing it again.

    Returns:
        the image files linked (or copied).

    Raises:
        FileNotFoundError: an object of the manifest is not in the store (pull its pack).
    """
    target = Path(target)
    current = _current_manifest(target, known) if target.is_dir() else None
    if current is None:
        work = target.with_name(f".{target.name}.partial")
        shutil.rmtree(work, ignore_errors=True)
        old: dict[str, ManifestEntry] = {}
    else:
        work = target
        (target / MANIFEST).unlink()
        old = {e.frame_key: e for e in current.entries}
    for kind in ("images", "labels"):
        for split in ("train", "val"):
            (work / kind / split).mkdir(parents=True, exist_ok=True)
    new = {e.frame_key: e for e in manifest.entries}
    for key, was in old.items():
        now = new.get(key)
        if now is None or (now.split, now.sha256) != (was.split, was.sha256):
            (work / "images" / was.split / f"{was.stem}.jpg").unlink(missing_ok=True)
        if now is None or (now.split, now.labels) != (was.split, was.labels):
            (work / "labels" / was.split / f"{was.stem}.txt").unlink(missing_ok=True)
    linked = 0
    for key, entry in new.items():
        prior = old.get(key)
        if prior is None or (entry.split, entry.sha256) != (prior.split, prior.sha256):
            image = work / "images" / entry.split / f"{entry.stem}.jpg"
            _link_or_copy(objects_root / entry.object, image)
            linked += 1
        if prior is None or (entry.split, entry.labels) != (prior.split, prior.labels):
            (work / "labels" / entry.split / f"{entry.stem}.txt").write_text(entry.label_text)
    write_data_yaml(work, manifest.class_names)
    (work / MANIFEST).write_text(manifest.to_text())
    if work != target:
        old_dir = target.with_name(f".{target.name}.old")
        shutil.rmtree(old_dir, ignore_errors=True)
        if target.exists():
            target.rename(old_dir)
        work.rename(target)
        shutil.rmtree(old_dir, ignore_errors=True)
    return linked


def verify_materialised(manifest: Manifest, root: Path) -> list[str]:
    """Files under ``root`` whose sha256 differs from ``manifest`` (images and labels),
    as ``split/name`` paths; empty when the folder is exactly the version."""
    bad: list[str] = []
    for entry in manifest.entries:
        for kind, ext, expected in (
            ("images", "jpg", entry.sha256),
            ("labels", "txt", entry.label_sha256),
        ):
            path = root / kind / entry.split / f"{entry.stem}.{ext}"
            try:
                actual = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                actual = ""
            if actual != expected:
                bad.append(f"{kind}/{entry.split}/{path.name}")
    return bad
