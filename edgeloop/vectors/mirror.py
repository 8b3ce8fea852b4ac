"""Published crop-index versions through object storage, for processes that share no folder
(API replicas, a Dagster run on another machine).

Qdrant Edge's synchronisation pattern (https://qdrant.tech/documentation/edge/): an
embedded shard is written and closed by one process, copied to where the others fetch
it, and each reader opens its own local copy. Here the publisher uploads a finished
version's files under ``qdrant/<version>/`` and only then replaces ``qdrant/PUBLISHED.json``
(the object store's own pointer), so a reader sees the old version or the complete new one.
A reader that finds a published version it lacks downloads it into ``.<version>.pull``
under its own index folder, renames it to ``<version>`` and writes its local
``PUBLISHED.json`` (``edgeloop.vectors.versions``); from then on it searches locally.
Versions are immutable, so a downloaded version is never fetched again.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from edgeloop.objects import ObjectNotFoundError, ObjectStore
from edgeloop.vectors.versions import (
    POINTER_FILE,
    CorruptIndexError,
    PublishedIndex,
    promote_folder,
    read_pointer,
    sorted_versions,
    version_number,
    write_pointer,
)

logger = logging.getLogger(__name__)

PREFIX = "qdrant/"
"""Object keys of the published versions: ``qdrant/<version>/<file>`` and the pointer."""
POINTER_KEY = PREFIX + POINTER_FILE


def upload_version(objects: ObjectStore, root: Path, info: PublishedIndex) -> int:
    """Upload the local version ``info`` (its folder under ``root``), then point
    ``qdrant/PUBLISHED.json`` at it; returns the files uploaded.

    Raises:
        ObjectStoreUnavailableError: the store could not be written; the pointer still
            names the previous version.
    """
    folder = root / info.version
    files = {
        f"{PREFIX}{info.version}/{path.relative_to(folder).as_posix()}": path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    objects.put_new_many(files)  # a version is written once; a retry keeps what is there
    pointer = {**info.__dict__, "location": info.version}
    objects.put(POINTER_KEY, json.dumps(pointer, indent=2).encode())
    return len(files)


def remote_pointer(objects: ObjectStore) -> PublishedIndex | None:
    """The version the object store publishes, or None before the first upload.

    Raises:
        CorruptIndexError: the pointer is not the JSON ``upload_version`` writes.
        ObjectStoreUnavailableError: the store could not be read.
    """
    try:
        raw = json.loads(objects.get(POINTER_KEY))
        info = PublishedIndex(
            **{k: raw[k] for k in PublishedIndex.__dataclass_fields__ if k in raw}
        )
    except ObjectNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptIndexError(f"the object store's {POINTER_KEY} is unreadable ({exc})") from exc
    if version_number(info.version) is None:
        raise CorruptIndexError(f"the object store's {POINTER_KEY} names {info.version!r}")
    return info


def pull_published(objects: ObjectStore, root: Path) -> PublishedIndex | None:
    """Bring ``root`` to the version the object store publishes (download it when absent,
    then point the local ``PUBLISHED.json`` at it); the local published version after.
    None when nothing is published anywhere.

    Raises:
        CorruptIndexError, ObjectStoreUnavailableError: see ``remote_pointer``.
    """
    remote = remote_pointer(objects)
    local = read_pointer(root)
    if remote is None or (local is not None and local.version == remote.version):
        return local
    folder = root / remote.version
    if not folder.is_dir():
        partial = root / f".{remote.version}.pull"
        shutil.rmtree(partial, ignore_errors=True)
        prefix = f"{PREFIX}{remote.version}/"
        for key in objects.keys(prefix):
            target = partial / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(objects.get(key))
        if not partial.is_dir():
            raise CorruptIndexError(f"{POINTER_KEY} names {remote.version}, which has no files")
        promote_folder(partial, folder)
        logger.info("pulled crop index %s (%s points)", remote.version, remote.points)
    write_pointer(root, remote)
    return read_pointer(root)


def prune_remote(objects: ObjectStore, keep: int) -> list[str]:
    """Delete the object store's versions older than the newest ``keep`` (never the
    published one); returns the versions deleted."""
    published = remote_pointer(objects)
    versions = sorted_versions(
        {key[len(PREFIX) :].split("/", 1)[0] for key in objects.keys(PREFIX)}
    )
    old = [v for v in versions[:-keep] if published is None or v != published.version]
    for version in old:
        for key in list(objects.keys(f"{PREFIX}{version}/")):
            objects.delete(key)
    return old
