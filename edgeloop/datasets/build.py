"""A staged dataset build (``DatasetBuild``) and the version summary it commits.

The summary is ``dataset.json`` at the data repo's root (git-tracked, one a version):
classes, splits, counts, packs and the manifest's md5. ``DatasetBuild.summary_text``
writes it; ``version_from_summary`` reads it back as the ``DatasetVersion`` training uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeloop.datasets.frames import DatasetVersion
from edgeloop.datasets.manifest import Manifest


@dataclass(frozen=True)
class DatasetBuild:
    """What ``DatasetRepo.stage`` wrote: the manifest (at the repo root), the working copy
    ``root`` materialised from it, and what the build cost.

    Attributes:
        pack: the object-store pack holding this build's new JPEGs (``None``: no new JPEG).
        new_frames / new_objects / bytes_added / hashed: see
            ``edgeloop.datasets.manifest.ManifestBuild``.
        linked: images linked into ``root`` (only the changed ones when ``root`` held the
            previous version).
    """

    root: Path
    data_yaml: Path
    manifest: Manifest
    manifest_md5: str
    version: str
    pack: str | None
    missing_images: list[str] = field(default_factory=list)
    new_frames: int = 0
    new_objects: int = 0
    bytes_added: int = 0
    hashed: int = 0
    linked: int = 0

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def label_count(self) -> int:
        return len(self.manifest.entries)

    @property
    def label_cutoff_iso(self) -> str:
        return self.manifest.label_cutoff

    def summary_text(self) -> str:
        """The version summary (``dataset.json``) of this build, as JSON text: classes,
        label cutoff and count, boxes per class, train/val frame keys, the manifest's md5,
        its packs, and what the build added (frames, objects, bytes)."""
        manifest = self.manifest
        summary = {
            "class_names": manifest.class_names,
            "label_cutoff": manifest.label_cutoff,
            "label_count": len(manifest.entries),
            "boxes_per_class": manifest.boxes_per_class(),
            "train_frames": manifest.frames("train"),
            "val_frames": manifest.frames("val"),
            "manifest_md5": self.manifest_md5,
            "packs": manifest.packs(),
            "new_frames": self.new_frames,
            "new_objects": self.new_objects,
            "bytes_added": self.bytes_added,
        }
        return json.dumps(summary, indent=1, sort_keys=True)


def version_from_summary(
    tag: str,
    summary: Mapping[str, Any],
    *,
    root: Path,
    dvc_md5: str,
    git_commit: str,
    repo_root: Path,
) -> DatasetVersion:
    """The ``DatasetVersion`` a version summary (``dataset.json``, parsed) describes.

    Args:
        tag: the version, e.g. ``v3``.
        root: the folder the version is (or will be) materialised in.
        dvc_md5: the version's content address (the manifest's md5).
        git_commit: the data repo's commit tagged ``tag``.
        repo_root: the data repo.

    Raises:
        KeyError: the summary lacks a field every version has (classes, splits, cutoff, count).
    """
    return DatasetVersion(
        version=tag,
        data_yaml=root / "data.yaml",
        root=root,
        dvc_md5=dvc_md5,
        git_commit=git_commit,
        class_names=list(summary["class_names"]),
        train_frames=list(summary["train_frames"]),
        val_frames=list(summary["val_frames"]),
        label_cutoff_iso=str(summary["label_cutoff"]),
        label_count=int(summary["label_count"]),
        new_frames=int(summary.get("new_frames", 0)),
        bytes_added=int(summary.get("bytes_added", 0)),
        repo_root=repo_root,
    )
