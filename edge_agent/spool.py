"""A durable on-disk spool of ingest batches waiting for the API.

Layout under the spool directory::

    pending/<time_ns>-<seq>-<rand>-<frames>f.msgpack   batches to send, oldest first by name
    rejected/<same name>                  batches the API refused (4xx), kept for a person
    rejected/<same name, .reason.txt>     the API's status and message

A file holds the body as it is POSTed: ``.msgpack`` for wire version 3 (what agents send),
``.json`` for versions 1 and 2 (written by older agents; still sent).

A batch is written with ``edgeloop.files.atomic_write_bytes`` (temporary file, fsync,
rename, fsync of the directory), so after a crash or power loss a pending file is either
complete or absent. Pending batches are removed once the API acknowledged them; a batch
the API rejects is moved to ``rejected/`` — never retried forever.

Disk cap: the pending batches may take at most ``max_bytes`` (``AgentSettings.
spool_max_bytes``, 1 GiB by default). A new batch that would go over it first drops the
OLDEST pending batches (the newest frames are the ones a person is likelier to want), each
drop logged with its frames and bytes and counted in ``dropped_batches``; a single batch
larger than the whole cap is still kept, so the cap is exceeded by at most one batch.
A pending file's name carries its frame count (``...-<frames>f.msgpack``) so that a drop
needs no parse; files from older agents without it are counted by reading them.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

from edgeloop.files import atomic_write_bytes, fsync_dir
from edgeloop.wire import (
    MSGPACK_MEDIA_TYPE,
    AnyIngestBatch,
    ingest_body,
    ingest_media_type,
    parse_ingest_batch,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 30
"""Default disk cap of the pending batches, bytes (1 GiB)."""
_TMP_GLOB = ".*.tmp"
"""Temporary files of ``edgeloop.files.atomic_write_bytes`` (``.<name>.<random>.tmp``)."""


_FRAMES_IN_NAME = re.compile(r"-(\d+)f\.(?:json|msgpack)$")
_SUFFIXES = (".json", ".msgpack")


def _suffix(data: bytes) -> str:
    """``.msgpack`` for a MessagePack body, else ``.json``."""
    return ".msgpack" if ingest_media_type(data) == MSGPACK_MEDIA_TYPE else ".json"


def _batch_files(folder: Path) -> list[Path]:
    """The batch files of ``folder``, oldest first (names start with the time in ns)."""
    return sorted(
        p for p in folder.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith(".")
    )


def _frames_in(path: Path) -> int:
    """Frames of a pending batch: from its name, else counted in the file (0 if unreadable)."""
    if m := _FRAMES_IN_NAME.search(path.name):
        return int(m.group(1))
    try:
        return parse_ingest_batch(path.read_bytes()).frame_count
    except (OSError, ValueError):
        return 0


class Spool:
    """Pending and rejected ingest batches in a directory (one writer process per directory).

    Thread-safety: one thread writes (``put``, ``ack``, ``reject``); ``usage()`` may be
    called from any thread (the heartbeat).

    Args:
        root: the spool directory; created if missing. Temporary files left by a crash
            are removed on open.
        max_bytes: disk cap of the pending batches, bytes; None for no cap.

    Attributes:
        dropped_batches, dropped_frames, dropped_bytes: what the cap dropped since open.
    """

    def __init__(self, root: Path, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.pending_dir = self.root / "pending"
        self.rejected_dir = self.root / "rejected"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        for folder in (self.pending_dir, self.rejected_dir):
            for leftover in folder.glob(_TMP_GLOB):
                logger.warning(
                    "removing incomplete spool file %s left by an interrupted write", leftover
                )
                leftover.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        for path in self.pending():
            try:
                self._sizes[path.name] = path.stat().st_size
            except OSError:
                continue
        self.dropped_batches = 0
        self.dropped_frames = 0
        self.dropped_bytes = 0

    def usage(self) -> tuple[int, int]:
        """``(batches, bytes)`` pending now (thread-safe)."""
        with self._lock:
            return len(self._sizes), sum(self._sizes.values())

    def put(self, batch: AnyIngestBatch) -> Path:
        """Store ``batch`` durably as the newest pending batch; returns its file."""
        return self.put_body(ingest_body(batch), frames=batch.frame_count)

    def put_body(self, data: bytes, *, frames: int | None = None) -> Path:
        """Store an already encoded batch (``edgeloop.wire.ingest_body``'s bytes, ``frames``
        frames) as the newest pending batch, first dropping the oldest ones the disk cap
        requires."""
        if frames is None:
            try:
                frames = parse_ingest_batch(data).frame_count
            except ValueError:  # not a batch: it is rejected when replayed
                frames = 0
        self._make_room(len(data))
        name = (
            f"{time.time_ns():020d}-{next(self._seq):08d}-{secrets.token_hex(3)}-{frames}f"
            f"{_suffix(data)}"
        )
        path = self.pending_dir / name
        atomic_write_bytes(path, data)
        with self._lock:
            self._sizes[name] = len(data)
        return path

    def _make_room(self, incoming: int) -> None:
        if self.max_bytes is None:
            return
        _, held = self.usage()
        if held + incoming <= self.max_bytes:
            return
        batches = frames = freed = 0
        for path in self.pending():
            if held - freed + incoming <= self.max_bytes:
                break
            size = self._sizes.get(path.name, 0)
            count = _frames_in(path)
            path.unlink(missing_ok=True)
            with self._lock:
                self._sizes.pop(path.name, None)
            batches, frames, freed = batches + 1, frames + count, freed + size
        if not batches:
            return
        fsync_dir(self.pending_dir)
        self.dropped_batches += batches
        self.dropped_frames += frames
        self.dropped_bytes += freed
        logger.warning(
            "spool %s is at its cap of %d bytes: dropped the %d oldest batches "
            "(%d frames, %d bytes) to keep the newest; %d batches dropped since start",
            self.pending_dir,
            self.max_bytes,
            batches,
            frames,
            freed,
            self.dropped_batches,
        )

    def pending(self) -> list[Path]:
        """Pending batch files, oldest first."""
        return _batch_files(self.pending_dir)

    def __len__(self) -> int:
        return len(self.pending())

    def rejected(self) -> list[Path]:
        """Rejected batch files, oldest first."""
        return _batch_files(self.rejected_dir)

    def load(self, path: Path) -> AnyIngestBatch:
        """Read and validate a spooled batch.

        Raises:
            pydantic.ValidationError: the file is not a valid ``IngestBatch`` (see ``reject``).
        """
        return parse_ingest_batch(path.read_bytes())

    def ack(self, path: Path) -> None:
        """The API stored this batch: remove it from the spool."""
        path.unlink(missing_ok=True)
        with self._lock:
            self._sizes.pop(path.name, None)
        fsync_dir(path.parent)

    def reject(self, path: Path, reason: str) -> Path:
        """Move a pending batch to ``rejected/`` with ``reason`` beside it; returns its new path."""
        target = self.rejected_dir / path.name
        atomic_write_bytes(target.with_suffix(".reason.txt"), reason.encode())
        os.replace(path, target)
        with self._lock:
            self._sizes.pop(path.name, None)
        fsync_dir(self.rejected_dir)
        fsync_dir(path.parent)
        logger.error("batch %s rejected and kept in %s: %s", path.name, target, reason)
        return target

    def reject_body(self, data: bytes, reason: str) -> Path:
        """Keep a never-spooled batch (its body's bytes) in ``rejected/`` with ``reason``."""
        target = (
            self.rejected_dir
            / f"{time.time_ns():020d}-{next(self._seq):08d}-{secrets.token_hex(3)}{_suffix(data)}"
        )
        atomic_write_bytes(target.with_suffix(".reason.txt"), reason.encode())
        atomic_write_bytes(target, data)
        logger.error("batch %s rejected and kept in %s: %s", target.name, target, reason)
        return target
