"""A durable on-disk spool of ingest batches waiting for the API.

Layout under the spool directory::

    pending/<time_ns>-<seq>-<rand>.json   batches to send, oldest first by name
    rejected/<same name>.json             batches the API refused (4xx), kept for a person
    rejected/<same name>.reason.txt       the API's status and message

A batch is written with ``edgeloop.files.atomic_write_bytes`` (temporary file, fsync,
rename, fsync of the directory), so after a crash or power loss a pending file is either
complete or absent. Pending batches are removed only once the API acknowledged them; a
batch the API rejects is moved to ``rejected/`` — never silently dropped, never retried
forever.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from pathlib import Path

from edgeloop.files import atomic_write_bytes, fsync_dir
from edgeloop.wire import IngestBatch

logger = logging.getLogger(__name__)

_TMP_GLOB = ".*.tmp"
"""Temporary files of ``edgeloop.files.atomic_write_bytes`` (``.<name>.<random>.tmp``)."""


class Spool:
    """Pending and rejected ingest batches in a directory (one writer process per directory).

    Args:
        root: the spool directory; created if missing. Temporary files left by a crash
            are removed on open.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
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

    def put(self, batch: IngestBatch) -> Path:
        """Store ``batch`` durably as the newest pending batch; returns its file."""
        return self.put_json(batch.model_dump_json().encode())

    def put_json(self, data: bytes) -> Path:
        """Store an already serialised ``IngestBatch`` (JSON bytes) as the newest pending batch."""
        name = f"{time.time_ns():020d}-{next(self._seq):08d}-{secrets.token_hex(3)}.json"
        path = self.pending_dir / name
        atomic_write_bytes(path, data)
        return path

    def pending(self) -> list[Path]:
        """Pending batch files, oldest first."""
        return sorted(self.pending_dir.glob("*.json"))

    def __len__(self) -> int:
        return len(self.pending())

    def rejected(self) -> list[Path]:
        """Rejected batch files, oldest first."""
        return sorted(self.rejected_dir.glob("*.json"))

    def load(self, path: Path) -> IngestBatch:
        """Read and validate a spooled batch.

        Raises:
            pydantic.ValidationError: the file is not a valid ``IngestBatch`` (see ``reject``).
        """
        return IngestBatch.model_validate_json(path.read_bytes())

    def ack(self, path: Path) -> None:
        """The API stored this batch: remove it from the spool."""
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def reject(self, path: Path, reason: str) -> Path:
        """Move a pending batch to ``rejected/`` with ``reason`` beside it; returns its new path."""
        target = self.rejected_dir / path.name
        atomic_write_bytes(target.with_suffix(".reason.txt"), reason.encode())
        os.replace(path, target)
        fsync_dir(self.rejected_dir)
        fsync_dir(path.parent)
        logger.error("batch %s rejected and kept in %s: %s", path.name, target, reason)
        return target

    def reject_json(self, data: bytes, reason: str) -> Path:
        """Keep a never-spooled batch (JSON bytes) in ``rejected/`` with ``reason``."""
        return self.reject(self.put_json(data), reason)
