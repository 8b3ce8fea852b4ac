"""``/api/frames/{frame_key}.jpg``: the JPEG an agent sent with a frame."""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.responses import FileResponse

from api import crud
from api.deps import CurrentPrincipal, SettingsDep, StoreDep, secured_router
from edgeloop.objects import ObjectStoreUnavailableError

router = secured_router("/api/frames", tag="frames")


@router.get(
    "/{frame_key}.jpg",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "No JPEG stored"},
        503: {"description": "The object store could not be reached"},
    },
)
def read_frame_jpeg(
    frame_key: str, _principal: CurrentPrincipal, store: StoreDep, settings: SettingsDep
) -> FileResponse:
    """The stored JPEG of a frame (the original frame; boxes are xyxy px of it), read
    through the object store (``LoopSettings.stored_file``: the data folder, or a cached
    download from object storage). 503 when the object store cannot be reached."""
    with store.connect() as con:
        frame = crud.get_frame(con=con, frame_key=frame_key)
    if frame is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no frame {frame_key}")
    try:
        path = settings.loop.stored_file(frame["jpeg_path"])
    except ObjectStoreUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"frame {frame_key}: {exc}"
        ) from None
    if path is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"frame {frame_key} has no stored JPEG"
        )
    return FileResponse(
        path,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600"},
    )
