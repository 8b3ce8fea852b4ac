"""The DVC data repository ``data/datasets``: dataset versions as git tags, data in DVC.

``DatasetRepo`` is a separate git repository (its own history, not the code's) with DVC
and a local DVC remote under ``data/dvc-remote`` (any DVC remote works: S3, GCS, SSH):
``init``, ``commit_version`` (tag ``v<N>``), ``versions``, ``checkout``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.datasets import DATASET_DIR, MANIFEST, VERSION_FILE, DatasetBuild, DatasetVersion

if TYPE_CHECKING:
    from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)


class DatasetRepoError(RuntimeError):
    """A git or dvc command in the data repo failed; the message carries its output."""


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
