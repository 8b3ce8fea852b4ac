"""Versions of the crop index: their names, which one is published, and embedded folders.

Qdrant's local mode locks its folder for one process, so re-indexing follows the
pattern Qdrant recommends for zero-downtime re-indexing: write a complete new version,
then flip a pointer that readers follow (DESIGN.md).

- Embedded (default): one folder per version under ``<data_dir>/qdrant/`` (``v0001/``,
  ``v0002/``...), each a Qdrant local storage with one collection ``crops``; the file
  ``PUBLISHED.json`` names the published version and is replaced atomically. A writer
  never touches a published folder, so a reader (the API) may hold it open.
- Server (``EDGELOOP_QDRANT_URL``): collections ``crops_v0001``, ``crops_v0002``... and
  the alias ``crops``, moved with one atomic ``update_collection_aliases`` call.

``edgeloop.vectors.VectorIndex`` writes, searches and prunes versions with these helpers.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential_jitter

from edgeloop.files import atomic_write_text

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)

POINTER_FILE = "PUBLISHED.json"
_VERSION_DIR = re.compile(r"^v(\d{4,})$")


class IndexLockedError(RuntimeError):
    """An embedded index folder stayed locked by another process past the retry deadline."""


@dataclass(frozen=True)
class PublishedIndex:
    """What readers see: the published version of the index.

    Attributes:
        version: ``v0003``.
        collection: the Qdrant collection (embedded: ``crops`` inside the version folder;
            server: ``crops_v0003``, reached through the alias ``crops``).
        embedder: the embedder's name; query vectors must come from the same embedder.
        location: the version's folder (embedded) or the server URL.
    """

    version: str
    collection: str
    embedder: str
    dims: int
    points: int
    published_at: str
    location: str

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], *, collection: str, points: int, location: str
    ) -> PublishedIndex:
        """The version a publish just wrote; ``meta`` is the metadata it gave the collection
        (``version``, ``embedder``, ``dims``, ``published_at``)."""
        return cls(
            version=str(meta["version"]),
            collection=collection,
            embedder=str(meta["embedder"]),
            dims=int(meta["dims"]),
            points=points,
            published_at=str(meta["published_at"]),
            location=location,
        )


def version_name(number: int) -> str:
    """``v0003`` for 3: a version's folder (embedded) or collection suffix (server)."""
    return f"v{number:04d}"


def version_number(name: str) -> int | None:
    """3 for ``v0003``; None for a name that is not a version's."""
    match = _VERSION_DIR.match(name)
    return int(match.group(1)) if match else None


def sorted_versions(names: Iterable[str]) -> list[str]:
    """The version names among ``names``, oldest first; other names are dropped."""
    numbered = sorted((n, v) for v in names if (n := version_number(v)) is not None)
    return [v for _, v in numbered]


# ---------------------------------------------------------------------- embedded
def version_folders(root: Path) -> list[str]:
    """Names of the folders under ``root`` that may hold a version (``v*``), in no order."""
    return [p.name for p in root.glob("v*") if p.is_dir()] if root.exists() else []


def read_pointer(root: Path) -> PublishedIndex | None:
    """The version ``root/PUBLISHED.json`` names, or None before the first publish."""
    pointer = root / POINTER_FILE
    if not pointer.exists():
        return None
    fields = json.loads(pointer.read_text())
    # The folder is found relative to root, so a moved data folder still works.
    fields["location"] = str((root / fields["version"]).resolve())
    return PublishedIndex(**fields)


def write_pointer(root: Path, info: PublishedIndex) -> None:
    """Publish ``info``: replace ``root/PUBLISHED.json`` atomically (readers see the old
    pointer or the new one)."""
    atomic_write_text(root / POINTER_FILE, json.dumps(asdict(info), indent=2), durable=False)


def _is_local_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "already accessed by another instance" in str(exc)


def open_local(folder: Path, lock_timeout_s: float) -> QdrantClient:
    """A Qdrant local-mode client on ``folder``, retried (exponential back-off with jitter,
    50 ms to 1 s) for ``lock_timeout_s`` seconds while another process holds the folder.

    Raises:
        IndexLockedError: the folder was still locked at the deadline.
    """
    from qdrant_client import QdrantClient

    @retry(
        retry=retry_if_exception(_is_local_lock_error),
        stop=stop_after_delay(lock_timeout_s),
        wait=wait_exponential_jitter(initial=0.05, max=1.0),
        reraise=True,
    )
    def _open() -> QdrantClient:
        return QdrantClient(path=str(folder))

    try:
        return _open()
    except RuntimeError as exc:
        if _is_local_lock_error(exc):
            raise IndexLockedError(
                f"{folder} stayed locked by another process for {lock_timeout_s:.0f} s; "
                "Qdrant's local mode allows one process per folder (set EDGELOOP_QDRANT_URL "
                "to use a Qdrant server for concurrent access)"
            ) from exc
        raise


def remove_if_unlocked(folder: Path) -> bool:
    """Delete an embedded version folder unless a process holds it open (then keep it).

    Returns:
        True when the folder was deleted.
    """
    import portalocker

    lock_file = folder / ".lock"
    if lock_file.exists():
        with lock_file.open("r+") as fh:
            try:
                portalocker.lock(
                    fh, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
                )
            except portalocker.exceptions.LockException:
                logger.info("keeping %s for now: another process has it open", folder)
                return False
            shutil.rmtree(folder)
            return True
    shutil.rmtree(folder)
    return True


# ------------------------------------------------------------------------ server
def aliased_collection(client: QdrantClient, alias: str) -> str | None:
    """The collection ``alias`` points at on the server, or None when there is no such alias."""
    return next(
        (a.collection_name for a in client.get_aliases().aliases if a.alias_name == alias),
        None,
    )


def read_alias(client: QdrantClient, alias: str, location: str) -> PublishedIndex | None:
    """The version ``alias`` points at, from its collection's metadata, or None before the
    first publish; ``location`` is reported as the index's location (the server URL)."""
    target = aliased_collection(client, alias)
    if target is None:
        return None
    info = client.get_collection(target)
    meta = dict(info.config.metadata or {})
    return PublishedIndex(
        version=str(meta.get("version", target.rsplit("_", 1)[-1])),
        collection=target,
        embedder=str(meta.get("embedder", "")),
        dims=int(meta.get("dims", 0)),
        points=int(info.points_count or 0),
        published_at=str(meta.get("published_at", "")),
        location=location,
    )


def move_alias(client: QdrantClient, alias: str, collection: str) -> None:
    """Point ``alias`` at ``collection`` in one atomic ``update_collection_aliases`` call
    (the old alias, if any, is deleted in the same call)."""
    from qdrant_client import models

    operations: list[Any] = []
    if aliased_collection(client, alias) is not None:
        operations.append(
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        )
    operations.append(
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
        )
    )
    client.update_collection_aliases(change_aliases_operations=operations)
