"""``/api/inspection-logs``: detections joined with their frames, paged and filtered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from api import crud, deps
from api.deps import CurrentPrincipal, StoreDep, secured_router
from api.models import InspectionLogsPublic
from edgeloop.store.frames import DetectionFilter


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC as its zone when it came without an offset."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


router = secured_router("/api/inspection-logs", tag="inspection-logs")


@router.get("", response_model=InspectionLogsPublic)
def read_inspection_logs(
    _principal: CurrentPrincipal,
    store: StoreDep,
    camera_id: deps.CameraQuery = None,
    since: Annotated[
        datetime | None, Query(description="captured_at >= since (ISO 8601, UTC if no offset)")
    ] = None,
    until: Annotated[datetime | None, Query(description="captured_at < until (ISO 8601)")] = None,
    uncertain: Annotated[
        bool | None, Query(description="Only detections in (true) or out of (false) the band")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
) -> InspectionLogsPublic:
    """Detections, newest capture first; ``count`` is the total over all pages.

    ``since``/``until`` without a UTC offset are taken as UTC.
    """
    where = DetectionFilter(
        camera_id=camera_id, since=_utc(since), until=_utc(until), uncertain=uncertain
    )
    with store.connect() as con:
        data, count = crud.list_inspection_logs(con=con, where=where, limit=limit, offset=offset)
    return InspectionLogsPublic(data=data, count=count)
