"""Labeled datasets in YOLO format, versioned with DVC in the data repo ``data/datasets``.

- ``DatasetVersion``: one versioned dataset, what ``training_dataset`` hands to training.
- ``build_yolo_dataset``: reviewed labels (xyxy px) -> ``images/``, ``labels/`` (YOLO
  ``class cx cy w h`` normalised to [0, 1]), ``data.yaml``, with a stable train/val split
  by a hash of the frame key (``split_for``).
- ``DatasetRepo``: the separate data repo (its own git, DVC, a local DVC remote under
  ``data/dvc-remote``): ``init``, ``commit_version`` (tag ``v<N>``), ``versions``, ``checkout``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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


class DatasetRepoError(RuntimeError):
    """A git or dvc command in the data repo failed; the message carries its output."""


@dataclass(frozen=True)
class LabeledFrame:
    """One reviewed frame, ready to become a dataset image.

    Attributes:
        jpeg_path: the stored frame JPEG (absolute, or relative to the working directory).
        width / height: the original frame's size in px — the coordinate system of ``boxes``.
        boxes: ``[{"bbox_xyxy": [x1, y1, x2, y2], "class_name": str, "class_id": int}, ...]``
            (px of the original frame); empty for a ``no_object`` frame.
        labeled_at_iso: when the label was given, ISO 8601 UTC.
    """

    frame_key: str
    camera_id: str
    jpeg_path: Path
    width: int
    height: int
    boxes: list[dict[str, object]]
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
    clipped_boxes: int
    dropped_boxes: int
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
    boxes: Sequence[Mapping[str, object]],
    width: int,
    height: int,
    class_names: Sequence[str],
) -> tuple[list[str], int, int]:
    """Convert xyxy pixel boxes to YOLO label lines ``class cx cy w h`` (normalised to [0, 1]).

    Boxes are clipped to the frame; a box with no area left (< 1 px wide or high) is dropped.
    The class comes from ``class_name`` (the labeler's choice), mapped to its index in
    ``class_names``; ``class_id`` is used only when no name is given.

    Args:
        boxes: ``[{"bbox_xyxy": [x1, y1, x2, y2], "class_name": str, "class_id": int}]``, px.
        width / height: the frame size in px (the boxes' coordinate system).
        class_names: the model's classes, index = class id.

    Returns:
        (lines, clipped, dropped): label lines with 6 decimals, boxes clipped, boxes dropped.

    Raises:
        UnknownClassError: a box names a class not in ``class_names``.
        ValueError: a box is malformed or the frame size is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    index = {name: i for i, name in enumerate(class_names)}
    lines: list[str] = []
    clipped = dropped = 0
    for box in boxes:
        raw = box.get("bbox_xyxy")
        if not isinstance(raw, list | tuple) or len(raw) != 4:
            raise ValueError(f"box needs bbox_xyxy [x1, y1, x2, y2], got {box!r}")
        x1, y1, x2, y2 = (float(v) for v in raw)
        name = box.get("class_name")
        if name is not None:
            if name not in index:
                raise UnknownClassError(
                    f"label class {name!r} is not a class of the production model {list(class_names)}"
                )
            class_id = index[str(name)]
        else:
            class_id = int(box.get("class_id", -1))  # type: ignore[call-overload]
            if not 0 <= class_id < len(class_names):
                raise UnknownClassError(
                    f"label class_id {class_id} is outside the model's {len(class_names)} classes"
                )
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            clipped += 1
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            dropped += 1
            continue
        cx, cy = (cx1 + cx2) / 2 / width, (cy1 + cy2) / 2 / height
        bw, bh = (cx2 - cx1) / width, (cy2 - cy1) / height
        lines.append(f"{class_id} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines, clipped, dropped


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
    clipped_total = dropped_total = 0
    missing: list[str] = []
    entries: list[dict[str, object]] = []
    cutoff = ""
    for frame in sorted(frames, key=lambda f: f.frame_key):
        if not frame.jpeg_path.is_file():
            missing.append(frame.frame_key)
            continue
        lines, clipped, dropped = yolo_label_lines(
            frame.boxes, frame.width, frame.height, class_names
        )
        clipped_total += clipped
        dropped_total += dropped
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
        clipped_boxes=clipped_total,
        dropped_boxes=dropped_total,
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


# ---------------------------------------------------------------------------------------
# The DVC data repository
# ---------------------------------------------------------------------------------------


class DatasetRepo:
    """The data repository ``data/datasets``: its own git, DVC, and a local DVC remote.

    Each dataset version is a git commit holding ``yolo.dvc`` (the folder's md5) and
    ``dataset.json`` (classes, splits, label cutoff), tagged ``v<N>``; the files themselves
    live in the DVC cache and are pushed to the remote. git and dvc run as subprocesses
    (``python -m dvc``), with analytics off.

    Args:
        root: the repository folder (created by ``init``).
        remote: the default DVC remote, a folder or any DVC remote URL.
        branch: the branch versions are committed on.
    """

    def __init__(self, root: Path, remote: Path | str, *, branch: str = "main") -> None:
        self.root = Path(root).resolve()
        self.remote = remote
        self.branch = branch

    @classmethod
    def from_settings(cls, settings: LoopSettings) -> DatasetRepo:
        """The repo at ``settings.datasets_repo`` with the remote ``settings.dvc_remote``."""
        return cls(settings.datasets_repo, settings.dvc_remote)

    @property
    def dataset_dir(self) -> Path:
        """The DVC-tracked YOLO folder; ``build_yolo_dataset`` writes here."""
        return self.root / DATASET_DIR

    # -------------------------------------------------------------- subprocess helpers
    def _run(self, *args: str) -> str:
        env = {
            **os.environ,
            "DVC_NO_ANALYTICS": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        logger.debug("data repo: %s", " ".join(args))
        proc = subprocess.run(
            list(args), cwd=self.root, env=env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tool = "dvc" if args[:3] == (sys.executable, "-m", "dvc") else args[0]
            raise DatasetRepoError(
                f"`{tool} {' '.join(args[3:] if tool == 'dvc' else args[1:])}` failed in "
                f"{self.root} (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout

    def _git(self, *args: str) -> str:
        return self._run("git", *args)

    def _dvc(self, *args: str) -> str:
        return self._run(sys.executable, "-m", "dvc", *args)

    # -------------------------------------------------------------- lifecycle
    def init(self) -> None:
        """Create the repo (git + DVC + default remote) if needed; idempotent.

        Also returns the working tree to ``branch`` after a ``checkout`` of an old version.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            self._git("init", "-q", "-b", self.branch)
            self._git("config", "user.name", "edgeloop")
            self._git("config", "user.email", "edgeloop@localhost")
            self._git("config", "commit.gpgsign", "false")
            self._git("config", "tag.gpgsign", "false")
        if not (self.root / ".dvc").exists():
            self._dvc("init", "-q")
            remote = self.remote
            if isinstance(remote, Path) or "://" not in str(remote):
                remote = Path(remote).resolve()
                remote.mkdir(parents=True, exist_ok=True)
            # Written directly (DVC's documented config file) rather than with three more
            # `dvc config` calls, each of which pays DVC's import time.
            with (self.root / ".dvc" / "config").open("a") as fh:
                fh.write(
                    "[core]\n    analytics = false\n    autostage = false\n    remote = local\n"
                    f"['remote \"local\"']\n    url = {remote}\n"
                )
            self._git("add", ".dvc", ".dvcignore")
            self._git("commit", "-q", "-m", "Initialise the edgeloop data repository")
            logger.info("initialised the DVC data repo %s (remote %s)", self.root, remote)
        head = self._git("rev-parse", "--abbrev-ref", "HEAD").strip()
        if head != self.branch:
            self._git("checkout", "-q", "-f", self.branch)

    def commit_version(self, build: DatasetBuild, *, message: str) -> DatasetVersion:
        """Version the dataset folder: ``dvc add``, git commit, tag ``v<N>``, ``dvc push``.

        When the folder's content equals the latest version's, nothing is committed and the
        latest version is returned.

        Args:
            build: what ``build_yolo_dataset`` wrote into ``dataset_dir``.
            message: the commit and tag message (e.g. the label cutoff and counts).

        Raises:
            ValueError: ``build`` was written somewhere else than ``dataset_dir``.
            DatasetRepoError: a git/dvc command failed.
        """
        if build.root.resolve() != self.dataset_dir:
            raise ValueError(f"build the dataset into {self.dataset_dir}, not {build.root}")
        self.init()
        self._dvc("add", "-q", DATASET_DIR)
        md5 = self._dvc_md5()
        existing = self.versions()
        if existing and existing[-1].dvc_md5 == md5:
            logger.info("dataset unchanged since %s (md5 %s)", existing[-1].version, md5)
            return existing[-1]
        version = f"v{max((_tag_number(v.version) for v in existing), default=0) + 1}"
        summary = json.loads((self.dataset_dir / MANIFEST).read_text())
        summary.pop("frames", None)
        (self.root / VERSION_FILE).write_text(json.dumps(summary, indent=1, sort_keys=True))
        self._git("add", f"{DATASET_DIR}.dvc", ".gitignore", VERSION_FILE)
        self._git("commit", "-q", "-m", f"Dataset {version}: {message}")
        self._git("tag", "-a", version, "-m", message)
        self._dvc("push", "-q")
        logger.info("dataset %s committed (md5 %s) and pushed", version, md5)
        return self._version_at(version)

    def _dvc_md5(self, ref: str | None = None) -> str:
        import yaml

        text = (
            self._git("show", f"{ref}:{DATASET_DIR}.dvc")
            if ref
            else (self.root / f"{DATASET_DIR}.dvc").read_text()
        )
        outs = yaml.safe_load(text)["outs"]
        return str(outs[0]["md5"])

    def _version_at(self, tag: str) -> DatasetVersion:
        summary = json.loads(self._git("show", f"{tag}:{VERSION_FILE}"))
        return DatasetVersion(
            version=tag,
            data_yaml=self.dataset_dir / "data.yaml",
            root=self.dataset_dir,
            dvc_md5=self._dvc_md5(tag),
            git_commit=self._git("rev-list", "-n", "1", tag).strip(),
            class_names=list(summary["class_names"]),
            train_frames=list(summary["train_frames"]),
            val_frames=list(summary["val_frames"]),
            label_cutoff_iso=str(summary["label_cutoff"]),
            label_count=int(summary["label_count"]),
        )

    def versions(self) -> list[DatasetVersion]:
        """Every version, oldest first (empty before the first ``commit_version``)."""
        if not (self.root / ".git").exists():
            return []
        tags = [t for t in self._git("tag", "--list", "v*").split() if _tag_number(t) > 0]
        return [self._version_at(t) for t in sorted(tags, key=_tag_number)]

    def checkout(self, version: str) -> DatasetVersion:
        """Put ``version``'s files in ``dataset_dir`` (git checkout of its tag, then DVC).

        The working tree is left at the tag (detached); ``init``/``commit_version`` return
        to ``branch``. Files come from the DVC cache, else from the remote.

        Raises:
            DatasetRepoError: no such version, or DVC could not restore its files.
        """
        if version not in {v.version for v in self.versions()}:
            raise DatasetRepoError(
                f"no dataset version {version!r} in {self.root}; have "
                f"{[v.version for v in self.versions()]}"
            )
        self._git("checkout", "-q", "-f", version)
        try:
            self._dvc("checkout", "-q", "--force", DATASET_DIR)
        except DatasetRepoError:
            logger.info("dataset %s not in the DVC cache; pulling from the remote", version)
            self._dvc("pull", "-q", "--force", DATASET_DIR)
        return self._version_at(version)


def _tag_number(tag: str) -> int:
    return int(tag[1:]) if tag.startswith("v") and tag[1:].isdigit() else 0
