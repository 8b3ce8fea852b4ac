"""The crop vector index in Qdrant, published as versioned collections.

Embedded (default): one Qdrant local folder per version under ``<data_dir>/qdrant/`` and a
pointer file naming the published one; server (``EDGELOOP_QDRANT_URL``): one collection
per version and an alias on the published one. How versions are named, published and
opened: ``edgeloop.vector_versions``.

Readers only ever open the published version. Older versions are pruned (the newest
``keep_versions`` stay; an embedded folder another process holds open is left for the
next prune). Each point's payload: ``frame_key``, ``detection_id``, ``camera_id``,
``class_name``, ``confidence``, ``bbox`` (xyxy px of the original frame), ``captured_at``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.vector_versions import (
    PublishedIndex,
    move_alias,
    open_local,
    read_alias,
    read_pointer,
    remove_if_unlocked,
    sorted_versions,
    version_folders,
    version_name,
    version_number,
    write_pointer,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)

COLLECTION = "crops"
KEEP_VERSIONS = 2
UPSERT_BATCH = 256


class IndexNotPublishedError(LookupError):
    """No version of the crop index has been published yet (materialize crop_embeddings)."""


@dataclass(frozen=True)
class CropPoint:
    """One detection crop's vector and what it shows.

    Attributes:
        vector: ``(dims,)`` float32, L2-normalised.
        bbox_xyxy: ``(x1, y1, x2, y2)`` px of the original frame.
        captured_at_iso: capture time of the frame, ISO 8601 UTC.
    """

    detection_id: str
    frame_key: str
    camera_id: str
    class_name: str
    confidence: float
    bbox_xyxy: tuple[float, float, float, float]
    captured_at_iso: str
    vector: np.ndarray

    def payload(self) -> dict[str, Any]:
        return {
            "detection_id": self.detection_id,
            "frame_key": self.frame_key,
            "camera_id": self.camera_id,
            "class_name": self.class_name,
            "confidence": float(self.confidence),
            "bbox": [float(v) for v in self.bbox_xyxy],
            "captured_at": self.captured_at_iso,
        }


def point_id(detection_id: str) -> str:
    """Qdrant point id for a detection (Qdrant ids are ints or UUIDs): a stable UUID5."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgeloop:detection:{detection_id}"))


