"""The ``training_dataset`` asset (a DVC-versioned YOLO dataset) and its checks' logic.

The dataset is built from the latest reviewed label of each frame
(``edgeloop.store.labels.latest_with_frames``), with the site's active classes
(``edgeloop.store.classes``: seeded from the production model's names on first use; each
label's class name mapped to its class's current name, so a rename or merge shows in the
next version and a retired class's boxes are left out), split
train/val by a hash of the frame key (a frame never changes split, so val stays a
held-out set across versions), and versioned in the data repo ``data/datasets``
(``edgeloop.datasets.DatasetRepo``): a manifest in git over a content-addressed frame
store in DVC, so a version only hashes and stores the frames it adds. The check functions below are pure: each takes a
``DatasetVersion`` and returns ``(passed, details)``; ``pipelines/checks.py`` wraps them
as ``@dg.asset_check``s.
"""

import hashlib
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from assets._markdown import md_table
from assets.detections import detections
from assets.resources import DatasetRepoResource, MlflowResource, StoreResource
from edgeloop.datasets import (
    VAL_FRACTION,
    DatasetRepo,
    DatasetRepoError,
    DatasetVersion,
    LabeledFrame,
    UnknownClassError,
    frame_key_of,
    split_for,
)
from edgeloop.datasets.manifest import current_classes
from edgeloop.registry import PRODUCTION, ModelNotFoundError, alias_model_files
from edgeloop.store import classes, dataset_frames, labels, tags

BOX_EPS = 1e-4
"""Tolerance on normalised coordinates (labels are written with 6 decimals)."""


class TrainingDatasetConfig(dg.Config):
    """Dataset split and the smallest dataset worth training on."""

    val_fraction: float = Field(
        VAL_FRACTION,
        gt=0,
        lt=1,
        description="Share of frames held out for validation (by frame-key hash).",
    )
    min_train_images: int = Field(8, ge=1, description="Fail when fewer train images than this.")
    min_val_images: int = Field(2, ge=1, description="Fail when fewer val images than this.")


def _labeled_frames(store: StoreResource) -> list[LabeledFrame]:
    settings = store.loop.settings()
    with store.store().connect() as con:
        rows = labels.latest_with_frames(con=con)
    return [
        LabeledFrame(
            frame_key=row["frame_key"],
            camera_id=row["camera_id"],
            jpeg_path=settings.stored_file(row["jpeg_path"]) or Path(),
            width=int(row["width"] or 0),
            height=int(row["height"] or 0),
            boxes=row["boxes"],
            labeled_at_iso=row["labeled_at"],
            label_id=int(row["label_id"]),
        )
        for row in rows
    ]


def site_classes(
    store: StoreResource, mlflow: MlflowResource
) -> tuple[list[str], dict[str, str | None]]:
    """The site's active class names (the dataset's ``names``, by class id) and the map
    from every name a class has had to its current one (None: retired); the list is seeded
    from the production model's class names when it is empty.

    Raises:
        dagster.Failure: no class yet and no production model to seed them from.
    """
    with store.store().connect() as con:
        names = classes.active_names(con=con)
    if not names:  # read the model with no connection held (the DuckDB file is shared)
        try:
            seed = alias_model_files(mlflow.client(), store.loop.settings(), PRODUCTION).class_names
        except ModelNotFoundError as exc:
            raise dg.Failure(
                description=f"{exc}. The site's classes start from the production model's "
                "(or add classes with `edgeloop class add`)."
            ) from exc
        with store.store().connect() as con:
            classes.seed(con=con, names=list(seed))
    with store.store().connect() as con:
        return classes.active_names(con=con), classes.name_map(con=con)


