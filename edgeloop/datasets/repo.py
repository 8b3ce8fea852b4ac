"""The DVC data repository ``data/datasets``: dataset versions as git tags over a
content-addressed frame store in DVC.

``DatasetRepo`` is a separate git repository (its own history, not the code's) with DVC
and a local DVC remote under ``data/dvc-remote`` (any DVC remote works: S3, GCS, SSH).
Its layout:

- ``objects/<pack>/<sha[:2]>/<sha256>.jpg``: every frame JPEG once, by content. A pack
  holds the JPEGs first seen in one version and is named after it (``objects/v3``); it is
  DVC-tracked (``objects/v3.dvc``) and never changes, so a version only adds, pushes and
  caches its own new JPEGs (DVC's cache is set to hardlinks: no second copy on disk).
- ``manifest.json`` (git): the version's frames, splits, labels and object hashes.
- ``dataset.json`` (git): a small summary (classes, splits, counts, packs, manifest md5).
- ``yolo/`` (git-ignored): the working copy ultralytics reads, materialised from the
  manifest with hardlinks into the store.

Manifests are whole files in git; once the loose objects pass ``LOOSE_LIMIT_KIB`` a
commit repacks the history, where a version that adds a few frames is a small delta.

``stage`` (incremental build) -> ``commit_version`` (tag ``v<N>``, ``dvc push``);
``versions``; ``checkout`` materialises any version into any folder.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.datasets import commands
from edgeloop.datasets.build import DatasetBuild, version_from_summary
from edgeloop.datasets.commands import DatasetRepoError, tag_number
from edgeloop.datasets.frames import (
    DATASET_DIR,
    MANIFEST,
    OBJECTS_DIR,
    VAL_FRACTION,
    VERSION_FILE,
    DatasetVersion,
    LabeledFrame,
)
from edgeloop.datasets.manifest import Manifest, build_manifest, md5_text, parse_manifest
from edgeloop.datasets.mirror import RepoMirror
from edgeloop.datasets.working_copy import (
    materialise,
    names_another_folder,
    verify_materialised,
    write_data_yaml,
)
from edgeloop.relocation import dvc_remote_url, follow_moved_dvc_remote

if TYPE_CHECKING:
    from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)

HASH_CACHE = ".hash-cache.json"
"""Git-ignored, in the data repo: frame_key -> [size, mtime_ns, sha256] of source JPEGs
already hashed, so an unchanged frame is not read again (losing it only costs a re-hash)."""
CHECKOUTS_DIR = "checkouts"
"""Git-ignored, in the data repo: where ``edgeloop dataset checkout vN`` puts a version."""
IGNORED = (f"/{DATASET_DIR}", f"/{CHECKOUTS_DIR}", f"/{HASH_CACHE}")
LOOSE_LIMIT_KIB = 64 * 1024
"""Loose git objects (KiB, ``git count-objects``) above which a committed version repacks
the data repo (``git repack -a -d``).

