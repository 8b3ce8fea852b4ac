"""The frames' JPEGs at ingest: a structural check, where each is stored, and durable
create-exclusive writes (a stored JPEG is never replaced).

Everything here runs outside the DuckDB connection (``api.routes.ingest``): the JPEGs are
durable before the commit that refers to them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeloop.files import fsync_dir

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"


class BadJpegError(ValueError):
    """A frame's JPEG is not a complete JPEG (missing SOI/EOI markers)."""

    def __init__(self, frame_key: str, reason: str) -> None:
        super().__init__(f"frame {frame_key}: {reason}")
        self.frame_key = frame_key


def check_jpeg(frame_key: str, data: bytes) -> None:
    """Cheap structural check: starts with SOI (FF D8 FF), ends with EOI (FF D9).

    Trailing zero padding after EOI is tolerated (some encoders add it).

    Raises:
        BadJpegError: naming the frame.
    """
    if not data.startswith(JPEG_SOI):
        raise BadJpegError(frame_key, "jpeg does not start with the JPEG SOI marker (FF D8 FF)")
    if not data.rstrip(b"\x00").endswith(JPEG_EOI):
        raise BadJpegError(
            frame_key, "jpeg is truncated: it does not end with the EOI marker (FF D9)"
        )


def jpeg_path(frames_dir: Path, camera_id: str, frame_key: str) -> Path:
    """Where a frame's JPEG lives: ``<frames_dir>/<camera_id>/<frame_key, ':' -> '~'>.jpg``.

    ``~`` is outside the frame_key alphabet (``[A-Za-z0-9_.:-]``), so names never collide.
    """
    return frames_dir / camera_id / f"{frame_key.replace(':', '~')}.jpg"


@dataclass(frozen=True)
class JpegWrites:
    """What ``write_jpegs`` did: the frames whose file it created, and those it refused
    because a different JPEG is already stored under their key."""

    created: frozenset[str]
    conflicts: frozenset[str]


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def write_jpegs(jpegs: Mapping[str, bytes], paths: dict[str, Path]) -> JpegWrites:
    """Write each frame's JPEG (``jpegs``: frame_key -> JPEG bytes) durably and
    create-exclusive to ``paths[frame_key]``.

    The bytes go to a temporary file (fsync), which is then hard-linked to the target:
    ``link`` fails when the target exists, so a stored JPEG is never replaced, not even
    by two requests racing on one key. A target that already holds the same bytes (a
    replayed frame) is left as it is; one that holds different bytes makes the frame a
    conflict, which the caller must not store. The folders are fsync'ed after.

    Raises:
        OSError: a write failed; files created so far stay (they are removed by
            ``remove_jpegs`` when the batch is not stored).
    """
    touched_dirs: set[Path] = set()
    created: set[str] = set()
    conflicts: set[str] = set()
    for key, jpeg in jpegs.items():
        target = paths[key]
        if target.exists():
            if not _same_bytes(target, jpeg):
                conflicts.add(key)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(jpeg)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
            created.add(key)
            touched_dirs.add(target.parent)
        except FileExistsError:  # another request created it since the check above
            if not _same_bytes(target, jpeg):
                conflicts.add(key)
        finally:
            tmp.unlink(missing_ok=True)
    for folder in touched_dirs:
        fsync_dir(folder)
    return JpegWrites(created=frozenset(created), conflicts=frozenset(conflicts))


def remove_jpegs(keys: Iterable[str], paths: dict[str, Path]) -> None:
    """Remove the JPEGs of ``keys`` that this request created but did not store (a
    duplicate or conflicting frame): no file outlives a frame row that refers to it."""
    for key in keys:
        paths[key].unlink(missing_ok=True)
