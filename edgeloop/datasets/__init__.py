"""Labeled datasets in YOLO format, as manifests over a content-addressed frame store.

A dataset version is a **manifest** (``manifest.json``): for every frame its key, camera,
split, the sha256 of its JPEG and where that JPEG lives in the object store, and its
YOLO label lines. The JPEGs are stored once, by sha256, in append-only packs under
``objects/`` of the data repo, which versions the packs with DVC and the manifest with
git. A new version hashes and stores only the frames it has not seen, so adding 1 % new
frames costs about 1 % of the first build.

- ``frames``: ``DatasetVersion`` (what ``training_dataset`` hands to training),
  ``LabeledFrame``, ``split_for`` (a stable train/val split by a hash of the frame key),
  ``yolo_label_lines`` (reviewed boxes, xyxy px -> YOLO ``class cx cy w h`` in [0, 1]),
  and the data repo's file names.
- ``manifest``: ``Manifest`` and ``build_manifest`` (labeled frames -> a manifest,
  reusing the previous version's hashes and objects).
- ``working_copy``: ``materialise`` (a manifest -> the folder ultralytics reads:
  ``images/{train,val}`` as hardlinks into the object store, ``labels/{train,val}``,
  ``data.yaml``, ``manifest.json``) and ``verify_materialised``.
- ``repo``: ``DatasetRepo``, the git + DVC data repository (``stage`` -> ``commit_version``
  -> ``versions`` / ``checkout``), and ``materialised`` (a version's folder, rebuilt
  when it holds another version); ``build``: what a staged build is and the summary it
  commits; ``commands``: git and DVC as subprocesses.
"""

from edgeloop.datasets.build import DatasetBuild
from edgeloop.datasets.commands import DatasetRepoError
from edgeloop.datasets.frames import (
    DATASET_DIR,
    MANIFEST,
    MANIFEST_FORMAT,
    OBJECTS_DIR,
    VAL_FRACTION,
    VERSION_FILE,
    DatasetVersion,
    LabeledFrame,
    UnknownClassError,
    frame_key_of,
    image_stem,
    split_for,
    yolo_label_lines,
)
from edgeloop.datasets.manifest import (
    Manifest,
    ManifestBuild,
    ManifestEntry,
    build_manifest,
    md5_text,
    parse_manifest,
)
from edgeloop.datasets.repo import CHECKOUTS_DIR, DatasetRepo, materialised
from edgeloop.datasets.working_copy import materialise, verify_materialised, write_data_yaml

__all__ = [
    "CHECKOUTS_DIR",
    "DATASET_DIR",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "OBJECTS_DIR",
    "VAL_FRACTION",
    "VERSION_FILE",
    "DatasetBuild",
    "DatasetRepo",
    "DatasetRepoError",
    "DatasetVersion",
    "LabeledFrame",
    "Manifest",
    "ManifestBuild",
    "ManifestEntry",
    "UnknownClassError",
    "build_manifest",
    "frame_key_of",
    "image_stem",
    "materialise",
    "materialised",
    "md5_text",
    "parse_manifest",
    "split_for",
    "verify_materialised",
    "write_data_yaml",
    "yolo_label_lines",
]
