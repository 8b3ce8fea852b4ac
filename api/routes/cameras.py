"""``/api/cameras/{camera_id}/models``: which model a camera ran, and when.

Answered from what the agents stamped on every frame (``frames.model_version``) and the
registry's alias history (``model_deployments``): "which model was live on camera X at
time T" is the version on X's newest frame at or before T.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import HTTPException, Query, status

from api.deps import CurrentPrincipal, RegistryDep, StoreDep, secured_router
from api.models import CameraModelsPublic, ModelRunPublic
from edgeloop.store import frames

router = secured_router("/api/cameras", tag="cameras")


@router.get(
    "/{camera_id}/models",
    response_model=CameraModelsPublic,
    responses={404: {"description": "No frame stored from this camera"}},
)
def read_camera_models(
    camera_id: str,
    _principal: CurrentPrincipal,
    store: StoreDep,
    registry: RegistryDep,
    at: Annotated[
        datetime | None,
        Query(description="A moment (ISO 8601, UTC if no offset): which model ran then."),
    ] = None,
) -> CameraModelsPublic:
    """The camera's model history (runs of frames per version, oldest first) and, with
    ``at``, the version it ran then and the version ``production`` pointed at then."""
    with store.connect() as con:
        answer = frames.camera_models(
            con=con, camera_id=camera_id, model_name=registry.model_name, at=at
        )
    if not answer["history"]:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no frame from camera {camera_id}")
    return CameraModelsPublic(
        camera_id=camera_id,
        **answer | {"history": [ModelRunPublic(**row) for row in answer["history"]]},
    )
