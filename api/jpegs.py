"""The frames' JPEGs at ingest: a structural check, their object keys, and durable
create-exclusive writes to the object store (a stored JPEG is never replaced).

Everything here runs outside the DuckDB connection (``api.routes.ingest``): the JPEGs are
durable before the commit that refers to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgeloop.objects import ObjectNotFoundError, ObjectStore, ObjectStoreUnavailableError

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


def jpeg_key(camera_id: str, frame_key: str) -> str:
    """The object key of a frame's JPEG (``edgeloop.objects``), also what
    ``frames.jpeg_path`` stores: ``frames/<camera_id>/<frame_key, ':' -> '~'>.jpg``,
    relative to the data folder or the object store's prefix.

    ``~`` is outside the frame_key alphabet (``[A-Za-z0-9_.:-]``), so names never collide.
    """
    return f"frames/{camera_id}/{frame_key.replace(':', '~')}.jpg"


@dataclass(frozen=True)
class JpegWrites:
    """What ``write_jpegs`` did: the frames whose file it created, and those it refused
    because a different JPEG is already stored under their key."""

    created: frozenset[str]
    conflicts: frozenset[str]


def write_jpegs(
    objects: ObjectStore, jpegs: Mapping[str, bytes], keys: Mapping[str, str]
) -> JpegWrites:
    """Store each frame's JPEG (``jpegs``: frame_key -> JPEG bytes) durably and
    create-exclusive under its object key (``keys``: frame_key -> ``jpeg_key``).

    A stored JPEG is never replaced, not even by two requests (or two API replicas) racing
    on one key (``ObjectStore.put_new``). A key that already holds the same bytes (a
    replayed frame) is left as it is; one that holds different bytes makes the frame a
    conflict, which the caller must not store.

    Raises:
        ObjectStoreUnavailableError: the store failed; its ``created`` names the frames
            whose JPEG this call created (the caller removes them with ``remove_jpegs``).
    """
    by_key = {keys[frame]: data for frame, data in jpegs.items()}
    try:
        created_keys = objects.put_new_many(by_key)
    except ObjectStoreUnavailableError as exc:
        exc.created = {frame for frame in jpegs if keys[frame] in exc.created}
        raise
    created = {frame for frame in jpegs if keys[frame] in created_keys}
    conflicts = {
        frame
        for frame, data in jpegs.items()
        if frame not in created and not _holds(objects, keys[frame], data)
    }
    return JpegWrites(created=frozenset(created), conflicts=frozenset(conflicts))


def _holds(objects: ObjectStore, key: str, data: bytes) -> bool:
    try:
        return objects.get(key) == data
    except ObjectNotFoundError:  # removed since: not the same JPEG
        return False


def remove_jpegs(objects: ObjectStore, frames: Iterable[str], keys: Mapping[str, str]) -> None:
    """Remove the JPEGs of ``frames`` that this request created but did not store (a
    duplicate or conflicting frame): no file outlives a frame row that refers to it."""
    for frame in frames:
        objects.delete(keys[frame])
