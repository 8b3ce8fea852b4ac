"""Objects in S3-compatible storage (AWS S3, MinIO, Ceph RGW, ...) through boto3.

``s3://bucket/prefix`` puts key ``a/b.jpg`` at ``prefix/a/b.jpg`` in ``bucket``.
Credentials, region and endpoint come from boto3's standard configuration (``AWS_*``
variables, ``~/.aws``; ``AWS_ENDPOINT_URL`` for a non-AWS endpoint), so a site configures
edgeloop as it configures every other S3 client.

Create-exclusive writes use S3's conditional write (``If-None-Match: *``, answered 412 when
the key exists; AWS since 2024-08, MinIO, moto). A single PUT is atomic: readers see the
old object or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeloop.files import atomic_write_bytes
from edgeloop.objects import (
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreUnavailableError,
    check_key,
)

CONNECT_TIMEOUT_S = 5.0
"""boto3's connect timeout, s: an unreachable endpoint fails fast (503) instead of hanging
a request for boto3's default 60 s."""
READ_TIMEOUT_S = 30.0
"""boto3's read timeout, s."""
MAX_ATTEMPTS = 3
"""boto3's retry attempts ("standard" mode: back-off with jitter on throttling and 5xx)."""
PUT_CONCURRENCY = 8
"""Parallel PUTs of ``put_new_many`` (boto3's default connection pool holds 10)."""
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3ObjectStore(ObjectStore):
    """Objects under ``s3://bucket/prefix``.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        cache_dir: local copies for ``local_path``, keyed by object and ETag.

    Raises:
        ValueError: a URL without a bucket.
    """

    def __init__(self, url: str, *, cache_dir: Path) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"object store URL {url!r} names no bucket (s3://bucket/prefix)")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = cache_dir
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (boto3 clients are thread-safe)."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "s3",
                    config=Config(
                        connect_timeout=CONNECT_TIMEOUT_S,
                        read_timeout=READ_TIMEOUT_S,
                        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                        s3={"addressing_style": "path"},
                    ),
                )
            return self._client

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from exc
            raise ObjectStoreUnavailableError(
                f"object store {self.url}: {action} {key!r} failed: {exc}"
            ) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, missing credentials
            raise ObjectStoreUnavailableError(
                f"object store {self.url} unreachable ({action} {key!r}): {exc}"
            ) from exc

    def put_new(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        name = self._name(key)
        with self._errors("create", key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                # 412: the key exists; 409 ConditionalRequestConflict: a concurrent create
                # of the same key won the race. Either way this call created nothing.
                if _code(exc) in _EXISTS:
                    return False
                raise
        return True

    def put_new_many(self, items: Mapping[str, bytes]) -> set[str]:
        """``put_new`` of the items over ``PUT_CONCURRENCY`` parallel requests (one PUT is
        a network round trip; a batch of JPEGs would otherwise wait for each in turn)."""
        if len(items) <= 1:
            return super().put_new_many(items)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(PUT_CONCURRENCY, len(items))) as pool:
            futures = {key: pool.submit(self.put_new, key, data) for key, data in items.items()}
        created = {
            key for key, future in futures.items() if future.exception() is None and future.result()
        }
        for future in futures.values():
            error = future.exception()
            if error is not None:
                raise ObjectStoreUnavailableError(str(error), created=created) from error
        return created

    def put(self, key: str, data: bytes) -> None:
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def get(self, key: str) -> bytes:
        with self._errors("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
            return bytes(response["Body"].read())

    def exists(self, key: str) -> bool:
        try:
            with self._errors("look up", key):
                self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[str] = []
        with self._errors("list", prefix or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                found.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return iter(sorted(found))

    def local_path(self, key: str) -> Path:
        """A cached download, named by the key's hash and the object's ETag, so a
        replaced object is fetched again and an unchanged one never is."""
        name = self._name(key)
        with self._errors("look up", key):
            etag = str(self.client.head_object(Bucket=self.bucket, Key=name)["ETag"]).strip('"')
        digest = hashlib.sha256(f"{self.url}\0{key}".encode()).hexdigest()[:32]
        path = self.cache_dir / digest[:2] / f"{digest}-{etag}{Path(key).suffix}"
        if not path.exists():
            atomic_write_bytes(path, self.get(key), durable=False)
            for stale in path.parent.glob(f"{digest}-*"):
                if stale != path:
                    with contextlib.suppress(OSError):
                        os.unlink(stale)
        return path