@dg.asset(group_name="datasets", deps=[detections], kinds={"dvc", "yolo"})
def training_dataset(
    context: dg.AssetExecutionContext,
    config: TrainingDatasetConfig,
    store: StoreResource,
    mlflow: MlflowResource,
    dataset_repo: DatasetRepoResource,
) -> dg.Output[DatasetVersion]:
    """YOLO dataset of the reviewed labels (stable train/val split): a manifest versioned with DVC."""
    frames = _labeled_frames(store)
    if not frames:
        raise dg.Failure(
            description="no reviewed labels yet: label frames in the labeling UI, then materialize again"
        )
    class_names, class_map = site_classes(store, mlflow)
    frames, retired_boxes = current_classes(frames, class_map)

    available = [f for f in frames if f.jpeg_path.is_file() and f.width > 0 and f.height > 0]
    splits = Counter(split_for(f.frame_key, config.val_fraction) for f in available)
    if splits["train"] < config.min_train_images or splits["val"] < config.min_val_images:
        raise dg.Failure(
            description=(
                f"too few labeled images: {splits['train']} train / {splits['val']} val "
                f"(need {config.min_train_images} / {config.min_val_images}; "
                f"{len(frames)} labeled frames, {len(frames) - len(available)} without a stored JPEG). "
                "Label more frames, or lower min_train_images/min_val_images in the run config."
            )
        )

    repo = dataset_repo.repo()
    started = time.perf_counter()
    try:
        with store.store().connect() as con:  # people's and the loop's tags, as metadata
            frame_tags = tags.of_dataset(con=con, frame_keys=[f.frame_key for f in available])
        build = repo.stage(
            available, class_names, val_fraction=config.val_fraction, frame_tags=frame_tags
        )
    except UnknownClassError as exc:
        raise dg.Failure(
            description=f"{exc}; fix the label, or add the class with `edgeloop class add`"
        ) from exc
    version = repo.commit_version(
        build,
        message=f"{build.label_count} labeled frames up to {build.label_cutoff_iso}",
    )
    build_s = time.perf_counter() - started
    unchanged = version.version != build.version  # the latest version, recommitted as is
    recorded = record_versions(store, repo, version)
    boxes_per_class = build.manifest.boxes_per_class()
    per_camera = Counter(e.camera_id for e in build.manifest.entries)
    metadata: dict[str, Any] = {
        "version": version.version,
        "dvc_md5": version.dvc_md5,
        "git_commit": version.git_commit,
        "unchanged": unchanged,
        "frames": version.label_count,
        "new_frames": 0 if unchanged else build.new_frames,
        "new_objects": 0 if unchanged else build.new_objects,
        "bytes_added": 0 if unchanged else build.bytes_added,
        "frames_hashed": build.hashed,
        "build_s": round(build_s, 2),
        "train_images": len(version.train_frames),
        "val_images": len(version.val_frames),
        "label_count": version.label_count,
        "label_cutoff": version.label_cutoff_iso,
        "classes": ", ".join(version.class_names),
        "retired_boxes_left_out": retired_boxes,
        "missing_images": len(frames) - len(available),
        "recorded_in_store": ", ".join(recorded) or "none new",
        "data_yaml": dg.MetadataValue.path(str(version.data_yaml)),
        "data_repo": dg.MetadataValue.path(str(repo.root)),
        "boxes_per_class": dg.MetadataValue.md(
            md_table(["class", "boxes"], sorted(boxes_per_class.items()))
        ),
        "frames_per_camera": dg.MetadataValue.md(
            md_table(["camera", "frames"], sorted(per_camera.items()))
        ),
    }
    for name, count in boxes_per_class.items():
        metadata[f"boxes/{name}"] = count
    context.log.info(
        "dataset %s%s: %s train / %s val images, %s new frames, %s bytes added, %.1f s",
        version.version,
        " (unchanged)" if unchanged else "",
        len(version.train_frames),
        len(version.val_frames),
        metadata["new_frames"],
        metadata["bytes_added"],
        build_s,
    )
    return dg.Output(version, metadata=metadata)


def record_versions(store: StoreResource, repo: DatasetRepo, latest: DatasetVersion) -> list[str]:
    """Record in the store which frames each dataset version holds
    (``edgeloop.store.dataset_frames``, what the browser's dataset-version filter reads):
    ``latest`` and every older version of ``repo`` not recorded yet (built before the store
    kept them; read from their manifests in git). Returns the versions recorded now,
    oldest first; a version without a manifest (the old copied-folder layout) is logged
    and left out."""
    with store.store().connect() as con:
        known = {v["dataset_version"] for v in dataset_frames.versions(con=con)}
    wanted = [f"v{n}" for n in range(1, dataset_frames.version_number(latest.version))]
    members: dict[str, tuple[list[str], list[str]]] = {}
    for name in (v for v in wanted if v not in known):  # git reads, no connection held
        try:
            manifest = repo.manifest_at(name)
        except DatasetRepoError as exc:
            dg.get_dagster_logger().warning("dataset %s not recorded in the store: %s", name, exc)
            continue
        members[name] = (manifest.frames("train"), manifest.frames("val"))
    if latest.version not in known:
        members[latest.version] = (latest.train_frames, latest.val_frames)
    now = datetime.now(UTC)
    with store.store().connect() as con:
        return [
            name
            for name, (train, val) in members.items()
            if dataset_frames.record(
                con=con, version=name, train_frames=train, val_frames=val, recorded_at=now
            )
        ]


