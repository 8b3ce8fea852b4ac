"""The crop vector index, published as versions: embedded qdrant-edge shards or a Qdrant server.

Embedded (default): one ``qdrant-edge-py`` shard per version under ``<data_dir>/qdrant/``
and a pointer file naming the published one; server (``EDGELOOP_QDRANT_URL``): one
collection per version and an alias on the published one (qdrant-client). How versions
are named, written, published and opened, and ``ShardReader`` (one open version):
``edgeloop.vectors.versions``.

Each embedded version is a real vector engine: cosine vectors, keyword payload indexes on
``camera_id`` and ``class_name`` (the filters use them), point ids from detection ids, and an
HNSW graph built before publishing once a version holds ``hnsw_min_points`` points (below
that an exact scan of the filtered points answers in a few ms). Readers only ever open the
published version; the API keeps it open (``api/search_index.py``). Older versions are pruned (the newest ``keep_versions`` stay; a
folder another process holds open is left for the next prune). Each point's payload:
``frame_key``, ``detection_id``, ``camera_id``, ``class_name``, ``confidence``, ``bbox``
(xyxy px of the original frame), ``captured_at``.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.vectors.mirror import prune_remote, pull_published, upload_version
from edgeloop.vectors.server import move_alias, read_alias
from edgeloop.vectors.versions import (
    ENGINE,
    HNSW_MIN_POINTS,
    KEYWORD_FIELDS,
    UPSERT_BATCH,
    CorruptIndexError,
    CropPoint,
    IndexLockedError,
    IndexNotPublishedError,
    PublishedIndex,
    ShardReader,
    point_id,
    point_uuid,
    promote_folder,
    query_vector,
    read_pointer,
    remove_if_unlocked,
    sorted_versions,
    vectors_by_detection,
    version_folders,
    version_name,
    version_number,
    write_pointer,
    write_shard,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from edgeloop.objects import ObjectStore
    from edgeloop.settings import LoopSettings

__all__ = [
    "COLLECTION",
    "CorruptIndexError",
    "CropPoint",
    "IndexLockedError",
    "IndexNotPublishedError",
    "ShardReader",
    "VectorIndex",
    "point_id",
    "point_uuid",
]

logger = logging.getLogger(__name__)

COLLECTION = "crops"
MIRROR_CHECK_S = 2.0
"""With a mirror: how often a reader asks the object store for a newer version, s (each
ask is one GET of the pointer; a new version is downloaded once)."""
KEEP_VERSIONS = 2


class VectorIndex:
    """Versioned crop index: ``publish`` writes a new version, readers search the published one.

    Args:
        root: embedded mode's folder (``<data_dir>/qdrant``); also holds the publish lock.
        url: a Qdrant server; when set, server mode (collections + alias) is used.
        collection: base collection name (server: the alias).
        keep_versions: versions kept after a publish (the published one included), >= 1.
        lock_timeout_s: how long opening an embedded folder retries while another process holds it.
        keep_open: keep the reader open between searches (re-reading the pointer on every
            call). Off by default: open, search, close, so no process is locked out.
        hnsw_min_points: versions with at least this many points get an HNSW graph.
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
        hnsw_min_points: int = HNSW_MIN_POINTS,
        client_factory: Callable[[], QdrantClient] | None = None,
        mirror: ObjectStore | None = None,
        mirror_check_s: float = MIRROR_CHECK_S,
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
        self.root = Path(root)
        self.url = url
        self.collection = collection
        self.keep_versions = keep_versions
        self.lock_timeout_s = lock_timeout_s
        self.keep_open = keep_open
        self.hnsw_min_points = hnsw_min_points
        self._client_factory = client_factory
        self._reader: ShardReader | None = None
        self._reader_lock = threading.RLock()
        self.mirror = mirror
        self.mirror_check_s = mirror_check_s
        self._mirror_checked = -math.inf
        self._pull_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LoopSettings, **kwargs: Any) -> VectorIndex:
        """The index at ``settings.qdrant_path``, or on ``settings.qdrant_url`` when set;
        with object storage configured, published versions also go through it
        (``edgeloop.vectors.mirror``), so processes that share no folder share versions."""
        mirror = settings.objects() if settings.object_store_url else None
        return cls(settings.qdrant_path, url=settings.qdrant_url, mirror=mirror, **kwargs)

    @property
    def server_mode(self) -> bool:
        return self.url is not None or self._client_factory is not None

    def _server_client(self) -> QdrantClient:
        if self._client_factory is not None:
            return self._client_factory()
        from qdrant_client import QdrantClient

        return QdrantClient(url=self.url)

    # ------------------------------------------------------------------ reading
    def published(self) -> PublishedIndex | None:
        """The published version, or None before the first publish.

        Raises:
            CorruptIndexError: the embedded pointer file is unreadable.
        """
        if self.server_mode:
            client = self._server_client()
            try:
                return read_alias(client, self.collection, str(self.url or "server"))
            finally:
                client.close()
        if self.mirror is not None:
            with self._pull_lock:
                now = time.monotonic()
                if now - self._mirror_checked >= self.mirror_check_s:
                    self.root.mkdir(parents=True, exist_ok=True)
                    info = pull_published(self.mirror, self.root)
                    self._mirror_checked = now
                    return info
        return read_pointer(self.root)

    def versions(self) -> list[str]:
        """Versions present (published or not), oldest first."""
        if self.server_mode:
            client = self._server_client()
            try:
                names = [c.name for c in client.get_collections().collections]
            finally:
                client.close()
            prefix = f"{self.collection}_"
            return sorted_versions(n[len(prefix) :] for n in names if n.startswith(prefix))
        return sorted_versions(version_folders(self.root))

    def _require_published(self) -> PublishedIndex:
        info = self.published()
        if info is None:
            raise IndexNotPublishedError(
                "the crop index has no published version yet; materialize the crop_embeddings "
                "asset (Dagster) first"
            )
        return info

    def _with_reader(self, use: Callable[[ShardReader], Any]) -> Any:
        info = self._require_published()
        with self._reader_lock:
            if self._reader is not None and self._reader.info.version != info.version:
                self._reader.close()
                self._reader = None
            reader = self._reader or ShardReader(info, lock_timeout_s=self.lock_timeout_s)
            try:
                return use(reader)
            finally:
                if self.keep_open:
                    self._reader = reader
                else:
                    reader.close()

    def search_similar(
        self, vector: np.ndarray | Sequence[float], limit: int = 10, *, camera_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Nearest crops to ``vector`` (cosine) in the published version, best first.

        Args:
            vector: ``(dims,)`` from the same embedder as the published index.
            limit: how many results, >= 1.
            camera_id: only crops from this camera, when given (a payload-index filter).

        Returns:
            Payloads (``frame_key``, ``detection_id``, ``camera_id``, ``class_name``,
            ``confidence``, ``bbox`` xyxy px, ``captured_at``) each with ``score`` (cosine, [-1, 1]).

        Raises:
            IndexNotPublishedError: nothing published yet.
            ValueError: the vector's length differs from the index's dims.
        """
        if not self.server_mode:
            return self._with_reader(
                lambda reader: reader.search(vector, limit, camera_id=camera_id)
            )
        from qdrant_client import models

        info = self._require_published()
        query = query_vector(vector, info.dims)
        flt = None
        if camera_id:
            match = models.MatchValue(value=camera_id)
            flt = models.Filter(must=[models.FieldCondition(key="camera_id", match=match)])
        client = self._server_client()
        try:
            hits = client.query_points(
                self.collection, query=query, limit=limit, query_filter=flt, with_payload=True
            ).points
        finally:
            client.close()
        return [{**(hit.payload or {}), "score": float(hit.score)} for hit in hits]

    def vector_of(self, detection_id: str) -> np.ndarray | None:
        """The stored ``(dims,)`` vector of a detection's crop in the published version, or None."""
        return self.vectors_of([detection_id]).get(detection_id)

    def vectors_of(self, detection_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """``vector_of`` for many detections in one call (one request to a Qdrant server):
        ``detection_id -> (dims,)`` float32 vector of those in the published version."""
        if not detection_ids:
            return {}
        if not self.server_mode:
            return self._with_reader(lambda reader: reader.vectors_of(detection_ids))
        self._require_published()
        client = self._server_client()
        try:
            found = client.retrieve(
                self.collection,
                ids=[point_id(d) for d in dict.fromkeys(detection_ids)],
                with_payload=["detection_id"],
                with_vectors=True,
            )
        finally:
            client.close()
        return vectors_by_detection(found)

    def close(self) -> None:
        """Close a reader kept open by ``keep_open``."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ------------------------------------------------------------------ writing
    def publish(
        self, points: Sequence[CropPoint], *, embedder: str, digest: str = ""
    ) -> PublishedIndex:
        """Write ``points`` as a new complete version, publish it, prune old versions.

        Durability (embedded): the shard is flushed and closed, its folder renamed from
        ``.vNNNN.partial`` and the parent fsynced, then the pointer replaced with fsync; a
        crash before that leaves the previous version published.

        Args:
            points: every crop of the new version (not a delta); all vectors one length.
            embedder: the embedder's name, recorded so readers can check their queries.
            digest: recorded in the version (see ``PublishedIndex.digest``).

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
            try:
                current = self.published()
            except CorruptIndexError:
                current = None  # a new version replaces an unreadable pointer
            if current is not None:
                existing.append(version_number(current.version) or 0)
            version = version_name(max(existing, default=0) + 1)
            meta = {
                "version": version,
                "embedder": embedder,
                "dims": dims.pop(),
                "published_at": datetime.now(UTC).isoformat(),
                "digest": digest,
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

    def _publish_local(
        self, points: Sequence[CropPoint], version: str, meta: dict[str, Any]
    ) -> PublishedIndex:
        for stale in self.root.glob(".v*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = self.root / f".{version}.partial"
        count = write_shard(
            partial,
            points,
            dims=int(meta["dims"]),
            build_hnsw=len(points) >= self.hnsw_min_points,
        )
        folder = self.root / version
        promote_folder(partial, folder)
        info = PublishedIndex.from_meta(
            {**meta, "engine": ENGINE},
            collection=self.collection,
            points=count,
            location=str(folder.resolve()),
        )
        write_pointer(self.root, info)
        if self.mirror is not None:
            upload_version(self.mirror, self.root, info)
        return info

    def _publish_server(
        self, points: Sequence[CropPoint], version: str, meta: dict[str, Any]
    ) -> PublishedIndex:
        from qdrant_client import models

        name = f"{self.collection}_{version}"
        client = self._server_client()
        try:
            client.create_collection(
                name,
                vectors_config=models.VectorParams(
                    size=int(meta["dims"]), distance=models.Distance.COSINE
                ),
                metadata=meta,
            )
            if self.url is not None:  # qdrant-client's local mode ignores payload indexes
                for key in KEYWORD_FIELDS:
                    client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD)
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
            count = int(client.count(name, exact=True).count)
            move_alias(client, self.collection, name)
        finally:
            client.close()
        return PublishedIndex.from_meta(
            {**meta, "engine": "qdrant-server"},
            collection=name,
            points=count,
            location=str(self.url or "server"),
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
            pruned = [v for v in old if remove_if_unlocked(self.root / v)]
            if self.mirror is not None:
                prune_remote(self.mirror, self.keep_versions)
        if pruned:
            logger.info("pruned crop index versions %s", ", ".join(pruned))
        return pruned
