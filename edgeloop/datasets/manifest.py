"""A dataset version's manifest: ``build_manifest`` turns reviewed labels into a
``Manifest`` over the content-addressed object store (``materialise`` in
``edgeloop.datasets.working_copy`` turns it into the folder ultralytics reads).

The manifest (``manifest.json``) lists, for every frame, its key, camera, split, the
sha256 of its JPEG and where that JPEG lives in the object store, and its YOLO label
lines (``class cx cy w h`` normalised to [0, 1]). The frames, splits and label rules are
in ``edgeloop.datasets.frames``; the folder written from a manifest is
``edgeloop.datasets.working_copy``; versioning (git + DVC) is ``edgeloop.datasets.repo``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from edgeloop.datasets.frames import (
    MANIFEST_FORMAT,
    VAL_FRACTION,
    LabeledFrame,
    image_stem,
    split_for,
    yolo_label_lines,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestEntry:
    """One frame of a dataset version.

    Attributes:
        sha256: hex sha256 of the frame's JPEG bytes (its content address).
        size: the JPEG's size, bytes.
        object: where the JPEG lives, relative to the object store (``<pack>/<sha[:2]>/<sha>.jpg``).
        labels: YOLO label lines ``class cx cy w h`` (normalised, 6 decimals); empty for a
            negative (``no_object``) frame.
        label_sha256: hex sha256 of the label file's text (``label_text``).
        labeled_at: when the label was given, ISO 8601 UTC.
        tags: the tags on the frame and its detections (``edgeloop.store.tags``: people's
            and the loop's suggestions), sorted; left out of the text when there are none,
            so a version without tags reads as before.
    """

    frame_key: str
    camera_id: str
    split: str
    sha256: str
    size: int
    object: str
    labels: tuple[str, ...]
    label_sha256: str
    label_id: int
    labeled_at: str
    tags: tuple[str, ...] = ()

    @property
    def label_text(self) -> str:
        """The label file's content: one line per box, each ending in a newline."""
        return "".join(f"{line}\n" for line in self.labels)

    @property
    def stem(self) -> str:
        return image_stem(self.frame_key)


@dataclass(frozen=True)
class Manifest:
    """A dataset version's content: classes and frames (sorted by ``frame_key``).

    ``to_text`` is deterministic (no timestamps, sorted keys), so the same labels and
    objects give the same bytes and the same md5; ``parse_manifest`` reads it back.
    """

    class_names: list[str]
    entries: list[ManifestEntry]

    @property
    def label_cutoff(self) -> str:
        return max((e.labeled_at for e in self.entries), default="")

    def frames(self, split: str) -> list[str]:
        return [e.frame_key for e in self.entries if e.split == split]

    def boxes_per_class(self) -> dict[str, int]:
        counts = dict.fromkeys(self.class_names, 0)
        for entry in self.entries:
            for line in entry.labels:
                counts[self.class_names[int(line.split(" ", 1)[0])]] += 1
        return counts

    def packs(self) -> list[str]:
        """The object-store packs this version's JPEGs live in."""
        return sorted({e.object.split("/", 1)[0] for e in self.entries})

    def to_text(self) -> str:
        """JSON with one frame per line (small git diffs between versions); computed once."""
        return self._text

    @cached_property
    def _text(self) -> str:
        header = {
            "format": MANIFEST_FORMAT,
            "class_names": self.class_names,
            "label_cutoff": self.label_cutoff,
            "label_count": len(self.entries),
            "boxes_per_class": self.boxes_per_class(),
        }
        head = json.dumps(header, sort_keys=True, separators=(",", ":"))
        lines = [
            json.dumps(
                {
                    **{k: v for k, v in e.__dict__.items() if k != "tags" or v},
                    **({"tags": list(e.tags)} if e.tags else {}),
                    "labels": list(e.labels),
                    "boxes": len(e.labels),
                },
                sort_keys=True,
                separators=(",", ":"),
            )
            for e in self.entries
        ]
        return head[:-1] + ',"frames":[\n' + ",\n".join(lines) + "\n]}\n"


def parse_manifest(text: str) -> Manifest:
    """Inverse of ``Manifest.to_text`` (whose result, for the parsed manifest, is ``text``).

    Raises:
        ValueError: not a format-2 manifest (e.g. a folder of the copied-JPEG layout).
    """
    data = json.loads(text)
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"not a format-{MANIFEST_FORMAT} dataset manifest")
    entries = [
        ManifestEntry(
            frame_key=str(e["frame_key"]),
            camera_id=str(e["camera_id"]),
            split=str(e["split"]),
            sha256=str(e["sha256"]),
            size=int(e["size"]),
            object=str(e["object"]),
            labels=tuple(str(line) for line in e["labels"]),
            label_sha256=str(e["label_sha256"]),
            label_id=int(e["label_id"]),
            labeled_at=str(e["labeled_at"]),
            tags=tuple(str(tag) for tag in e.get("tags", ())),
        )
        for e in data["frames"]
    ]
    manifest = Manifest(class_names=list(data["class_names"]), entries=entries)
    manifest.__dict__["_text"] = text  # its text is the one read: same bytes, same md5
    return manifest


