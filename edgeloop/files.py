"""File helpers shared by the agent and the loop host (standard library only).

``atomic_write_bytes`` is the one durable write of the code base: the spool, the model
cache, frame JPEGs, token files, pointer files and manifests all go through it, so a
crash leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks (1 MiB by default)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename or unlink inside it survives a power cut (POSIX only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its renames are durable enough
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, fsync, rename.

    Readers see the old content or the new one, never a partial file; the parent folder
    is created when missing.

    Args:
        path: the target file.
        data: its whole new content.
        mode: permission bits of the new file (0o600 for secrets such as tokens).
        durable: also fsync the file and its folder, so the write survives a power cut
            (the spool, tokens, acknowledged JPEGs); False skips both fsyncs for files
            that can be rebuilt (caches, pointers written again on the next run).

    Raises:
        OSError: the folder is not writable or the disk is full; ``path`` is unchanged.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode, durable=durable)
