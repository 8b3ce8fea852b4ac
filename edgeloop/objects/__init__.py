"""Where the loop's files live: a local folder (the embedded default) or S3-compatible
object storage (the networked topology), behind one interface.

A file is named by a **key**, a relative POSIX path (``frames/cam-1/f~1.jpg``), the same on
both backends, so a row that stores a key stays valid when the data folder moves or the
files move to a bucket. ``open_object_store`` chooses the backend once, from the setting
``EDGELOOP_OBJECT_STORE_URL`` (``s3://bucket/prefix``; unset: the data folder); callers
never test which one they got (STYLE.md rule 12).

| backend | module | client |
|---|---|---|
| local folder | ``edgeloop.objects.local`` | the standard library |
| S3-compatible | ``edgeloop.objects.s3`` | boto3 (its standard ``AWS_*`` variables, ``AWS_ENDPOINT_URL`` included) |
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

KEY_MAX_BYTES = 1024
"""Longest key, UTF-8 bytes: S3's limit on an object key (AWS S3 user guide, "Naming
Amazon S3 objects")."""


class ObjectStoreError(RuntimeError):
    """The object store failed (base class)."""


class ObjectNotFoundError(ObjectStoreError, KeyError):
    """No object is stored under the key."""


class ObjectStoreUnavailableError(ObjectStoreError):
    """The object store could not be reached or refused the request (network, credentials,
    a missing bucket); retry later. The API answers 503.

    Attributes:
        created: from ``put_new_many``, the keys it created before the failure (the caller
            removes them when it gives up); empty otherwise.
    """

    def __init__(self, message: str, *, created: set[str] | None = None) -> None:
        super().__init__(message)
        self.created: set[str] = created or set()


def check_key(key: str) -> str:
    """``key`` when it is a valid key: relative, POSIX separators, no ``.``/``..`` parts,
    at most ``KEY_MAX_BYTES``.

    Raises:
        ValueError: saying what is wrong.
    """
    path = PurePosixPath(key)
    if not key or path.is_absolute() or "\\" in key:
        raise ValueError(f"object key must be a relative POSIX path, got {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"object key must not contain empty, '.' or '..' parts: {key!r}")
    if len(key.encode("utf-8")) > KEY_MAX_BYTES:
        raise ValueError(f"object key longer than {KEY_MAX_BYTES} bytes: {key[:64]!r}...")
    return key


class ObjectStore(ABC):
    """Files by key. Every write is atomic: a reader sees the old object or the new one.

    Attributes:
        url: where the objects live (a folder path, or ``s3://bucket/prefix``), for messages.
    """

    url: str

    @abstractmethod
    def put_new(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` unless an object is stored there already
        (create-exclusive, race-free across processes and machines).

        Returns:
            True when this call created the object; False when one existed (left unchanged).

        Raises:
            ObjectStoreUnavailableError: nothing was written.
        """

    def put_new_many(self, items: Mapping[str, bytes]) -> set[str]:
        """``put_new`` of every ``key -> data`` in ``items``; the keys this call created.

        Raises:
            ObjectStoreUnavailableError: its ``created`` names the keys created before the
                failure (the caller removes them when it gives up, as the ingest route does).
        """
        created: set[str] = set()
        for key, data in items.items():
            try:
                if self.put_new(key, data):
                    created.add(key)
            except ObjectStoreUnavailableError as exc:
                raise ObjectStoreUnavailableError(str(exc), created=created) from exc
        return created

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any object there (atomically).

        Raises:
            ObjectStoreUnavailableError: the old object (if any) is unchanged.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes.

        Raises:
            ObjectNotFoundError: nothing is stored under ``key``.
            ObjectStoreUnavailableError: the store could not be read.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``.

        Raises:
            ObjectStoreUnavailableError: the store could not be asked.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (nothing happens when there is none).

        Raises:
            ObjectStoreUnavailableError: the store could not be reached.
        """

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with ``prefix``, sorted.

        Raises:
            ObjectStoreUnavailableError: the store could not be listed.
        """

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """A local file holding the object's bytes, for libraries that read paths
        (ultralytics, OpenCV): the file itself for a local folder, a cached download
        (refreshed when the object changes) for object storage. Do not write to it.

        Raises:
            ObjectNotFoundError / ObjectStoreUnavailableError: as ``get``.
        """


def open_object_store(
    url: str | None, *, data_dir: Path, cache_dir: Path | None = None
) -> ObjectStore:
    """The object store the settings name.

    Args:
        url: ``s3://bucket[/prefix]`` for S3-compatible storage (credentials, region and
            endpoint from boto3's standard ``AWS_*`` variables and files); None or ``""``
            for the data folder itself; a plain path or ``file://`` URL for another folder.
        data_dir: the data folder (the local default's root).
        cache_dir: where object storage keeps local copies for ``local_path``;
            default ``<data_dir>/cache/objects``.

    Raises:
        ValueError: an unsupported URL scheme.
    """
    if not url:
        from edgeloop.objects.local import LocalObjectStore

        return LocalObjectStore(data_dir)
    if url.startswith("s3://"):
        from edgeloop.objects.s3 import S3ObjectStore

        return S3ObjectStore(url, cache_dir=cache_dir or data_dir / "cache" / "objects")
    if url.startswith("file://") or "://" not in url:
        from edgeloop.objects.local import LocalObjectStore

        return LocalObjectStore(Path(url.removeprefix("file://")))
    raise ValueError(
        f"EDGELOOP_OBJECT_STORE_URL {url!r}: use s3://bucket/prefix (S3-compatible storage) "
        "or a folder path; unset keeps the files in the data folder"
    )


__all__ = [
    "KEY_MAX_BYTES",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreUnavailableError",
    "check_key",
    "open_object_store",
]
