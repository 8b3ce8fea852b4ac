"""A dataset's frames and the rules that place them: ``DatasetVersion`` (one versioned
dataset, what ``training_dataset`` hands to training), ``LabeledFrame``, ``split_for`` (a
stable train/val split by a hash of the frame key), ``image_stem`` / ``frame_key_of``,
``yolo_label_lines`` (reviewed boxes, xyxy px -> YOLO ``class cx cy w h`` in [0, 1]), and
the names of the data repo's files (``edgeloop.datasets.repo``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.annotations import ReviewedBox

logger = logging.getLogger(__name__)

DATASET_DIR = "yolo"
"""The working copy training reads, inside the data repo (git-ignored, rebuilt from a manifest)."""
OBJECTS_DIR = "objects"
"""The content-addressed frame store in the data repo: ``objects/<pack>/<sha[:2]>/<sha256>.jpg``."""
MANIFEST = "manifest.json"
"""The version's manifest: at the data repo's root (git) and in every materialised folder."""
VERSION_FILE = "dataset.json"
"""Git-tracked summary at the data repo's root: classes, splits, counts, packs, manifest md5."""
MANIFEST_FORMAT = 2
"""Format of ``manifest.json`` (1 was the copied-folder layout, which had no object store)."""
VAL_FRACTION = 0.2
"""Share of frames held out for validation (the held-out set promotion is judged on)."""


@dataclass(frozen=True)
class DatasetVersion:
    """One versioned YOLO dataset, as ``training_dataset`` produces it.

    Attributes:
        version: the dataset version, e.g. ``v3`` (a git tag in the data repo).
        data_yaml: ultralytics data file (absolute path) with ``train``/``val`` folders and ``names``.
        root: the materialised folder (``images/{train,val}``, ``labels/{train,val}``,
            ``manifest.json``).
        dvc_md5: the version's content address: md5 of its ``manifest.json`` (DVC's file
            hash), which pins every image by sha256 and every label file's text.
        git_commit: commit of the data repo holding the manifest.
        class_names: index -> class name, the model's classes.
        train_frames / val_frames: frame_keys in each split (disjoint; val is the held-out set).
        label_cutoff_iso: ``labeled_at`` of the newest label included (ISO 8601, UTC).
        label_count: reviewed labels (frames) included.
        new_frames: frames this version added over the previous one.
        bytes_added: bytes of JPEG this version added to the object store (new objects only).
        repo_root: the data repo it came from (``None`` for a folder no repo versioned), so
            ``edgeloop.datasets.materialised`` can rebuild ``root`` when it has changed.
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
    new_frames: int = 0
    bytes_added: int = 0
    repo_root: Path | None = None


class UnknownClassError(ValueError):
    """A reviewed label names a class the production model does not have."""


@dataclass(frozen=True)
class LabeledFrame:
    """One reviewed frame, ready to become a dataset image.

    Attributes:
        jpeg_path: the frame JPEG on this machine (``LoopSettings.data_path`` of ``frames.jpeg_path``).
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
