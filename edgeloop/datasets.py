"""Labeled datasets in YOLO format, versioned with DVC in the data repo ``data/datasets``.

- ``DatasetVersion``: one versioned dataset, what ``training_dataset`` hands to training.
- ``build_yolo_dataset``: reviewed labels (xyxy px) -> ``images/``, ``labels/`` (YOLO
  ``class cx cy w h`` normalised to [0, 1]), ``data.yaml``, with a stable train/val split
  by a hash of the frame key (``split_for``).

The data repo that versions them is ``edgeloop.dataset_repo.DatasetRepo``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.annotations import ReviewedBox

if TYPE_CHECKING:
    from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetVersion:
    """One DVC-versioned YOLO dataset, as ``training_dataset`` produces it.

    Attributes:
        version: the dataset version, e.g. ``v3`` (a git tag in the data repo).
        data_yaml: ultralytics data file (absolute path) with ``train``/``val`` folders and ``names``.
        root: the dataset folder (``images/{train,val}``, ``labels/{train,val}``).
        dvc_md5: md5 DVC recorded for the folder (content address).
        git_commit: commit of the data repo holding the ``.dvc`` file.
        class_names: index -> class name, the model's classes.
        train_frames / val_frames: frame_keys in each split (disjoint; val is the held-out set).
        label_cutoff_iso: ``labeled_at`` of the newest label included (ISO 8601, UTC).
        label_count: reviewed labels (frames) included.
    """

    version: str
    data_yaml: Path
    root: Path
    dvc_md5: str
    git_commit: str
    class_names: list[str]
    train_frames: list[str] = field(default_factory=list)
    val_frames: list[str] = field(default_factory=list)
    label_cutoff_iso: str = ""
    label_count: int = 0


# ---------------------------------------------------------------------------------------
# Building a YOLO dataset from reviewed labels
# ---------------------------------------------------------------------------------------

DATASET_DIR = "yolo"
"""The DVC-tracked dataset folder inside the data repo (``yolo.dvc`` beside it)."""
MANIFEST = "manifest.json"
"""Inside the dataset folder: which frame went where, the classes, the label cutoff."""
VERSION_FILE = "dataset.json"
"""Git-tracked copy of the manifest at the data repo's root (readable per tag without DVC)."""
VAL_FRACTION = 0.2
"""Share of frames held out for validation (the held-out set promotion is judged on)."""


class UnknownClassError(ValueError):
    """A reviewed label names a class the production model does not have."""


@dataclass(frozen=True)
class LabeledFrame:
    """One reviewed frame, ready to become a dataset image.

    Attributes:
        jpeg_path: the stored frame JPEG (absolute, or relative to the working directory).
        width / height: the original frame's size in px — the coordinate system of ``boxes``.
        boxes: the reviewed boxes (xyxy px of the original frame); empty for a
            ``no_object`` frame.
        labeled_at_iso: when the label was given, ISO 8601 UTC.
    """

    frame_key: str
    camera_id: str
    jpeg_path: Path
    width: int
    height: int
    boxes: list[ReviewedBox]
    labeled_at_iso: str
    label_id: int = 0


@dataclass(frozen=True)
class DatasetBuild:
    """What ``build_yolo_dataset`` wrote (counts for the asset's metadata)."""

    root: Path
    data_yaml: Path
    class_names: list[str]
    train_frames: list[str]
    val_frames: list[str]
    boxes_per_class: dict[str, int]
    missing_images: list[str]
    label_cutoff_iso: str
    label_count: int