def md5_text(text: str) -> str:
    """Hex md5 of ``text`` as UTF-8 (DVC's hash of a file with these bytes)."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def current_classes(
    frames: Sequence[LabeledFrame], class_map: Mapping[str, str | None]
) -> tuple[list[LabeledFrame], int]:
    """The frames with each box's class name mapped to the class's current name
    (``edgeloop.store.classes.name_map``: a renamed or merged class's labels take today's
    name; a retired class's boxes are left out). Stored labels are not touched: this is
    applied each time a dataset version is built, so a version built after a rename shows
    the new name and older versions stay as they were. A name not in ``class_map`` is kept
    (``yolo_label_lines`` refuses it when it is not a dataset class).

    Returns:
        The mapped frames (same order) and how many boxes were left out (retired classes).
    """
    mapped: list[LabeledFrame] = []
    dropped = 0
    for frame in frames:
        boxes = []
        for box in frame.boxes:
            name = class_map.get(box.class_name, box.class_name)
            if name is None:
                dropped += 1
            else:
                boxes.append(
                    box if name == box.class_name else box.model_copy(update={"class_name": name})
                )
        mapped.append(frame if boxes == list(frame.boxes) else replace(frame, boxes=boxes))
    return mapped, dropped


# ---------------------------------------------------------------------------------------
# Building a manifest from reviewed labels, incrementally
# ---------------------------------------------------------------------------------------

HashCache = dict[str, list[Any]]
"""frame_key -> ``[size, mtime_ns, sha256]`` of the source JPEG when it was last hashed."""


@dataclass
class ManifestBuild:
    """What ``build_manifest`` made: the manifest and what it cost.

    Attributes:
        missing_images: frame keys whose JPEG is not stored (left out).
        new_frames: frame keys not in the previous manifest.
        new_objects: JPEGs written to the pack (content not in the store before).
        bytes_added: their total size, bytes.
        hashed: source JPEGs read and hashed (the rest reused a hash from ``hash_cache``).
    """

    manifest: Manifest
    missing_images: list[str]
    new_frames: int
    new_objects: int
    bytes_added: int
    hashed: int
    hash_cache: HashCache


def build_manifest(
    frames: Sequence[LabeledFrame],
    class_names: Sequence[str],
    *,
    objects_root: Path,
    pack: str,
    previous: Manifest | None = None,
    hash_cache: Mapping[str, list[Any]] | None = None,
    val_fraction: float = VAL_FRACTION,
    tags: Mapping[str, Sequence[str]] | None = None,
) -> ManifestBuild:
    """A manifest of ``frames``; JPEGs not yet in the store are copied to
    ``objects_root/<pack>/<sha[:2]>/<sha256>.jpg``.

    A frame whose source JPEG has the size and mtime recorded in ``hash_cache`` and whose
    hash is in ``previous`` is not read again; any other frame is read and hashed once,
    and stored only if its content is new. Frames whose JPEG is missing are left out
    (``missing_images``). ``tags``: frame key -> its tags, exported with the version
    (``edgeloop.store.tags.of_dataset``).

    Raises:
        UnknownClassError: a label names a class the model does not have.
    """
    known = {e.sha256: e.object for e in previous.entries} if previous else {}
    previous_keys = {e.frame_key for e in previous.entries} if previous else set()
    cache: HashCache = dict(hash_cache or {})
    entries: list[ManifestEntry] = []
    missing: list[str] = []
    new_objects = bytes_added = hashed = 0
    for frame in sorted(frames, key=lambda f: f.frame_key):
        try:
            stat = frame.jpeg_path.stat()
        except OSError:
            missing.append(frame.frame_key)
            continue
        cached = cache.get(frame.frame_key)
        if cached and cached[:2] == [stat.st_size, stat.st_mtime_ns] and cached[2] in known:
            sha, size = str(cached[2]), stat.st_size
        else:
            data = frame.jpeg_path.read_bytes()
            sha, size = hashlib.sha256(data).hexdigest(), len(data)
            hashed += 1
            cache[frame.frame_key] = [stat.st_size, stat.st_mtime_ns, sha]
            if sha not in known:
                known[sha] = f"{pack}/{sha[:2]}/{sha}.jpg"
                path = objects_root / known[sha]
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():  # never write through a stored (cache-linked) object
                    path.write_bytes(data)
                new_objects += 1
                bytes_added += size
        lines = yolo_label_lines(frame.boxes, frame.width, frame.height, class_names)
        text = "".join(f"{line}\n" for line in lines)
        entries.append(
            ManifestEntry(
                frame_key=frame.frame_key,
                camera_id=frame.camera_id,
                split=split_for(frame.frame_key, val_fraction),
                sha256=sha,
                size=size,
                object=known[sha],
                labels=tuple(lines),
                label_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                label_id=frame.label_id,
                labeled_at=frame.labeled_at_iso,
                tags=tuple(sorted(set((tags or {}).get(frame.frame_key, ())))),
            )
        )
    if missing:
        logger.warning(
            "%s labeled frames have no stored JPEG and were left out: %s",
            len(missing),
            ", ".join(missing[:10]),
        )
    return ManifestBuild(
        manifest=Manifest(class_names=list(class_names), entries=entries),
        missing_images=missing,
        new_frames=sum(e.frame_key not in previous_keys for e in entries),
        new_objects=new_objects,
        bytes_added=bytes_added,
        hashed=hashed,
        hash_cache=cache,
    )