class VectorIndex:
    """Versioned crop index: ``publish`` writes a new version, readers search the published one.

    Args:
        root: embedded mode's folder (``<data_dir>/qdrant``); also holds the publish lock.
        url: a Qdrant server; when set, server mode (collections + alias) is used.
        collection: base collection name (embedded: the collection; server: the alias).
        keep_versions: versions kept after a publish (the published one included), >= 1.
        lock_timeout_s: how long opening an embedded folder retries while another process holds it.
        keep_open: keep the reader's client open between searches (re-checking the pointer on
            every call). Off by default: open, search, close, so no process is locked out.
        client_factory: builds the server-mode client; default ``QdrantClient(url=url)``.
            Tests pass a local client here to exercise the alias path.
    """

    def __init__(
        self,
        root: Path,
        *,
        url: str | None = None,
        collection: str = COLLECTION,
        keep_versions: int = KEEP_VERSIONS,
        lock_timeout_s: float = 30.0,
        keep_open: bool = False,
        client_factory: Callable[[], QdrantClient] | None = None,
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
        self.root = Path(root)
        self.url = url
        self.collection = collection
        self.keep_versions = keep_versions
        self.lock_timeout_s = lock_timeout_s
        self.keep_open = keep_open
        self._client_factory = client_factory
        self._reader: tuple[str, QdrantClient] | None = None
        self._reader_lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: LoopSettings, **kwargs: Any) -> VectorIndex:
        """The index at ``settings.qdrant_path``, or on ``settings.qdrant_url`` when set."""
        return cls(settings.qdrant_path, url=settings.qdrant_url, **kwargs)

    @property
    def server_mode(self) -> bool:
        return self.url is not None or self._client_factory is not None

    # ------------------------------------------------------------------ clients
    def _server_client(self) -> QdrantClient:
        if self._client_factory is not None:
            return self._client_factory()
        from qdrant_client import QdrantClient

        return QdrantClient(url=self.url)

    # ------------------------------------------------------------------ reading
    def published(self) -> PublishedIndex | None:
        """The published version, or None before the first publish."""
        if self.server_mode:
            return self._published_server()
        return read_pointer(self.root)

    def _published_server(self) -> PublishedIndex | None:
        client = self._server_client()
        try:
            return read_alias(client, self.collection, str(self.url or "server"))
        finally:
            client.close()

    def versions(self) -> list[str]:
        """Versions present (published or not), oldest first."""
        if self.server_mode:
            client = self._server_client()
            try:
                names = [c.name for c in client.get_collections().collections]
            finally:
                client.close()
            prefix = f"{self.collection}_"
            found = [n[len(prefix) :] for n in names if n.startswith(prefix)]
        else:
            found = version_folders(self.root)
        return sorted_versions(found)

    @contextmanager
    def _published_client(self) -> Iterator[tuple[PublishedIndex, QdrantClient, str]]:
        """(published info, a client on it, the name to query) — closed after unless keep_open."""
        info = self.published()
        if info is None:
            raise IndexNotPublishedError(
                "the crop index has no published version yet; materialize the crop_embeddings "
                "asset (Dagster) first"
            )
        if self.server_mode:
            client = self._server_client()
            try:
                yield info, client, self.collection
            finally:
                client.close()
            return
        with self._reader_lock:
            if self._reader is not None and self._reader[0] != info.version:
                self._reader[1].close()
                self._reader = None
            if self._reader is not None:
                client = self._reader[1]
            else:
                client = open_local(Path(info.location), self.lock_timeout_s)
            try:
                yield info, client, info.collection
            finally:
                if self.keep_open:
                    self._reader = (info.version, client)
                else:
                    client.close()

    def search_similar(
        self, vector: np.ndarray | Sequence[float], limit: int = 10, *, camera_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Nearest crops to ``vector`` (cosine) in the published version, best first.

        Args:
            vector: ``(dims,)`` from the same embedder as the published index.
            limit: how many results, >= 1.
            camera_id: only crops from this camera, when given.

        Returns:
            Payloads (``frame_key``, ``detection_id``, ``camera_id``, ``class_name``,
            ``confidence``, ``bbox`` xyxy px, ``captured_at``) each with ``score`` (cosine, [-1, 1]).

        Raises:
            IndexNotPublishedError: nothing published yet.
            ValueError: the vector's length differs from the index's dims.
        """
        from qdrant_client import models

        query = np.asarray(vector, dtype=np.float32).ravel()
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        with self._published_client() as (info, client, name):
            if info.dims and query.shape[0] != info.dims:
                raise ValueError(
                    f"query vector has {query.shape[0]} dims but the published index {info.version} "
                    f"({info.embedder}) has {info.dims}; embed the query with the same embedder"
                )
            flt = (
                models.Filter(
                    must=[
                        models.FieldCondition(
                            key="camera_id", match=models.MatchValue(value=camera_id)
                        )
                    ]
                )
                if camera_id
                else None
            )
            hits = client.query_points(
                name, query=query.tolist(), limit=limit, query_filter=flt, with_payload=True
            ).points
        return [{**(hit.payload or {}), "score": float(hit.score)} for hit in hits]

    def vector_of(self, detection_id: str) -> np.ndarray | None:
        """The stored ``(dims,)`` vector of a detection's crop in the published version, or None."""
        with self._published_client() as (_, client, name):
            found = client.retrieve(name, ids=[point_id(detection_id)], with_vectors=True)
        if not found or found[0].vector is None:
            return None
        return np.asarray(found[0].vector, dtype=np.float32)

    def close(self) -> None:
        """Close a reader kept open by ``keep_open``."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader[1].close()
                self._reader = None

    # ------------------------------------------------------------------ writing
    def publish(self, points: Sequence[CropPoint], *, embedder: str) -> PublishedIndex:
        """Write ``points`` as a new complete version, publish it, prune old versions.

        Args:
            points: every crop of the new version (not a delta); all vectors one length.
            embedder: the embedder's name, recorded so readers can check their queries.

        Raises:
            ValueError: no points, or vectors of different lengths.
        """
        if not points:
            raise ValueError("refusing to publish an empty crop index: no points given")
        dims = {p.vector.shape[0] for p in points}
        if len(dims) != 1:
            raise ValueError(f"all vectors must have one length, got lengths {sorted(dims)}")
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".publish.lock"), timeout=self.lock_timeout_s * 4):
            existing = [version_number(v) or 0 for v in self.versions()]
            current = self.published()
            if current is not None:
                existing.append(version_number(current.version) or 0)
            version = version_name(max(existing, default=0) + 1)
            meta = {
                "version": version,
                "embedder": embedder,
                "dims": dims.pop(),
                "published_at": datetime.now(UTC).isoformat(),
            }
            if self.server_mode:
                info = self._publish_server(points, version, meta)
            else:
                info = self._publish_local(points, version, meta)
            self._prune(info.version)
        logger.info(
            "published crop index %s: %s points, %s dims, embedder %s",
            info.version,
            info.points,
            info.dims,
            info.embedder,
        )
        return info

    def _upsert(
        self, client: QdrantClient, name: str, points: Sequence[CropPoint], meta: dict[str, Any]
    ) -> None:
        from qdrant_client import models

        client.create_collection(
            name,
            vectors_config=models.VectorParams(
                size=int(meta["dims"]), distance=models.Distance.COSINE
            ),
            metadata=meta,
        )
        if self.url is not None:  # local mode ignores payload indexes (and warns)
            client.create_payload_index(name, "camera_id", models.PayloadSchemaType.KEYWORD)
        for start in range(0, len(points), UPSERT_BATCH):
            batch = points[start : start + UPSERT_BATCH]
            client.upsert(
                name,
                points=[
                    models.PointStruct(
                        id=point_id(p.detection_id),
                        vector=np.asarray(p.vector, dtype=np.float32).tolist(),
                        payload=p.payload(),
                    )
                    for p in batch
                ],
                wait=True,
            )

    def _publish_local(
        self, points: Sequence[CropPoint], version: str, meta: dict[str, Any]
    ) -> PublishedIndex:
        for stale in self.root.glob(".v*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = self.root / f".{version}.partial"
        client = open_local(partial, self.lock_timeout_s)
        try:
            self._upsert(client, self.collection, points, meta)
            count = int(client.count(self.collection, exact=True).count)
        finally:
            client.close()
        folder = self.root / version
        partial.rename(folder)
        info = PublishedIndex.from_meta(
            meta, collection=self.collection, points=count, location=str(folder.resolve())
        )
        write_pointer(self.root, info)
        return info

    def _publish_server(
        self, points: Sequence[CropPoint], version: str, meta: dict[str, Any]
    ) -> PublishedIndex:
        name = f"{self.collection}_{version}"
        client = self._server_client()
        try:
            self._upsert(client, name, points, meta)
            count = int(client.count(name, exact=True).count)
            move_alias(client, self.collection, name)
        finally:
            client.close()
        return PublishedIndex.from_meta(
            meta, collection=name, points=count, location=str(self.url or "server")
        )

    def _prune(self, published_version: str) -> list[str]:
        """Drop versions older than the newest ``keep_versions``; never the published one."""
        old = [v for v in self.versions()[: -self.keep_versions] if v != published_version]
        pruned: list[str] = []
        if self.server_mode:
            client = self._server_client()
            try:
                for version in old:
                    client.delete_collection(f"{self.collection}_{version}")
                    pruned.append(version)
            finally:
                client.close()
        else:
            for version in old:
                if remove_if_unlocked(self.root / version):
                    pruned.append(version)
        if pruned:
            logger.info("pruned crop index versions %s", ", ".join(pruned))
        return pruned