# ---------------------------------------------------------------------------------------
# Check logic (pure; wrapped as asset checks in pipelines/checks.py)
# ---------------------------------------------------------------------------------------

Details = dict[str, Any]


def _label_files(version: DatasetVersion) -> dict[str, list[Path]]:
    return {
        split: sorted((version.root / "labels" / split).glob("*.txt")) for split in ("train", "val")
    }


def _image_files(version: DatasetVersion) -> dict[str, list[Path]]:
    return {
        split: sorted((version.root / "images" / split).glob("*.jpg")) for split in ("train", "val")
    }


def check_boxes_inside_images(version: DatasetVersion) -> tuple[bool, Details]:
    """Every label line is ``class cx cy w h`` with w, h > 0 and the box inside [0, 1]²,
    and every image has a label file (empty for a negative frame).
    """
    bad: list[str] = []
    boxes = 0
    labels = _label_files(version)
    for split, files in labels.items():
        for path in files:
            for lineno, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                boxes += 1
                parts = line.split()
                try:
                    cx, cy, w, h = (float(v) for v in parts[1:])
                    ok = len(parts) == 5 and w > 0 and h > 0
                    ok = ok and cx - w / 2 >= -BOX_EPS and cx + w / 2 <= 1 + BOX_EPS
                    ok = ok and cy - h / 2 >= -BOX_EPS and cy + h / 2 <= 1 + BOX_EPS
                except ValueError:
                    ok = False
                if not ok:
                    bad.append(f"{split}/{path.name}:{lineno}: {line.strip()}")
    unlabeled = [
        f"{split}/{img.name}"
        for split, images in _image_files(version).items()
        for img in images
        if not (version.root / "labels" / split / f"{img.stem}.txt").exists()
    ]
    details = {
        "boxes": boxes,
        "bad_boxes": len(bad),
        "images_without_label_file": len(unlabeled),
        "examples": (bad + unlabeled)[:10],
    }
    return not bad and not unlabeled, details


def check_known_classes(version: DatasetVersion) -> tuple[bool, Details]:
    """Every label's class id indexes the dataset's class names, and ``data.yaml`` lists
    exactly the version's class names (the model's classes)."""
    import yaml

    names = yaml.safe_load(version.data_yaml.read_text()).get("names", {})
    yaml_names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    counts: Counter[int] = Counter()
    unknown: list[str] = []
    for split, files in _label_files(version).items():
        for path in files:
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                token = line.split()[0]
                if not token.isdigit() or int(token) >= len(version.class_names):
                    unknown.append(f"{split}/{path.name}: class {token}")
                else:
                    counts[int(token)] += 1
    details = {
        "class_names": version.class_names,
        "data_yaml_names": yaml_names,
        "boxes_per_class": {version.class_names[i]: n for i, n in sorted(counts.items())},
        "unknown": len(unknown),
        "examples": unknown[:10],
    }
    return not unknown and yaml_names == version.class_names, details


def check_no_train_val_leak(version: DatasetVersion) -> tuple[bool, Details]:
    """No frame is in both splits: by frame key (the version's lists and the files on disk)
    and by content (no byte-identical image in both)."""
    listed = sorted(set(version.train_frames) & set(version.val_frames))
    images = _image_files(version)
    on_disk = {split: {frame_key_of(p.stem) for p in paths} for split, paths in images.items()}
    disk_overlap = sorted(on_disk["train"] & on_disk["val"])

    def digest(path: Path) -> str:
        return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()

    train_hashes = {digest(p): p.name for p in images["train"]}
    same_content = sorted(
        f"{train_hashes[h]} == val/{p.name}"
        for p in images["val"]
        if (h := digest(p)) in train_hashes
    )
    details = {
        "train_frames": len(on_disk["train"]),
        "val_frames": len(on_disk["val"]),
        "in_both_lists": listed[:10],
        "in_both_folders": disk_overlap[:10],
        "identical_images": same_content[:10],
    }
    return not listed and not disk_overlap and not same_content, details


def check_minimum_size(
    version: DatasetVersion, min_train: int, min_val: int
) -> tuple[bool, Details]:
    """At least ``min_train`` train and ``min_val`` val images on disk."""
    images = _image_files(version)
    details = {
        "train_images": len(images["train"]),
        "val_images": len(images["val"]),
        "min_train": min_train,
        "min_val": min_val,
    }
    return len(images["train"]) >= min_train and len(images["val"]) >= min_val, details