Each version's manifest is a new blob of ~480 bytes per frame (4.8 MB at 10,000 frames,
~48 MB at 100,000: bench/datasets.py), stored zlib-compressed and whole while loose
(1.3 MB at 10,000 frames); git's own automatic gc only counts objects (6,700) and would
let that grow by one compressed manifest per version. Packed, a version that adds 1 % of
frames is a delta of a few KB against the previous one. Measured with eight synthetic
100,000-frame manifests, each 1 % larger: 6 MB loose per version, 0.07 MB per version
once packed, a repack taking 0.4-1.0 s."""


class DatasetRepo:
    """The data repository ``data/datasets``: its own git, DVC, and a local DVC remote.

    git and dvc run as subprocesses (``python -m dvc``), with analytics off.

    Args:
        root: the repository folder (created by ``init``).
        remote: the default DVC remote, a folder or any DVC remote URL (needed by ``init``
            only; an existing repo keeps the one in its ``.dvc/config``).
        branch: the branch versions are committed on.
        mirror: where the history is shared with the site's other hosts (a networked
            site, ``edgeloop.datasets.mirror``): pulled before reading or building, each
            version published once committed. None: this folder is the only copy.
    """

    def __init__(
        self,
        root: Path,
        remote: Path | str | None = None,
        *,
        branch: str = "main",
        mirror: RepoMirror | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.remote = remote
        self.branch = branch
        self.mirror = mirror

    @classmethod
    def from_settings(cls, settings: LoopSettings) -> DatasetRepo:
        """The repo at ``settings.datasets_repo`` with the remote ``settings.dvc_remote``,
        mirrored in the object store when ``object_store_url`` is set."""
        mirror = RepoMirror(settings.objects()) if settings.object_store_url else None
        return cls(settings.datasets_repo, settings.dvc_remote, mirror=mirror)

    @property
    def dataset_dir(self) -> Path:
        """The working copy training reads (the latest staged or checked-out version)."""
        return self.root / DATASET_DIR

    @property
    def objects_dir(self) -> Path:
        return self.root / OBJECTS_DIR

    # -------------------------------------------------------------- subprocesses
    def _git(self, *args: str) -> str:
        return commands.git(self.root, *args)

    def _dvc(self, *args: str) -> str:
        return commands.dvc(self.root, *args)

    # -------------------------------------------------------------- lifecycle
    def init(self) -> None:
        """Create the repo (git + DVC with a hardlink cache + default remote) if needed;
        idempotent. Also returns the working tree to ``branch`` (an older edgeloop left it
        detached after a checkout).

        Raises:
            DatasetRepoError: a git/dvc command failed, or a new repo has no ``remote``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            self._git("init", "-q", "-b", self.branch)
            self._git("config", "user.name", "edgeloop")
            self._git("config", "user.email", "edgeloop@localhost")
            self._git("config", "commit.gpgsign", "false")
            self._git("config", "tag.gpgsign", "false")
        if self.mirror is not None:
            self.mirror.pull(self.root, self.branch, have=self._tags())
        if not (self.root / ".dvc").exists():
            if self.remote is None:
                raise DatasetRepoError(f"{self.root} is no data repo yet and no remote was given")
            self._dvc("init", "-q")
            remote = str(self.remote)
            if isinstance(self.remote, Path) or "://" not in remote:
                Path(self.remote).resolve().mkdir(parents=True, exist_ok=True)
                remote = dvc_remote_url(self.root, Path(self.remote))  # moves with the folder
            # Written directly (DVC's documented config file) rather than with more
            # `dvc config` calls, each of which pays DVC's import time. Hardlinks: objects
            # never change, so the cache and the workspace share one copy (read-only).
            with (self.root / ".dvc" / "config").open("a") as fh:
                fh.write(
                    "[core]\n    analytics = false\n    autostage = false\n    remote = local\n"
                    "[cache]\n    type = hardlink,symlink\n"
                    f"['remote \"local\"']\n    url = {remote}\n"
                )
            (self.root / ".gitignore").write_text("".join(f"{p}\n" for p in IGNORED))
            self._git("add", ".dvc", ".dvcignore", ".gitignore")
            self._git("commit", "-q", "-m", "Initialise the edgeloop data repository")
            logger.info("initialised the DVC data repo %s (remote %s)", self.root, remote)
        self._follow_moved_remote()
        head = self._git("rev-parse", "--abbrev-ref", "HEAD").strip()
        if head != self.branch:
            self._git("checkout", "-q", "-f", self.branch)

    def _follow_moved_remote(self) -> None:
        """A data repo an older edgeloop made names its remote by absolute path: point it
        at this data folder's remote instead (``edgeloop.relocation``)."""
        if self.remote is not None and (isinstance(self.remote, Path) or "://" not in self.remote):
            follow_moved_dvc_remote(self.root, Path(self.remote))

    def loose_kib(self) -> int:
        """Size of the data repo's loose git objects, KiB (``git count-objects -v``)."""
        counts = dict(line.split(": ", 1) for line in self._git("count-objects", "-v").splitlines())
        return int(counts["size"])

    def _repack_if_loose(self) -> None:
        """Pack the history once its loose objects pass ``LOOSE_LIMIT_KIB``. The version is
        committed already: a failure here (a full disk) is logged, not raised, and the
        next version tries again."""
        try:
            loose = self.loose_kib()
            if loose > LOOSE_LIMIT_KIB:
                self._git("repack", "-a", "-d", "-q")
                logger.info("repacked %s: %s KiB of loose objects", self.root, loose)
        except DatasetRepoError as exc:
            logger.warning("could not repack the data repo %s: %s", self.root, exc)

    def _next_version(self) -> str:
        return f"v{max((tag_number(t) for t in self._tags()), default=0) + 1}"

    def _tags(self) -> list[str]:
        tags = self._git("tag", "--list", "v*").split()
        return sorted((t for t in tags if tag_number(t) > 0), key=tag_number)

    def _pulled_tags(self) -> list[str]:
        """``_tags`` after pulling the mirror's history (none before the repo exists)."""
        if self.mirror is not None:
            self.init()
        return self._tags() if (self.root / ".git").exists() else []

    def manifest_at(self, version: str) -> Manifest:
        """The manifest of ``version`` (read from git, no files touched).

        Raises:
            DatasetRepoError: no such version, or it predates manifests (copied folders).
        """
        try:
            text = self._git("show", f"{version}:{MANIFEST}")
        except DatasetRepoError as exc:
            raise DatasetRepoError(
                f"dataset {version} has no {MANIFEST} in {self.root}: it was written as a "
                f"copied folder; restore it with `git checkout {version} && dvc checkout "
                f"{DATASET_DIR}` in the data repo"
            ) from exc
        return parse_manifest(text)

    def _ensure_packs(self, packs: Sequence[str]) -> None:
        """Put the given packs in the workspace: from the DVC cache, else the remote."""
        absent = [f"{OBJECTS_DIR}/{p}.dvc" for p in packs if not (self.objects_dir / p).is_dir()]
        if not absent:
            return
        try:
            self._dvc("checkout", "-q", *absent)
        except DatasetRepoError:
            logger.info("packs %s not in the DVC cache; pulling from the remote", absent)
            self._dvc("pull", "-q", *absent)

    def stage(
        self,
        frames: Sequence[LabeledFrame],
        class_names: Sequence[str],
        *,
        val_fraction: float = VAL_FRACTION,
        frame_tags: Mapping[str, Sequence[str]] | None = None,
    ) -> DatasetBuild:
        """Build the next version's manifest from ``frames`` (with ``frame_tags``: frame key ->
        its tags) and materialise it into ``dataset_dir``; only JPEGs not in the store are
        read, hashed and stored (pack ``objects/v<N>``). ``commit_version`` commits it.

        Raises:
            edgeloop.datasets.UnknownClassError: a label names a class the model lacks.
            DatasetRepoError: a git/dvc command failed.
        """
        self.init()
        tags = self._tags()
        for leftover in self.objects_dir.glob("*"):  # packs of a build never committed
            if leftover.is_dir() and leftover.name not in tags:
                shutil.rmtree(leftover)
                leftover.with_name(f"{leftover.name}.dvc").unlink(missing_ok=True)
        previous = None
        if tags:
            try:
                previous = self.manifest_at(tags[-1])
                self._ensure_packs(previous.packs())
            except (DatasetRepoError, ValueError):
                logger.info("%s has no manifest: every frame is hashed again", tags[-1])
        cache_file = self.root / HASH_CACHE
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        version = self._next_version()
        built = build_manifest(
            frames,
            class_names,
            objects_root=self.objects_dir,
            pack=version,
            previous=previous,
            hash_cache=cache,
            val_fraction=val_fraction,
            tags=frame_tags,
        )
        text = built.manifest.to_text()
        (self.root / MANIFEST).write_text(text)
        known = [previous] if previous else []
        linked = materialise(built.manifest, self.objects_dir, self.dataset_dir, known=known)
        cache_file.write_text(json.dumps(built.hash_cache, separators=(",", ":")))
        carried = {f.name for f in fields(DatasetBuild)}  # from ManifestBuild: manifest, costs
        outcome = {f.name: getattr(built, f.name) for f in fields(built) if f.name in carried}
        return DatasetBuild(
            root=self.dataset_dir,
            data_yaml=self.dataset_dir / "data.yaml",
            manifest_md5=md5_text(text),
            version=version,
            pack=version if built.new_objects else None,
            linked=linked,
            **outcome,
        )

    def commit_version(self, build: DatasetBuild, *, message: str) -> DatasetVersion:
        """Version a staged build: ``dvc add`` and ``dvc push`` its new pack, then git commit
        the manifest and summary and tag ``v<N>``.

        When the manifest equals the latest version's, nothing is committed and the latest
        version is returned.

        Raises:
            ValueError: ``build`` was not staged in this repo's ``dataset_dir``.
            DatasetRepoError: a git/dvc command failed, or another version was committed
                since ``build`` was staged.
        """
        if build.root.resolve() != self.dataset_dir:
            raise ValueError(f"stage the dataset into {self.dataset_dir}, not {build.root}")
        self.init()
        tags = self._tags()
        if tags:
            latest = self._version_at(tags[-1])
            if latest.dvc_md5 == build.manifest_md5:
                logger.info("dataset unchanged since %s (md5 %s)", latest.version, latest.dvc_md5)
                return latest
        if build.version != self._next_version():
            raise DatasetRepoError(
                f"{build.version} was staged, but {self._next_version()} is next: stage again"
            )
        paths = [MANIFEST, VERSION_FILE, ".gitignore"]
        if build.pack:  # data on the remote before the version that points at it
            commands.dvc_add_and_push(self.root, f"{OBJECTS_DIR}/{build.pack}")
            paths += [f"{OBJECTS_DIR}/{build.pack}.dvc", f"{OBJECTS_DIR}/.gitignore"]
        ignore = self.root / ".gitignore"
        lines = ignore.read_text().splitlines() if ignore.is_file() else []
        ignore.write_text(
            "".join(f"{p}\n" for p in [*lines, *(i for i in IGNORED if i not in lines)])
        )
        (self.root / VERSION_FILE).write_text(build.summary_text())
        self._git("rm", "-q", "--cached", "--ignore-unmatch", f"{DATASET_DIR}.dvc")  # old layout
        (self.root / f"{DATASET_DIR}.dvc").unlink(missing_ok=True)
        self._git("add", *paths)
        self._git("commit", "-q", "-m", f"Dataset {build.version}: {message}")
        self._git("tag", "-a", build.version, "-m", message)
        if self.mirror is not None:
            self._publish(build.version)
        self._repack_if_loose()
        logger.info(
            "dataset %s committed: %s frames, %s new, %s bytes added",
            build.version,
            build.label_count,
            build.new_frames,
            build.bytes_added,
        )
        return self._version_at(build.version)

    def _publish(self, version: str) -> None:
        """Publish the just committed ``version`` to the mirror; when that fails (another
        host published it first, the object store is down) the commit, the tag and the
        pack built for it are taken back, so a version exists once published and never
        forks (the pack's JPEGs stay in DVC's cache and on the remote, content-addressed).
        """
        assert self.mirror is not None
        try:
            self.mirror.publish(self.root, version)
        except Exception:
            self._git("tag", "-d", version)
            self._git("reset", "-q", "--hard", "HEAD~1")
            shutil.rmtree(self.objects_dir / version, ignore_errors=True)
            (self.objects_dir / f"{version}.dvc").unlink(missing_ok=True)
            raise

    def _version_at(self, tag: str, root: Path | None = None) -> DatasetVersion:
        summary = json.loads(self._git("show", f"{tag}:{VERSION_FILE}"))
        root = self.dataset_dir if root is None else Path(root).resolve()
        if "manifest_md5" in summary:
            md5 = str(summary["manifest_md5"])
        else:  # the copied-folder layout: the md5 DVC recorded for yolo/
            import yaml

            dvc_file = yaml.safe_load(self._git("show", f"{tag}:{DATASET_DIR}.dvc"))
            md5 = str(dvc_file["outs"][0]["md5"])
        return version_from_summary(
            tag,
            summary,
            root=root,
            dvc_md5=md5,
            git_commit=self._git("rev-list", "-n", "1", tag).strip(),
            repo_root=self.root,
        )

    def versions(self) -> list[DatasetVersion]:
        """Every version, oldest first (empty before the first ``commit_version``).

        Raises:
            DatasetRepoError, ObjectStoreUnavailableError: the mirror could not be pulled.
        """
        return [self._version_at(t) for t in self._pulled_tags()]

    def checkout(
        self, version: str, target: Path | None = None, *, verify: bool = False
    ) -> DatasetVersion:
        """Materialise ``version`` into ``target`` (default ``dataset_dir``): its manifest
        from git, its JPEGs hardlinked from the object store (packs restored from the DVC
        cache, else pulled from the remote). The data repo's branch is left as it is.

        Args:
            verify: re-hash every image and label written (sha256) against the manifest.

        Raises:
            DatasetRepoError: no such version, its packs cannot be restored, or ``verify``
                found a file that differs from the manifest.
        """
        tags = self._pulled_tags()
        if version not in tags:
            raise DatasetRepoError(f"no dataset version {version!r} in {self.root}; have {tags}")
        manifest = self.manifest_at(version)
        self._follow_moved_remote()
        self._ensure_packs(manifest.packs())
        target = self.dataset_dir if target is None else Path(target)
        materialise(manifest, self.objects_dir, target)
        if verify and (bad := verify_materialised(manifest, target)):
            raise DatasetRepoError(
                f"{len(bad)} files of {version} in {target} differ from its manifest: {bad[:5]}"
            )
        return self._version_at(version, target)


