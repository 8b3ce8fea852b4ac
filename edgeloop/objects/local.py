"""Objects as files under one local folder (the embedded default: the data folder).

A key ``a/b.jpg`` is the file ``<root>/a/b.jpg``. Writes are durable and atomic (a
temporary file beside the target, fsync, then a rename or a hard link), so a crash leaves
the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from edgeloop.files import atomic_write_bytes, fsync_dir
from edgeloop.objects import (
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreUnavailableError,
    check_key,
)


class LocalObjectStore(ObjectStore):
    """Objects under the folder ``root`` (created on the first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _create(self, key: str, data: bytes) -> Path | None:
        """Create-exclusive without the folder's fsync: the bytes go to a temporary file
        (fsync), which is then hard-linked to the target; ``link`` fails when the target
        exists, so two writers racing on one key cannot replace each other's file. The
        target when created, None when it existed."""
        target = self._path(key)
        if target.exists():
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError:  # another writer created it since the check above
            return None
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def put_new(self, key: str, data: bytes) -> bool:
        created = self._create(key, data)
        if created is not None:
            fsync_dir(created.parent)
        return created is not None

    def put_new_many(self, items: Mapping[str, bytes]) -> set[str]:
        """As ``put_new`` for each item, with each touched folder fsync'ed once at the end
        (a batch of JPEGs of one camera costs one folder fsync, not one per file)."""
        created: dict[str, Path] = {}
        try:
            for key, data in items.items():
                path = self._create(key, data)
                if path is not None:
                    created[key] = path
        except OSError as exc:  # a full disk, a folder gone read-only
            raise ObjectStoreUnavailableError(
                f"writing {key!r} under {self.url} failed: {exc}", created=set(created)
            ) from exc
        finally:
            for folder in {path.parent for path in created.values()}:
                fsync_dir(folder)
        return set(created)

    def put(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return iter(())
        found = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )
        return iter(sorted(key for key in found if key.startswith(prefix)))

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}")
        return path
