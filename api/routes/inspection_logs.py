"""``/api/inspection-logs``: detections joined with their frames, paged and filtered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api import crud
from api.deps import CurrentPrincipal, StoreDep
from api.models import InspectionLogsPublic

router = APIRouter(prefix="/api/inspection-logs", tags=["inspection-logs"])


@router.get("", response_model=InspectionLogsPublic)
def read_inspection_logs(
    _principal: CurrentPrincipal,
    store: StoreDep,
    camera_id: str | None = None,
    since: Annotated[
        datetime | None, Query(description="captured_at >= since (ISO 8601, UTC if no offset)")
    ] = None,
    until: Annotated[datetime | None, Query(description="captured_at < until (ISO 8601)")] = None,
    uncertain: Annotated[
        bool | None, Query(description="Only detections in (true) or out of (false) the band")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> InspectionLogsPublic:
    """Detections, newest capture first; ``count`` is the total over all pages.

    ``since``/``until`` without a UTC offset are taken as UTC.
    """
    since = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    until = until.replace(tzinfo=UTC) if until and until.tzinfo is None else until
    with store.connect() as con:
        data, count = crud.list_inspection_logs(
            con=con,
            camera_id=camera_id,
            since=since,
            until=until,
            uncertain=uncertain,
            limit=limit,
            offset=offset,
        )
    return InspectionLogsPublic(data=data, count=count)