def split_for(frame_key: str, val_fraction: float = VAL_FRACTION) -> str:
    """``"val"`` or ``"train"`` for a frame, by a hash of its key: the same frame always
    lands in the same split, across dataset versions and machines, so a frame is never in
    both and the held-out set only grows.

    Args:
        frame_key: the frame's fleet-unique key.
        val_fraction: share of frames that go to val, in [0, 1].
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    digest = hashlib.sha256(frame_key.encode("utf-8")).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return "val" if unit < val_fraction else "train"


def image_stem(frame_key: str) -> str:
    """File stem for a frame: the key with ``:`` percent-encoded (``%3A``), reversible."""
    return frame_key.replace("%", "%25").replace(":", "%3A")


def frame_key_of(stem: str) -> str:
    """Inverse of ``image_stem``."""
    return stem.replace("%3A", ":").replace("%25", "%")


def yolo_label_lines(
    boxes: Sequence[ReviewedBox], width: int, height: int, class_names: Sequence[str]
) -> list[str]:
    """YOLO label lines ``class cx cy w h`` (normalised to [0, 1], 6 decimals) of reviewed boxes.

    The boxes were validated when they were labeled (inside the frame, at least 1 px:
    ``edgeloop.annotations.review_boxes``); the class comes from ``class_name`` (the
    labeler's choice), mapped to its index in the current model's ``class_names``.

    Args:
        boxes: reviewed boxes, xyxy px of the original frame.
        width / height: the frame size in px (the boxes' coordinate system).
        class_names: the model's classes, index = class id.

    Raises:
        UnknownClassError: a box names a class not in ``class_names``.
        ValueError: the frame size is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    index = {name: i for i, name in enumerate(class_names)}
    lines: list[str] = []
    for box in boxes:
        if box.class_name not in index:
            raise UnknownClassError(
                f"label class {box.class_name!r} is not a class of the production model "
                f"{list(class_names)}"
            )
        x1, y1, x2, y2 = box.bbox_xyxy
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        bw, bh = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{index[box.class_name]} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines


def build_yolo_dataset(
    frames: Sequence[LabeledFrame],
    target: Path,
    class_names: Sequence[str],
    *,
    val_fraction: float = VAL_FRACTION,
) -> DatasetBuild:
    """Write a YOLO dataset: ``images/{train,val}/<stem>.jpg``, ``labels/{train,val}/<stem>.txt``,
    ``data.yaml`` and ``manifest.json``, replacing ``target`` atomically (built beside it, then
    swapped in).

    A frame without boxes (``no_object``) gets an empty label file: a negative example.
    Frames whose JPEG is missing are skipped and listed in ``missing_images``.
    The output is deterministic for the same labels (no timestamps), so an unchanged
    label set gives the same DVC md5.

    Raises:
        UnknownClassError: a label names a class the model does not have.
    """
    import yaml

    target = Path(target)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for split in ("train", "val"):
        (staging / "images" / split).mkdir(parents=True)
        (staging / "labels" / split).mkdir(parents=True)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    boxes_per_class = dict.fromkeys(class_names, 0)
    missing: list[str] = []
    entries: list[dict[str, object]] = []
    cutoff = ""
    for frame in sorted(frames, key=lambda f: f.frame_key):
        if not frame.jpeg_path.is_file():
            missing.append(frame.frame_key)
            continue
        lines = yolo_label_lines(frame.boxes, frame.width, frame.height, class_names)
        for line in lines:
            boxes_per_class[class_names[int(line.split(" ", 1)[0])]] += 1
        split = split_for(frame.frame_key, val_fraction)
        stem = image_stem(frame.frame_key)
        shutil.copyfile(frame.jpeg_path, staging / "images" / split / f"{stem}.jpg")
        (staging / "labels" / split / f"{stem}.txt").write_text(
            "".join(f"{line}\n" for line in lines)
        )
        splits[split].append(frame.frame_key)
        cutoff = max(cutoff, frame.labeled_at_iso)
        entries.append(
            {
                "frame_key": frame.frame_key,
                "camera_id": frame.camera_id,
                "split": split,
                "boxes": len(lines),
                "label_id": frame.label_id,
                "labeled_at": frame.labeled_at_iso,
            }
        )
    if missing:
        logger.warning(
            "%s labeled frames have no stored JPEG and were left out: %s",
            len(missing),
            ", ".join(missing[:10]),
        )
    data_yaml = {
        "path": str(target.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(class_names)),
    }
    (staging / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    manifest = {
        "class_names": list(class_names),
        "label_cutoff": cutoff,
        "label_count": len(entries),
        "boxes_per_class": boxes_per_class,
        "train_frames": splits["train"],
        "val_frames": splits["val"],
        "frames": entries,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return DatasetBuild(
        root=target,
        data_yaml=target / "data.yaml",
        class_names=list(class_names),
        train_frames=splits["train"],
        val_frames=splits["val"],
        boxes_per_class=boxes_per_class,
        missing_images=missing,
        label_cutoff_iso=cutoff,
        label_count=len(entries),
    )


def resolve_frame_path(settings: LoopSettings, jpeg_path: str) -> Path:
    """Where a stored frame JPEG (``frames.jpeg_path``) lives on this machine.

    An absolute path is used as is; a relative one is tried against the working directory,
    then ``data_dir``, then ``frames_dir`` (the first that exists wins; else the first guess).
    """
    path = Path(jpeg_path)
    if path.is_absolute():
        return path
    for candidate in (path, settings.data_dir / path, settings.frames_dir / path):
        if candidate.exists():
            return candidate
    return settings.data_dir / path
