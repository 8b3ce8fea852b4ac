"""``/api/thumbnails``: frame thumbnails and detection crops, made once, served for ever.

Each is made on first request from the frame's stored JPEG (``edgeloop.thumbnails``:
OpenCV resize and encode), stored in the object store under its content hash (the sha256
of the source JPEG, the crop box and the size) and recorded (``edgeloop.store.thumbnails``);
later requests read the stored object. The content hash is the ``ETag``; the answer may be
cached for a year (``immutable``: a frame's JPEG never changes, so neither does its
thumbnail), and ``If-None-Match`` with that tag answers 304 without reading any image.
A stored JPEG that cannot be decoded answers 422, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Header, HTTPException, Query, Response, status

from api.deps import CurrentPrincipal, SettingsDep, StoreDep, secured_router
from edgeloop import thumbnails
from edgeloop.objects import ObjectNotFoundError, ObjectStoreUnavailableError
from edgeloop.store import AnyStore, browse
from edgeloop.store import thumbnails as stored_thumbnails

router = secured_router("/api/thumbnails", tag="thumbnails")

CACHE_CONTROL = "public, max-age=31536000, immutable"
RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"image/jpeg": {}}},
    304: {"description": "If-None-Match named this thumbnail's ETag"},
    404: {"description": "No such frame or detection, or its frame has no stored JPEG"},
    422: {"description": "The stored JPEG cannot be decoded, or the box lies outside it"},
    503: {"description": "The object store could not be reached"},
}
SizeQuery = Annotated[int, Query(description=f"Longest side, px: one of {thumbnails.SIZES}.")]


def serve(
    store: AnyStore,
    settings: SettingsDep,
    *,
    what: str,
    source: dict[str, object] | None,
    spec: thumbnails.ThumbnailSpec,
    if_none_match: str | None,
) -> Response:
    """The thumbnail ``spec`` of ``source``'s stored JPEG (its ``jpeg_path``, an object key),
    made and recorded on first request; 304 when ``if_none_match`` names its ETag. Also
    serves the prediction batches' images (``api.routes.prediction_batches``)."""
    if spec.size not in thumbnails.SIZES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"size must be one of {thumbnails.SIZES}, got {spec.size}",
        )
    if source is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {what}")
    jpeg_path = source["jpeg_path"]
    if not isinstance(jpeg_path, str):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} has no stored JPEG")
    objects = settings.loop.objects()
    try:
        with store.connect() as con:
            known = stored_thumbnails.get(con=con, source_key=jpeg_path, spec=spec.text)
        if known is not None:
            etag = f'"{known["sha256"]}"'
            if if_none_match is not None and etag in if_none_match:
                return Response(status_code=304, headers=_headers(etag))
            try:
                return _jpeg(objects.get(known["object_key"]), etag)
            except ObjectNotFoundError:
                pass  # removed from the object store: make it again below
        path = settings.loop.stored_file(jpeg_path)
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what}: its JPEG is gone")
        made = thumbnails.make(objects, path.read_bytes(), spec)
    except ObjectStoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"{what}: {exc}") from None
    except thumbnails.UnreadableImageError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{what}: {exc}"
        ) from None
    with store.connect() as con:
        stored_thumbnails.record(
            con=con,
            source_key=jpeg_path,
            spec=spec.text,
            sha256=made.sha256,
            object_key=made.object_key,
            size_bytes=len(made.data),
            now=datetime.now(UTC),
        )
    return _jpeg(made.data, f'"{made.sha256}"')


def _headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": CACHE_CONTROL}


def _jpeg(data: bytes, etag: str) -> Response:
    return Response(data, media_type="image/jpeg", headers=_headers(etag))


@router.get("/frames/{frame_key}.jpg", response_class=Response, responses=RESPONSES)
def frame_thumbnail(
    frame_key: str,
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    size: SizeQuery = 256,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A frame's thumbnail (JPEG, longest side ``size`` px, never enlarged)."""
    with store.connect() as con:
        source = browse.thumbnail_source(con=con, frame_key=frame_key)
    return serve(
        store,
        settings,
        what=f"frame {frame_key}",
        source=source,
        spec=thumbnails.ThumbnailSpec(size=size),
        if_none_match=if_none_match,
    )


@router.get("/detections/{detection_id}.jpg", response_class=Response, responses=RESPONSES)
def detection_crop(
    detection_id: str,
    _principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    size: SizeQuery = 128,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A detection's crop (its box with a 10 % margin; JPEG, longest side ``size`` px)."""
    with store.connect() as con:
        source = browse.thumbnail_source(con=con, detection_id=detection_id)
    box = None
    frame_size = None
    if source is not None:
        box = (float(source["x1"]), float(source["y1"]), float(source["x2"]), float(source["y2"]))
        frame_size = (int(source["width"]), int(source["height"]))
    return serve(
        store,
        settings,
        what=f"detection {detection_id}",
        source=source,
        spec=thumbnails.ThumbnailSpec(size=size, box=box, frame_size=frame_size),
        if_none_match=if_none_match,
    )
