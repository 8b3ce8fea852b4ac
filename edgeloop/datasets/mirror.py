"""The data repository's git history in object storage, for a networked site whose hosts
share no folder (issue 16): each Dagster run on a worker and each API replica keeps a
working copy of its own, and the object store holds what they share.

What is shared, and where:

- the JPEG packs: on the DVC remote, ``<object_store_url>/dvc`` (DVC's own S3 support,
  ``dvc-s3``), pushed before the version that points at them is published;
- the git history (manifests, summaries, ``.dvc`` files, the ``v<N>`` tags): one git
  bundle per version, ``datasets/git/v<N>.bundle`` (``git bundle create --all``; git's
  documented way to move history without a server), written create-exclusive.

A working copy pulls the newest bundle when it lacks that version (``pull``). Publishing
version N is create-exclusive (``ObjectStore.put_new``): of two hosts that committed vN
from the same history, one publishes and the other gets ``DatasetRepoError`` with its
commit taken back (``DatasetRepo.commit_version``), so the versions never fork.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgeloop.datasets import commands
from edgeloop.datasets.commands import DatasetRepoError, tag_number
from edgeloop.objects import ObjectStore

logger = logging.getLogger(__name__)

BUNDLES_PREFIX = "datasets/git/"
"""Object-key prefix of the published git bundles, one per dataset version."""


def bundle_key(version: str) -> str:
    """``datasets/git/v<N>.bundle``: where ``version`` (``v<N>``) is published."""
    return f"{BUNDLES_PREFIX}{version}.bundle"


class RepoMirror:
    """The data repo's published history in an object store.

    Args:
        objects: the site's object store (``LoopSettings.objects()``).
    """

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def newest(self) -> str | None:
        """The newest published version (``v<N>``), or None before the first.

        Raises:
            ObjectStoreUnavailableError: the object store could not be listed.
        """
        versions = [
            key.removeprefix(BUNDLES_PREFIX).removesuffix(".bundle")
            for key in self.objects.keys(BUNDLES_PREFIX)
            if key.endswith(".bundle")
        ]
        numbered = [v for v in versions if tag_number(v) > 0]
        return max(numbered, key=tag_number, default=None)

    def pull(self, root: Path, branch: str, have: Sequence[str]) -> str | None:
        """Bring the git repo ``root`` (initialised) up to the newest published version when
        its own newest version (of the tags ``have``) is older: the bundle's branch and tags
        are fetched and the working tree reset to ``branch`` (git-ignored files, the JPEG
        packs and the working copy, stay). Returns the version pulled, or None when nothing
        was.

        Raises:
            DatasetRepoError: git failed on the bundle.
            ObjectStoreUnavailableError: the object store could not be read.
        """
        newest = self.newest()
        if newest is None or tag_number(newest) <= max(map(tag_number, have), default=0):
            return None
        with tempfile.TemporaryDirectory(prefix="edgeloop-bundle-") as tmp:
            bundle = Path(tmp) / f"{newest}.bundle"
            bundle.write_bytes(self.objects.get(bundle_key(newest)))
            commands.git(
                root,
                "fetch",
                "-q",
                "--update-head-ok",
                str(bundle),
                f"+refs/heads/{branch}:refs/heads/{branch}",
                "+refs/tags/*:refs/tags/*",
            )
        commands.git(root, "reset", "-q", "--hard", branch)
        logger.info("data repo %s pulled %s from the object store", root, newest)
        return newest

    def publish(self, root: Path, version: str) -> None:
        """Publish the history of ``root`` up to and including ``version`` (just
        committed and tagged) as ``datasets/git/<version>.bundle``.

        Raises:
            DatasetRepoError: another host published ``version`` first (this commit must be
                taken back), or git failed.
            ObjectStoreUnavailableError: nothing was published.
        """
        with tempfile.TemporaryDirectory(prefix="edgeloop-bundle-") as tmp:
            bundle = Path(tmp) / f"{version}.bundle"
            commands.git(root, "bundle", "create", "-q", str(bundle), "--all")
            created = self.objects.put_new(bundle_key(version), bundle.read_bytes())
        if not created:
            raise DatasetRepoError(
                f"dataset {version} was published by another host while this one built it: "
                "build again on the newest version"
            )
        logger.info("data repo %s published %s to the object store", root, version)
