"""The API's handle on the crop index: the published version kept open, reopened when it moves.

Opening a version costs a segment load (milliseconds to seconds), and an embedded shard
allows one process at a time, so the API opens the published version once and keeps it
(DESIGN.md, "Real components"). Every request stats the pointer file at most once per
``check_interval_s``; when the pointer names a new version the holder opens it, swaps it
in and closes the old one once the requests still reading it are done (a lease count).
The old folder is then unlocked and the next publish prunes it.

With ``EDGELOOP_QDRANT_URL`` set the holder hands out server-mode readers instead (the
server keeps the index open; the alias moves atomically).

The holder is attached lazily to ``app.state.search_index`` by ``get_search_index``; the
embedder of text queries likewise to ``app.state.text_embedder`` (``TextQueryEmbedder``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
import numpy.typing as npt
from fastapi import Depends, Request

from edgeloop.settings import LoopSettings
from edgeloop.vectors import ShardReader, VectorIndex
from edgeloop.vectors.versions import (
    CorruptIndexError,
    IndexLockedError,
    IndexNotPublishedError,
    PublishedIndex,
    pointer_stamp,
    read_pointer,
)

if TYPE_CHECKING:
    from edgeloop.embeddings import Embedder

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
"""How often (at most) a request looks at the pointer file: one ``stat``."""


class ServerReader:
    """The published collection on a Qdrant server, with ``ShardReader``'s reading methods."""

    def __init__(self, index: VectorIndex, info: PublishedIndex) -> None:
        self.index = index
        self.info = info

    def search(
        self, vector: np.ndarray | Sequence[float], limit: int = 10, *, camera_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self.index.search_similar(vector, limit, camera_id=camera_id)

    def vector_of(self, detection_id: str) -> np.ndarray | None:
        return self.index.vector_of(detection_id)

    def vectors_of(self, detection_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.index.vectors_of(detection_ids)


class _Lease:
    """An open reader and how many requests are reading it."""

    def __init__(self, reader: ShardReader) -> None:
        self.reader = reader
        self.users = 0
        self.retired = False


class SearchIndex:
    """Keeps the published crop index open for a process; safe under concurrent requests.

    Args:
        settings: where the index lives (``qdrant_path``) or the server (``qdrant_url``).
        check_interval_s: at most one pointer ``stat`` per this many seconds.
        lock_timeout_s: how long opening a version waits while another process holds it.
    """

    def __init__(
        self,
        settings: LoopSettings,
        *,
        check_interval_s: float = CHECK_INTERVAL_S,
        lock_timeout_s: float = 5.0,
    ) -> None:
        self.index = VectorIndex.from_settings(settings, lock_timeout_s=lock_timeout_s)
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()  # guards the fields below
        self._open_lock = threading.Lock()  # one thread opens a new version at a time
        self._current: _Lease | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")

    @contextmanager
    def reader(self) -> Iterator[ShardReader | ServerReader]:
        """The published version, open, for the duration of the ``with`` block.

        Raises:
            IndexNotPublishedError: nothing is published (or the pointer was removed).
            CorruptIndexError: the pointer or the version it names cannot be read, and no
                earlier version is open to fall back on.
            IndexLockedError: the version stayed locked by another process, with no
                earlier version open.
        """
        if self.index.server_mode:
            info = self.index.published()
            if info is None:
                raise IndexNotPublishedError("no crop index is published on the Qdrant server")
            yield ServerReader(self.index, info)
            return
        self._refresh()
        with self._lock:
            lease = self._current
            if lease is None:
                raise IndexNotPublishedError("no crop index is published yet")
            lease.users += 1
        try:
            yield lease.reader
        finally:
            with self._lock:
                lease.users -= 1
                done = lease.retired and lease.users == 0
            if done:
                lease.reader.close()

    def _refresh(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = now - self._checked_at >= self.check_interval_s or self._current is None
        if not due:
            return
        with self._open_lock:
            stamp = pointer_stamp(self.index.root)
            with self._lock:
                self._checked_at = time.monotonic()
                unchanged = stamp == self._stamp and self._current is not None
            if unchanged:
                return
            if stamp is None:
                self._swap(None, None)
                return
            try:
                info = read_pointer(self.index.root)
                current = self._current
                if info is not None and current and current.reader.info.version == info.version:
                    with self._lock:
                        self._stamp = stamp
                    return
                reader = (
                    ShardReader(info, lock_timeout_s=self.index.lock_timeout_s) if info else None
                )
            except (CorruptIndexError, IndexLockedError) as exc:
                if self._current is None:
                    raise
                logger.warning("keeping index %s open: %s", self._current.reader.info.version, exc)
                return  # retried at the next check
            self._swap(reader, stamp)

    def _swap(self, reader: ShardReader | None, stamp: tuple[int, int, int] | None) -> None:
        with self._lock:
            old, self._current = self._current, _Lease(reader) if reader else None
            self._stamp = stamp
            close_now = old is not None and old.users == 0
            if old is not None:
                old.retired = True
        if reader is not None:
            logger.info(
                "search index now serves %s (%s points)", reader.info.version, reader.info.points
            )
        if old is not None and close_now:
            old.reader.close()

    def close(self) -> None:
        """Close the open version (requests still reading it finish first)."""
        self._swap(None, None)


class TextQueryEmbedder:
    """The embedder that turns a text query into a vector: built on the first text query,
    then kept for the app's life (the settings do not change while it runs).

    Building OpenCLIP loads its weights, seconds and hundreds of MB; the route used to
    build it for every text query. ``embed`` may run from several request threads at once
    (inference only, under ``torch.inference_mode``).
    """

    def __init__(self, loop: LoopSettings) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None

    def get(self) -> Embedder:
        """The embedder, built on first use.

        Raises:
            ValueError, RuntimeError: as ``edgeloop.embeddings.build_embedder`` (a setting
                missing, weights that cannot be loaded); nothing is kept, so a fixed
                checkpoint is picked up by the next query.
        """
        from edgeloop.embeddings import build_embedder

        with self._lock:
            if self._embedder is None:
                self._embedder = build_embedder(self.loop)
            return self._embedder

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        """``text`` as a (dims,) float32 L2-normalised vector.

        Raises:
            ValueError, RuntimeError: as ``get``.
            edgeloop.embeddings.TextEmbeddingUnsupportedError: the embedder has no text side.
        """
        return self.get().embed_text([text])[0]


_attach_lock = threading.Lock()
_Held = TypeVar("_Held", "SearchIndex", TextQueryEmbedder)


def _attached(request: Request, name: str, kind: type[_Held]) -> _Held:
    """``app.state.<name>``, a ``kind`` of the app's loop settings created on first use."""
    state = request.app.state
    holder = getattr(state, name, None)
    if holder is None:
        with _attach_lock:
            holder = getattr(state, name, None)
            if holder is None:
                holder = kind(state.settings.loop)
                setattr(state, name, holder)
    if not isinstance(holder, kind):
        raise TypeError(f"app.state.{name} is a {type(holder).__name__}, not a {kind.__name__}")
    return holder


def get_search_index(request: Request) -> SearchIndex:
    """The app's ``SearchIndex``, created on first use and kept on ``app.state.search_index``."""
    return _attached(request, "search_index", SearchIndex)


def get_text_embedder(request: Request) -> TextQueryEmbedder:
    """The app's ``TextQueryEmbedder``, kept on ``app.state.text_embedder``."""
    return _attached(request, "text_embedder", TextQueryEmbedder)


SearchIndexDep = Annotated[SearchIndex, Depends(get_search_index)]
TextEmbedderDep = Annotated[TextQueryEmbedder, Depends(get_text_embedder)]