def materialised(version: DatasetVersion, repo: DatasetRepo | None = None) -> DatasetVersion:
    """``version`` with its folder guaranteed to hold that version: when ``root``'s
    ``manifest.json`` is not the version's (someone checked out another version there),
    it is materialised again from the data repo. A folder no repo versioned
    (``repo_root`` is ``None``) is returned as is.

    Args:
        repo: the data repo of this data folder (``DatasetRepo.from_settings``). A version
            that names another repo (a Dagster value stored before the data folder was
            copied or moved) is taken to be the same version in this one, so nothing is
            read or written in the old folder.

    Raises:
        DatasetRepoError: the version cannot be restored from its repo.
    """
    if version.repo_root is None:
        return version
    repo = repo or DatasetRepo(version.repo_root)
    old, new = Path(version.repo_root), repo.root
    if old != new and version.root.is_relative_to(old):
        root = new / version.root.relative_to(old)
        version = replace(version, root=root, data_yaml=root / "data.yaml", repo_root=new)
    manifest = version.root / MANIFEST
    if manifest.is_file() and md5_text(manifest.read_text()) == version.dvc_md5:
        if names_another_folder(version.data_yaml):  # written by an older edgeloop
            write_data_yaml(version.root, version.class_names)
        return version
    logger.info("%s does not hold dataset %s; materialising it", version.root, version.version)
    repo.checkout(version.version, version.root)
    return version
